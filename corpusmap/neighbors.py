"""The kNN graph: FAISS search over the stored vectors, computed once and reused by every layout and metric.

Vectors are read in float32 blocks (``iter_blocks``) and never held in float64; the index is filled block by block
and searched block by block. Self is excluded from every row. ``auto`` uses exact search below ``exact_threshold``
points and an approximate index above (IVF-PQ fast scan with exact re-ranking on the CPU, IVF-Flat on a GPU), with
its search parameters raised until recall@k, measured against exact search on a seeded sample of queries, reaches
``target_recall``. The measured recall goes into the manifest.

Stored layout (``RUN/knn/``): ``indices.npy`` (int64, n x k), ``distances.npy`` (float32, n x k, sorted ascending
in each row; Euclidean distance, or ``1 - cosine similarity``) and ``manifest.json``.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from corpusmap.errors import CorpusmapError, UsageProblem
from corpusmap.progress import Progress, info

METRICS = ("euclidean", "cosine")
INDEXES = ("auto", "exact", "ivf", "ivfpq", "hnsw")
CPU_ONLY = ("hnsw", "ivfpq")  # FAISS has no GPU HNSW, and no GPU fast-scan PQ
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_BLOCK_ROWS = 65_536
KNN_DIR = "knn"
MANIFEST = "manifest.json"


def _import_faiss():
    """Import FAISS without its loader's INFO lines about which SIMD build it tried."""
    import logging

    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    import faiss

    return faiss


# --------------------------------------------------------------------------------------------------------------
# vectors: a store's sharded vectors, or a plain array behind the same small interface


class ArrayVectors:
    """A numpy array (or memmap) with the interface of the store's vectors: ``shape``, ``iter_blocks``, ``take``."""

    def __init__(self, array: np.ndarray):
        array = np.asarray(array) if not isinstance(array, np.memmap) else array
        if array.ndim != 2:
            raise CorpusmapError(f"vectors must be a 2-D array (n, dim), got shape {array.shape}")
        self.array = array

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.array.shape)  # type: ignore[return-value]

    @property
    def dtype(self):
        return self.array.dtype

    def __len__(self) -> int:
        return self.array.shape[0]

    def iter_blocks(self, block_rows: int = DEFAULT_BLOCK_ROWS, dtype=np.float32) -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, self.array.shape[0], block_rows):
            yield start, np.asarray(self.array[start:start + block_rows], dtype=dtype)

    def take(self, rows, dtype=np.float32) -> np.ndarray:
        return np.asarray(self.array[np.asarray(rows)], dtype=dtype)


def as_vectors(vectors) -> Any:
    """Wrap a plain array; pass through anything that already has ``shape``, ``iter_blocks`` and ``take``."""
    if isinstance(vectors, ArrayVectors):
        return vectors
    if all(hasattr(vectors, a) for a in ("shape", "iter_blocks", "take")) and not isinstance(vectors, np.ndarray):
        return vectors
    return ArrayVectors(np.asarray(vectors) if not isinstance(vectors, np.memmap) else vectors)


def iter_float32_blocks(vectors, block_rows: int = DEFAULT_BLOCK_ROWS, *, normalize: bool = False,
                        check_finite: bool = True) -> Iterator[tuple[int, np.ndarray]]:
    """``(start_row, float32 C-contiguous block)`` over all vectors; checks for NaN/inf, L2-normalises if asked.

    Accepts stores whose ``iter_blocks`` yields plain blocks or ``(start, block)`` pairs.
    """
    start = 0
    for item in vectors.iter_blocks(block_rows):
        if isinstance(item, tuple) and len(item) == 2 and np.isscalar(item[0]):
            start, block = int(item[0]), item[1]
        else:
            block = item
        block = np.ascontiguousarray(block, dtype=np.float32)
        if check_finite:
            _check_finite(block, start)
        if normalize:
            block = normalize_rows(block)
        yield start, block
        start += block.shape[0]


