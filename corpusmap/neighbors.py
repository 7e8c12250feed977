"""The neighbors stage: the kNN graph of a run's vectors, computed once (:mod:`corpusmap.knn`) or brought by the
user, stored in ``RUN/knn`` and reused by every layout, clustering and metric.

Stored layout (``RUN/knn/``): ``indices.npy`` (int64, n x k), ``distances.npy`` (float32, n x k, sorted ascending
in each row; Euclidean distance, or ``1 - cosine similarity``) and ``manifest.json`` (k, metric, index and its
tuning, measured recall, the files' checksums and the stage block).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from corpusmap.errors import CorpusmapError, UsageProblem
from corpusmap.knn import INDEXES, METRICS, KnnGraph, _check_metric, build_knn_graph
from corpusmap.manifests import canonical_hash, file_record, try_read_manifest
from corpusmap.progress import Progress, warn
from corpusmap.run import Run
from corpusmap.stage import Stage, changed_flags, check_numbers, refuse_unused
from corpusmap.vectors import as_vectors, iter_float32_blocks, take_float32

@dataclass(frozen=True)
class NeighborsParams:
    """What decides the graph (``device`` and ``threads`` only decide where it is computed)."""

    k: int = 15
    metric: str = "euclidean"
    index: str = "auto"
    target_recall: float = 0.98
    recall_queries: int = 1000
    exact_threshold: int = 20_000
    seed: int = 42
    from_indices: Optional[str] = None
    from_distances: Optional[str] = None

    def __post_init__(self):
        check_numbers(self)
        if self.k < 1:
            raise UsageProblem(f"-k must be at least 1, got {self.k}")
        if self.metric not in METRICS:
            raise UsageProblem(f"--metric must be one of {', '.join(METRICS)}, not {self.metric!r}")
        if self.index not in INDEXES:
            raise UsageProblem(f"--index must be one of {', '.join(INDEXES)}, not {self.index!r}")
        if not 0 <= self.target_recall <= 1:
            raise UsageProblem(f"--target-recall must lie in [0, 1], got {self.target_recall}")
        if self.recall_queries < 1:
            raise UsageProblem(f"--recall-queries must be at least 1, got {self.recall_queries}")
        if self.from_distances and not self.from_indices:
            raise UsageProblem("--from-distances needs --from indices.npy")
        if self.from_indices:  # a given graph is stored as it is: the options of the search have no effect
            refuse_unused(changed_flags(self, "k", "index", "target_recall", "recall_queries", "exact_threshold",
                                        "seed", flags={"k": "-k"}),
                          "--from stores the given graph as it is (its own k neighbours, no search)")
        elif self.index == "exact":
            refuse_unused(changed_flags(self, "target_recall", "recall_queries", "exact_threshold", "seed"),
                          "--index exact compares every pair (no recall to tune, no sample, no threshold)")
        elif self.index != "auto":
            refuse_unused(changed_flags(self, "exact_threshold"),
                          f"it chooses between exact and approximate search under --index auto, not --index "
                          f"{self.index}")


class NeighborsStage(Stage):
    """``corpusmap neighbors``: ``RUN/knn`` from the run's vectors."""

    name = "neighbors"
    what = "a kNN graph"
    packages = ("faiss-cpu",)

    def __init__(self, device: str = "auto", threads: Optional[int] = None):
        self.device, self.threads = device, threads

    def comparable(self, run: Run, recorded: dict) -> dict:
        """``auto`` below the exact threshold is ``exact``, and an exact graph has no recall target, recall queries
        or seed (it is the same graph whatever they are)."""
        out = dict(recorded)
        if out.get("from_indices"):
            return out
        if out.get("index") == "auto" and run.has_corpus() and run.n_rows < out.get("exact_threshold", 0):
            out["index"] = "exact"
        if out.get("index") == "exact":
            for key in ("target_recall", "recall_queries", "exact_threshold", "seed"):
                out.pop(key, None)
        return out

    def key(self, params) -> str:
        return "knn"

    def needs(self, params) -> set:
        return {"embeddings"}

    def stored(self, run: Run, params) -> Optional[dict]:
        return try_read_manifest(run.knn_manifest_path)

    def check_files(self, run: Run, params, manifest: dict) -> Optional[str]:
        return missing_files(run, run.knn_dir, manifest)

    def prepare(self, run: Run, params: NeighborsParams) -> None:
        run.need_corpus()
        n = len(run.vectors)
        if params.from_indices is None and params.k >= n:
            raise UsageProblem(f"-k {params.k}: a run of {n:,} vectors has at most {n - 1} neighbours per point; "
                               f"use -k {n - 1}")
        for path in (params.from_indices, params.from_distances):
            if path and not Path(path).is_file():
                raise UsageProblem(f"--from {path}: no such file")
        unused = changed_flags(params, "target_recall", "recall_queries", "seed")
        if params.index == "auto" and params.from_indices is None and n < params.exact_threshold and unused:
            warn(f"{', '.join(unused)}: {n:,} vectors are fewer than --exact-threshold {params.exact_threshold:,}, "
                 "so --index auto compares every pair (an exact graph: no recall to tune, no sample); "
                 f"{'they make' if len(unused) > 1 else 'it makes'} no difference")

    def inputs(self, run: Run, params) -> dict:
        return {"embeddings": vectors_fingerprint(run)}

    def sources(self, run: Run, params: NeighborsParams) -> dict:
        from corpusmap.atomic import sha256_file

        return {f"file:{p}": sha256_file(p) for p in (params.from_indices, params.from_distances) if p}

    def compute(self, run: Run, params: NeighborsParams, staging: Path, block: dict) -> dict:
        if params.from_indices:
            graph = load_user_graph(run.vectors, params.from_indices, params.from_distances, metric=params.metric)
        else:
            graph = build_knn_graph(run.vectors, k=params.k, metric=params.metric, index=params.index,
                                    device=self.device, seed=params.seed, recall_sample=params.recall_queries,
                                    target_recall=params.target_recall, exact_threshold=params.exact_threshold,
                                    threads=self.threads)
        graph.manifest["hubs"] = hubs = graph_hubs(graph.indices)
        if hubs["rows"]:
            _warn_hubs(run, hubs, params)
        return write_graph(staging, graph, block)

    def commit(self, run: Run, params, staging: Path) -> None:
        run.commit_folder(staging, run.knn_dir)


