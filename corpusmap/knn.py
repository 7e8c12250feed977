"""kNN search with FAISS over vectors read block by block: exact, IVF, IVF-PQ and HNSW, tuned to a recall target.

Arrays in, arrays out (the run directory is :mod:`corpusmap.neighbors`). Vectors are read in float32 blocks
(:mod:`corpusmap.vectors`) and never held in float64; the index is filled and searched block by block. Self is
excluded from every row. ``auto`` uses exact search below ``exact_threshold`` points and an approximate index above
(IVF-PQ fast scan with exact re-ranking on the CPU, IVF-Flat on a GPU), with its search parameters raised until
recall@k, measured against exact search on a seeded sample of queries, reaches ``target_recall``.

``ivfpq`` (:class:`IVFPQRerank`) is built to scale: lists of ~256 points whatever n is (``nlist = n/256``), so the
cost per query stays flat instead of growing with n; two-level k-means on a training sample that grows with n;
exact re-ranking read from the vectors object (memory-mapped float16 shards stay on disk; RAM holds the PQ codes,
``d/4 + 8`` bytes a point, and one block); above 250k points optionally fewer probes followed by one round of
neighbours-of-neighbours refinement, when tuning finds it cheaper.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from corpusmap.errors import CorpusmapError, UsageProblem
from corpusmap.progress import Progress, info, log
from corpusmap.vectors import DEFAULT_BLOCK_ROWS, as_vectors, iter_float32_blocks, normalize_rows, take_float32

METRICS = ("euclidean", "cosine")
INDEXES = ("auto", "exact", "ivf", "ivfpq", "hnsw")
CPU_ONLY = ("hnsw", "ivfpq")  # FAISS has no GPU HNSW, and no GPU fast-scan PQ
DEVICES = ("auto", "cpu", "cuda")


def _import_faiss():
    """Import FAISS without its loader's INFO lines about which SIMD build it tried."""
    import logging

    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    import faiss

    # FAISS's own Ctrl-C check throws from inside OpenMP regions, which aborts the process (C++ terminate) when
    # more than one thread runs; without it, Ctrl-C is raised in Python as soon as the current FAISS call returns
    faiss.InterruptCallback.clear_instance()
    return faiss


# --------------------------------------------------------------------------------------------------------------
# the graph


@dataclass
class KnnGraph:
    """A kNN graph: row i holds the k nearest neighbours of point i (self excluded), nearest first."""

    indices: np.ndarray  # (n, k) int64
    distances: np.ndarray  # (n, k) float32: Euclidean distance, or 1 - cosine similarity
    metric: str
    k: int
    manifest: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.indices.shape[0])


@contextlib.contextmanager
def faiss_threads(threads: Optional[int]):
    """Set the thread count of FAISS (OpenMP) and of the dense kernel for the block, restoring both afterwards."""
    global _THREADS
    faiss = _import_faiss()

    if not threads:
        yield
        return
    if threads < 1:
        raise UsageProblem(f"--threads must be at least 1, got {threads}")
    before, before_dense = faiss.omp_get_max_threads(), _THREADS
    faiss.omp_set_num_threads(int(threads))
    _THREADS = int(threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)
        _THREADS = before_dense


