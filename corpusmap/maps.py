"""The map stage: lay a run out in 2D from its vectors and stored kNN graph and write ``RUN/maps/<name>.parquet``;
and placing a second run's abstracts into an existing t-SNE map (``map RUN --add NEW_RUN``).

A map parquet has one row per corpus row, in corpus order: ``id``, ``x``, ``y`` (float32) and the corpus
metadata columns (``year``, ``label``, ``title`` and the kept extra columns; never the long ``text``). Its manifest
(every parameter, the seed, the optimiser's schedule, versions and the stage block) is JSON in the parquet
key-value metadata under ``b"corpusmap"``; the map's fingerprint is the sha256 of its float32 coordinates. What
differs from one computation of the same map to the next (the time it was made, the run's absolute path, timings,
the thread count) is left out of the file, so that the same inputs and seed give the same bytes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from corpusmap import layouts, resources
from corpusmap.errors import CorpusmapError, UsageProblem
from corpusmap.progress import Progress, info
from corpusmap.run import Run, check_name, file_fingerprint, read_map_stage
from corpusmap.stage import Stage, changed_flags, check_numbers, params_dict, refuse_unused

META_KEY = b"corpusmap"
FORMAT = 2
_NOT_METADATA = ("text",)
# embedding-manifest keys that must agree for two runs' vectors to live in one space
_COMPATIBLE_KEYS = ("model", "dim", "pooling", "max_length", "normalize")
# the packages that compute each kind of map (their versions go into its manifest); --add also searches with FAISS
METHOD_PACKAGES = {"tsne": ("openTSNE", "scipy"), "umap": ("umap-learn", "numba", "pynndescent", "scipy"), "pca": ()}
CUDA_PACKAGES = ("cuml", "cupy")
LAYOUT_PACKAGES = ("openTSNE", "umap-learn", "numba", "pynndescent", "scipy", "faiss-cpu")


# ---------------------------------------------------------------------------------------------- reading


@dataclass
class MapData:
    """A stored map: ``coords`` (n, 2) float64 in corpus order, the parquet's ``columns`` and its manifest."""

    name: str
    path: Path
    coords: np.ndarray
    columns: list
    manifest: dict = field(default_factory=dict)


def coords_fingerprint(coords: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(coords, dtype=np.float32).tobytes()).hexdigest()


def need_map(run: Run, name: str) -> Path:
    """The path of map ``name``, or an error naming the command that makes it and the maps there are."""
    path = run.map_path(name)
    if not path.is_file():
        have = run.list_maps()
        hint = f"; maps in this run: {', '.join(have)}" if have else ""
        how = f"--method {name}" if name in layouts.METHODS else f"--name {name}"
        raise CorpusmapError(f"no map {name!r} in {run.path}; make one with `corpusmap map {run.path} {how}`{hint}")
    return path


def map_fingerprint(run: Run, name: str) -> str:
    path = need_map(run, name)
    manifest = read_map_stage(path)
    _check_placement(run, name, manifest)
    return (manifest.get("stage") or {}).get("fingerprint") or file_fingerprint(path)


def _check_placement(run: Run, name: str, manifest: dict) -> None:
    """Points added to another run's map (``map --add``) are of use only while that map is the one they were
    placed on: an error naming the command that places them again when it has changed or is gone."""
    stage = manifest.get("stage") or {}
    reference = (stage.get("params") or {}).get("reference")
    placed_on = (stage.get("sources") or {}).get("reference:map")
    if not reference or not placed_on:
        return
    path = Run(reference).map_path(name)
    if not path.is_file():
        if not Path(reference).is_dir():  # the runs moved (or the reference was deleted): nothing to compare with
            return
        raise CorpusmapError(f"map {name!r} of {run.path} holds points placed on map {name!r} of {reference}, which "
                             f"that run no longer holds; make it there again (`corpusmap map {reference}`), then "
                             f"place them again with `corpusmap map {reference} --add {run.path} --name {name}`")
    now = (read_map_stage(path).get("stage") or {}).get("fingerprint") or file_fingerprint(path)
    if now != placed_on:
        raise CorpusmapError(f"map {name!r} of {run.path} holds points placed on map {name!r} of {reference}, which "
                             f"has changed since; place them again with `corpusmap map {reference} --add {run.path} "
                             f"--name {name}`")