def in_degrees(indices: np.ndarray) -> tuple[np.ndarray, float]:
    """How often each row is a neighbour, and the in-degree above which a row is a hub, ``max(20 k, 5% of n)``."""
    n, k = indices.shape
    flat = indices.ravel()
    degree = np.bincount(flat if flat.min(initial=0) >= 0 else flat[flat >= 0], minlength=n)  # (no copy at 21M)
    return degree, max(20 * k, 0.05 * n)


def hub_rows(degree: np.ndarray, limit: float) -> np.ndarray:
    """The rows whose in-degree is above ``limit``, the largest first."""
    rows = np.flatnonzero(degree > limit)
    return rows[np.argsort(-degree[rows], kind="stable")]


def graph_hubs(indices: np.ndarray) -> dict:
    """How often each point is a neighbour (its in-degree; k on average): the largest, and the rows that are among
    the neighbours of more than ``max(20 k, 5% of n)`` points. Such hubs, near everything, are what vectors of very
    different norms give (unnormalised TF-IDF/SVD vectors of one-line texts sit near the origin)."""
    n = indices.shape[0]
    degree, limit = in_degrees(indices)
    rows = hub_rows(degree, limit)
    return {"max_in_degree": int(degree.max()) if n else 0, "limit": float(limit),
            "rows": [int(r) for r in rows[:20]], "in_degrees": [int(degree[r]) for r in rows[:20]],
            "count": int(len(rows))}


