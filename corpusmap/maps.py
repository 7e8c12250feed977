"""The map stage: read a run's vectors and stored kNN graph, lay them out in 2D, write ``RUN/maps/<name>.parquet``
(and a PNG beside it); plot stored maps.

A map parquet has one row per corpus row, in corpus order: ``id``, ``x``, ``y`` (float32) and the corpus
metadata columns (``year``, ``label``, ``title`` and the kept extra columns; never the long ``text``). Every
parameter, the seed, the optimiser's schedule, timings and package versions are stored as JSON in the parquet
key-value metadata under ``b"corpusmap"`` (:func:`read_map_metadata`). Files are written atomically.

Points added to a t-SNE map with :func:`add_to_map` (``corpusmap map RUN --add NEW_RUN``) are written to
``NEW_RUN/maps/<name>.parquet``: rows of NEW_RUN's corpus, in the coordinates of ``RUN/maps/<name>.parquet``,
which is left untouched. Its metadata names the reference run and map, and plots of it draw the reference map
in grey underneath.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import numpy as np

from corpusmap.errors import CorpusmapError, UsageProblem
from corpusmap.progress import Progress, info

MAPS_DIR = "maps"
META_KEY = b"corpusmap"
FORMAT = 1
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
# embedding-manifest keys that must agree for two runs' vectors to live in one space
_COMPATIBLE_KEYS = ("model", "dim", "pooling", "max_length", "normalize")
_NOT_METADATA = ("text",)
_VERSIONS = ("openTSNE", "umap-learn", "faiss-cpu", "scikit-learn", "numba", "pynndescent", "matplotlib")


@dataclass
class MapResult:
    """What :func:`make_map` / :func:`add_to_map` wrote."""

    name: str
    path: Path
    png: Optional[Path]
    n: int
    metadata: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- paths & reading


def check_name(name: str) -> str:
    if not _NAME_RE.match(name or ""):
        raise UsageProblem(f"map name {name!r} must be letters, digits, '.', '_' or '-' (and start with a letter "
                           "or digit)")
    return name


def map_path(run_path, name: str) -> Path:
    """``RUN/maps/<name>.parquet``."""
    return Path(getattr(run_path, "path", run_path)) / MAPS_DIR / f"{check_name(name)}.parquet"


def list_maps(run_path) -> list[str]:
    folder = Path(getattr(run_path, "path", run_path)) / MAPS_DIR
    return sorted(p.stem for p in folder.glob("*.parquet")) if folder.is_dir() else []


def read_map_metadata(path) -> dict:
    """The JSON stored under ``b"corpusmap"`` in a map parquet's key-value metadata."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(META_KEY)
    return json.loads(raw) if raw else {}


def _need_map(run_path, name: str) -> Path:
    path = map_path(run_path, name)
    if not path.is_file():
        have = list_maps(run_path)
        hint = f"; maps in this run: {', '.join(have)}" if have else ""
        raise CorpusmapError(f"no map {name!r} in {path.parent.parent}; make one with "
                             f"`corpusmap map {path.parent.parent} --name {name}`{hint}")
    return path


def read_map(run_path, name: str, columns: Optional[list] = None):
    """``(pyarrow.Table, metadata dict)`` of a stored map; ``columns`` to read only some."""
    import pyarrow.parquet as pq

    path = _need_map(run_path, name)
    return pq.read_table(path, columns=columns, memory_map=True), read_map_metadata(path)


# ---------------------------------------------------------------------------------------------- inputs


def _open(run_path):
    from corpusmap.store import open_run

    return open_run(run_path)


def _load_graph(run):
    from corpusmap.neighbors import load_knn_graph

    return load_knn_graph(run.path)


def _vectors(run):
    vectors = run.vectors
    if len(vectors) != run.n_rows:
        raise CorpusmapError(f"{run.path}: {len(vectors):,} vectors but {run.n_rows:,} corpus rows; "
                             f"re-run `corpusmap embed` for this run")
    return vectors