def read_map(run: Run, name: str, check_ids: bool = True) -> MapData:
    """Map ``name`` of a run: coordinates in corpus order, checked against the recorded fingerprint.

    The parquet needs columns ``x`` and ``y`` (and ``id`` to be matched with the corpus). A map whose ids are the
    corpus ids in another order is put back in corpus order; any other difference is an error.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = need_map(run, name)
    remake = _remake(run, name, path)
    try:
        parquet = pq.ParquetFile(path, memory_map=True)
        names = parquet.schema_arrow.names
        missing = [c for c in ("x", "y") if c not in names]
        if missing:
            raise CorpusmapError(f"map {path} lacks column(s) {', '.join(missing)} (a map needs id, x, y)")
        table = parquet.read(columns=[c for c in ("id", "x", "y") if c in names])
    except (pa.ArrowException, OSError) as exc:
        raise CorpusmapError(f"map {path} is damaged ({exc}); {remake}") from None
    manifest = read_map_stage(path)
    _check_placement(run, name, manifest)
    coords = np.column_stack([table.column("x").to_numpy(zero_copy_only=False),
                              table.column("y").to_numpy(zero_copy_only=False)]).astype(np.float64)
    recorded = (manifest.get("stage") or {}).get("fingerprint")
    if recorded and coords_fingerprint(coords) != recorded:
        raise CorpusmapError(f"map {path} fails its checksum (changed since it was written); {remake}")
    if not np.isfinite(coords).all():
        raise CorpusmapError(f"map {path} has NaN or infinite coordinates; {remake}")
    if check_ids and run.has_corpus():
        coords = _in_corpus_order(run, name, coords, table, remake)
    return MapData(name, path, coords, names, manifest)


def reference_coords(data: MapData) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """x and y of the map that ``data``'s points were placed into with ``map --add``; None for other maps, and
    when that run is no longer where it was (a moved pair of runs)."""
    import pyarrow.parquet as pq

    ref = data.manifest.get("reference") or {}
    path = Run(ref["run"]).map_path(ref.get("map") or data.name) if ref.get("run") else None
    if path is None or not path.is_file():
        return None
    table = pq.read_table(path, columns=["x", "y"])
    return (table.column("x").to_numpy().astype(np.float64), table.column("y").to_numpy().astype(np.float64))


def _remake(run: Run, name: str, path: Path) -> str:
    """How to make a damaged map again: the command that made it (a damaged map is not current, so it runs)."""
    params = ((read_map_stage(path) or {}).get("stage") or {}).get("params") or {}
    method = params.get("method")
    if not method:
        return f"remake it with `corpusmap map {run.path} --method METHOD --name {name}` (or delete it)"
    named = "" if name == method else f" --name {name}"
    command = f"corpusmap map {run.path} --method {method}{named}"
    return f"remake it by running the command that made it again (`{command}` with its other options)"


def _in_corpus_order(run: Run, name: str, coords: np.ndarray, table, remake: str) -> np.ndarray:
    if len(coords) != run.n_rows:
        raise CorpusmapError(f"map {name!r} has {len(coords):,} rows but the corpus of {run.path} has "
                             f"{run.n_rows:,}; it was made from another corpus: {remake}")
    if "id" not in table.column_names or "id" not in run.corpus_columns():
        return coords
    ids = np.asarray(table.column("id").to_pylist(), dtype=object).astype(str)
    corpus_ids = np.asarray(run.read_corpus(["id"]).column("id").to_pylist(), dtype=object).astype(str)
    if np.array_equal(ids, corpus_ids):
        return coords
    if len(set(corpus_ids)) == len(corpus_ids) and set(ids) == set(corpus_ids):
        position = {v: i for i, v in enumerate(ids)}
        return coords[[position[v] for v in corpus_ids]]
    bad = int(np.flatnonzero(ids != corpus_ids)[0])
    raise CorpusmapError(f"map {name!r} does not match the corpus of {run.path}: row {bad} has id "
                         f"{str(ids[bad])!r}, the corpus {str(corpus_ids[bad])!r}; {remake}")


# ---------------------------------------------------------------------------------------------- writing


def _map_table(run: Run, coords: np.ndarray):
    """id, x, y and the corpus metadata columns, in corpus order."""
    import pyarrow as pa

    corpus = run.read_corpus([c for c in run.corpus_columns() if c not in _NOT_METADATA])
    if corpus.num_rows != len(coords):
        raise CorpusmapError(f"the map has {len(coords):,} points but the corpus {corpus.num_rows:,} rows")
    ids = corpus.column("id") if "id" in corpus.column_names else pa.array(np.arange(len(coords), dtype=np.int64))
    arrays, names = [ids, pa.array(coords[:, 0].astype(np.float32)), pa.array(coords[:, 1].astype(np.float32))], \
        ["id", "x", "y"]
    for column in corpus.column_names:
        if column != "id":
            arrays.append(corpus.column(column))
            names.append(column if column not in ("x", "y") else f"corpus_{column}")
    return pa.Table.from_arrays(arrays, names=names)


def write_map_parquet(table, manifest: dict, path: Path) -> None:
    import pyarrow.parquet as pq

    from corpusmap.atomic import json_default

    meta = dict(table.schema.metadata or {})
    meta[META_KEY] = json.dumps(_reproducible(manifest), default=json_default).encode()
    pq.write_table(table.replace_schema_metadata(meta), path, compression="zstd")


def _reproducible(manifest: dict) -> dict:
    """The manifest without what changes between two computations of the same map (see the module docstring)."""
    from corpusmap.atomic import json_default

    out = json.loads(json.dumps(manifest, default=json_default))
    for key in ("created", "run", "seconds"):
        out.pop(key, None)
    out.get("stage", {}).pop("created", None)
    out.get("parameters", {}).pop("threads", None)
    out.get("reference", {}).pop("map_created", None)
    for phase in out.get("schedule") or []:
        phase.pop("seconds", None)
    return out


def _manifest(run: Run, name: str, layout: layouts.Layout, block: dict, graph=None) -> dict:
    emb = run.embeddings_manifest
    manifest = {"format": FORMAT, "name": name, "method": layout.info.get("method"),
                "created": block["created"], "run": str(run.path.resolve()), "n": int(run.n_rows),
                "seed": block["params"].get("seed"), "parameters": layout.info.get("parameters", {}),
                "embeddings": {k: emb.get(k) for k in ("model", "dim", "pooling", "max_length", "normalize", "n")}}
    for key in ("schedule", "total_iterations", "seconds", "pca", "reference", "placement"):
        if key in layout.info:
            manifest[key] = layout.info[key]
    if graph is not None:
        m = graph.manifest or {}
        manifest["knn"] = {"k": int(graph.k), "metric": graph.metric, "index": (m.get("index") or {}).get("type"),
                           "recall": (m.get("recall") or {}).get("value"), "source": m.get("source")}
    manifest["stage"] = dict(block, fingerprint=coords_fingerprint(layout.coords))
    return manifest


# ---------------------------------------------------------------------------------------------- the stage


@dataclass(frozen=True)
class MapParams:
    """A map: its name (default: the method), method, seed and the method's settings."""

    method: str = "tsne"
    name: Optional[str] = None
    seed: int = 42
    tsne: layouts.TsneParams = layouts.TsneParams()
    umap: layouts.UmapParams = layouts.UmapParams()
    umap_parallel: bool = False  # UMAP on every thread: faster, not reproducible
    device: str = "cpu"  # cuda: cuML on a GPU (another implementation, so another map)

    def __post_init__(self):
        for params in (self, self.tsne, self.umap):
            check_numbers(params)
        if self.method not in layouts.METHODS:
            raise UsageProblem(f"--method must be one of {', '.join(layouts.METHODS)}, not {self.method!r}")
        if self.device not in ("cpu", "cuda"):
            raise UsageProblem(f"--device must be cpu or cuda, not {self.device!r}")
        if self.method == "pca":
            refuse_unused(changed_flags(self, "seed"), "the PCA map is exact (no random start)")
        if self.device == "cuda" and self.method == "pca":
            raise UsageProblem("--device cuda lays out t-SNE and UMAP maps; the PCA baseline runs on the CPU")
        object.__setattr__(self, "name", check_name(self.name or self.method, "map name"))
        if self.method == "tsne":
            self.tsne.validate()
        elif self.method == "umap":
            self.umap.validate()

    def record(self) -> dict:
        """The parameters that decide this map (those of the other methods do not); ``device`` only when it is
        not the CPU, so that maps made before the option existed stay current."""
        out = {"method": self.method, "name": self.name, "seed": self.seed}
        if self.device != "cpu":
            out["device"] = self.device
        if self.method == "tsne":
            out["tsne"] = params_dict(self.tsne)
        elif self.method == "umap":
            out.update(umap=params_dict(self.umap), umap_parallel=self.umap_parallel)
        return out