def _warn_hubs(run: Run, hubs: dict, params: NeighborsParams) -> None:
    ids = run.read_corpus(["id"]).column("id").take(hubs["rows"][:3]).to_pylist()
    n = run.n_rows
    shown = ", ".join(f"id {i} in {d:,} ({d / n:.0%})" for i, d in zip(ids, hubs["in_degrees"]))
    fix = (f"`corpusmap neighbors {run.path} --metric cosine --overwrite` (or `corpusmap embed ... --normalize`, or "
           "drop very short texts with `embed --min-chars`)" if params.metric == "euclidean" else
           "drop very short texts with `embed --min-chars`")
    warn(f"the kNN graph has {hubs['count']:,} hub(s), point(s) among the {params.k} nearest neighbours of more "
         f"than {hubs['limit']:,.0f} points ({shown}): they are near everything and pull unrelated papers together "
         f"in maps and neighbour lists; try {fix}")


def vectors_fingerprint(run: Run) -> str:
    """The vectors' fingerprint, or an error that says how far embedding got and which command finishes it."""
    manifest = run.embeddings_manifest
    if not manifest.get("complete"):
        run.vectors  # raises: k of n shards present, and the command that finishes them
    return manifest["stage"]["fingerprint"]


def missing_files(run: Run, folder: Path, manifest: dict) -> Optional[str]:
    """A line naming the first of the manifest's ``files`` that is missing, has another size or fails its checksum
    (verified once, then remembered while the file is unchanged), else ``None``."""
    for name, record in (manifest.get("files") or {}).items():
        path = folder / name
        if not path.is_file():
            return f"{path} is missing"
        if path.stat().st_size != record.get("bytes"):
            return f"{path} has another size than recorded (damaged or changed)"
        try:
            run.verify(path, record.get("sha256"), "computing it again")
        except CorpusmapError as exc:
            return str(exc)
    return None


def write_graph(folder: Path, graph: KnnGraph, block: dict) -> dict:
    """``indices.npy``, ``distances.npy`` and ``manifest.json`` in ``folder`` (a staging folder)."""
    from corpusmap.atomic import save_npy, write_json

    n, k = graph.indices.shape
    if graph.distances.shape != (n, k):
        raise ValueError("indices and distances differ in shape")
    indices_name, distances_name = Run.KNN_FILES
    save_npy(folder / indices_name, np.ascontiguousarray(graph.indices, dtype=np.int64))
    save_npy(folder / distances_name, np.ascontiguousarray(graph.distances, dtype=np.float32))
    files = {name: file_record(folder / name) for name in Run.KNN_FILES}
    manifest = dict(graph.manifest, n=int(n), k=int(k), metric=graph.metric, files=files,
                    stage=dict(block, fingerprint=canonical_hash(files)))
    write_json(folder / Run.MANIFEST, manifest)
    graph.manifest = manifest
    return manifest


def has_knn_graph(run: Run) -> bool:
    return run.knn_manifest_path.is_file()


def load_knn_graph(run: Run, mmap: bool = True) -> KnnGraph:
    """The stored kNN graph of a run, memory-mapped; its files are checked against their checksums (once)."""
    from corpusmap.manifests import read_manifest

    rebuild = f"recompute it with `corpusmap neighbors {run.path} --overwrite`"
    if not has_knn_graph(run):
        raise CorpusmapError(f"no kNN graph in {run.path}; run `corpusmap neighbors {run.path}` first")
    manifest = read_manifest(run.knn_manifest_path, rebuild)
    for name, record in (manifest.get("files") or {}).items():
        run.verify(run.knn_file(name), record.get("sha256"), rebuild)
    mode = "r" if mmap else None
    try:
        indices, distances = (np.load(run.knn_file(name), mmap_mode=mode, allow_pickle=False)
                              for name in Run.KNN_FILES)
    except (OSError, ValueError) as exc:
        raise CorpusmapError(f"the kNN graph in {run.knn_dir} is damaged ({exc}); {rebuild}") from None
    shape = (manifest.get("n"), manifest.get("k"))
    if indices.shape != shape or distances.shape != shape:
        raise CorpusmapError(f"the kNN graph in {run.knn_dir} does not match its manifest (arrays {indices.shape}, "
                             f"manifest {shape}); {rebuild}")
    return KnnGraph(indices=indices, distances=distances, metric=manifest["metric"], k=int(manifest["k"]),
                    manifest=manifest)