def _metadata_columns(run) -> list[str]:
    return [c for c in run.corpus_columns() if c not in _NOT_METADATA]


def _map_table(run, coords: np.ndarray):
    """id, x, y and the corpus metadata columns, in corpus order."""
    import pyarrow as pa

    corpus = run.read_corpus(_metadata_columns(run))
    if corpus.num_rows != len(coords):
        raise CorpusmapError(f"the map has {len(coords):,} points but the corpus {corpus.num_rows:,} rows")
    arrays, names = [], []
    if "id" in corpus.column_names:
        arrays.append(corpus.column("id"))
        names.append("id")
    else:
        arrays.append(pa.array(np.arange(len(coords), dtype=np.int64)))
        names.append("id")
    arrays += [pa.array(coords[:, 0].astype(np.float32)), pa.array(coords[:, 1].astype(np.float32))]
    names += ["x", "y"]
    for column in corpus.column_names:
        if column == "id":
            continue
        arrays.append(corpus.column(column))
        names.append(column if column not in ("x", "y") else f"corpus_{column}")
    return pa.Table.from_arrays(arrays, names=names)


def _write_parquet(table, metadata: dict, path: Path) -> None:
    import pyarrow.parquet as pq

    from corpusmap.atomic import atomic_path, json_default

    schema_meta = dict(table.schema.metadata or {})
    schema_meta[META_KEY] = json.dumps(metadata, default=json_default).encode()
    table = table.replace_schema_metadata(schema_meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def _base_metadata(run, name: str, method: str, layout_info: dict, graph=None) -> dict:
    from corpusmap.store import package_versions

    emb = run.embeddings_manifest
    meta = {
        "format": FORMAT,
        "name": name,
        "method": method,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run": str(run.path.resolve()),
        "n": int(run.n_rows),
        "seed": layout_info.get("parameters", {}).get("seed"),
        "parameters": layout_info.get("parameters", {}),
        "embeddings": {k: emb.get(k) for k in ("model", "dim", "pooling", "max_length", "normalize", "n",
                                              "corpus_sha256")},
        "versions": package_versions(*_VERSIONS),
    }
    for key in ("schedule", "total_iterations", "seconds", "pca", "reference"):
        if key in layout_info:
            meta[key] = layout_info[key]
    if graph is not None:
        manifest = graph.manifest or {}
        meta["knn"] = {"k": int(graph.k), "metric": graph.metric,
                       "index": (manifest.get("index") or {}).get("type"),
                       "recall": (manifest.get("recall") or {}).get("value"),
                       "source": manifest.get("source"), "indices_sha256": manifest.get("indices_sha256")}
    return meta


# ---------------------------------------------------------------------------------------------- making maps


def make_map(run_path, method: str = "tsne", *, name: Optional[str] = None, seed: int = 42,
             threads: Optional[int] = None, tsne=None, umap=None, umap_deterministic: bool = True,
             plot: bool = True, plot_options: Optional[dict] = None) -> MapResult:
    """Lay out a run in 2D and write ``RUN/maps/<name>.parquet`` (name defaults to the method) and a PNG.

    ``tsne``: :class:`corpusmap.layouts.TsneParams`; ``umap``: :class:`corpusmap.layouts.UmapParams`.
    ``umap_deterministic=False`` runs UMAP multi-threaded without a seed (faster, not reproducible).
    Inputs are checked (graph present, k large enough) before any work; nothing is written on failure.
    """
    from corpusmap import layouts

    if method not in layouts.METHODS:
        raise UsageProblem(f"unknown method {method!r}; choose from {', '.join(layouts.METHODS)}")
    name = check_name(name or method)
    run = _open(run_path)
    tsne = tsne or layouts.TsneParams()
    umap = umap or layouts.UmapParams()
    graph = None
    if method in ("tsne", "umap"):
        graph = _load_graph(run)
        # fail fast on parameters the stored graph cannot serve
        if method == "tsne":
            tsne.validate()
            layouts.check_k_for_tsne(tsne, graph.k, str(run.path))
        else:
            umap.validate()
            layouts.check_k_for_umap(umap, graph.k, str(run.path))
            layouts.import_umap()
    vectors = _vectors(run)
    if graph is not None and graph.n != len(vectors):
        raise CorpusmapError(f"the kNN graph has {graph.n:,} rows but the run {len(vectors):,} vectors; "
                             f"recompute it with `corpusmap neighbors {run.path} --overwrite`")
    n = len(vectors)
    info(f"map {name}: {method} of {n:,} points")
    if method == "tsne":
        total = tsne.early_exaggeration_iter + tsne.anneal_iter + tsne.n_iter
        with Progress(f"t-SNE {name}", total=total, unit="it") as bar:
            layout = layouts.tsne_layout(graph.indices, graph.distances, vectors, params=tsne, metric=graph.metric,
                                         threads=threads, seed=seed, progress=bar)
    elif method == "umap":
        layout = layouts.umap_layout(graph.indices, graph.distances, vectors, params=umap, metric=graph.metric,
                                     threads=threads, seed=seed if umap_deterministic else None)
    else:
        layout = layouts.pca_layout(vectors, seed=seed)
    metadata = _base_metadata(run, name, method, layout.info, graph)
    metadata["seed"] = seed
    table = _map_table(run, layout.coords)
    path = map_path(run.path, name)
    _write_parquet(table, metadata, path)
    info(f"map {name}: wrote {path}")
    png = None
    if plot:
        png = plot_map(run.path, name, **(plot_options or {}))
    return MapResult(name=name, path=path, png=png, n=n, metadata=metadata)


def _check_compatible(run, new_run) -> None:
    """Both runs' vectors must come from one model (and, for TF-IDF, one fit)."""
    from corpusmap.atomic import sha256_file

    a, b = run.embeddings_manifest, new_run.embeddings_manifest
    diff = [k for k in _COMPATIBLE_KEYS if a.get(k) != b.get(k)]
    if diff:
        detail = ", ".join(f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in diff)
        raise CorpusmapError(f"{new_run.path} was embedded differently from {run.path} ({detail}); embed it with "
                             f"the same model and options so its vectors live in the same space")
    if str(a.get("model", "")).lower() == "tfidf":
        for part in ("vocabulary.json", "components.npy", "idf.npy"):
            pa_, pb = run.embeddings_dir / "tfidf" / part, new_run.embeddings_dir / "tfidf" / part
            if not (pa_.is_file() and pb.is_file()) or sha256_file(pa_) != sha256_file(pb):
                raise CorpusmapError(
                    f"{new_run.path} has its own TF-IDF fit, so its vectors are not comparable with {run.path}'s; "
                    f"copy {run.embeddings_dir / 'tfidf'} to {new_run.embeddings_dir / 'tfidf'} before "
                    f"`corpusmap embed`, so the new run reuses the reference fit")


def add_to_map(run_path, new_run_path, *, name: str = "tsne", threads: Optional[int] = None, seed: int = 42,
               transform=None, plot: bool = True, plot_options: Optional[dict] = None) -> MapResult:
    """Place NEW_RUN's abstracts into RUN's t-SNE map ``name`` without moving its points.

    Writes ``NEW_RUN/maps/<name>.parquet`` (NEW_RUN's rows, in RUN's map coordinates); RUN is only read.
    """
    from corpusmap import layouts

    name = check_name(name)
    run, new_run = _open(run_path), _open(new_run_path)
    if run.path.resolve() == new_run.path.resolve():
        raise UsageProblem("--add needs another run than RUN")
    ref_path = _need_map(run.path, name)
    ref_meta = read_map_metadata(ref_path)
    if ref_meta.get("method") != "tsne":
        raise UsageProblem(f"map {name!r} of {run.path} is a {ref_meta.get('method') or 'foreign'} map; points can "
                           "only be added to a t-SNE map made by `corpusmap map --method tsne`")
    graph = _load_graph(run)
    _check_compatible(run, new_run)
    vectors, new_vectors = _vectors(run), _vectors(new_run)
    table, _ = read_map(run.path, name, columns=["x", "y"])
    coords = np.column_stack([table.column("x").to_numpy(), table.column("y").to_numpy()]).astype(np.float64)
    if len(coords) != len(vectors) or graph.n != len(vectors):
        raise CorpusmapError(f"map {name!r} ({len(coords):,} points), the kNN graph ({graph.n:,}) and the vectors "
                             f"({len(vectors):,}) of {run.path} disagree; recompute the map")
    p = ref_meta.get("parameters", {})
    fields = set(layouts.TsneParams.__dataclass_fields__)
    map_params = layouts.TsneParams(**{k: v for k, v in p.items() if k in fields})
    if ref_meta.get("knn", {}).get("metric") not in (None, graph.metric):
        raise CorpusmapError(f"the kNN graph of {run.path} changed since map {name!r} was made; recompute the map")
    new_block = new_vectors.to_numpy() if hasattr(new_vectors, "to_numpy") else np.asarray(new_vectors)
    info(f"map {name}: adding {len(new_block):,} points of {new_run.path} to {len(coords):,}")
    layout = layouts.tsne_add_layout(coords, graph.indices, graph.distances, vectors, new_block,
                                     map_params=map_params, metric=graph.metric,
                                     transform=transform or layouts.TransformParams(), threads=threads, seed=seed)
    layout.info["reference"] = {"run": str(run.path.resolve()), "map": name,
                                "map_created": ref_meta.get("created"), "n": int(len(coords))}
    metadata = _base_metadata(new_run, name, "tsne-transform", layout.info, graph)
    metadata["seed"] = seed
    metadata["reference_parameters"] = p
    out = map_path(new_run.path, name)
    _write_parquet(_map_table(new_run, layout.coords), metadata, out)
    info(f"map {name}: wrote {out}")
    png = plot_map(new_run.path, name, **(plot_options or {})) if plot else None
    return MapResult(name=name, path=out, png=png, n=len(new_block), metadata=metadata)


# ---------------------------------------------------------------------------------------------- plotting


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:60] or "color"