def _use_gpu(device: str) -> bool:
    faiss = _import_faiss()

    if device not in DEVICES:
        raise UsageProblem(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if device == "cuda" and gpus == 0:
        raise CorpusmapError("--device cuda: FAISS sees no GPU (install faiss-gpu and check CUDA), "
                             "or use --device cpu")
    return device in ("auto", "cuda") and gpus > 0


def remove_self(ids: np.ndarray, dist: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """From ``k+1`` (or more) results per query, drop the query's own id wherever it appears, else the last one.

    With duplicate vectors the query need not come first (or at all), so position 0 is not assumed.
    Returns the first ``k`` remaining results of each row, in their order.
    """
    ids = np.asarray(ids)
    drop = ids == np.asarray(rows, dtype=ids.dtype)[:, None]
    missing = ~drop.any(axis=1)
    drop[missing, -1] = True
    kept = ~drop
    m = ids.shape[0]
    out_i = ids[kept].reshape(m, ids.shape[1] - 1)[:, :k]
    out_d = dist[kept].reshape(m, ids.shape[1] - 1)[:, :k]
    return out_i, out_d


def to_distance(raw: np.ndarray, metric: str) -> np.ndarray:
    """FAISS scores to distances: sqrt of squared L2 (clipped at 0), or 1 - inner product of unit vectors."""
    if metric == "euclidean":
        return np.sqrt(np.maximum(raw, 0, dtype=np.float32), dtype=np.float32)
    return np.maximum(np.float32(1.0) - raw.astype(np.float32), 0, dtype=np.float32)


def _faiss_metric(metric: str):
    faiss = _import_faiss()

    return faiss.METRIC_L2 if metric == "euclidean" else faiss.METRIC_INNER_PRODUCT


# --------------------------------------------------------------------------------------------------------------
# the dense kernel: exact top-k of a block of queries against a block of vectors


_THREADS: Optional[int] = None  # threads of the dense kernel (None: all cores)
HNSW_EF_CONSTRUCTION = 40  # FAISS' default; with keep_max_size_level0 it beats 80 and 200 in build + search
HNSW_MAX_EF_SEARCH = 4096  # tuning raises efSearch up to this
QUERY_ROWS = 1024  # queries per task of the dense kernel
GROUP = 64  # columns per group in smallest_k


def knn_dense(q: np.ndarray, x: np.ndarray, kk: int, metric: str, x_sqnorms: Optional[np.ndarray] = None,
              chunk_rows: int = 16_384) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``kk`` rows of ``x`` for each row of ``q`` (float32), best first.

    Returns FAISS-style raw scores (squared L2 ascending, or inner products descending) and row numbers of
    ``x``. One BLAS matrix product per chunk of ``x`` and :func:`smallest_k` on it, each on a single-threaded
    BLAS (the same bytes whatever the thread count), run by one thread per core: large batches of queries as
    tasks of :data:`QUERY_ROWS`, small ones chunk by chunk of ``x``, so that the top-k selection (numpy, one core
    per call) runs in parallel too.
    """
    kk = int(min(kk, x.shape[0]))
    q = np.ascontiguousarray(q, dtype=np.float32)
    ip = metric == "cosine"
    sq = None if ip else (x_sqnorms if x_sqnorms is not None else np.einsum("ij,ij->i", x, x, dtype=np.float32))

    def chunk(rows: slice, start: int) -> tuple[np.ndarray, np.ndarray]:
        xb = np.asarray(x[start:start + chunk_rows], dtype=np.float32)
        g = q[rows] @ xb.T
        if ip:
            np.negative(g, out=g)
        else:  # |x|^2 - 2 q.x; |q|^2 is the same along a row and is added to the winners only
            g *= -2
            g += sq[start:start + chunk_rows]
        d, i = smallest_k(g, kk)
        i += start
        return d, i

    def merged(parts) -> tuple[np.ndarray, np.ndarray]:  # the chunks' winners in chunk order
        best_d = best_i = None
        for d, i in parts:
            if best_d is not None:
                d, i = np.hstack([best_d, d]), np.hstack([best_i, i])
                order = np.argsort(d, axis=1, kind="stable")[:, :kk]
                d, i = np.take_along_axis(d, order, axis=1), np.take_along_axis(i, order, axis=1)
            best_d, best_i = d, i
        return best_d, best_i

    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    m = q.shape[0]
    workers = _THREADS or os.cpu_count() or 1
    starts = range(0, x.shape[0], chunk_rows)
    tasks = [slice(0, m)] if m < 2 * QUERY_ROWS else [slice(s, s + QUERY_ROWS) for s in range(0, m, QUERY_ROWS)]
    # every product on one BLAS thread (a multi-threaded BLAS sums in another order: other last bits whenever
    # OMP_NUM_THREADS differs); the cores share the work as tasks: query slices, or for few queries x's chunks
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        if len(tasks) == 1:
            parts = [merged(pool.map(lambda start: chunk(tasks[0], start), starts))]
        else:
            parts = list(pool.map(lambda rows: merged(chunk(rows, start) for start in starts), tasks))
    d, i = np.vstack([p[0] for p in parts]), np.vstack([p[1] for p in parts])
    if ip:
        d = -d
    else:
        d = np.maximum(d + np.einsum("ij,ij->i", q, q)[:, None], 0)
    return np.ascontiguousarray(d, dtype=np.float32), i.astype(np.int64, copy=False)


def smallest_k(scores: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``kk`` smallest values of each row and their columns, ascending (equal values by column).

    For long rows the columns are split into :data:`GROUP` interleaved slices and the element-wise minimum
    over them gives each group's best (a fast, vectorised pass): every one of the row's ``kk`` smallest values
    lies in one of the ``kk`` groups with the smallest group minima, because the ``kk``-th smallest group
    minimum is met by ``kk`` distinct elements. Only those groups' columns are then partitioned and sorted.
    """
    m, cols = scores.shape
    kk = min(kk, cols)
    groups = cols // GROUP
    if groups >= 4 * kk:
        best = np.minimum.reduce(scores[:, :groups * GROUP].reshape(m, GROUP, groups), axis=1)
        chosen = np.argpartition(best, kk - 1, axis=1)[:, :kk]
        where = (chosen[:, :, None] + groups * np.arange(GROUP)).reshape(m, kk * GROUP)
        if groups * GROUP < cols:
            where = np.hstack([where, np.broadcast_to(np.arange(groups * GROUP, cols), (m, cols - groups * GROUP))])
    else:
        where = np.broadcast_to(np.arange(cols), (m, cols))
    vals = np.take_along_axis(scores, where, axis=1)
    if vals.shape[1] > kk:
        part = np.argpartition(vals, kk - 1, axis=1)[:, :kk]
        where, vals = np.take_along_axis(where, part, axis=1), np.take_along_axis(vals, part, axis=1)
    order = np.lexsort((where, vals), axis=1)  # by value, then by column
    return np.take_along_axis(vals, order, axis=1), np.take_along_axis(where, order, axis=1)


class DenseIndex:
    """Exact (brute-force) search with :func:`knn_dense`; the CPU stand-in for ``IndexFlatL2``/``IndexFlatIP``."""

    def __init__(self, dim: int, metric: str):
        self.d, self.metric = dim, metric
        self._parts: list[np.ndarray] = []
        self._data: Optional[np.ndarray] = None
        self.ntotal = 0

    def add(self, x: np.ndarray) -> None:
        self._parts.append(np.ascontiguousarray(x, dtype=np.float32))
        self.ntotal += x.shape[0]
        self._data = None

    def search(self, q: np.ndarray, kk: int, query_rows: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        if self._data is None:
            self._data = np.concatenate(self._parts) if len(self._parts) > 1 else self._parts[0]
            self._parts = [self._data]
            self._sq = np.einsum("ij,ij->i", self._data, self._data)
        out_d = np.empty((q.shape[0], min(kk, self.ntotal)), dtype=np.float32)
        out_i = np.empty(out_d.shape, dtype=np.int64)
        for s in range(0, q.shape[0], query_rows):
            out_d[s:s + query_rows], out_i[s:s + query_rows] = knn_dense(q[s:s + query_rows], self._data, kk,
                                                                         self.metric, self._sq)
        return out_d, out_i


def search_vectors(vectors, queries: np.ndarray, kk: int, metric: str = "euclidean", *,
                   candidates: Optional[np.ndarray] = None,
                   block_rows: int = DEFAULT_BLOCK_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``kk`` nearest rows of ``vectors`` for each of ``queries`` (float32 rows, unit length for cosine)
    by a scan over the vectors block by block (memory: the queries plus one block).

    ``candidates`` (boolean mask of length n) restricts the neighbours to those rows. Returns
    ``(indices int64 (m, kk), raw FAISS scores float32)``: squared L2, or inner products of unit vectors; rows
    with fewer than ``kk`` candidates are padded with index -1.
    """
    faiss = _import_faiss()

    _check_metric(metric)
    vectors = as_vectors(vectors)
    cosine = metric == "cosine"
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    heap = faiss.ResultHeap(len(queries), kk, keep_max=cosine)
    for start, block in iter_float32_blocks(vectors, block_rows, normalize=cosine):
        ids = np.arange(start, start + block.shape[0], dtype=np.int64)
        if candidates is not None:
            keep = np.asarray(candidates[start:start + block.shape[0]], dtype=bool)
            block, ids = np.ascontiguousarray(block[keep]), ids[keep]
        if block.shape[0] == 0:
            continue
        d, i = knn_dense(queries, block, kk, metric)
        if d.shape[1] < kk:  # a small last block: pad with empty results
            pad = kk - d.shape[1]
            d = np.hstack([d, np.full((d.shape[0], pad), -np.inf if cosine else np.inf, dtype=np.float32)])
            i = np.hstack([i, np.full((i.shape[0], pad), -1, dtype=np.int64)])
        heap.add_result(np.ascontiguousarray(d, dtype=np.float32),
                        np.ascontiguousarray(np.where(i >= 0, ids[np.maximum(i, 0)], -1), dtype=np.int64))
    heap.finalize()
    return heap.I.astype(np.int64, copy=False), heap.D.astype(np.float32, copy=False)


def exact_search(vectors, query_rows: np.ndarray, k: int, metric: str = "euclidean", *,
                 candidates: Optional[np.ndarray] = None, block_rows: int = DEFAULT_BLOCK_ROWS,
                 extra: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of the points ``query_rows`` among all vectors, self excluded.

    Returns ``(indices int64 (m, k+extra), raw FAISS scores float32)`` as :func:`search_vectors`. Used for
    ground truth and for the metrics.
    """
    _check_metric(metric)
    vectors = as_vectors(vectors)
    query_rows = np.asarray(query_rows, dtype=np.int64)
    queries = take_float32(vectors, query_rows, normalize=metric == "cosine")
    ind, raw = search_vectors(vectors, queries, k + 1 + extra, metric, candidates=candidates,
                              block_rows=block_rows)
    ind, raw = remove_self(ind, raw, query_rows, k + extra)
    if (ind < 0).any():
        raise CorpusmapError(f"fewer than {k + extra} candidate neighbours for some queries; use a smaller k")
    return ind, raw


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise UsageProblem(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")


def _sample(n: int, m: int, seed: int, stream: int) -> np.ndarray:
    """``m`` distinct rows of ``n``, sorted; a separate random stream per purpose so samples do not overlap in use."""
    rng = np.random.default_rng([int(seed), stream])
    if m >= n:
        return np.arange(n, dtype=np.int64)
    return np.sort(rng.choice(n, size=m, replace=False)).astype(np.int64)


# random streams, so that train, tuning and reported-recall samples are independent
_STREAM_TRAIN, _STREAM_TUNE, _STREAM_RECALL = 1, 2, 3


def recall_queries(n: int, recall_sample: int, seed: int) -> np.ndarray:
    """The rows whose neighbours are compared with exact search for the recall in the manifest."""
    return _sample(n, recall_sample, seed, _STREAM_RECALL)


def tuning_queries(n: int, tune_sample: int, seed: int) -> np.ndarray:
    """The rows search parameters are tuned on: disjoint from :func:`recall_queries`, so that the reported recall is
    measured on queries tuning never saw (where n is too small for two samples, the rows left over, or the same
    rows when fewer than 100 are left)."""
    held = recall_queries(n, tune_sample, seed)
    if n - len(held) < tune_sample:
        rest = np.setdiff1d(np.arange(n, dtype=np.int64), held)
        return rest if len(rest) >= min(tune_sample, 100) else held
    draw = np.random.default_rng([int(seed), _STREAM_TUNE]).choice(n, size=tune_sample + len(held), replace=False)
    return np.sort(draw[~np.isin(draw, held)][:tune_sample]).astype(np.int64)


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean over rows of |approx_i ∩ exact_i| / k."""
    k = exact.shape[1]
    hits = [np.intersect1d(a, e, assume_unique=True).size for a, e in zip(approx[:, :k], exact)]
    return float(np.mean(hits) / k) if hits else float("nan")


def build_knn_graph(vectors, k: int = 15, metric: str = "euclidean", index: str = "auto", device: str = "auto",
                    seed: int = 42, recall_sample: int = 1000, target_recall: float = 0.98,
                    exact_threshold: int = 20_000, threads: Optional[int] = None,
                    block_rows: int = DEFAULT_BLOCK_ROWS, nlist: Optional[int] = None,
                    hnsw_m: int = 32, progress: bool = True, refine: bool = True) -> KnnGraph:
    """Compute the kNN graph of ``vectors`` (self excluded) with FAISS.

    Parameters
    ----------
    vectors
        The store's vectors (``shape``, ``iter_blocks(block_rows)``, ``take(rows)``) or a numpy array.
    k
        Neighbours per point; ``1 <= k < n``.
    metric
        ``euclidean`` or ``cosine`` (rows L2-normalised, inner product; distance = 1 - similarity).
    index
        ``exact`` (flat), ``ivf`` (IVF-Flat, ``nlist ≈ sqrt(n)`` on CPU and ``4·sqrt(n)`` on GPU unless
        given, ``nprobe`` tuned), ``ivfpq`` (CPU, :class:`IVFPQRerank`: FAISS ``IndexIVFPQFastScan`` with 4-bit
        codes of 2-D sub-vectors, ``nlist = max(sqrt(n), n/256)``, candidates re-ranked exactly from the vectors;
        ``nprobe``, the re-ranking depth ``k_factor`` and whether to refine tuned, :func:`_tune_ivfpq`),
        ``hnsw`` (HNSW-Flat, efConstruction 40 with full level-0 lists, ``efSearch`` tuned), or ``auto``: exact
        below ``exact_threshold`` points, above it ``ivfpq`` on the CPU and ``ivf`` on a GPU. On the CPU,
        ``ivf`` is :class:`ListBatchedIVF` (same results as FAISS' ``IndexIVFFlat``, searched list by list with
        matrix products); on a GPU it is FAISS' GPU ``IndexIVFFlat``. HNSW construction is multi-threaded
        in FAISS and so not bit-for-bit reproducible unless ``threads=1``; the others are, for a given seed
        and thread count (``ivfpq`` builds its HNSW centroid search, used above 65,536 lists, on one thread;
        its k-means uses BLAS, whose sums may differ in the last bit with another thread count).
    device
        ``auto`` uses all GPUs FAISS sees (exact and ``ivf``); ``cuda`` requires one; ``cpu`` never uses one.
    seed
        Seeds the IVF training sample and k-means, the tuning queries and the recall queries.
    recall_sample
        Number of queries on which recall@k against exact search is measured (approximate indexes) and on which
        the search parameters are tuned (a separate sample of the same size).
    target_recall
        Tuning stops at the cheapest search parameters found with recall@k at least this.
    threads
        FAISS OpenMP threads on CPU (default: all cores).
    block_rows
        Rows per block read from the vectors (adding, exact search), and the most candidate rows ``ivfpq``
        reads at once for re-ranking.
    refine
        ``ivfpq`` only: let tuning choose fewer probes plus a round of neighbours-of-neighbours refinement
        where that is cheaper (considered from :data:`REFINE_MIN_N` points).

    Returns
    -------
    KnnGraph
        With ``manifest`` filled in (index type and parameters, measured recall, seconds).
    """
    faiss = _import_faiss()

    t0 = time.monotonic()
    _check_metric(metric)
    if index not in INDEXES:
        raise UsageProblem(f"index must be one of {', '.join(INDEXES)}, got {index!r}")
    vectors = as_vectors(vectors)
    n, dim = (int(s) for s in vectors.shape)
    if n < 2:
        raise CorpusmapError(f"need at least 2 vectors for a kNN graph, got {n}")
    if not 1 <= k < n:
        raise UsageProblem(f"k must be between 1 and n - 1 = {n - 1} (the number of other points), got {k}")
    gpu = _use_gpu(device)
    kind = index if index != "auto" else ("exact" if n < exact_threshold else ("ivf" if gpu else "ivfpq"))
    if kind == "ivfpq" and n < 16:  # its 4-bit codebooks have 16 centroids each, trained on the vectors
        raise UsageProblem(f"--index ivfpq needs at least 16 vectors to train its codebooks, and this run has {n}: "
                           f"use --index exact (what auto chooses below {exact_threshold:,} vectors)")
    if kind in CPU_ONLY and gpu:
        info(f"{kind} runs on the CPU (FAISS has no GPU version of it); use --index ivf for a GPU index")
        gpu = False
    cosine = metric == "cosine"

    phases: dict[str, dict[str, float]] = {}  # wall and process CPU seconds of each step
    clock = [time.monotonic(), _cpu_seconds()]

    def phase(name: str) -> None:
        now, cpu = time.monotonic(), _cpu_seconds()
        phases[name] = {"wall": round(now - clock[0], 3), "cpu": round(cpu - clock[1], 3)}
        clock[0], clock[1] = now, cpu

    memory: dict[str, Any] = {}
    with faiss_threads(None if gpu else threads):
        params: dict[str, Any] = {}
        tuning: list[dict] = []
        tuning_refined: list[dict] = []
        refinement: Optional[dict] = None
        if kind == "ivfpq":
            ix = IVFPQRerank(vectors, metric, ivfpq_nlist(n, nlist), seed, params, block_rows=block_rows)
            ix.train()
            phase("train")
            with Progress("kNN graph: adding vectors", total=n, unit="vectors") as bar:
                for _, block in iter_float32_blocks(vectors, block_rows, normalize=cosine):
                    ix.add(block)
                    if progress:
                        bar.update(block.shape[0])
            ix.finish_adding()
            phase("add")
            memory = {"index_bytes": int(ix.memory_bytes()),
                      "rerank_rows": "the distinct candidates of one batch of queries, at most block_rows",
                      "vectors": "read through vectors.take / iter_blocks (memory-mapped shards stay on disk)"}
        else:
            cpu_index = _make_index(kind, dim, metric, n, nlist, hnsw_m, params, seed, gpu)
            idx = faiss.index_cpu_to_all_gpus(cpu_index) if gpu else cpu_index
            if idx is not cpu_index and kind == "ivf" and hasattr(idx, "cp"):
                idx.cp.seed = cpu_index.cp.seed
            if kind == "ivf":
                _train_ivf(idx, vectors, n, params, seed, cosine)
            with Progress("kNN graph: adding vectors", total=n, unit="vectors") as bar:
                for _, block in iter_float32_blocks(vectors, block_rows, normalize=cosine):
                    idx.add(block)
                    if progress:
                        bar.update(block.shape[0])
            phase("train_add")

        if kind != "exact":
            # exact neighbours of the tuning and the recall queries in one scan over the vectors
            tune_rows = tuning_queries(n, recall_sample, seed)
            check_rows = recall_queries(n, recall_sample, seed)
            truth, _ = exact_search(vectors, np.concatenate([tune_rows, check_rows]), k, metric,
                                    block_rows=block_rows)
            exact_tune, exact_check = truth[:len(tune_rows)], truth[len(tune_rows):]
            phase("exact_sample")
            if kind == "ivfpq":
                tuning, tuning_refined = _tune_ivfpq(ix, tune_rows, exact_tune, k, target_recall, params,
                                                     refine=refine)
            else:
                tuning = _tune(idx, kind, gpu, vectors, tune_rows, exact_tune, k, cosine, target_recall, params, n)
            phase("tune")

        if kind == "ivfpq":
            indices, raw = ix.graph(k, block_rows, progress)
            if params.get("refine_rounds"):
                phase("search")
                indices, raw, refinement = _refine_until(ix, indices, raw, k, tune_rows, exact_tune,
                                                         target_recall, params, block_rows, progress)
                phase("refine")
            distances = to_distance(raw, metric)
            del raw
        else:
            indices = np.empty((n, k), dtype=np.int64)
            distances = np.empty((n, k), dtype=np.float32)
            search_rows = 1 << 20 if isinstance(idx, ListBatchedIVF) else max(1024, min(block_rows, 16_384))
            with Progress("kNN graph: searching", total=n, unit="queries") as bar:
                for start, block in iter_float32_blocks(vectors, search_rows, normalize=cosine):
                    rows = np.arange(start, start + block.shape[0], dtype=np.int64)
                    raw_d, raw_i = idx.search(block, k + 1)
                    if (raw_i < 0).any():
                        raw_d, raw_i = _fill_missing(idx, kind, gpu, block, raw_d, raw_i, k + 1, params)
                    ind, dist = remove_self(raw_i, raw_d, rows, k)
                    indices[start:start + len(rows)] = ind
                    distances[start:start + len(rows)] = to_distance(dist, metric)
                    if progress:
                        bar.update(len(rows))
        if "refine" not in phases:
            phase("search")

    recall: dict[str, Any] = {"value": 1.0, "measured": False, "queries": 0, "target": target_recall,
                              "reached_target": True, "note": "exact search"}
    if kind != "exact":
        value = recall_at_k(indices[check_rows], exact_check)
        recall = {"value": value, "measured": True, "queries": int(len(check_rows)), "seed": int(seed),
                  "target": target_recall,
                  "note": "recall@k against exact search on queries sampled by "
                          "corpusmap.neighbors.recall_queries(n, queries, seed)"}
        recall["reached_target"] = bool(value >= target_recall)
        if value < target_recall:
            log.warning("warning: %s", _below_target(kind, params, k, value, len(check_rows), target_recall))
    seconds = time.monotonic() - t0
    manifest = {
        "format": 1, "source": "faiss", "n": n, "dim": dim, "k": int(k), "metric": metric,
        "distance": "euclidean" if metric == "euclidean" else "1 - cosine similarity",
        "index": {"type": kind, "requested": index, "params": params, "tuning": tuning,
                  "exact_threshold": int(exact_threshold)},
        **({"refinement": {"tuning": tuning_refined, **(refinement or {})}} if kind == "ivfpq" else {}),
        "recall": recall, "device": "cuda" if gpu else "cpu",
        "threads": (None if gpu else (threads or faiss.omp_get_max_threads())),
        "seed": int(seed), "seconds": round(seconds, 3), "phases": phases,
    }
    if memory:
        manifest["memory"] = memory
    return KnnGraph(indices=indices, distances=distances, metric=metric, k=int(k), manifest=manifest)


def _below_target(kind: str, params: dict, k: int, value: float, queries: int, target: float) -> str:
    """The one line saying that the graph's measured recall is below ``--target-recall``, and what to do."""
    knob = {"hnsw": "efSearch", "ivf": "nprobe", "ivfpq": "nprobe"}.get(kind)
    if params.get("tuning_reached_target") is False and knob in params:
        why = f"tuning stopped at {knob}={params[knob]:,} without reaching it"
    else:
        why = "tuning reached it on its own queries; the held-out recall queries fall short"
    return (f"kNN graph ({kind} index): measured recall@{k} {value:.4f} on {queries:,} queries is below "
            f"--target-recall {target:g} ({why}); the graph is kept. For an exact graph use --index exact, "
            "or accept a lower --target-recall")


class ListBatchedIVF:
    """IVF-Flat for the CPU that searches list by list instead of query by query.

    The coarse quantizer is ``faiss.Kmeans`` (seeded); every point goes to the list of its nearest centroid.
    Each query probes the ``nprobe`` lists with the nearest centroids, as in FAISS' ``IndexIVFFlat``, but a
    batch of queries is searched list by list: all queries that probe a list are compared with its members in
    one matrix product and one top-k (:func:`knn_dense`), and the per-list winners are merged. FAISS' CPU IVF
    scans one query at a time, which with the faiss-cpu wheel's kernels is slower here than exact search.
    Same interface as a FAISS index: ``train``, ``add``, ``search``, ``nprobe``, ``ntotal``.
    """

    def __init__(self, dim: int, nlist: int, metric: str, seed: int, niter: int = 10):
        self.d, self.nlist, self.metric, self.seed, self.niter = dim, int(nlist), metric, int(seed), niter
        self.nprobe = 1
        self.buffer_bytes = 1 << 30  # candidate buffers per batch of queries
        self.centroids: Optional[np.ndarray] = None
        self._parts: list[tuple[np.ndarray, np.ndarray]] = []
        self._data: Optional[np.ndarray] = None
        self.ntotal = 0

    def train(self, x: np.ndarray) -> None:
        faiss = _import_faiss()
        km = faiss.Kmeans(self.d, self.nlist, niter=self.niter, seed=self.seed & 0x7FFFFFFF, verbose=False,
                          spherical=self.metric == "cosine", max_points_per_centroid=256)
        km.train(np.ascontiguousarray(x, dtype=np.float32))
        self.centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)

    def add(self, x: np.ndarray) -> None:
        x = np.ascontiguousarray(x, dtype=np.float32)
        _, nearest = knn_dense(x, self.centroids, 1, self.metric)
        self._parts.append((x, nearest[:, 0]))
        self.ntotal += x.shape[0]
        self._data = None

    def _finalize(self) -> None:
        if self._data is not None:
            return
        lists = np.concatenate([a for _, a in self._parts])
        self._ids = np.argsort(lists, kind="stable").astype(np.int32 if self.ntotal < 2**31 else np.int64)
        self._data = np.empty((self.ntotal, self.d), dtype=np.float32)
        pos = np.empty(self.ntotal, dtype=np.int64)
        pos[self._ids] = np.arange(self.ntotal)
        start = 0
        for x, _ in self._parts:
            self._data[pos[start:start + len(x)]] = x
            start += len(x)
        self._parts = []
        self._offsets = np.concatenate([[0], np.cumsum(np.bincount(lists, minlength=self.nlist))])
        self._sqnorms = np.einsum("ij,ij->i", self._data, self._data)

    def search(self, q: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
        self._finalize()
        q = np.ascontiguousarray(q, dtype=np.float32)
        m, nprobe = q.shape[0], max(1, min(self.nprobe, self.nlist))
        ip = self.metric == "cosine"
        worst = np.float32(-np.inf if ip else np.inf)
        out_d = np.empty((m, kk), dtype=np.float32)
        out_i = np.empty((m, kk), dtype=np.int64)
        chunk = max(1024, self.buffer_bytes // (nprobe * kk * 8))
        for s in range(0, m, chunk):
            qc = q[s:s + chunk]
            mc = qc.shape[0]
            _, probes = knn_dense(qc, self.centroids, nprobe, self.metric)
            cand_d = np.full((mc, nprobe, kk), worst, dtype=np.float32)
            cand_i = np.full((mc, nprobe, kk), -1, dtype=np.int32)
            flat = probes.ravel()
            order = np.argsort(flat, kind="stable")
            bounds = np.searchsorted(flat[order], np.arange(self.nlist + 1))
            for lst in np.flatnonzero(np.diff(bounds)):  # one matrix product per list, for all its queries
                lo, hi = self._offsets[lst], self._offsets[lst + 1]
                if hi == lo:
                    continue
                sel = order[bounds[lst]:bounds[lst + 1]]
                qi, slot = sel // nprobe, sel % nprobe
                d, i = knn_dense(qc[qi], self._data[lo:hi], kk, self.metric, self._sqnorms[lo:hi])
                cand_d[qi, slot, :d.shape[1]] = d
                cand_i[qi, slot, :d.shape[1]] = self._ids[lo + i]
            d, i = _top(cand_d.reshape(mc, -1), kk, ip)
            out_d[s:s + mc] = d
            out_i[s:s + mc] = np.take_along_axis(cand_i.reshape(mc, -1), i, axis=1)
        return out_d, out_i


def _top(scores: np.ndarray, kk: int, largest: bool) -> tuple[np.ndarray, np.ndarray]:
    """Best ``kk`` of each row, best first: (scores, column numbers)."""
    d, i = smallest_k(-scores if largest else scores, kk)
    return (-d if largest else d), i


def _make_index(kind: str, dim: int, metric: str, n: int, nlist: Optional[int], hnsw_m: int, params: dict,
                seed: int, gpu: bool):
    faiss = _import_faiss()

    fm = _faiss_metric(metric)
    if kind == "exact":
        if not gpu:
            params.update({"implementation": "brute force: BLAS matrix products and a grouped top-k "
                                             "(same results as IndexFlat)"})
            return DenseIndex(dim, metric)
        params.update({"implementation": "IndexFlatL2" if fm == faiss.METRIC_L2 else "IndexFlatIP"})
        return faiss.IndexFlatL2(dim) if fm == faiss.METRIC_L2 else faiss.IndexFlatIP(dim)
    if kind == "ivf":
        # GPU (FAISS IVF): 4·sqrt(n) lists; CPU (ListBatchedIVF): sqrt(n), whose larger lists make the
        # per-list matrix products efficient (measured: 2.2x faster than 4·sqrt(n) on 75k x 300 at recall 0.98)
        nl = int(nlist) if nlist else int(round((4 if gpu else 1) * math.sqrt(n)))
        nl = max(1, min(nl, n // 39 if n >= 39 else 1))  # FAISS wants >= 39 training points per list
        if not gpu:
            params.update({"implementation": "corpusmap ListBatchedIVF (faiss.Kmeans lists, searched list by list)",
                           "nlist": nl})
            return ListBatchedIVF(dim, nl, metric, seed)
        quantizer = faiss.IndexFlatL2(dim) if fm == faiss.METRIC_L2 else faiss.IndexFlatIP(dim)
        idx = faiss.IndexIVFFlat(quantizer, dim, nl, fm)
        idx.own_fields = True
        quantizer.this.disown()
        idx.cp.seed = int(seed) & 0x7FFFFFFF  # k-means initialisation (copied to the GPU clone)
        params.update({"implementation": "IndexIVFFlat", "nlist": nl})
        return idx
    idx = faiss.IndexHNSWFlat(dim, int(hnsw_m), fm)
    idx.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    # Keep level 0 at 2*M links. FAISS' neighbour-selection heuristic drops a candidate that is nearer to an
    # already linked point than to the new point; on un-normalised TF-IDF/SVD vectors the low-norm points are
    # near everything (1% of the points receive 24% of the exact 15-NN edges), so with efConstruction=200 the
    # heuristic left 9 of 64 level-0 links on average and efSearch had to reach ~1,500 for recall 0.98.
    idx.keep_max_size_level0 = True
    params.update({"implementation": "IndexHNSWFlat", "M": int(hnsw_m),
                   "efConstruction": int(idx.hnsw.efConstruction), "keep_max_size_level0": True})
    return idx


def _train_ivf(idx, vectors, n: int, params: dict, seed: int, cosine: bool) -> None:
    """Train the coarse quantizer on a seeded sample of 64 points per list (at least 10,000, at most n)."""
    nl = params["nlist"]
    train_n = int(min(n, max(64 * nl, 10_000)))
    rows = _sample(n, train_n, seed, _STREAM_TRAIN)
    idx.train(take_float32(vectors, rows, normalize=cosine))
    params.update({"train_size": train_n})


def _set_param(idx, gpu: bool, name: str, value: float) -> None:
    if isinstance(idx, ListBatchedIVF):
        idx.nprobe = int(value)
        return
    faiss = _import_faiss()

    space = faiss.GpuParameterSpace() if gpu else faiss.ParameterSpace()
    space.set_index_parameter(idx, name, int(value))


K_FACTORS = (4, 8, 16)  # ivfpq re-ranking depths tried: k_factor * (k+1) PQ candidates re-ranked exactly
MAX_K_FACTOR = 128  # ... doubled up to this where the target is not reached with all lists probed


def _tune(idx, kind, gpu, vectors, rows, exact, k, cosine, target, params, n) -> list[dict]:
    """``ivf`` and ``hnsw``: the smallest nprobe (IVF) or efSearch (HNSW) found whose recall@k on the tuning
    queries reaches ``target`` by :data:`RECALL_MARGIN_SE` standard errors: doubling until it does, then the
    values between the last two at steps of 2^(1/4). (``ivfpq``: :func:`_tune_ivfpq`.)"""
    queries = take_float32(vectors, rows, normalize=cosine)
    if kind == "ivf":
        name, lowest, limit = "nprobe", 1, (min(params["nlist"], 2048) if gpu else params["nlist"])
    else:
        name, lowest, limit = "efSearch", max(16, k + 1), max(k + 1, HNSW_MAX_EF_SEARCH)
    tried: list[dict] = []
    cache: dict[int, float] = {}

    def recall_at(value: int) -> float:
        """The lower bound (recall - margin) at ``value``; the tuning record keeps both."""
        if value not in cache:
            _set_param(idx, gpu, name, value)
            d, i = idx.search(queries, k + 1)
            mean, se = _recall_stats(remove_self(i, d, rows, k)[0], exact)
            cache[value] = mean - RECALL_MARGIN_SE * se
            tried.append({name: value, "recall": round(mean, 5), "recall_lower": round(cache[value], 5)})
        return cache[value]

    chosen, reached = _smallest_reaching(recall_at, lowest, limit, target)
    _set_param(idx, gpu, name, chosen)
    params[name] = int(chosen)
    params["tuned_on_queries"] = int(len(rows))
    params["tuning_reached_target"] = bool(reached)
    return tried


def _smallest_reaching(recall_at, lowest: int, limit: int, target: float) -> tuple[int, bool]:
    """Double from ``lowest`` until ``recall_at(value) >= target`` (or ``limit``), then try the values between the
    last two at steps of 2^(1/4). Returns (value, whether it reached the target)."""
    value = lowest
    while recall_at(value) < target and value < limit:
        value = min(2 * value, limit)
    if recall_at(value) < target:
        return value, False
    chosen = value
    if value > lowest:
        below = max(lowest, value // 2)
        for j in (1, 2, 3):
            between = int(round(below * 2 ** (j / 4)))
            if below < between < value and recall_at(between) >= target:
                chosen = between
                break
    return chosen, True


def _fill_missing(idx, kind, gpu, block, raw_d, raw_i, kk, params):
    """IVF with few probes can return fewer than k+1 results (-1 ids); search those rows with more probes."""
    bad = np.flatnonzero((raw_i < 0).any(axis=1))
    name = "efSearch" if kind == "hnsw" else "nprobe"
    value = params.get(name, 1)
    limit = params.get("nlist", 1 << 16) if name == "nprobe" else 1 << 16
    while bad.size and value < limit:
        value = min(limit, value * 4)
        _set_param(idx, gpu, name, value)
        d, i = idx.search(np.ascontiguousarray(block[bad]), kk)
        raw_d[bad], raw_i[bad] = d, i
        bad = bad[(i < 0).any(axis=1)]
    _set_param(idx, gpu, name, params.get(name, value))
    if bad.size:
        raise CorpusmapError("the approximate index returned too few neighbours; use --index exact")
    return raw_d, raw_i


# --------------------------------------------------------------------------------------------------------------
# ivfpq: IVF-PQ fast-scan candidates, re-ranked exactly from the vectors object


IVFPQ_LIST_SIZE = 256  # points per inverted list: nlist = max(sqrt(n), n / 256), so lists stay the same size
IVFPQ_MAX_NLIST = 65_536
IVFPQ_TRAIN_PER_LIST = 48  # k-means training points per list (sample grows with n) ...
IVFPQ_TRAIN_BYTES = 2 << 30  # ... capped at this much float32 (but never below 16 per list)
TWO_LEVEL_ABOVE = 256  # lists: above this, two-level k-means (sqrt(nlist) coarse cells, each split)
# Up to this many lists the centroids are searched exhaustively (BLAS), above it with HNSW. Measured on 50,000
# mixture queries, 2 threads: 11,719 centroids flat 7.0 s, HNSW efSearch 64 8.4 s and 256 (what nprobe 128 needs)
# 28.9 s; 30,000 centroids flat 17.3 s, HNSW 13.5 s and 50.6 s. So flat up to ivfpq's own cap on nlist.
FLAT_QUANTIZER_MAX_NLIST = IVFPQ_MAX_NLIST
HNSW_QUANTIZER_M, HNSW_QUANTIZER_EF_ADD = 32, 64
SEARCH_BATCH = 16_384  # queries per fast-scan call in the graph search
# Cost model for tuning, in codes of a mean list scanned (~11 ns each with 300-D vectors on one core), measured:
# a PQ candidate costs ~40 of them (its place in the fast-scan heap plus exact re-ranking, ~0.45 us), a candidate
# of a refinement round ~21 (neighbours of neighbours overlap, so their rows are read once for many points).
RERANK_COST = 40.0
REFINE_CANDIDATE_COST = 21.0
REFINE_MAX_COST_SHARE = 0.8  # a refinement plan must cost under 80% of the plain plan (tuning, a 2nd round)
# Tuning requires recall - 2.83 standard errors >= target on the tuning queries: 2 standard errors of the
# difference between two samples of that size, so that the held-out recall queries reach the target as well.
RECALL_MARGIN_SE = 2.0 * math.sqrt(2.0)
# Tuning queries on which the recall after a refinement round is estimated. With 300 the margin (3.55 standard
# errors of 300 queries) turned refinement down at 3M points (estimate 0.9893 at nprobe 76, lower bound 0.979) for
# a plain plan of 128 probes; all 1,000 tuning queries cut the margin by a quarter for ~15,000 more searches.
REFINE_TUNE_QUERIES = 1000
# Refinement plans are only considered from this many points: below, neighbours of neighbours add less (recall
# 0.960 -> 0.976 on the 74,728 arXiv vectors, against 0.970 -> 0.989 on 1M mixture points) and estimating them
# costs more tuning than they save (measured at 300k: 106 against 81 CPU seconds).
REFINE_MIN_N = 500_000
MAX_REFINE_ROUNDS = 3


def ivfpq_nlist(n: int, nlist: Optional[int] = None, list_size: int = IVFPQ_LIST_SIZE) -> int:
    """Lists of the ``ivfpq`` index: ``nlist`` if given, else ``max(sqrt(n), n / list_size)`` (at most
    :data:`IVFPQ_MAX_NLIST`); never more than n / 39 (FAISS wants 39 training points per list)."""
    nl = int(nlist) if nlist else min(max(int(round(math.sqrt(n))), int(round(n / list_size))), IVFPQ_MAX_NLIST)
    return max(1, min(nl, n // 39 if n >= 39 else 1))


def two_level_kmeans(x: np.ndarray, nlist: int, seed: int, niter: int = 10) -> np.ndarray:
    """``nlist`` k-means centroids of ``x`` (float32), deterministic for a seed.

    Up to :data:`TWO_LEVEL_ABOVE` lists: FAISS k-means. Above: ``round(sqrt(nlist))`` coarse centroids first,
    then each coarse cell's training points clustered into a share of the ``nlist`` centroids proportional to
    its size, so the cost is ``O(n_train * sqrt(nlist) * d)`` per iteration instead of ``O(n_train * nlist *
    d)``. Centroids of one coarse cell get consecutive numbers (nearby lists have nearby numbers).
    """
    faiss = _import_faiss()

    x = np.ascontiguousarray(x, dtype=np.float32)
    d = x.shape[1]

    def kmeans(data: np.ndarray, k: int, s: int) -> np.ndarray:
        if len(data) <= k:
            return data[:k].copy()
        km = faiss.Kmeans(d, int(k), niter=niter, seed=int(s) & 0x7FFFFFFF, verbose=False,
                          min_points_per_centroid=1, max_points_per_centroid=256)
        km.train(data)
        return np.ascontiguousarray(km.centroids, dtype=np.float32)

    if nlist <= TWO_LEVEL_ABOVE:
        return kmeans(x, nlist, seed)
    nc1 = int(round(math.sqrt(nlist)))
    coarse = kmeans(x, nc1, seed)
    _, a1 = knn_dense(x, coarse, 1, "euclidean")
    a1 = a1[:, 0]
    counts = np.bincount(a1, minlength=len(coarse))
    quota = counts * (nlist / counts.sum())
    alloc = np.minimum(counts, np.floor(quota).astype(np.int64))
    spare = np.argsort(-(quota - alloc), kind="stable")  # largest remainders first
    while alloc.sum() < nlist:
        for c in spare:
            if alloc.sum() >= nlist:
                break
            if alloc[c] < counts[c]:
                alloc[c] += 1
    order = np.argsort(a1, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    parts = [kmeans(x[order[bounds[c]:bounds[c + 1]]], alloc[c], seed + 1 + c)
             for c in range(len(coarse)) if alloc[c] > 0]
    return np.ascontiguousarray(np.vstack(parts), dtype=np.float32)


def _recall_stats(approx: np.ndarray, exact: np.ndarray) -> tuple[float, float]:
    """Mean recall@k over rows and its standard error."""
    k = exact.shape[1]
    hits = np.array([np.intersect1d(a, e, assume_unique=True).size for a, e in zip(approx[:, :k], exact)]) / k
    if hits.size < 2:
        return float(hits.mean()) if hits.size else float("nan"), 0.0
    return float(hits.mean()), float(hits.std(ddof=1) / math.sqrt(hits.size))


class IVFPQRerank:
    """IVF-PQ fast scan for candidates, re-ranked exactly from the vectors (never held in RAM).

    * Lists: ``nlist = max(sqrt(n), n/256)`` (:func:`ivfpq_nlist`), so a list holds ~256 points whatever n is
      and a query that probes ``nprobe`` lists scans ~256·nprobe codes: the cost per query stays flat as n grows
      as long as ``nprobe`` does (it does on structured data), instead of the fixed share of all points that
      ``nlist = sqrt(n)`` gives.
    * Centroids: :func:`two_level_kmeans` on a seeded sample of 48 points per list. Centroid search (for the
      assignment at add time and the probes at search time) is exhaustive (``IndexFlatL2``, BLAS) up to
      :data:`FLAT_QUANTIZER_MAX_NLIST` lists and ``IndexHNSWFlat(d, 32)`` above it, built on one thread so that
      it is the same graph on every run.
    * Codes: ``IndexIVFPQFastScan``, 4-bit PQ of 2-D sub-vectors, ``by_residual = False`` (one lookup table per
      query). L2 throughout; cosine uses unit vectors (same ranking as inner product).
    * Re-ranking: the ``k_factor * (k+1)`` best PQ candidates of a batch of queries are read from the vectors
      (``vectors.take`` of the batch's distinct candidates: memory-mapped float16 shards stay on disk) and
      ranked by exact float32 squared L2 (``faiss.knn_L2sqr_by_idx``). Memory: the codes (``d/4 + 8`` bytes
      per point) plus one batch of candidate rows (``block_rows`` rows).
    """

    def __init__(self, vectors, metric: str, nlist: int, seed: int, params: dict,
                 block_rows: int = DEFAULT_BLOCK_ROWS):
        self.vectors = as_vectors(vectors)
        self.block_rows = int(block_rows)  # at most this many candidate rows are read at once
        self.n, self.d = (int(s) for s in self.vectors.shape)
        self.cosine = metric == "cosine"
        self.nlist, self.seed, self.params = int(nlist), int(seed), params
        self.nprobe, self.k_factor = 1, 8
        self.index = self.quantizer = None
        self.primary: Optional[np.ndarray] = None
        self._where: Optional[np.ndarray] = None

    # building

    def train(self) -> None:
        faiss = _import_faiss()

        n, d, nl = self.n, self.d, self.nlist
        train_n = max(IVFPQ_TRAIN_PER_LIST * nl, 10_000)
        train_n = max(min(train_n, IVFPQ_TRAIN_BYTES // (4 * d)), 16 * nl)
        train_n = int(min(n, train_n))
        xt = take_float32(self.vectors, _sample(n, train_n, self.seed, _STREAM_TRAIN), normalize=self.cosine)
        centroids = two_level_kmeans(xt, nl, self.seed)
        nl = self.nlist = len(centroids)
        if nl <= FLAT_QUANTIZER_MAX_NLIST:
            quantizer = faiss.IndexFlatL2(d)
            qdesc = "IndexFlatL2 (exhaustive)"
        else:
            quantizer = faiss.IndexHNSWFlat(d, HNSW_QUANTIZER_M)
            quantizer.hnsw.efConstruction = 40
            quantizer.keep_max_size_level0 = True
            qdesc = f"IndexHNSWFlat(d, {HNSW_QUANTIZER_M}), built on one thread"
        with faiss_threads(1) if isinstance(quantizer, faiss.IndexHNSWFlat) else contextlib.nullcontext():
            quantizer.add(centroids)
        sub = d // 2 if d % 2 == 0 else d  # 2-D sub-vectors (1-D for odd dimensions), 4 bits each
        idx = faiss.IndexIVFPQFastScan(quantizer, d, nl, sub, 4, faiss.METRIC_L2)
        idx.by_residual = False  # one lookup table per query instead of one per probed list: several times faster
        idx.pq.cp.seed = self.seed & 0x7FFFFFFF
        idx.pq.cp.niter = 10
        idx.pq.cp.max_points_per_centroid = 128  # 2,048 points train each 16-centroid sub-quantizer
        with faiss_threads(1):  # 150 tiny k-means: threads only add synchronisation
            idx.train(xt)
        del xt
        self.index, self.quantizer = idx, quantizer
        self._set_quantizer_ef(HNSW_QUANTIZER_EF_ADD)
        self.params.update({
            "implementation": "IndexIVFPQFastScan (4-bit PQ scan) + exact re-ranking read from the vectors",
            "nlist": nl, "list_size": IVFPQ_LIST_SIZE, "pq_subvectors": sub, "pq_bits": 4, "by_residual": False,
            "train_size": train_n, "clustering": ("two-level k-means" if nl > TWO_LEVEL_ABOVE else "k-means"),
            "quantizer": qdesc})

    def _set_quantizer_ef(self, ef: int) -> None:
        faiss = _import_faiss()

        if isinstance(self.quantizer, faiss.IndexHNSWFlat):
            self.quantizer.hnsw.efSearch = int(ef)

    def add(self, block: np.ndarray) -> None:
        self.index.add(block)

    def finish_adding(self) -> None:
        """Record each point's list (from the inverted lists) so that queries can be searched list by list."""
        faiss = _import_faiss()

        primary = np.empty(self.n, dtype=np.int32)
        invlists = self.index.invlists
        for lst in range(self.nlist):
            size = invlists.list_size(lst)
            if size:
                ptr = invlists.get_ids(lst)
                primary[faiss.rev_swig_ptr(ptr, size)] = lst
                invlists.release_ids(lst, ptr)
        self.primary = primary
        sizes = np.bincount(primary, minlength=self.nlist)
        self.params.update({"list_sizes": {"min": int(sizes.min()), "median": float(np.median(sizes)),
                                           "max": int(sizes.max())}})

    def memory_bytes(self) -> int:
        """Codes, ids and centroids held in RAM (FAISS pads each list to blocks of 32 codes)."""
        blocks = int(np.sum((np.bincount(self.primary, minlength=self.nlist) + 31) // 32))
        return blocks * 32 * (self.index.code_size + 8) + self.nlist * self.d * 4 + self.n * 4

    # searching

    def candidates(self, queries: np.ndarray, kc: int, nprobe: Optional[int] = None) -> np.ndarray:
        """The ``kc`` best rows by PQ distance for each query (``-1`` where the probed lists hold fewer)."""
        p = int(min(nprobe or self.nprobe, self.nlist))
        self.index.nprobe = p
        self._set_quantizer_ef(max(HNSW_QUANTIZER_EF_ADD, 2 * p))
        _, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), int(kc))
        return ids

    def rerank(self, queries: np.ndarray, cand: np.ndarray, kk: int,
               max_rows: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact top ``kk`` of each query's candidates: (squared L2 float32, rows int64), -1 where too few.

        The distinct candidate rows of the batch are read at once (sorted, so memory-mapped shards are read in
        order) unless they are more than ``max_rows``; then the batch is split in halves.
        """
        faiss = _import_faiss()

        max_rows = self.block_rows if max_rows is None else max_rows
        m, width = cand.shape
        valid = cand >= 0
        if not valid.all():  # knn_L2sqr_by_idx stops a row at its first -1: move them to the end
            ahead = np.argsort(~valid, axis=1, kind="stable")
            cand, valid = np.take_along_axis(cand, ahead, axis=1), np.take_along_axis(valid, ahead, axis=1)
        rows = np.unique(cand[valid])
        if len(rows) > max_rows and m > 1:
            h = m // 2
            a = self.rerank(queries[:h], cand[:h], kk, max_rows)
            b = self.rerank(queries[h:], cand[h:], kk, max_rows)
            return np.vstack([a[0], b[0]]), np.vstack([a[1], b[1]])
        vals = np.full((m, kk), np.inf, dtype=np.float32)
        pos = np.full((m, kk), -1, dtype=np.int64)
        if len(rows):
            y = self.vectors.take(rows, dtype=np.float32)
            y = normalize_rows(y) if self.cosine else np.ascontiguousarray(y, dtype=np.float32)
            if self._where is None:
                self._where = np.zeros(self.n, dtype=np.int32)  # row -> position in this batch's candidates
            self._where[rows] = np.arange(len(rows), dtype=np.int32)
            sub = np.where(valid, self._where[np.maximum(cand, 0)], -1).astype(np.int64)  # -1s are skipped
            q = np.ascontiguousarray(queries, dtype=np.float32)
            faiss.knn_L2sqr_by_idx(faiss.swig_ptr(q), faiss.swig_ptr(y), faiss.swig_ptr(sub), self.d, m, len(y),
                                   width, kk, faiss.swig_ptr(vals), faiss.swig_ptr(pos), width)
        return vals, np.where(pos >= 0, rows[np.maximum(pos, 0)] if len(rows) else -1, -1)

    def search(self, queries: np.ndarray, kk: int, nprobe: Optional[int] = None,
               k_factor: Optional[float] = None, max_rows: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
        kc = int(round((k_factor or self.k_factor) * kk))
        return self.rerank(queries, self.candidates(queries, max(kc, kk), nprobe), kk, max_rows)

    def raw_scores(self, l2sq: np.ndarray) -> np.ndarray:
        """Squared L2 (euclidean) or inner products of unit vectors (cosine), as FAISS reports them."""
        return (np.float32(1.0) - l2sq / np.float32(2.0)) if self.cosine else l2sq

    def graph(self, k: int, block_rows: int, progress: bool) -> tuple[np.ndarray, np.ndarray]:
        """kNN of every point (self excluded): (indices, raw scores).

        Queries go in list order, :data:`SEARCH_BATCH` at a time: fast scan then reads each probed list once for
        all the queries of the batch that probe it, and the queries of a re-ranking sub-batch share most of
        their candidates (typically 5-20% of them are distinct rows).
        """
        n = self.n
        kc = max(int(round(self.k_factor * (k + 1))), k + 1)
        sub_batch = int(max(256, min(4096, 4 * block_rows // kc)))
        order = np.argsort(self.primary, kind="stable")
        indices = np.empty((n, k), dtype=np.int64)
        raw = np.empty((n, k), dtype=np.float32)
        self.params.update({"search_batch": SEARCH_BATCH, "rerank_batch": sub_batch})
        with Progress("kNN graph: searching", total=n, unit="queries") as bar:
            for s in range(0, n, SEARCH_BATCH):
                rows = order[s:s + SEARCH_BATCH]
                q = take_float32(self.vectors, rows, normalize=self.cosine)
                cand = self.candidates(q, kc)
                for t in range(0, len(rows), sub_batch):
                    r, qq = rows[t:t + sub_batch], q[t:t + sub_batch]
                    d2, ids = self.rerank(qq, cand[t:t + sub_batch], k + 1, max_rows=block_rows)
                    ind, dist = remove_self(ids, d2, r, k)
                    bad = np.flatnonzero((ind < 0).any(axis=1))
                    if bad.size:
                        ind[bad], dist[bad] = self._retry(qq[bad], r[bad], k)
                    indices[r], raw[r] = ind, self.raw_scores(dist)
                if progress:
                    bar.update(len(rows))
        return indices, raw

    def _retry(self, q: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows whose probed lists held fewer than k other points: probe 4x as many lists until they do."""
        p = self.nprobe
        while True:
            p = min(self.nlist, 4 * p)
            d2, ids = self.search(q, k + 1, nprobe=p)
            ind, dist = remove_self(ids, d2, rows, k)
            if not (ind < 0).any():
                return ind, dist
            if p >= self.nlist:
                raise CorpusmapError("the approximate index returned too few neighbours; use --index exact")


def _tune_ivfpq(ix: IVFPQRerank, rows: np.ndarray, exact: np.ndarray, k: int, target: float,
                params: dict, refine: bool = True) -> tuple[list[dict], list[dict]]:
    """The cheapest plan whose recall@k on the tuning queries reaches ``target``: either IVF-PQ alone, with
    (nprobe, k_factor) reaching it by a margin of :data:`RECALL_MARGIN_SE` standard errors, or IVF-PQ at fewer
    probes followed by one round of :func:`refine_graph` (neighbours of neighbours, re-ranked exactly).

    nprobe runs over the grid ``round(2^(j/8))``. Each nprobe is searched once for ``max(K_FACTORS)·(k+1)`` PQ
    candidates; the recall of every smaller ``k_factor`` comes from the prefix of those candidates (the best by
    PQ distance). Cost model: ``nprobe · list_size + RERANK_COST · k_factor · (k+1)`` codes per query, plus
    ``REFINE_CANDIDATE_COST · (k + k²)`` for a refinement round, which must bring the cost under
    ``REFINE_MAX_COST_SHARE`` of the plain plan's. First the smallest nprobe reaching the target with the
    largest k_factor (doubling, then bisection); then, for each smaller k_factor, the smallest nprobe that
    reaches it among those still cheaper than the best so far (bisection: recall grows with nprobe and with
    k_factor). Then, at the chosen k_factor, the smallest nprobe whose recall after one refinement round, estimated
    on :data:`REFINE_TUNE_QUERIES` of the tuning queries (their neighbours' neighbours searched at the same
    setting), reaches the target with a margin (see ``z``; galloping down from the plain plan's nprobe, then
    bisection). The graph search checks the refined recall on all tuning queries afterwards
    (:func:`_refine_until`). Returns (tuning record, refinement tuning record).
    """
    queries = take_float32(ix.vectors, rows, normalize=ix.cosine)
    factors = sorted(K_FACTORS)
    kf_max, limit = factors[-1], ix.nlist
    list_size = ix.n / ix.nlist
    grid = sorted({min(limit, max(1, int(round(2 ** (j / 8))))) for j in range(8 * int(math.log2(limit)) + 9)})
    tried: list[dict] = []
    tried_refined: list[dict] = []
    cache: dict[int, dict[int, tuple[float, float]]] = {}
    found: dict[int, dict[int, np.ndarray]] = {}  # nprobe -> k_factor -> neighbours of the tuning queries

    def neighbours(q: np.ndarray, qrows: np.ndarray, p: int, depths=factors) -> dict[int, np.ndarray]:
        cand = ix.candidates(q, max(depths) * (k + 1), p)
        out = {}
        for kf in depths:
            d2, ids = ix.rerank(q, np.ascontiguousarray(cand[:, :kf * (k + 1)]), k + 1)
            out[kf] = remove_self(ids, d2, qrows, k)[0]
        return out

    def stats(p: int) -> dict[int, tuple[float, float]]:
        if p not in cache or any(kf not in cache[p] for kf in factors):
            found[p] = neighbours(queries, rows, p)
            cache.setdefault(p, {})
            for kf in factors:
                if kf in cache[p]:
                    continue
                mean, se = _recall_stats(found[p][kf], exact)
                cache[p][kf] = (mean, se)
                tried.append({"nprobe": int(p), "k_factor": kf, "recall": round(mean, 5),
                              "recall_lower": round(mean - RECALL_MARGIN_SE * se, 5)})
        return cache[p]

    def ok(p: int, kf: int) -> bool:
        mean, se = stats(p)[kf]
        return mean - RECALL_MARGIN_SE * se >= target

    def cost(p: int, kf: int) -> float:
        return p * list_size + RERANK_COST * kf * (k + 1)

    def smallest(good, lo: int, hi: int) -> int:
        """Bisection on the grid: ``lo`` fails (or is -1), ``hi`` passes ``good``; the first index that does."""
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if good(mid):
                hi = mid
            else:
                lo = mid
        return hi

    # largest re-ranking depth: double nprobe until it reaches the target, then bisect the step
    j, below = 0, -1
    while not ok(grid[j], kf_max) and j < len(grid) - 1:
        below, j = j, min(j + 8, len(grid) - 1)
    reached = ok(grid[j], kf_max)
    while not reached and kf_max < MAX_K_FACTOR:  # PQ too coarse for this data: re-rank deeper
        kf_max *= 2
        factors.append(kf_max)
        below, j = -1, len(grid) - 1
        reached = ok(grid[j], kf_max)
    if reached:
        j = smallest(lambda i: ok(grid[i], kf_max), below, j)
    best = (grid[j], kf_max)
    if reached:
        start = j
        for kf in reversed(factors[:-1]):  # a smaller depth needs at least as many probes; try it where cheaper
            top = start - 1
            while top + 1 < len(grid) and cost(grid[top + 1], kf) < cost(*best):
                top += 1
            if top < start or not ok(grid[top], kf):
                continue
            start = smallest(lambda i, kf=kf: ok(grid[i], kf), start - 1, top)
            best = (grid[start], kf)
    ix.nprobe, ix.k_factor = int(best[0]), int(best[1])
    mean = stats(best[0])[best[1]][0]
    params.update({"nprobe": ix.nprobe, "k_factor": ix.k_factor, "tuned_on_queries": int(len(rows)),
                   "tuned_recall": round(mean, 5), "tuning_reached_target": bool(reached),
                   "tuning_rule": f"cheapest nprobe * list_size + {RERANK_COST:g} * k_factor * (k+1) with "
                                  f"recall - {RECALL_MARGIN_SE:.2f} SE >= target on the tuning queries",
                   "refine_rounds": 0})
    if not (refine and reached and ix.n >= REFINE_MIN_N):
        return tried, tried_refined

    # one refinement round after fewer probes: estimated on a subsample of the tuning queries
    kf = best[1]
    sub = np.unique(np.linspace(0, len(rows) - 1, min(len(rows), REFINE_TUNE_QUERIES)).astype(np.int64))
    refined: dict[int, tuple[float, float]] = {}

    # the estimate must leave room for the check on all tuning queries: one standard error of its own, plus the
    # margin that check will apply (scaled to this sample's standard error)
    # (+1 more for choosing the smallest nprobe that passes a noisy estimate)
    z = 2.0 + RECALL_MARGIN_SE * math.sqrt(len(sub) / len(rows))

    def refined_ok(i: int) -> bool:
        p = grid[i]
        if p not in refined:
            if kf in found.get(p, {}):
                own = found[p][kf][sub]
            else:
                own = neighbours(queries[sub], rows[sub], p, (kf,))[kf]
            known = own >= 0  # a query in a list of k points or fewer may have found fewer than k at few probes
            others = np.unique(own[known])
            theirs = np.full(own.shape + (k,), -1, dtype=own.dtype)
            found_others = neighbours(take_float32(ix.vectors, others, normalize=ix.cosine), others, p, (kf,))[kf]
            theirs[known] = found_others[np.searchsorted(others, own[known])]
            ind, _ = refine_neighbours(ix, rows[sub], queries[sub], own, theirs, k)
            refined[p] = _recall_stats(ind, exact[sub])
            tried_refined.append({"nprobe": int(p), "k_factor": kf, "queries": int(len(sub)),
                                  "recall_after_1_round": round(refined[p][0], 5),
                                  "recall_lower": round(refined[p][0] - z * refined[p][1], 5)})
        mean, se = refined[p]
        return mean - z * se >= target

    refine_cost = REFINE_CANDIDATE_COST * (k + k * k)
    paying = [i for i in range(grid.index(best[0]))
              if cost(grid[i], kf) + refine_cost < REFINE_MAX_COST_SHARE * cost(*best)]
    if paying and refined_ok(paying[-1]):  # the dearest plan that still pays reaches the target: look lower
        j = paying[-1]
        while j - 8 >= 0 and refined_ok(j - 8):
            j -= 8
        j = smallest(refined_ok, max(-1, j - 8), j)
        params.update({"plain_plan": {"nprobe": ix.nprobe, "k_factor": ix.k_factor},
                       "nprobe": int(grid[j]), "refine_rounds": 1,
                       "refine_estimate": {"queries": int(len(sub)), "recall": round(refined[grid[j]][0], 5)}})
        ix.nprobe = int(grid[j])
    return tried, tried_refined


def refine_neighbours(ix: IVFPQRerank, rows: np.ndarray, q: np.ndarray, own: np.ndarray, theirs: np.ndarray,
                      k: int) -> tuple[np.ndarray, np.ndarray]:
    """One local join: the exact ``k`` nearest of each row among its neighbours ``own`` (m, k) and their
    neighbours ``theirs`` (m, k, k), read from the vectors. Returns (indices, squared L2)."""
    m = len(rows)
    cand = np.sort(np.concatenate([own, theirs.reshape(m, -1)], axis=1), axis=1)
    drop = cand == np.asarray(rows)[:, None]
    drop[:, 1:] |= cand[:, 1:] == cand[:, :-1]
    cand[drop] = -1
    d2, ids = ix.rerank(q, cand, k)
    return ids, d2


def refine_graph(ix: IVFPQRerank, indices: np.ndarray, k: int, block_rows: int,
                 progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """One round of NN-descent's local join over the whole graph, in list order: every point's k nearest among
    its neighbours and their neighbours (``k + k²`` candidates), re-ranked exactly from the vectors. Recall can
    only grow (the current neighbours are candidates). Returns (indices, raw scores) of a new graph."""
    n = ix.n
    batch = int(max(256, min(4096, 4 * block_rows // (k + k * k))))
    order = np.argsort(ix.primary, kind="stable")
    out_i = np.empty_like(indices)
    out_d = np.empty(indices.shape, dtype=np.float32)
    with Progress("kNN graph: refining", total=n, unit="points") as bar:
        for s in range(0, n, batch):
            r = np.sort(order[s:s + batch])
            q = take_float32(ix.vectors, r, normalize=ix.cosine)
            ind, d2 = refine_neighbours(ix, r, q, indices[r], indices[indices[r]], k)
            out_i[r], out_d[r] = ind, ix.raw_scores(d2)
            if progress:
                bar.update(len(r))
    return out_i, out_d


def _refine_until(ix: IVFPQRerank, indices: np.ndarray, raw: np.ndarray, k: int, rows: np.ndarray,
                  exact: np.ndarray, target: float, params: dict, block_rows: int,
                  progress: bool) -> tuple[np.ndarray, np.ndarray, dict]:
    """Refinement rounds until recall@k on all tuning queries reaches ``target`` by RECALL_MARGIN_SE standard
    errors (at most :data:`MAX_REFINE_ROUNDS`, and only while a round still gains); if it does not, the plain
    plan (more probes, no refinement needed by tuning) is searched again and refined once."""
    record: dict[str, Any] = {"recall_on_tuning_queries": []}

    def lower(ind) -> float:
        mean, se = _recall_stats(ind[rows], exact)
        record["recall_on_tuning_queries"].append(round(mean, 5))
        return mean - RECALL_MARGIN_SE * se

    before = lower(indices)
    rounds = 0
    while rounds < MAX_REFINE_ROUNDS:
        indices, raw = refine_graph(ix, indices, k, block_rows, progress)
        rounds += 1
        now = lower(indices)
        if now >= target or now - before < 0.001:
            break
        before = now
    record["rounds"] = rounds
    if now < target and "plain_plan" in params:
        plain = params["plain_plan"]
        ix.nprobe, ix.k_factor = plain["nprobe"], plain["k_factor"]
        indices, raw = ix.graph(k, block_rows, progress)
        indices, raw = refine_graph(ix, indices, k, block_rows, progress)
        lower(indices)
        record.update({"fallback": "searched again with the plain plan, then refined once", "rounds": 1})
        params.update({"nprobe": ix.nprobe})
    params["refine_rounds"] = record["rounds"]
    return indices, raw, record