def stored_k(run: Run) -> Optional[int]:
    """The stored graph's k from its manifest (``None`` without a readable one); no file is read or checked."""
    manifest = try_read_manifest(run.knn_manifest_path)
    k = (manifest or {}).get("k")
    return int(k) if isinstance(k, int) else None


def planned_k(run: Run, earlier: list, need: int) -> Optional[str]:
    """Why the graph ``run`` holds after ``earlier`` (``(stage, run, params)`` tuples of a pipeline) has fewer than
    ``need`` neighbours, with the fix; ``None`` when it has enough or its k is not known yet. Its k is the last
    ``neighbors`` job's, else the stored graph's when no job before rewrites the vectors."""
    mine = [(stage, p) for stage, where, p in earlier if where.path.resolve() == run.path.resolve()]
    graphs = [p for stage, p in mine if isinstance(stage, NeighborsStage)]
    if graphs:
        k, fix = (graphs[-1].k if graphs[-1].from_indices is None else None), f"set k = {need} in [neighbors]"
    elif any(stage.writes(run, p) & {"corpus", "embeddings"} for stage, p in mine):
        return None
    else:
        k = (try_read_manifest(run.knn_manifest_path) or {}).get("k")
        fix = f"the graph stored in {run.knn_dir} has that k: add a [neighbors] table with k = {need}"
    return f"the graph it would use has k = {k}: {fix}" if k is not None and need > k else None


def graph_fingerprint(run: Run) -> str:
    """The fingerprint of the stored graph, or an error naming `corpusmap neighbors`."""
    manifest = try_read_manifest(run.knn_manifest_path)
    if manifest is None or not (manifest.get("stage") or {}).get("fingerprint"):
        if has_knn_graph(run) and manifest is None:
            raise CorpusmapError(f"{run.knn_manifest_path} is damaged; recompute the graph with "
                                 f"`corpusmap neighbors {run.path} --overwrite`")
        raise CorpusmapError(f"no kNN graph in {run.path}; run `corpusmap neighbors {run.path}` first")
    return manifest["stage"]["fingerprint"]


# --------------------------------------------------------------------------------------------------------------
# a graph the user brings