def neighbours_needed(params: MapParams) -> int:
    """How many stored neighbours of each point the map reads (UMAP's ``n_neighbors`` counts the point itself)."""
    if params.method == "tsne":
        return params.tsne.neighbours_needed()
    return params.umap.n_neighbors - 1 if params.method == "umap" else 0


class MapStage(Stage):
    """``corpusmap map``: ``RUN/maps/<name>.parquet`` (t-SNE, UMAP or PCA)."""

    name = "map"
    what = "a map"
    elsewhere = "another --name"

    def __init__(self, threads: Optional[int] = None):
        self.threads = threads

    def packages_for(self, params: MapParams) -> tuple:
        return METHOD_PACKAGES[params.method] + (CUDA_PACKAGES if params.device == "cuda" else ())

    def key(self, params: MapParams) -> str:
        return f"maps/{params.name}"

    def needs(self, params: MapParams) -> set:
        return {"embeddings", "knn"} if params.method in ("tsne", "umap") else {"embeddings"}

    def where(self, run: Run, params: MapParams) -> Path:
        return run.map_path(params.name)

    def record(self, params: MapParams) -> dict:
        return params.record()

    def comparable(self, run: Run, recorded: dict) -> dict:
        """A PCA map has no seed (it is the same map whatever the seed)."""
        return {k: v for k, v in recorded.items() if k != "seed"} if recorded.get("method") == "pca" else recorded

    def resolved(self, run: Run, params: MapParams) -> MapParams:
        """UMAP's ``init="auto"`` as the start it takes for this run's size (recorded so), or as the spectral start
        of a stored map of that name made when spectral was the default (which ``auto`` keeps)."""
        if params.method != "umap" or params.umap.init != "auto" or not run.has_corpus():
            return params
        stored = ((self.stored(run, params) or {}).get("stage") or {}).get("params") or {}
        if (stored.get("umap") or {}).get("init") == "spectral":
            return dataclasses.replace(params, umap=dataclasses.replace(params.umap, init="spectral"))
        return dataclasses.replace(params, umap=params.umap.resolved(run.n_rows, params.device))

    def stored(self, run: Run, params: MapParams) -> Optional[dict]:
        return _stored(run, params.name)

    def check_files(self, run: Run, params: MapParams, manifest: dict) -> Optional[str]:
        return _damaged(run, params.name)

    def check_plan(self, run: Run, params: MapParams, earlier: list, planned: Optional[dict] = None) -> None:
        from corpusmap.neighbors import planned_k

        need = neighbours_needed(params)
        problem = planned_k(run, earlier, need)
        if problem:
            raise UsageProblem(f"the map {params.name!r} needs {need} neighbours of each point, but {problem}, or ask "
                               "the map for fewer neighbours")

    def prepare(self, run: Run, params: MapParams) -> None:
        from corpusmap.neighbors import load_knn_graph

        run.need_corpus()
        if params.device == "cuda":
            layouts.import_cuml()
        vectors = run.vectors  # present, complete and as long as the corpus
        if params.method in ("tsne", "umap"):
            graph = load_knn_graph(run)
            n, dim = vectors.shape
            if n < 4:  # openTSNE and umap-learn's spectral start both need more
                raise CorpusmapError(f"{'t-SNE' if params.method == 'tsne' else 'UMAP'} needs at least 4 points, and "
                                     f"{run.path} has {n}; lay it out with --method pca")
            if params.method == "tsne":
                need = layouts.check_k_for_tsne(params.tsne, graph.k, str(run.path), n)
                if params.device == "cpu":
                    resources.require(resources.tsne_bytes(n, need), f"t-SNE of {n:,} points",
                                      "free memory, or lay it out on a GPU with --device cuda")
            else:
                layouts.check_k_for_umap(params.umap, graph.k, str(run.path), n)
                layouts.import_umap()
                if params.device == "cpu":
                    resources.require(resources.umap_bytes(n, dim, params.umap.n_neighbors),
                                      f"UMAP of {n:,} points of {dim} dims",
                                      f"use --method tsne (about {resources.readable(resources.tsne_bytes(n, 10))}), "
                                      "or --device cuda")

    def inputs(self, run: Run, params: MapParams) -> dict:
        from corpusmap.neighbors import graph_fingerprint, vectors_fingerprint

        out = {"corpus": run.corpus_fingerprint, "embeddings": vectors_fingerprint(run)}
        if params.method in ("tsne", "umap"):
            out["knn"] = graph_fingerprint(run)
        return out

    def compute(self, run: Run, params: MapParams, staging: Path, block: dict) -> dict:
        from corpusmap.neighbors import load_knn_graph

        vectors = run.vectors
        graph = load_knn_graph(run) if params.method in ("tsne", "umap") else None
        if graph is not None and graph.n != len(vectors):
            raise CorpusmapError(f"the kNN graph has {graph.n:,} rows but the run {len(vectors):,} vectors; "
                                 f"recompute it with `corpusmap neighbors {run.path} --overwrite`")
        info(f"map {params.name}: {params.method} of {len(vectors):,} points")
        if params.device == "cuda":
            make = layouts.cuml_tsne_layout if params.method == "tsne" else layouts.cuml_umap_layout
            layout = make(graph.indices, graph.distances, vectors, seed=params.seed,
                          params=params.tsne if params.method == "tsne" else params.umap)
        elif params.method == "tsne":
            tsne = params.tsne
            total = tsne.early_exaggeration_iter + tsne.anneal_iter + tsne.n_iter
            with Progress(f"t-SNE {params.name}", total=total, unit="it") as bar:
                layout = layouts.tsne_layout(graph.indices, graph.distances, vectors, params=tsne,
                                             metric=graph.metric, threads=self.threads, seed=params.seed,
                                             progress=bar)
        elif params.method == "umap":
            layout = layouts.umap_layout(graph.indices, graph.distances, vectors, params=params.umap,
                                         metric=graph.metric, threads=self.threads,
                                         seed=None if params.umap_parallel else params.seed)
        else:
            layout = layouts.pca_layout(vectors, seed=params.seed)
        manifest = _manifest(run, params.name, layout, block, graph)
        write_map_parquet(_map_table(run, layout.coords), manifest, staging / f"{params.name}.parquet")
        return manifest

    def commit(self, run: Run, params, staging: Path) -> None:
        for path in run.commit_files(staging, run.maps_dir):
            run.remember_checksum(path)


