"""The clusters stage: regions of a run as a nested hierarchy with keywords, written to ``RUN/clusters/``.

* ``NAME.parquet``: ``id`` and one column per level, ``cluster_0`` (coarsest) … ``cluster_{L-1}`` (finest),
  in corpus order (-1: in no cluster, HDBSCAN noise only);
* ``NAME.summary.parquet``: one row per cluster and level: ``level, cluster, parent, size, keywords, name,
  dominant_label, dominant_share, median_year, knn_within`` (the share of its members' k high-D neighbours that
  lie in the same cluster);
* ``NAME.json``: the manifest (parameters, each level's resolution and cluster count, the fingerprint of the graph
  or map it was computed from, the files' checksums, versions).

By default the regions are Leiden communities of the stored high-D kNN graph (:func:`corpusmap.regions
.leiden_levels`), so they are real and not an artefact of 2D; ``on=MAP`` clusters the 2D map with HDBSCAN instead.
"""
from __future__ import annotations

import math

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from corpusmap.errors import CorpusmapError, UsageProblem
from corpusmap.manifests import canonical_hash, file_record, try_read_manifest
from corpusmap.progress import info
from corpusmap.regions import WEIGHTS, hdbscan_levels, leiden_levels, parents
from corpusmap.run import Run, check_name
from corpusmap.stage import Stage, check_numbers, items

# neighbours per point: Leiden's graph when -k is not given, and the knn_within purity of HDBSCAN clusters
DEFAULT_K = 15


def level_column(level: int) -> str:
    return f"cluster_{level}"


@dataclass(frozen=True)
class ClustersParams:
    """A clustering: Leiden on the first ``k`` neighbours of the stored graph with ``resolutions`` (ascending =
    coarse to fine), or by default ``levels`` levels, the finest at resolution 2 and each coarser one about 4 times
    coarser; or, with ``on`` a map name, HDBSCAN of that map with ``min_cluster_size`` (descending; default n/50
    and n/500) and ``min_samples`` (its density's neighbours; default: each level's minimum size). Keywords: the
    ``top_words`` c-TF-IDF words among words in at least ``min_df`` abstracts."""

    name: Optional[str] = None
    resolutions: tuple = ()
    levels: int = 3
    k: Optional[int] = None
    weights: str = "uniform"
    seed: int = 42
    on: Optional[str] = None
    min_cluster_size: tuple = ()
    min_samples: Optional[int] = None
    top_words: int = 10
    min_df: int = 5

    def __post_init__(self):
        check_numbers(self)
        object.__setattr__(self, "name", check_name(self.name or ("hdbscan" if self.on else "leiden"),
                                                    "clustering name"))
        object.__setattr__(self, "resolutions", tuple(sorted(float(r) for r in items(self.resolutions))))
        object.__setattr__(self, "min_cluster_size", tuple(sorted({int(m) for m in items(self.min_cluster_size)},
                                                                  reverse=True)))
        if any(not 0 < r < math.inf for r in self.resolutions) or len(set(self.resolutions)) != len(self.resolutions):
            raise UsageProblem("--resolution takes distinct positive numbers, e.g. 0.2,1,5")
        if not 1 <= self.levels <= 8:
            raise UsageProblem("--levels must be between 1 and 8")
        if self.weights not in WEIGHTS:
            raise UsageProblem(f"--weights must be one of {', '.join(WEIGHTS)}, not {self.weights!r}")
        if self.k is not None and self.k < 2:
            raise UsageProblem("-k must be at least 2")
        if self.on is not None:
            check_name(self.on, "--on")
            if self.k is not None or self.weights != "uniform" or self.resolutions:
                raise UsageProblem("--on MAP clusters the map with HDBSCAN: -k, --weights and --resolution are "
                                   "Leiden's (of the kNN graph); leave them out or drop --on")
        elif self.min_cluster_size or self.min_samples is not None:
            raise UsageProblem(f"{'--min-cluster-size' if self.min_cluster_size else '--min-samples'} goes with "
                               "--on MAP (HDBSCAN of a map)")
        if self.min_samples is not None and self.min_samples < 1:
            raise UsageProblem("--min-samples must be at least 1")
        if any(m < 2 for m in self.min_cluster_size):
            raise UsageProblem("--min-cluster-size takes whole numbers of at least 2")
        if self.top_words < 1 or self.min_df < 1:
            raise UsageProblem("--top-words and --min-df must be at least 1")

    def record(self) -> dict:
        out = {"name": self.name, "seed": self.seed, "top_words": self.top_words, "min_df": self.min_df}
        if self.on:
            out.update(method="hdbscan", on=self.on, min_cluster_size=list(self.min_cluster_size),
                       **({"min_samples": self.min_samples} if self.min_samples is not None else {}))
        else:
            out.update(method="leiden", k=self.k, weights=self.weights,
                       **({"resolutions": list(self.resolutions)} if self.resolutions else {"levels": self.levels}))
        return out