def _numeric(array) -> Optional[np.ndarray]:
    """Float values of an Arrow column when it is numeric (or strings that are nearly all numbers)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = array.type
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        sample = array.slice(0, min(len(array), 5000)).drop_null()
        if len(sample) == 0:
            return None
        try:
            values = pc.cast(sample, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        if len(pc.unique(values)) <= 12:  # a few codes: categories, not a scale
            return None
        try:
            return pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
    return None


def _available(map_columns: list, corpus_columns: list) -> list:
    cols = [c for c in map_columns if c not in ("x", "y")]
    cols += [c for c in corpus_columns if c not in cols and c not in _NOT_METADATA]
    return cols


def _parse_color(color: Optional[str]) -> tuple[str, Optional[list]]:
    if color is None or color == "auto":
        return "auto", None
    if color == "none":
        return "none", None
    if color.startswith("words:"):
        words = [w.strip().lower() for w in color[len("words:"):].split(",") if w.strip()]
        if not words:
            raise UsageProblem("--color words: needs at least one word, e.g. words:delves,underscores")
        return "words", words
    return "column", None


def plot_map(run_path, name: str, *, color: Optional[str] = "auto", out=None, width: int = 2000,
             height: int = 2000, dpi: int = 300, labels: bool = False, title: Optional[str] = None,
             max_categories: int = 10, reference: bool = True, raster: Optional[bool] = None) -> Path:
    """Draw map ``name`` of a run to a PNG and return its path.

    ``color``: ``auto`` (label if the corpus has labels, else year), ``none``, a column of the map or corpus
    (numbers get a colour map and colour bar, anything else a categorical palette), or ``words:w1,w2``
    (abstracts containing any of the words, as whole tokens, against the rest). Default output:
    ``RUN/maps/<name>.png`` for ``auto``, ``RUN/maps/<name>.<color>.png`` otherwise.
    """
    import pyarrow.parquet as pq

    from corpusmap import render

    mode, words = _parse_color(color)
    run = _open(run_path)
    path = _need_map(run.path, name)
    map_columns = pq.read_schema(path).names
    corpus_columns = run.corpus_columns()
    column = None
    if mode == "column":
        available = _available(map_columns, corpus_columns)
        if color not in available:
            raise UsageProblem(f"unknown colour column {color!r}; available: {', '.join(available)}, none, or "
                               "words:w1,w2")
        column = color
    elif mode == "auto":
        column = next((c for c in ("label", "year") if c in map_columns), None)
    if width < 16 or height < 16 or dpi < 16:
        raise UsageProblem("--width, --height and --dpi must be at least 16")
    if out is None:
        suffix = "" if mode == "auto" else "." + _slug(color)
        out = path.with_name(f"{name}{suffix}.png")
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise UsageProblem(f"{out}: the output must be a .png file")

    t0 = time.perf_counter()
    table = pq.read_table(path, columns=["x", "y"], memory_map=True)
    x = table.column("x").to_numpy()
    y = table.column("y").to_numpy()
    meta = read_map_metadata(path)
    categories = values = None
    legend_title = None
    integer_ticks = False
    if mode == "words":
        texts = run.read_corpus(["text"]).column("text")
        if len(texts) != len(x):
            raise CorpusmapError(f"map {name!r} has {len(x):,} points but the corpus {len(texts):,} rows")
        from corpusmap.tokens import contains_any

        hits = np.zeros(len(x), dtype=bool)
        offset = 0
        for chunk in texts.chunks:
            hits[offset:offset + len(chunk)] = contains_any(chunk.to_pylist(), words)
            offset += len(chunk)
        categories = render.highlight(hits, "contains " + ", ".join(words))
        legend_title = "abstracts"
    elif column is not None:
        if column in map_columns:
            array = pq.read_table(path, columns=[column], memory_map=True).column(column)
        else:
            array = run.read_corpus([column]).column(column)
        if len(array) != len(x):
            raise CorpusmapError(f"column {column!r} has {len(array):,} rows but the map {len(x):,} points")
        array = array.combine_chunks() if hasattr(array, "combine_chunks") else array
        numeric = _numeric(array)
        if column == "label" and mode == "auto" and numeric is None:
            categories = render.categorize(array, max_categories)
            if categories.labelled < 1:  # no labels at all: fall back to year
                categories = None
                column = "year" if "year" in map_columns else None
                if column:
                    numeric = _numeric(pq.read_table(path, columns=["year"]).column("year").combine_chunks())
        if categories is None and column is not None:
            if numeric is not None and np.isfinite(numeric).any():
                values = numeric
                finite = numeric[np.isfinite(numeric)]
                integer_ticks = bool(np.all(finite == np.round(finite)))
            elif numeric is None:
                categories = render.categorize(array, max_categories)
        legend_title = column
    background = None
    ref = meta.get("reference")
    if reference and ref:
        ref_file = Path(ref.get("run", "")) / MAPS_DIR / f"{ref.get('map')}.parquet"
        if ref_file.is_file():
            rt = pq.read_table(ref_file, columns=["x", "y"])
            background = (rt.column("x").to_numpy(), rt.column("y").to_numpy())
    render.render_map(x, y, out, categories=categories, values=values, width=width, height=height, dpi=dpi,
                      title=title, legend_title=legend_title, labels=labels, integer_ticks=integer_ticks,
                      background=background, raster=raster)
    info(f"plot: wrote {out} ({width}x{height} px, {len(x):,} points, {time.perf_counter() - t0:.1f} s)")
    return out


__all__ = ["MapResult", "make_map", "add_to_map", "plot_map", "read_map", "read_map_metadata", "map_path",
           "list_maps", "check_name", "MAPS_DIR", "META_KEY"]