# ---------------------------------------------------------------------------------------------- adding points


@dataclass(frozen=True)
class AddParams:
    """Place this run's abstracts into map ``name`` (t-SNE or UMAP) of the ``reference`` run, without moving its
    points."""

    reference: str
    name: str = "tsne"
    seed: int = 42
    transform: layouts.TransformParams = layouts.TransformParams()

    def __post_init__(self):
        check_name(self.name, "map name")


class AddStage(Stage):
    """``corpusmap map RUN --add NEW_RUN``: ``NEW_RUN/maps/<name>.parquet`` in the coordinates of RUN's map
    (openTSNE's ``prepare_partial`` for t-SNE maps, umap-learn's ``transform`` for UMAP maps)."""

    name = "map"
    what = "a map"
    packages = LAYOUT_PACKAGES
    elsewhere = "another --name"

    def __init__(self, threads: Optional[int] = None):
        self.threads = threads

    def key(self, params: AddParams) -> str:
        return f"maps/{params.name}"

    def where(self, run: Run, params: AddParams) -> Path:
        return run.map_path(params.name)

    def stored(self, run: Run, params: AddParams) -> Optional[dict]:
        return _stored(run, params.name)

    def check_files(self, run: Run, params: AddParams, manifest: dict) -> Optional[str]:
        return _damaged(run, params.name)

    def record(self, params: AddParams) -> dict:
        recorded = dict(params_dict(params), reference=str(Path(params.reference).resolve()))
        if _reference_method(params.reference, params.name) == "umap":
            del recorded["transform"]  # umap-learn's transform has no such parameters: they were not used
        return recorded

    def comparable(self, run: Run, recorded: dict) -> dict:
        """A UMAP placement has no transform parameters (those recorded by an earlier corpusmap are not
        compared)."""
        if _reference_method(recorded.get("reference") or "", recorded.get("name") or "tsne") == "umap":
            return {k: v for k, v in recorded.items() if k != "transform"}
        return recorded

    def prepare(self, run: Run, params: AddParams) -> None:
        reference = _reference(run, params)
        meta = read_map_stage(need_map(reference, params.name))
        if meta.get("method") not in ("tsne", "umap"):
            raise UsageProblem(f"map {params.name!r} of {reference.path} is a {meta.get('method') or 'foreign'} "
                               "map; points can only be added to a t-SNE or UMAP map made by `corpusmap map`")
        if meta.get("method") == "umap":
            layouts.import_umap()
        _check_compatible(reference, run)
        run.vectors

    def inputs(self, run: Run, params: AddParams) -> dict:
        from corpusmap.neighbors import vectors_fingerprint

        return {"corpus": run.corpus_fingerprint, "embeddings": vectors_fingerprint(run)}

    def sources(self, run: Run, params: AddParams) -> dict:
        from corpusmap.neighbors import graph_fingerprint, vectors_fingerprint

        reference = _reference(run, params)
        return {"reference:map": map_fingerprint(reference, params.name),
                "reference:knn": graph_fingerprint(reference),
                "reference:embeddings": vectors_fingerprint(reference)}

    def compute(self, run: Run, params: AddParams, staging: Path, block: dict) -> dict:
        from corpusmap.neighbors import load_knn_graph

        reference = _reference(run, params)
        graph = load_knn_graph(reference)
        ref_map = read_map(reference, params.name)
        vectors, new_vectors = reference.vectors, run.vectors
        if len(ref_map.coords) != len(vectors) or graph.n != len(vectors):
            raise CorpusmapError(f"map {params.name!r} ({len(ref_map.coords):,} points), the kNN graph "
                                 f"({graph.n:,}) and the vectors ({len(vectors):,}) of {reference.path} disagree; "
                                 "recompute the map")
        stored = ref_map.manifest.get("parameters", {})
        method = ref_map.manifest.get("method")
        kind = layouts.TsneParams if method == "tsne" else layouts.UmapParams
        fields = {f.name for f in dataclasses.fields(kind)}
        map_params = kind(**{k: v for k, v in stored.items() if k in fields})
        new_block = new_vectors.to_numpy()
        info(f"map {params.name}: adding {len(new_block):,} points of {run.path} to {len(ref_map.coords):,}")
        if method == "tsne":
            layout = layouts.tsne_add_layout(ref_map.coords, graph.indices, graph.distances, vectors, new_block,
                                             map_params=map_params, metric=graph.metric,
                                             transform=params.transform, threads=self.threads, seed=params.seed)
        else:
            layout = layouts.umap_add_layout(ref_map.coords, vectors, new_block, map_params=map_params,
                                             metric=graph.metric, threads=self.threads, seed=params.seed)
        layout.info["placement"] = {"k": 10, "knn_recall": layouts.placement_recall(
            ref_map.coords, vectors, layout.coords, new_block, 10, graph.metric, self.threads),
            "definition": "mean share of each added point's 10 exact high-D neighbours among the reference "
                          "points that are among its 10 nearest reference points in the map"}
        layout.info["reference"] = {"run": str(reference.path.resolve()), "map": params.name,
                                    "map_created": ref_map.manifest.get("created"), "n": int(len(ref_map.coords))}
        manifest = _manifest(run, params.name, layout, block, graph)
        manifest["reference_parameters"] = stored
        write_map_parquet(_map_table(run, layout.coords), manifest, staging / f"{params.name}.parquet")
        return manifest

    def commit(self, run: Run, params, staging: Path) -> None:
        for path in run.commit_files(staging, run.maps_dir):
            run.remember_checksum(path)