class ClustersStage(Stage):
    """``corpusmap clusters``: ``RUN/clusters/NAME.*``."""

    name = "clusters"
    what = "a clustering"
    packages = ("leidenalg", "igraph", "scikit-learn", "polars")
    elsewhere = "another --name"
    # 2: Leiden stops when a pass adds less than 0.1% to the quality; k and HDBSCAN's sizes recorded as resolved;
    # 3: coarser levels aim at effective cluster counts, names leave out other forms, level-shared and scholarly words
    definitions = 3

    def resolved(self, run: Run, params: ClustersParams) -> ClustersParams:
        """``k`` (default ``DEFAULT_K``, at most the graph's) and HDBSCAN's default sizes (n/50, n/500) as values."""
        import dataclasses

        from corpusmap.neighbors import stored_k

        if params.on is None:
            graph_k = stored_k(run)
            return dataclasses.replace(params, k=min(params.k or DEFAULT_K, graph_k or DEFAULT_K))
        if not params.min_cluster_size and run.has_corpus():
            return dataclasses.replace(params, min_cluster_size=default_min_sizes(run.n_rows))
        return params

    def key(self, params: ClustersParams) -> str:
        return f"clusters/{params.name}"

    def needs(self, params: ClustersParams) -> set:
        return {"knn"} | ({f"maps/{params.on}"} if params.on else set())

    def where(self, run: Run, params: ClustersParams) -> Path:
        return run.cluster_paths(params.name)["clusters"]

    def record(self, params: ClustersParams) -> dict:
        return params.record()

    def stored(self, run: Run, params: ClustersParams) -> Optional[dict]:
        return try_read_manifest(run.cluster_paths(params.name)["manifest"])

    def check_files(self, run: Run, params: ClustersParams, manifest: dict) -> Optional[str]:
        from corpusmap.neighbors import missing_files

        return missing_files(run, run.clusters_dir, manifest)

    def check_plan(self, run: Run, params: ClustersParams, earlier: list, planned: Optional[dict] = None) -> None:
        from corpusmap.neighbors import planned_k

        problem = planned_k(run, earlier, params.k) if params.on is None and params.k is not None else None
        if problem:
            raise UsageProblem(f"[clusters] k = {params.k}, but {problem}, or a smaller k in [clusters]")

    def prepare(self, run: Run, params: ClustersParams) -> None:
        from corpusmap.neighbors import load_knn_graph

        run.need_corpus()
        graph = load_knn_graph(run)  # the keywords' purity (knn_within) needs the graph in both methods
        if params.on is None and params.k is not None and params.k > graph.k:
            raise UsageProblem(f"-k {params.k}: the stored kNN graph has k={graph.k}; use -k {graph.k} or less, or "
                               f"recompute it with `corpusmap neighbors {run.path} -k {params.k} --overwrite`")
        if params.on is not None:
            from corpusmap.maps import need_map

            need_map(run, params.on)

    def inputs(self, run: Run, params: ClustersParams) -> dict:
        from corpusmap.maps import map_fingerprint
        from corpusmap.neighbors import graph_fingerprint

        out = {"corpus": run.corpus_fingerprint, "knn": graph_fingerprint(run)}
        if params.on is not None:
            out[f"maps/{params.on}"] = map_fingerprint(run, params.on)
        return out

    def compute(self, run: Run, params: ClustersParams, staging: Path, block: dict) -> dict:
        import time

        from corpusmap.keywords import keywords_per_level
        from corpusmap.neighbors import load_knn_graph

        t0 = time.monotonic()
        graph = load_knn_graph(run)
        if params.on is None:
            k = params.k
            info(f"clusters {params.name}: Leiden on the {k}-NN graph of {graph.n:,} points")
            levels, resolutions = leiden_levels(graph.indices, graph.distances, params.resolutions, k=k,
                                                levels=params.levels, weights=params.weights, seed=params.seed)
            settings = [{"resolution": r} for r in resolutions]
        else:
            from corpusmap.maps import read_map

            coords = read_map(run, params.on).coords
            sizes = params.min_cluster_size
            info(f"clusters {params.name}: HDBSCAN of map {params.on!r} with minimum cluster sizes "
                 f"{', '.join(map(str, sizes))}")
            levels = hdbscan_levels(coords, sizes, min_samples=params.min_samples)
            settings = [{"min_cluster_size": m, "min_samples": params.min_samples or m} for m in sizes]
        seconds = {"clustering": round(time.monotonic() - t0, 3)}
        info(f"clusters {params.name}: {' > '.join(f'{int(l.max()) + 1:,}' for l in levels)} clusters; keywords")
        t1 = time.monotonic()
        words = keywords_per_level(run.iter_corpus_batches(["text"]), levels, params.top_words, params.min_df)
        seconds["keywords"] = round(time.monotonic() - t1, 3)
        summary = summarise(run, levels, words, graph.indices[:, :params.k or DEFAULT_K])
        paths = {key: staging / path.name for key, path in run.cluster_paths(params.name).items()}
        write_tables(run, levels, summary, paths)
        files = {paths[key].name: file_record(paths[key]) for key in ("clusters", "summary")}
        manifest = {"name": params.name, "method": "hdbscan" if params.on else "leiden", "n": int(len(levels[0])),
                    "levels": [dict(s, level=i, column=level_column(i), clusters=int(l.max()) + 1,
                                    unclustered=int((l < 0).sum())) for i, (s, l) in enumerate(zip(settings, levels))],
                    "seconds": seconds, "files": files, "stage": dict(block, fingerprint=canonical_hash(files))}
        from corpusmap.atomic import write_json

        write_json(paths["manifest"], manifest)
        return manifest

    def commit(self, run: Run, params: ClustersParams, staging: Path) -> None:
        run.commit_files(staging, run.clusters_dir, manifest=run.cluster_paths(params.name)["manifest"].name)