def take_float32(vectors, rows: np.ndarray, *, normalize: bool = False) -> np.ndarray:
    """Rows ``rows`` (any order) as float32, checked for NaN/inf."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        return np.zeros((0, vectors.shape[1]), dtype=np.float32)
    order = np.argsort(rows, kind="stable")
    block = np.empty((rows.size, vectors.shape[1]), dtype=np.float32)
    block[order] = np.asarray(vectors.take(rows[order]), dtype=np.float32)  # sorted reads are kinder to shards
    _check_finite(block, None)
    return normalize_rows(block) if normalize else block


def normalize_rows(block: np.ndarray) -> np.ndarray:
    """L2-normalise rows in float32 (zero rows stay zero)."""
    norms = np.linalg.norm(block, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(block / norms, dtype=np.float32)


def _check_finite(block: np.ndarray, start: Optional[int]) -> None:
    if not np.isfinite(block).all():
        bad = np.flatnonzero(~np.isfinite(block).all(axis=1))
        where = f"row {start + int(bad[0])}" if start is not None else "a requested row"
        raise CorpusmapError(f"vectors contain NaN or infinite values ({bad.size} rows in one block, first at "
                             f"{where}); re-create them with `corpusmap embed`")


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

    @property
    def recall(self) -> Optional[float]:
        return (self.manifest.get("recall") or {}).get("value")


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
QUERY_ROWS = 1024  # queries per task of the dense kernel
GROUP = 64  # columns per group in smallest_k


def knn_dense(q: np.ndarray, x: np.ndarray, kk: int, metric: str, x_sqnorms: Optional[np.ndarray] = None,
              chunk_rows: int = 16_384) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``kk`` rows of ``x`` for each row of ``q`` (float32), best first.

    Returns FAISS-style raw scores (squared L2 ascending, or inner products descending) and row numbers of
    ``x``. One BLAS matrix product per chunk of ``x`` and :func:`smallest_k` on it. Large batches of queries
    are split into tasks of :data:`QUERY_ROWS` run by one thread per core, each with a single-threaded BLAS,
    so that the top-k selection (numpy, one core per call) runs in parallel too.
    """
    kk = int(min(kk, x.shape[0]))
    q = np.ascontiguousarray(q, dtype=np.float32)
    ip = metric == "cosine"
    sq = None if ip else (x_sqnorms if x_sqnorms is not None else np.einsum("ij,ij->i", x, x, dtype=np.float32))

    def task(rows: slice) -> tuple[np.ndarray, np.ndarray]:
        best_d = best_i = None
        for start in range(0, x.shape[0], chunk_rows):
            xb = np.asarray(x[start:start + chunk_rows], dtype=np.float32)
            g = q[rows] @ xb.T
            if ip:
                np.negative(g, out=g)
            else:  # |x|^2 - 2 q.x; |q|^2 is the same along a row and is added to the winners only
                g *= -2
                g += sq[start:start + chunk_rows]
            d, i = smallest_k(g, kk)
            i += start
            if best_d is not None:
                d, i = np.hstack([best_d, d]), np.hstack([best_i, i])
                order = np.argsort(d, axis=1, kind="stable")[:, :kk]
                d, i = np.take_along_axis(d, order, axis=1), np.take_along_axis(i, order, axis=1)
            best_d, best_i = d, i
        return best_d, best_i

    m = q.shape[0]
    workers = _THREADS or os.cpu_count() or 1
    if m < 2 * QUERY_ROWS or workers == 1:
        d, i = task(slice(0, m))
    else:
        from concurrent.futures import ThreadPoolExecutor

        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(task, [slice(s, s + QUERY_ROWS) for s in range(0, m, QUERY_ROWS)]))
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


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean over rows of |approx_i ∩ exact_i| / k."""
    k = exact.shape[1]
    hits = [np.intersect1d(a, e, assume_unique=True).size for a, e in zip(approx[:, :k], exact)]
    return float(np.mean(hits) / k) if hits else float("nan")


def build_knn_graph(vectors, k: int = 15, metric: str = "euclidean", index: str = "auto", device: str = "auto",
                    seed: int = 42, recall_sample: int = 1000, target_recall: float = 0.98,
                    exact_threshold: int = 20_000, threads: Optional[int] = None,
                    block_rows: int = DEFAULT_BLOCK_ROWS, nlist: Optional[int] = None,
                    hnsw_m: int = 32, progress: bool = True) -> KnnGraph:
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
        given, ``nprobe`` tuned), ``ivfpq`` (CPU: FAISS ``IndexIVFPQFastScan`` with 4-bit codes of 2-D
        sub-vectors, ``nlist ≈ sqrt(n)``, re-ranked exactly by ``IndexRefineFlat``; ``nprobe`` and the
        re-ranking depth ``k_factor`` tuned), ``hnsw`` (HNSW-Flat, ``efSearch`` tuned), or ``auto``: exact
        below ``exact_threshold`` points, above it ``ivfpq`` on the CPU and ``ivf`` on a GPU. On the CPU,
        ``ivf`` is :class:`ListBatchedIVF` (same results as FAISS' ``IndexIVFFlat``, searched list by list with
        matrix products); on a GPU it is FAISS' GPU ``IndexIVFFlat``. HNSW construction is multi-threaded
        in FAISS and so not bit-for-bit reproducible unless ``threads=1``; the others are.
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

    Returns
    -------
    KnnGraph
        With ``manifest`` filled in (index type and parameters, measured recall, seconds, versions).
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
    if kind in CPU_ONLY and gpu:
        info(f"{kind} runs on the CPU (FAISS has no GPU version of it); use --index ivf for a GPU index")
        gpu = False
    cosine = metric == "cosine"

    with faiss_threads(None if gpu else threads):
        params: dict[str, Any] = {}
        tuning: list[dict] = []
        cpu_index = _make_index(kind, dim, metric, n, nlist, hnsw_m, params, seed, gpu)
        idx = faiss.index_cpu_to_all_gpus(cpu_index) if gpu else cpu_index
        if idx is not cpu_index and kind == "ivf" and hasattr(idx, "cp"):
            idx.cp.seed = cpu_index.cp.seed
        if kind in ("ivf", "ivfpq"):
            _train_ivf(idx, vectors, n, params, seed, cosine)
        with Progress("kNN graph: adding vectors", total=n, unit="vectors") as bar:
            for _, block in iter_float32_blocks(vectors, block_rows, normalize=cosine):
                idx.add(block)
                if progress:
                    bar.update(block.shape[0])

        if kind != "exact":
            # exact neighbours of the tuning and the recall queries in one scan over the vectors
            tune_rows = _sample(n, recall_sample, seed, _STREAM_TUNE)
            check_rows = recall_queries(n, recall_sample, seed)
            truth, _ = exact_search(vectors, np.concatenate([tune_rows, check_rows]), k, metric,
                                    block_rows=block_rows)
            exact_tune, exact_check = truth[:len(tune_rows)], truth[len(tune_rows):]
            tuning = _tune(idx, kind, gpu, vectors, tune_rows, exact_tune, k, cosine, target_recall, params, n)

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

    recall: dict[str, Any] = {"value": 1.0, "measured": False, "queries": 0, "target": target_recall,
                              "note": "exact search"}
    if kind != "exact":
        value = recall_at_k(indices[check_rows], exact_check)
        recall = {"value": value, "measured": True, "queries": int(len(check_rows)), "seed": int(seed),
                  "target": target_recall,
                  "note": "recall@k against exact search on queries sampled by "
                          "corpusmap.neighbors.recall_queries(n, queries, seed)"}
        if value < target_recall:
            info(f"kNN graph: measured recall@{k} {value:.3f} is below the target {target_recall}")
    seconds = time.monotonic() - t0
    manifest = {
        "format": 1, "source": "faiss", "n": n, "dim": dim, "k": int(k), "metric": metric,
        "distance": "euclidean" if metric == "euclidean" else "1 - cosine similarity",
        "index": {"type": kind, "requested": index, "params": params, "tuning": tuning,
                  "exact_threshold": int(exact_threshold)},
        "recall": recall, "device": "cuda" if gpu else "cpu",
        "threads": (None if gpu else (threads or faiss.omp_get_max_threads())),
        "seed": int(seed), "seconds": round(seconds, 3), "versions": _versions(),
    }
    return KnnGraph(indices=indices, distances=distances, metric=metric, k=int(k), manifest=manifest)


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
    if kind == "ivfpq":
        nl = int(nlist) if nlist else int(round(math.sqrt(n)))
        nl = max(1, min(nl, n // 39 if n >= 39 else 1))
        sub = dim // 2 if dim % 2 == 0 else dim  # 2-D sub-vectors (1-D for odd dimensions), 4 bits each
        idx = faiss.index_factory(dim, f"IVF{nl},PQ{sub}x4fs,RFlat", fm)
        ivf = faiss.downcast_index(faiss.extract_index_ivf(idx))
        ivf.cp.seed = ivf.pq.cp.seed = int(seed) & 0x7FFFFFFF
        ivf.cp.niter = ivf.pq.cp.niter = 10
        ivf.pq.cp.max_points_per_centroid = 128  # 2,048 points train each 16-centroid sub-quantizer
        ivf.by_residual = False  # one lookup table per query instead of one per probed list: several times faster
        params.update({"implementation": "IndexIVFPQFastScan + IndexRefineFlat (4-bit PQ scan, exact re-ranking)",
                       "nlist": nl, "pq_subvectors": sub, "pq_bits": 4})
        return idx
    idx = faiss.IndexHNSWFlat(dim, int(hnsw_m), fm)
    idx.hnsw.efConstruction = max(200, 2 * int(hnsw_m))  # text embeddings need a well-built graph
    params.update({"implementation": "IndexHNSWFlat", "M": int(hnsw_m),
                   "efConstruction": int(idx.hnsw.efConstruction)})
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

    if isinstance(idx, faiss.IndexRefine):  # ivfpq: re-ranking depth, or a parameter of the IVF inside
        if name == "k_factor":
            idx.k_factor = float(value)
        else:
            faiss.extract_index_ivf(idx).nprobe = int(value)
        return
    space = faiss.GpuParameterSpace() if gpu else faiss.ParameterSpace()
    space.set_index_parameter(idx, name, int(value))


K_FACTORS = (8, 16, 32)  # ivfpq re-ranking depths tried, cheapest first: k_factor * (k+1) candidates re-ranked


def _tune(idx, kind, gpu, vectors, rows, exact, k, cosine, target, params, n) -> list[dict]:
    """The smallest nprobe (IVF) or efSearch (HNSW) found whose recall@k on the tuning queries reaches ``target``:
    doubling until it does, then the values between the last two at steps of 2^(1/4). ``ivfpq`` tunes nprobe
    at each re-ranking depth of :data:`K_FACTORS` and stops at the first depth that reaches the target."""
    queries = take_float32(vectors, rows, normalize=cosine)
    if kind in ("ivf", "ivfpq"):
        name, lowest, limit = "nprobe", 1, (min(params["nlist"], 2048) if gpu else params["nlist"])
    else:
        name, lowest, limit = "efSearch", max(16, k + 1), 4096
    tried: list[dict] = []

    def recall_of(extra: dict):
        cache: dict[int, float] = {}

        def recall_at(value: int) -> float:
            if value not in cache:
                _set_param(idx, gpu, name, value)
                d, i = idx.search(queries, k + 1)
                cache[value] = recall_at_k(remove_self(i, d, rows, k)[0], exact)
                tried.append({**extra, name: value, "recall": round(cache[value], 5)})
            return cache[value]
        return recall_at

    for k_factor in (K_FACTORS if kind == "ivfpq" else (None,)):
        extra = {}
        if k_factor is not None:
            _set_param(idx, gpu, "k_factor", k_factor)
            extra = {"k_factor": k_factor}
            params["k_factor"] = k_factor
        chosen, reached = _smallest_reaching(recall_of(extra), lowest, limit, target)
        if reached:
            break
    _set_param(idx, gpu, name, chosen)
    params[name] = int(chosen)
    params["tuned_on_queries"] = int(len(rows))
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


def _versions() -> dict:
    faiss = _import_faiss()

    from corpusmap import __version__

    return {"corpusmap": __version__, "faiss": getattr(faiss, "__version__", "unknown"), "numpy": np.__version__}


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
        "seconds": round(time.monotonic() - t0, 3), "versions": _versions(),
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
            raise CorpusmapError(f"{path}: not a readable .npy array ({exc})") from None

    indices = load(indices_path)
    distances = load(distances_path) if distances_path is not None else None
    graph = graph_from_arrays(vectors, indices, distances, metric=metric)
    graph.manifest["from"] = {"indices": str(indices_path),
                              "distances": str(distances_path) if distances_path is not None else None}
    return graph


# --------------------------------------------------------------------------------------------------------------
# saving and loading


def knn_dir(run_dir_or_path) -> Path:
    """``RUN/knn`` for a run directory (or a Run object with ``.path``); a path ending in ``knn`` is used as is."""
    path = Path(getattr(run_dir_or_path, "path", run_dir_or_path))
    return path if path.name == KNN_DIR else path / KNN_DIR


def save_knn_graph(run_dir_or_path, graph: KnnGraph) -> Path:
    """Write ``indices.npy``, ``distances.npy`` and ``manifest.json`` under ``RUN/knn``, atomically.

    The old manifest is removed first and the new one written last, so a crash at any point leaves either a
    complete graph or none (never a manifest describing other arrays).
    """
    from corpusmap.atomic import sha256_file, write_json

    out = knn_dir(run_dir_or_path)
    out.mkdir(parents=True, exist_ok=True)
    n, k = graph.indices.shape
    if graph.distances.shape != (n, k):
        raise ValueError("indices and distances differ in shape")
    manifest = dict(graph.manifest)
    manifest.update({"n": int(n), "k": int(k), "metric": graph.metric,
                     "files": {"indices": "indices.npy", "distances": "distances.npy"}})
    tmp = {name: out / f".{name}.tmp-{os.getpid()}" for name in ("indices.npy", "distances.npy")}
    try:
        for name, array, dtype in (("indices.npy", graph.indices, np.int64),
                                   ("distances.npy", graph.distances, np.float32)):
            with open(tmp[name], "wb") as fh:
                np.save(fh, np.ascontiguousarray(array, dtype=dtype), allow_pickle=False)
                fh.flush()
                os.fsync(fh.fileno())
        manifest["indices_sha256"] = sha256_file(tmp["indices.npy"])  # maps record it: stale maps are spotted
        (out / MANIFEST).unlink(missing_ok=True)
        for name, path in tmp.items():
            os.replace(path, out / name)
        write_json(out / MANIFEST, manifest)
    finally:
        for path in tmp.values():
            path.unlink(missing_ok=True)
    graph.manifest = manifest
    return out


def has_knn_graph(run_path) -> bool:
    return (knn_dir(run_path) / MANIFEST).is_file()


def load_knn_graph(run_path, mmap: bool = True) -> KnnGraph:
    """The stored kNN graph of a run, memory-mapped."""
    from corpusmap.atomic import read_json

    out = knn_dir(run_path)
    run = getattr(run_path, "path", run_path)
    if not (out / MANIFEST).is_file():
        raise CorpusmapError(f"no kNN graph in {run}; run `corpusmap neighbors {run}` first")
    manifest = read_json(out / MANIFEST)
    mode = "r" if mmap else None
    try:
        indices = np.load(out / "indices.npy", mmap_mode=mode, allow_pickle=False)
        distances = np.load(out / "distances.npy", mmap_mode=mode, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CorpusmapError(f"kNN graph in {out} is damaged ({exc}); run `corpusmap neighbors {run} "
                             f"--overwrite`") from None
    shape = (manifest.get("n"), manifest.get("k"))
    if indices.shape != shape or distances.shape != shape:
        raise CorpusmapError(f"kNN graph in {out} does not match its manifest (arrays {indices.shape}, manifest "
                             f"{shape}); run `corpusmap neighbors {run} --overwrite`")
    return KnnGraph(indices=indices, distances=distances, metric=manifest["metric"], k=int(manifest["k"]),
                    manifest=manifest)


__all__ = ["KnnGraph", "ArrayVectors", "DenseIndex", "ListBatchedIVF", "as_vectors", "build_knn_graph",
           "exact_search", "search_vectors", "knn_dense", "graph_from_arrays",
           "load_user_graph", "save_knn_graph", "load_knn_graph", "has_knn_graph", "knn_dir", "recall_queries",
           "recall_at_k", "remove_self"]