def _damaged(run: Run, name: str) -> Optional[str]:
    """Why the stored map cannot be used (unreadable, other coordinates than its checksum, or other bytes than
    were written, in any column), or None: such a map is computed again. Its ids are not matched with the corpus
    (the corpus's fingerprint already says whether it is the same)."""
    try:
        read_map(run, name, check_ids=False)
    except CorpusmapError as exc:
        return str(exc).split("; remake it")[0]
    if run.changed_since_written(run.map_path(name)):
        return f"map {run.map_path(name)} was damaged or changed since it was written"
    return None


def _stored(run: Run, name: str) -> Optional[dict]:
    path = run.map_path(name)
    return (read_map_stage(path) or {"stage": {}}) if path.is_file() else None


def _reference_method(reference: str, name: str) -> Optional[str]:
    """The method of map ``name`` of run ``reference`` (None while it cannot be read: ``prepare`` says why)."""
    path = Run(reference).map_path(name) if reference else None
    return read_map_stage(path).get("method") if path is not None and path.is_file() else None


def _reference(run: Run, params: AddParams) -> Run:
    from corpusmap.run import open_run

    reference = open_run(params.reference)
    if reference.path.resolve() == run.path.resolve():
        raise UsageProblem("--add needs another run than RUN")
    return reference


