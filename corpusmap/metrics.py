"""Map-quality metrics on plain arrays, as defined in the landscape paper (k = 10, Euclidean).

* :func:`knn_recall` — for a random sample of query points, the fraction of each point's k exact high-D
  neighbours (itself excluded) that are among its k nearest neighbours in the map; averaged over the queries.
* :func:`knn_accuracy` — a random sample of labelled points is the test set, the training pool is every other
  labelled point (the test points excluded, as in the reference split); each test point is predicted by a majority
  vote of its k nearest training points; unlabelled points take no part. Ties go to the class that sorts first, as
  in scikit-learn's ``KNeighborsClassifier``. Chance level, as in the landscape paper: the expected accuracy of
  guessing by the training class frequencies (scikit-learn's ``DummyClassifier(strategy="stratified")``),
  Σ_c p_train(c) · p_test(c) ≈ Σ p_c² (4.3% there); the accuracy of always predicting the most common training class
  (its share of the test points) is reported beside it as ``chance_majority``.
* :func:`year_rmse` — a random sample of dated points, the training pool every other dated point; each year is
  predicted as the mean year of its k nearest dated training points; RMSE against the true year. Chance level, as
  in the paper: the RMSE of predicting each test year as the mean year of k random training papers (a seeded
  draw). A year column that holds one year only is reported as such (no RMSE).

The test sample is at most half of the eligible points, so that a training pool remains when ``queries`` asks for
all of them.

Every function takes ``X`` as a numpy array or as the store's vectors (``shape``, ``iter_blocks``, ``take``), and
``queries`` as a sample size (drawn with ``seed``; ``None`` or ``>= n`` means every eligible point) or an explicit
array of row numbers. Neighbours are exact: a KD-tree in float64 for maps of up to 3 dimensions, else a FAISS flat
scan in float32 whose candidates are re-ranked in float64.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional, Union

import numpy as np

from corpusmap.errors import CorpusmapError, UsageProblem
from corpusmap.knn import exact_search, remove_self
from corpusmap.vectors import as_vectors, take_float32

Queries = Union[int, None, np.ndarray]

#: extra candidates fetched from the float32 scan before the float64 re-ranking
RERANK_EXTRA = 8


@dataclass(frozen=True)
class KnnAccuracy:
    accuracy: float
    chance: float  # expected accuracy of stratified guessing: sum_c p_train(c) * p_test(c) (the paper's chance)
    chance_majority: float  # accuracy of always predicting the most common training class
    k: int
    n_test: int
    n_train: int
    n_classes: int

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class YearRmse:
    rmse: float
    chance: float  # RMSE of predicting the mean year of k random training papers (the paper's chance)
    chance_mean: float  # RMSE of predicting the mean year of all training papers
    mean_year: float
    k: int
    n_test: int
    n_train: int

    def as_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------------------------------------
# samples and exact neighbours


def sample_queries(eligible, queries: Queries = 10_000, seed: int = 42) -> np.ndarray:
    """Sorted row numbers of the query sample.

    ``eligible`` is n (all rows) or a boolean mask. ``queries``: a sample size (``None`` or at least the number
    of eligible rows: all of them) or an explicit array of rows (checked against ``eligible``). The same
    ``eligible`` and ``seed`` always give the same sample, whatever space the metric is computed in.
    """
    rows = np.arange(int(eligible), dtype=np.int64) if np.isscalar(eligible) else \
        np.flatnonzero(np.asarray(eligible, dtype=bool)).astype(np.int64)
    if queries is not None and not np.isscalar(queries):
        chosen = np.unique(np.asarray(queries, dtype=np.int64))
        if chosen.size and not np.isin(chosen, rows).all():
            raise CorpusmapError("some query rows are out of range or not eligible (unlabelled or undated)")
        return chosen
    if queries is not None and int(queries) < 1:
        raise UsageProblem(f"the number of queries must be at least 1, got {queries}")
    if queries is None or int(queries) >= rows.size:
        return rows
    rng = np.random.default_rng(int(seed))
    return np.sort(rows[rng.choice(rows.size, size=int(queries), replace=False)])


def exact_neighbors(X, rows: np.ndarray, k: int = 10, metric: str = "euclidean",
                    candidates: Optional[np.ndarray] = None) -> np.ndarray:
    """Exact k nearest neighbours (int64, nearest first) of the points ``rows``, self excluded.

    ``candidates`` (boolean mask) restricts the neighbours to those points.
    """
    rows = np.asarray(rows, dtype=np.int64)
    src = as_vectors(X)
    n, dim = (int(s) for s in src.shape)
    pool = n if candidates is None else int(np.count_nonzero(candidates))
    pool_minus_self = pool - (1 if candidates is None or np.asarray(candidates, bool)[rows].any() else 0)
    if not 1 <= k <= pool_minus_self:
        raise UsageProblem(f"k must be between 1 and {pool_minus_self} (the number of other eligible points), "
                           f"got {k}")
    if rows.size == 0:
        return np.zeros((0, k), dtype=np.int64)
    if dim <= 3 and metric == "euclidean" and isinstance(X, np.ndarray):
        return _kdtree_neighbors(np.asarray(X, dtype=np.float64), rows, k, candidates)
    extra = min(RERANK_EXTRA, pool_minus_self - k)
    cand, _ = exact_search(src, rows, k, metric, candidates=candidates, extra=extra)
    return _rerank(src, rows, cand, k, metric)


def _kdtree_neighbors(X: np.ndarray, rows: np.ndarray, k: int, candidates) -> np.ndarray:
    from scipy.spatial import cKDTree

    if not np.isfinite(X).all():
        raise CorpusmapError("coordinates contain NaN or infinite values")
    ids = np.arange(X.shape[0]) if candidates is None else np.flatnonzero(candidates)
    tree = cKDTree(X[ids])
    kk = min(k + 1, ids.size)
    dist, pos = tree.query(X[rows], k=kk)
    dist, pos = dist.reshape(len(rows), kk), pos.reshape(len(rows), kk)
    ind, _ = remove_self(ids[pos], dist, rows, k)
    return ind.astype(np.int64)


def _rerank(src, rows: np.ndarray, cand: np.ndarray, k: int, metric: str, chunk: int = 2048) -> np.ndarray:
    """Order float32 candidates by their float64 distance and keep the first k (in chunks of queries whose
    candidate vectors take at most ~256 MB, whatever k and the dimension)."""
    out = np.empty((len(rows), k), dtype=np.int64)
    cosine = metric == "cosine"
    per_query = max(1, cand.shape[1]) * int(src.shape[1]) * 8 * 2  # the candidates' vectors and their differences
    chunk = max(1, min(chunk, (256 << 20) // per_query))
    for s in range(0, len(rows), chunk):
        c = cand[s:s + chunk]
        q = take_float32(src, rows[s:s + chunk]).astype(np.float64)
        uniq, inv = np.unique(c, return_inverse=True)
        v = take_float32(src, uniq).astype(np.float64)[inv.reshape(c.shape)]
        if cosine:
            qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-300)
            vn = v / np.maximum(np.linalg.norm(v, axis=2, keepdims=True), 1e-300)
            d = 1.0 - np.einsum("ij,ikj->ik", qn, vn)
        else:
            diff = v - q[:, None, :]
            d = np.einsum("ikj,ikj->ik", diff, diff)
        order = np.argsort(d, axis=1, kind="stable")[:, :k]
        out[s:s + chunk] = np.take_along_axis(c, order, axis=1)
    return out


# ----------------------------------------------------------------------------------------------------------
# the metrics from neighbours (used by evaluate to share one neighbour search between metrics)


def recall_from_neighbors(high: np.ndarray, low: np.ndarray) -> float:
    """Mean over rows of |high_i ∩ low_i| / k, for two (m, k) neighbour arrays of the same queries."""
    high, low = np.asarray(high), np.asarray(low)
    if high.shape != low.shape:
        raise ValueError(f"neighbour arrays differ in shape: {high.shape} vs {low.shape}")
    if high.size == 0:
        return float("nan")
    m, k = high.shape
    # each row's values made unique to the row (row * span + value), so that one sorted membership test over all
    # rows counts the high-D neighbours found among the low-D ones (m k log(m k), not m k²)
    lo = min(int(high.min()), int(low.min()))
    span = max(int(high.max()), int(low.max())) - lo + 1
    row = np.arange(m, dtype=np.int64)[:, None] * span
    hits = np.isin(high.astype(np.int64) - lo + row, low.astype(np.int64) - lo + row).sum(axis=1)
    return float(hits.mean() / k)


def vote(neighbor_codes: np.ndarray, n_classes: int) -> np.ndarray:
    """Majority vote per row of integer class codes; ties go to the smallest code (the class that sorts first)."""
    m = neighbor_codes.shape[0]
    counts = np.zeros((m, n_classes), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(m), neighbor_codes.shape[1]), neighbor_codes.ravel()), 1)
    return counts.argmax(axis=1)


# ----------------------------------------------------------------------------------------------------------
# the public metrics


def knn_recall(high, Y, k: int = 10, queries: Queries = 10_000, seed: int = 42,
               metric: str = "euclidean") -> float:
    """kNN recall@k of the map ``Y`` (n, 2) against the exact high-D neighbours.

    ``high`` is either the high-D vectors (float array or store vectors; exact neighbours are computed with
    ``metric``) or an integer (n, k') neighbour array with k' >= k and rows nearest first (e.g. a stored exact
    kNN graph); then its first k columns are the high-D neighbours. The map's neighbours are Euclidean.
    """
    Y = np.asarray(Y)
    n = Y.shape[0]
    rows = sample_queries(n, queries, seed)
    if isinstance(high, np.ndarray) and np.issubdtype(high.dtype, np.integer):
        if high.shape[0] != n or high.shape[1] < k:
            raise CorpusmapError(f"high-D neighbour array has shape {high.shape}; need ({n}, >= {k})")
        hi = np.asarray(high[rows, :k], dtype=np.int64)
    else:
        hsrc = as_vectors(high)
        if hsrc.shape[0] != n:
            raise CorpusmapError(f"high-D vectors have {hsrc.shape[0]:,} rows, the map {n:,}")
        hi = exact_neighbors(high, rows, k, metric)
    lo = exact_neighbors(Y, rows, k, "euclidean")
    return recall_from_neighbors(hi, lo)


def label_codes(labels) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (-1 = unlabelled: None, NaN or empty string) and the sorted class names."""
    import pandas as pd

    s = pd.Series(np.asarray(labels, dtype=object) if not isinstance(labels, pd.Series) else labels,
                  dtype=object)
    s = s.where(s.notna(), None)
    text = s.map(lambda v: None if v is None else (str(v).strip() or None))
    mask = text.notna().to_numpy()
    codes = np.full(len(text), -1, dtype=np.int64)
    if mask.any():
        classes, inv = np.unique(text[mask].to_numpy(dtype=str), return_inverse=True)
        codes[mask] = inv
    else:
        classes = np.array([], dtype=str)
    return codes, classes


def split(eligible: np.ndarray, queries: Queries, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(test rows, training mask)``: the seeded test sample (at most half the eligible points) and every other
    eligible point."""
    n_eligible = int(np.count_nonzero(eligible))
    if queries is None or np.isscalar(queries):
        queries = min(int(queries) if queries is not None else n_eligible, n_eligible // 2)
    rows = sample_queries(eligible, queries, seed)
    train = np.asarray(eligible, dtype=bool).copy()
    train[rows] = False
    return rows, train


def knn_accuracy(X, labels, k: int = 10, queries: Queries = 10_000, seed: int = 42,
                 metric: str = "euclidean") -> KnnAccuracy:
    """kNN classification accuracy (majority vote of the k nearest labelled training points); see the module doc."""
    n = int(as_vectors(X).shape[0])
    codes, classes = label_codes(labels)
    if codes.shape[0] != n:
        raise CorpusmapError(f"{codes.shape[0]:,} labels for {n:,} points")
    labelled = codes >= 0
    n_lab = int(labelled.sum())
    if n_lab == 0:
        raise CorpusmapError("no labelled points: every label is empty")
    if n_lab <= 2 * k:
        raise CorpusmapError(f"only {n_lab} labelled points; kNN accuracy needs more than 2k = {2 * k}")
    rows, train = split(labelled, queries, seed)
    nb = exact_neighbors(X, rows, k, metric, candidates=train)
    pred = vote(codes[nb], len(classes))
    p_train = np.bincount(codes[train], minlength=len(classes)) / int(train.sum())
    p_test = np.bincount(codes[rows], minlength=len(classes)) / len(rows)
    return KnnAccuracy(accuracy=float(np.mean(pred == codes[rows])), chance=float(np.sum(p_train * p_test)),
                       chance_majority=float(p_test[p_train.argmax()]), k=int(k), n_test=int(len(rows)),
                       n_train=int(train.sum()), n_classes=int(len(classes)))


def year_values(years) -> np.ndarray:
    """Years as float (:func:`corpusmap.values.year_array`): NaN where missing or unreadable."""
    from corpusmap.values import year_array

    return year_array(years)


def year_rmse(X, years, k: int = 10, queries: Queries = 10_000, seed: int = 42,
              metric: str = "euclidean") -> YearRmse:
    """RMSE of predicting each test point's year as the mean year of its k nearest dated training points."""
    n = int(as_vectors(X).shape[0])
    y = year_values(years)
    if y.shape[0] != n:
        raise CorpusmapError(f"{y.shape[0]:,} years for {n:,} points")
    dated = np.isfinite(y)
    n_dated = int(dated.sum())
    if n_dated <= 2 * k:
        raise CorpusmapError(f"only {n_dated} points with a year; year RMSE needs more than 2k = {2 * k}")
    if np.unique(y[dated]).size == 1:
        raise CorpusmapError(f"every dated point has the year {int(y[dated][0])}: year RMSE says nothing")
    rows, train = split(dated, queries, seed)
    nb = exact_neighbors(X, rows, k, metric, candidates=train)
    pred = y[nb].mean(axis=1)
    pool = np.flatnonzero(train)
    rng = np.random.default_rng([int(seed), 7])
    random_mean = np.array([y[rng.choice(pool, size=k, replace=False)].mean() for _ in rows])
    mean_year = float(y[train].mean())
    return YearRmse(rmse=float(np.sqrt(np.mean((pred - y[rows]) ** 2))),
                    chance=float(np.sqrt(np.mean((random_mean - y[rows]) ** 2))),
                    chance_mean=float(np.sqrt(np.mean((mean_year - y[rows]) ** 2))), mean_year=mean_year,
                    k=int(k), n_test=int(len(rows)), n_train=int(train.sum()))


__all__ = ["KnnAccuracy", "YearRmse", "sample_queries", "split", "exact_neighbors", "knn_recall", "knn_accuracy",
           "year_rmse", "recall_from_neighbors", "vote", "label_codes", "year_values"]