def graph_from_arrays(vectors, indices: np.ndarray, distances: Optional[np.ndarray] = None,
                      metric: str = "euclidean", block_rows: int = 16_384) -> KnnGraph:
    """Check a user's kNN graph against the vectors; compute exact distances when none are given.

    ``indices`` must be an integer (n, k) array with 1 <= k < n, values in [0, n), no point listed as its own
    neighbour and no repeated neighbour in a row. Rows are sorted by distance.
    """
    t0 = time.monotonic()
    _check_metric(metric)
    vectors = as_vectors(vectors)
    n, dim = (int(s) for s in vectors.shape)
    indices = np.asarray(indices)
    if indices.ndim != 2:
        raise CorpusmapError(f"neighbour indices must be a 2-D array (n, k), got shape {indices.shape}")
    if not np.issubdtype(indices.dtype, np.integer):
        raise CorpusmapError(f"neighbour indices must be integers, got dtype {indices.dtype}")
    if indices.shape[0] != n:
        raise CorpusmapError(f"neighbour indices have {indices.shape[0]:,} rows but the run has {n:,} vectors")
    k = int(indices.shape[1])
    if not 1 <= k < n:
        raise CorpusmapError(f"neighbour indices have k={k} columns; need 1 <= k < n = {n}")
    if indices.size and (indices.min() < 0 or indices.max() >= n):
        raise CorpusmapError(f"neighbour indices must lie in [0, {n - 1}], found {indices.min()}..{indices.max()}")
    indices = indices.astype(np.int64, copy=True)
    selfs = np.flatnonzero((indices == np.arange(n)[:, None]).any(axis=1))
    if selfs.size:
        raise CorpusmapError(f"neighbour indices list a point as its own neighbour ({selfs.size:,} rows, first "
                             f"row {selfs[0]}); leave self out")
    srt = np.sort(indices, axis=1)
    dup = np.flatnonzero((srt[:, 1:] == srt[:, :-1]).any(axis=1)) if k > 1 else np.array([], dtype=int)
    if dup.size:
        raise CorpusmapError(f"neighbour indices repeat a neighbour within a row ({dup.size:,} rows, first row "
                             f"{dup[0]})")
    if distances is not None:
        distances = np.asarray(distances)
        if distances.shape != indices.shape:
            raise CorpusmapError(f"distances have shape {distances.shape}, indices {indices.shape}")
        if not np.issubdtype(distances.dtype, np.floating) or not np.isfinite(distances).all() \
                or (distances < 0).any():
            raise CorpusmapError("distances must be finite, non-negative floats")
        distances = distances.astype(np.float32)
        computed = False
    else:
        distances = np.empty(indices.shape, dtype=np.float32)
        cosine = metric == "cosine"
        with Progress("kNN graph: distances", total=n, unit="points") as bar:
            for start, block in iter_float32_blocks(vectors, block_rows, normalize=cosine):
                nb = indices[start:start + block.shape[0]]
                uniq, inv = np.unique(nb, return_inverse=True)
                other = take_float32(vectors, uniq, normalize=cosine)[inv.reshape(nb.shape)]
                if cosine:
                    sim = np.einsum("ij,ikj->ik", block.astype(np.float64), other.astype(np.float64))
                    distances[start:start + block.shape[0]] = np.maximum(1.0 - sim, 0)
                else:
                    diff = other.astype(np.float64) - block.astype(np.float64)[:, None, :]
                    distances[start:start + block.shape[0]] = np.sqrt(np.einsum("ikj,ikj->ik", diff, diff))
                bar.update(block.shape[0])
        computed = True
    order = np.argsort(distances, axis=1, kind="stable")
    indices = np.take_along_axis(indices, order, axis=1)
    distances = np.take_along_axis(distances, order, axis=1)
    manifest = {
        "format": 1, "source": "user", "n": n, "dim": dim, "k": k, "metric": metric,
        "distance": "euclidean" if metric == "euclidean" else "1 - cosine similarity",
        "distances_computed": computed,
        "index": {"type": "user", "params": {}},
        "recall": {"value": None, "measured": False, "queries": 0, "note": "graph supplied by the user"},
        "seconds": round(time.monotonic() - t0, 3),
    }
    return KnnGraph(indices=indices, distances=distances, metric=metric, k=k, manifest=manifest)


def load_user_graph(vectors, indices_path, distances_path=None, metric: str = "euclidean") -> KnnGraph:
    """Read ``--from indices.npy [--from-distances distances.npy]`` and check it (see :func:`graph_from_arrays`)."""
    def load(path):
        path = Path(path)
        if not path.is_file():
            raise CorpusmapError(f"{path}: no such file")
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input problem
            reason = ("it holds Python objects (pickled), not numbers" if "pickle" in str(exc) or "Python objects" in
                      str(exc) else str(exc))
            raise CorpusmapError(f"{path}: not a .npy array of numbers ({reason}); save the graph with numpy, e.g. "
                                 "`np.save('indices.npy', indices.astype('int64'))`") from None

    indices = load(indices_path)
    distances = load(distances_path) if distances_path is not None else None
    try:
        graph = graph_from_arrays(vectors, indices, distances, metric=metric)
    except CorpusmapError as exc:  # name the flag and the file the problem is in
        flag, path = ("--from-distances", distances_path) if str(exc).startswith("distances") else \
            ("--from", indices_path)
        raise CorpusmapError(f"{flag} {path}: {exc}") from None
    graph.manifest["from"] = {"indices": str(indices_path),
                              "distances": str(distances_path) if distances_path is not None else None}
    return graph