def default_min_sizes(n: int) -> tuple:
    return tuple(sorted({max(10, n // 50), max(5, n // 500)}, reverse=True))


def summarise(run: Run, levels: list, words: list, neighbours: np.ndarray):
    """The summary table (see the module docstring) as a pandas DataFrame."""
    import pandas as pd

    from corpusmap.keywords import region_name, shared_keywords
    from corpusmap.metrics import label_codes
    from corpusmap.values import year_array

    columns = run.corpus_columns()
    labels = np.asarray(run.read_corpus(["label"]).column("label").to_pylist(), dtype=object) \
        if "label" in columns else np.full(len(levels[0]), None, dtype=object)
    codes, classes = label_codes(labels)
    years = year_array(run.read_corpus(["year"]).column("year")) if "year" in columns \
        else np.full(len(levels[0]), np.nan)
    rows = []
    for level, (labels_l, parent, top) in enumerate(zip(levels, parents(levels), words)):
        same = labels_l[neighbours] == labels_l[:, None]
        shared = shared_keywords(top)
        for c in range(len(top)):
            members = np.flatnonzero(labels_l == c)
            member_codes = codes[members]
            labelled = member_codes[member_codes >= 0]
            dominant, share = None, None
            if labelled.size:
                counts = np.bincount(labelled, minlength=len(classes))
                dominant, share = str(classes[counts.argmax()]), float(counts.max() / labelled.size)
            dated = years[members][np.isfinite(years[members])]
            rows.append({"level": level, "cluster": c, "parent": int(parent[c]), "size": int(members.size),
                         "keywords": top[c], "name": region_name(top[c], shared=shared), "dominant_label": dominant,
                         "dominant_share": share, "median_year": float(np.median(dated)) if dated.size else None,
                         "knn_within": float(same[members].mean())})
    return pd.DataFrame(rows)


def write_tables(run: Run, levels: list, summary, paths: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = run.read_corpus(["id"]).column("id") if "id" in run.corpus_columns() \
        else pa.array(np.arange(len(levels[0]), dtype=np.int64))
    table = pa.table({"id": ids, **{level_column(i): pa.array(l.astype(np.int32)) for i, l in enumerate(levels)}})
    pq.write_table(table, paths["clusters"], compression="zstd")
    pq.write_table(pa.Table.from_pandas(summary, preserve_index=False), paths["summary"], compression="zstd")


# ---------------------------------------------------------------------------------------------- reading


@dataclass
class Clustering:
    """A stored clustering: label arrays per level (coarse to fine, corpus order), the summary and the manifest."""

    name: str
    levels: list
    summary: object
    manifest: dict

    def level(self, spec: Optional[str], flag: str) -> int:
        """A level from ``--color cluster:LEVEL``-style text (default 0, the coarsest)."""
        if spec in (None, ""):
            return 0
        try:
            level = int(spec)
        except ValueError:
            level = -1
        if not 0 <= level < len(self.levels):
            raise UsageProblem(f"{flag}: clustering {self.name!r} has levels 0 to {len(self.levels) - 1} "
                               f"(0 = coarsest), not {spec!r}")
        return level

    def names(self, level: int) -> list[str]:
        rows = self.summary[self.summary["level"] == level].sort_values("cluster")
        return rows["name"].tolist()


def default_clustering(run: Run) -> str:
    """The clustering used when none is named: the run's only one, else ``leiden``; a run holding several, none of
    them ``leiden``, has no default (a usage error saying how to name one)."""
    have = run.list_clusterings()
    if len(have) > 1 and "leiden" not in have:
        raise UsageProblem(f"{run.path} holds the clusterings {', '.join(have)}, none of them the default (leiden): "
                           "name one (view, export: --clusters NAME or none; plot: --color cluster:NAME[:LEVEL]; "
                           "excess: --by cluster:NAME[:LEVEL])")
    return default_of(have) or "leiden"


def default_of(names: list[str]) -> Optional[str]:
    """The default among clusterings ``names``: the only one, else leiden (None when there are none)."""
    return names[0] if len(names) == 1 else ("leiden" if names else None)


def named_clustering(name: Optional[str]) -> set:
    """The clustering a ``--clusters NAME`` names, as a set of at most one run output key (none for the default
    and for ``none``)."""
    return {f"clusters/{name}"} if name and name != "none" else set()


def check_planned_clustering(run: Run, earlier: list, name: Optional[str], what: str,
                             planned: Optional[dict] = None) -> None:
    """In a pipeline, before any job runs: a usage error when the clustering ``name`` (None: the default) that
    ``what`` needs is not among those the run will hold when its turn comes (``planned``: run path -> output keys,
    as :func:`corpusmap.pipeline.plan` foresees them; for a run it does not know, those held now and those the
    jobs ``earlier`` ((stage, run, params)) make)."""
    if name == "none":
        return
    held = run.list_clusterings() if run.path.is_dir() else []
    keys = (planned or {}).get(run.path.resolve())
    if keys is None:
        made = [p.name for stage, r, p in earlier if isinstance(stage, ClustersStage)
                and r.path.resolve() == run.path.resolve()]
        names = sorted(set(held) | set(made))
    else:
        names = sorted(k[len("clusters/"):] for k in keys if k.startswith("clusters/"))
    if not name and len(names) > 1 and "leiden" not in names:
        raise UsageProblem(f"{what} needs the default clustering, and the run will hold {', '.join(names)}, none of "
                           "them the default (leiden): name one")
    name = name or default_of(names) or default_of(held) or "leiden"  # (the default held now, if jobs remove it)
    if name in names:
        return
    if name in held:
        raise UsageProblem(f"{what} needs the clustering {name!r}, which a job before it removes (it recomputes what "
                           "the clustering was computed from): add a [clusters] table after that job")
    raise UsageProblem(f"{what} needs the clustering {name!r}, which the run does not hold and no job before it "
                       "makes: add a [clusters] table (or name a clustering the run holds)")


def planned_clustering(planned: set, name: Optional[str]) -> set:
    """The clustering (as a set of at most one run output key) that a stage given ``name`` will read when the run
    holds the outputs ``planned``: that name, none for ``none``, else the default (the only one, else leiden)."""
    if name == "none":
        return set()
    if name:
        return {f"clusters/{name}"}
    name = default_of(sorted(k[len("clusters/"):] for k in planned if k.startswith("clusters/")))
    return {f"clusters/{name}"} if name else set()


def clustering_fingerprint(run: Run, name: str) -> str:
    from corpusmap.manifests import read_manifest

    path = run.cluster_paths(name)["manifest"]
    if not path.is_file():
        raise _no_clustering(run, name)
    manifest = read_manifest(path, f"recompute it with `corpusmap clusters {run.path} --name {name} --overwrite`")
    return manifest["stage"]["fingerprint"]


def _no_clustering(run: Run, name: str) -> CorpusmapError:
    have = run.list_clusterings()
    hint = f"; clusterings in this run: {', '.join(have)}" if have else ""
    how = {"leiden": "`", "hdbscan": " --on MAP`"}.get(name, f" --name {name}` (with --on MAP for a map's regions)")
    return CorpusmapError(f"no clustering {name!r} in {run.path}; make one with `corpusmap clusters {run.path}"
                          f"{how}{hint}")


def chosen_clustering(run: Run, name: Optional[str]) -> Optional[Clustering]:
    """The clustering a page or an export names: ``none`` for none, ``None`` for the run's default (its only
    one, or ``leiden``) when it has any, else that name (an error naming the command when it is missing)."""
    if name == "none" or (name is None and not run.list_clusterings()):
        return None
    return read_clustering(run, name)


def read_clustering(run: Run, name: Optional[str] = None) -> Clustering:
    """Clustering ``name`` of a run (default: the only one, or ``leiden``); its files are checked against their
    checksums."""
    import pyarrow.parquet as pq

    from corpusmap.manifests import read_manifest

    name = name or default_clustering(run)
    paths = run.cluster_paths(name)
    if not paths["manifest"].is_file():
        raise _no_clustering(run, name)
    rebuild = f"recompute it with `corpusmap clusters {run.path} --name {name} --overwrite`"
    manifest = read_manifest(paths["manifest"], rebuild)
    for key in ("clusters", "summary"):
        run.verify(paths[key], manifest["files"][paths[key].name]["sha256"], rebuild)
    table = pq.read_table(paths["clusters"])
    levels = [table.column(level_column(i)).to_numpy().astype(np.int64) for i in range(len(manifest["levels"]))]
    if run.has_corpus() and len(levels[0]) != run.n_rows:
        raise CorpusmapError(f"clustering {name!r} has {len(levels[0]):,} rows but the corpus {run.n_rows:,}; "
                             f"{rebuild}")
    return Clustering(name, levels, pq.read_table(paths["summary"]).to_pandas(), manifest)


def parse_cluster_spec(spec: str) -> tuple[Optional[str], Optional[str]]:
    """``cluster``, ``cluster:LEVEL``, ``cluster:NAME`` or ``cluster:NAME:LEVEL`` -> (name or None, level text or
    None). A second part that is a number is a level (of the default clustering), anything else a name."""
    parts = spec.split(":")
    if parts[0] != "cluster" or len(parts) > 3:
        raise UsageProblem(f"{spec!r}: write cluster, cluster:LEVEL, cluster:NAME or cluster:NAME:LEVEL")
    if len(parts) == 3:
        return parts[1] or None, parts[2]
    if len(parts) == 2 and parts[1] and not parts[1].lstrip("-").isdigit():
        return parts[1], None
    return None, parts[1] if len(parts) == 2 else None