def _check_compatible(run: Run, new_run: Run) -> None:
    """Both runs' vectors must come from one model (and, for TF-IDF, one fit)."""
    from corpusmap.encoders import encoder_kind

    a, b = run.embeddings_manifest, new_run.embeddings_manifest
    imported = [str(m.get("model", "")).startswith("file:") for m in (a, b)]
    if imported[0] != imported[1]:
        raise CorpusmapError(f"{(new_run if imported[1] else run).path} holds vectors imported with --vectors and "
                             f"{(run if imported[1] else new_run).path} vectors of a model: they do not live in one "
                             "space")
    # imported vectors (named after their files) cannot be compared: their maker vouches for one space
    diff = [k for k in _COMPATIBLE_KEYS if a.get(k) != b.get(k) and not (k == "model" and imported[0])]
    if diff:
        detail = ", ".join(f"{k}: {b.get(k)!r} vs {a.get(k)!r}" for k in diff)
        raise CorpusmapError(f"{new_run.path} was embedded differently from {run.path} ({detail}); embed it with "
                             f"the same model and options so its vectors live in the same space")
    kind = encoder_kind(a.get("model", ""))
    if kind.fitted and kind.fit_fingerprint(run) != kind.fit_fingerprint(new_run):
        raise CorpusmapError(
            f"{new_run.path} has its own {kind.name} fit, so its vectors are not comparable with {run.path}'s; "
            f"embed it with `corpusmap embed INPUT -o {new_run.path} --model {kind.name} --fit-from {run.path} "
            "--overwrite` so that both share one fit")


__all__ = ["MapParams", "MapStage", "AddParams", "AddStage", "MapData", "read_map", "need_map", "map_fingerprint",
           "coords_fingerprint", "reference_coords", "META_KEY"]
