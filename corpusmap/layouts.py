"""2D layouts of a corpus from its stored kNN graph: t-SNE (openTSNE), UMAP (umap-learn) and a PCA baseline.

Everything here works on arrays, not on run directories (that is :mod:`corpusmap.maps`):

* ``indices`` (n, k) int64 and ``distances`` (n, k): the stored kNN graph, self excluded, nearest first;
  euclidean distances are true L2, cosine distances are ``1 - similarity``;
* ``vectors``: a run's vectors or an array (:mod:`corpusmap.vectors`); read block by block, never converted
  whole except for UMAP, which needs the matrix in memory.

No function searches neighbours again: t-SNE affinities and the UMAP fuzzy graph are built from the stored
graph. Each function returns a :class:`Layout`: float32 coordinates and an ``info`` dict with every parameter,
the optimiser's actual schedule and timings, ready to store next to the map.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from typing import Iterator, Optional, Union

import numpy as np

from corpusmap.errors import CorpusmapError, UsageProblem
from corpusmap.vectors import as_vectors

METHODS = ("tsne", "umap", "pca")
PRESETS = ("landscape",)
SYMMETRIZE = ("max", "mean")  # uniform affinities: P + P^T > 0, or (P + P^T) / 2
UMAP_INSTALL_HINT = "UMAP needs umap-learn: pip install 'corpusmap[umap]'"

# ---------------------------------------------------------------------------------------------- helpers


@dataclass
class Layout:
    """A 2D map: ``coords`` (n, 2) float32 and ``info`` (method, parameters, schedule, timings)."""

    coords: np.ndarray
    info: dict = field(default_factory=dict)


def default_threads() -> int:
    """All cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _threads(threads: Optional[int]) -> int:
    """``None`` or 0: all cores (as in :func:`corpusmap.knn.faiss_threads`); below 0 is refused."""
    if threads is not None and threads < 0:
        raise UsageProblem(f"--threads must be at least 1, got {threads}")
    if not threads:
        return default_threads()
    return int(threads)


def iter_vector_blocks(vectors, block_rows: int = 65536) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, float64 block)`` over the rows of ``vectors``; each block is a copy, free to change."""
    for start, block in as_vectors(vectors).iter_blocks(block_rows, dtype=np.float64):
        yield start, block


def vectors_to_numpy(vectors, dtype=np.float32) -> np.ndarray:
    return as_vectors(vectors).to_numpy(dtype)


def check_graph(indices: np.ndarray, distances: np.ndarray, n: Optional[int] = None) -> None:
    """Shapes agree, every row is full (no -1 from an approximate index), every index is a row."""
    if indices.ndim != 2 or indices.shape != distances.shape:
        raise CorpusmapError(f"the kNN graph is malformed: indices {indices.shape}, distances {distances.shape}")
    if n is not None and indices.shape[0] != n:
        raise CorpusmapError(f"the kNN graph has {indices.shape[0]:,} rows but the run has {n:,} vectors; "
                             "recompute it with `corpusmap neighbors RUN`")
    if indices.size and (indices.min() < 0 or indices.max() >= indices.shape[0]):
        raise CorpusmapError("the kNN graph has missing (-1) or out-of-range neighbours; recompute it with "
                             "`corpusmap neighbors RUN` (exact search, or a larger nprobe/efSearch)")


def _quiet_library_loggers() -> None:
    # openTSNE logs every call at INFO ("KNN index provided...", "Automatically determined ..."); keep ours clean
    logging.getLogger("openTSNE").setLevel(logging.WARNING)


# ---------------------------------------------------------------------------------------------- PCA


def _blockwise(vectors, block_rows: int, work, threads: Optional[int] = None) -> list:
    """``work(start, float64 block)`` for every block, in threads with one-threaded BLAS each, results in block
    order: the same bytes whatever the number of threads (BLAS sums differently with more threads)."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(_threads(threads)) as pool:
        futures = [pool.submit(work, start, block) for start, block in iter_vector_blocks(vectors, block_rows)]
        return [f.result() for f in futures]


def pca_2d(vectors, block_rows: int = 65536, threads: Optional[int] = None) -> tuple[np.ndarray, dict]:
    """Exact 2-component PCA computed block by block (two passes over the vectors, float64).

    Deterministic, whatever the thread count: every block's sums and products use one-threaded BLAS and are added
    in block order, the eigenvectors come from a one-threaded LAPACK, and each component's sign is fixed so that
    its largest-magnitude loading is positive. The input is never changed. Returns float64 coordinates (n, 2)
    and an info dict (explained variance).
    """
    from threadpoolctl import threadpool_limits

    n, d = vectors.shape
    if n < 2:
        raise CorpusmapError("PCA needs at least 2 vectors")
    mean = np.sum(_blockwise(vectors, block_rows, lambda _, block: block.sum(axis=0), threads), axis=0) / n

    def scatter(_, block):
        block = block - mean
        return block.T @ block

    cov = np.zeros((d, d))
    for part in _blockwise(vectors, block_rows, scatter, threads):
        cov += part
    cov /= max(n - 1, 1)
    with threadpool_limits(1):
        eigval, eigvec = np.linalg.eigh(cov)
    order = np.argsort(eigval)[::-1][:2]
    components = eigvec[:, order]
    if components.shape[1] < 2:  # d == 1
        components = np.hstack([components, np.zeros((d, 2 - components.shape[1]))])
    signs = np.sign(components[np.abs(components).argmax(axis=0), np.arange(2)])
    components *= np.where(signs == 0, 1, signs)
    coords = np.empty((n, 2))
    for start, part in zip(range(0, n, block_rows),
                           _blockwise(vectors, block_rows, lambda _, block: (block - mean) @ components, threads)):
        coords[start:start + len(part)] = part
    total_var = float(np.trace(cov))
    explained = [float(eigval[i]) for i in order]
    info = {"explained_variance": explained,
            "explained_variance_ratio": [v / total_var if total_var > 0 else 0.0 for v in explained]}
    return coords, info


def pca_layout(vectors, seed: int = 42, block_rows: int = 65536) -> Layout:
    """The PCA baseline map: the first two principal components of the vectors."""
    t0 = time.perf_counter()
    coords, info = pca_2d(vectors, block_rows)
    return Layout(coords.astype(np.float32), {
        "method": "pca",
        "parameters": {"n_components": 2, "block_rows": block_rows, "seed": seed},
        "pca": info,
        "seconds": {"layout": time.perf_counter() - t0},
    })


def pca_initialization(vectors, seed: int = 42, target_std: float = 1e-4,
                       jitter: float = 0.01, block_rows: int = 65536) -> np.ndarray:
    """t-SNE initialisation: PCA scaled so the first coordinate has std ``target_std`` (1e-4, as in the
    landscape paper), plus seeded Gaussian jitter of ``jitter`` times that std so no two points coincide
    (as ``openTSNE.initialization.pca`` does). The seed only enters here."""
    coords, _ = pca_2d(vectors, block_rows)
    std = float(np.std(coords[:, 0]))
    coords *= target_std / std if std > 0 else 1.0
    rng = np.random.RandomState(seed)
    coords += rng.normal(0.0, target_std * jitter, coords.shape)
    return np.ascontiguousarray(coords)


# ---------------------------------------------------------------------------------------------- t-SNE


# Bounds far beyond any useful map, below the values that overflow openTSNE's optimiser (a crash, not an error):
# the automatic learning rate is n / 12 (1.75M at 21M points).
TSNE_MAX_EXAGGERATION = 1e4
TSNE_MAX_DOF = 1e3
TSNE_MAX_LEARNING_RATE = 1e9
UMAP_MAX_EPOCHS = 100_000


@dataclass(frozen=True)
class TsneParams:
    """t-SNE settings. The default schedule is openTSNE's (250 iterations at exaggeration 12, then ``n_iter``
    at ``exaggeration``); :meth:`preset` ``"landscape"`` is the PubMed-landscape schedule.

    Affinities: uniform on the ``k`` nearest neighbours (default 10, as in the landscape paper), or
    perplexity-based when ``perplexity`` is set (needing ``3 * perplexity`` stored neighbours).
    """

    k: int = 10
    perplexity: Optional[float] = None
    exaggeration: float = 1.0
    early_exaggeration: float = 12.0
    early_exaggeration_iter: int = 250
    anneal_iter: int = 0
    n_iter: int = 500
    dof: float = 1.0
    learning_rate: Union[float, str] = "auto"
    initial_momentum: float = 0.8
    final_momentum: float = 0.8
    gradient: str = "fft"
    symmetrize: str = "max"
    max_step_norm: Optional[float] = 5.0
    preset: Optional[str] = None

    @classmethod
    def preset_params(cls, name: Optional[str], **overrides) -> "TsneParams":
        """Settings of a named preset (or the defaults for ``None``), with ``overrides`` applied."""
        if name is None:
            base = cls()
        elif name == "landscape":
            # González-Márquez et al. 2024: uniform k=10 affinities; 125 iterations at exaggeration 12
            # (momentum 0.5), 125 annealing 12 -> 1 (momentum 0.8), then 2000 at 1 (momentum 0.8). Their run
            # (pubmed-landscape, Feb 2024) left openTSNE's Uniform(symmetrize=...) at its default, which up to
            # openTSNE 1.0.2 was the mean (P + P^T) / 2; since 1.0.3 the default is the max.
            base = cls(k=10, exaggeration=1.0, early_exaggeration=12.0, early_exaggeration_iter=125,
                       anneal_iter=125, n_iter=2000, initial_momentum=0.5, final_momentum=0.8,
                       learning_rate="auto", symmetrize="mean", preset="landscape")
        else:
            raise UsageProblem(f"unknown t-SNE preset {name!r}; choose from {', '.join(PRESETS)}")
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def validate(self) -> None:
        if self.k < 1:
            raise UsageProblem("-k must be at least 1")
        if self.perplexity is not None and not 1 <= self.perplexity <= 1e6:  # (below 1 openTSNE crashes)
            raise UsageProblem("--perplexity must lie in [1, 1e6] (about the number of neighbours that count)")
        for name in ("early_exaggeration_iter", "anneal_iter", "n_iter"):
            if getattr(self, name) < 0:
                raise UsageProblem(f"--{name.replace('_', '-')} cannot be negative")
        for name, top in (("exaggeration", TSNE_MAX_EXAGGERATION), ("early_exaggeration", TSNE_MAX_EXAGGERATION),
                          ("dof", TSNE_MAX_DOF)):
            if not 0 < getattr(self, name) <= top:
                raise UsageProblem(f"--{name.replace('_', '-')} must be positive and at most {top:g}")
        if self.gradient not in ("fft", "bh"):
            raise UsageProblem("--gradient must be fft or bh")
        if self.symmetrize not in SYMMETRIZE:
            raise UsageProblem(f"--symmetrize must be one of {', '.join(SYMMETRIZE)}")
        if not (self.learning_rate == "auto" or (isinstance(self.learning_rate, (int, float))
                                                 and 0 < self.learning_rate <= TSNE_MAX_LEARNING_RATE)):
            raise UsageProblem(f"--learning-rate must be 'auto' or a positive number of at most "
                               f"{TSNE_MAX_LEARNING_RATE:g}")

    def settings(self) -> dict:
        """The parameters that shaped the map, for its metadata (perplexity affinities use no ``k`` and no
        ``symmetrize``: those are the uniform affinities' own)."""
        out = asdict(self)
        if self.perplexity is not None:
            del out["k"], out["symmetrize"]
        return out

    def neighbours_needed(self) -> int:
        """Columns of the stored graph the affinities use."""
        if self.perplexity is not None:
            return int(math.ceil(3 * self.perplexity))
        return self.k

    def anneal_exaggerations(self) -> list[float]:
        """Exaggeration of each annealing iteration: linear from ``early_exaggeration`` to ``exaggeration``."""
        if self.anneal_iter <= 0:
            return []
        return [float(e) for e in np.linspace(self.early_exaggeration, self.exaggeration, self.anneal_iter)]


def _parse_learning_rate(value) -> Union[float, str]:
    if value is None or value == "auto":
        return "auto"
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UsageProblem(f"--learning-rate must be 'auto' or a number, not {value!r}") from None


def _regraph(run: str, need: int, n: Optional[int]) -> str:
    """The last way out of a graph with too few neighbours: a new graph, unless the run is too small for one."""
    if n is not None and need > n - 1:
        return f"; a run of {n:,} points has at most {n - 1} neighbours per point"
    return f", or recompute the graph with `corpusmap neighbors {run} -k {need} --overwrite`"


def check_k_for_tsne(params: TsneParams, stored_k: int, run: str = "RUN", n: Optional[int] = None) -> int:
    need = params.neighbours_needed()
    if need <= stored_k:
        return need
    if params.perplexity is not None:
        raise UsageProblem(
            f"--perplexity {params.perplexity:g} needs 3 x perplexity = {need} neighbours, but the stored kNN "
            f"graph has k={stored_k}; use --perplexity {stored_k / 3:.4g} or less, or uniform affinities "
            f"(leave out --perplexity){_regraph(run, need, n)}")
    raise UsageProblem(
        f"t-SNE with -k {params.k} needs {params.k} neighbours, but the stored kNN graph has k={stored_k}; "
        f"use -k {stored_k} or less{_regraph(run, params.k, n)}")


def tsne_affinities(indices: np.ndarray, distances: np.ndarray, params: TsneParams, metric: str = "euclidean",
                    threads: int = 1, knn_index=None):
    """openTSNE affinities built from the stored graph (its first ``params.neighbours_needed()`` columns)."""
    from openTSNE import affinity
    from openTSNE.nearest_neighbors import PrecomputedNeighbors

    need = check_k_for_tsne(params, indices.shape[1])
    idx = np.ascontiguousarray(indices[:, :need], dtype=np.int64)
    dist = _tsne_distances(distances[:, :need], metric)
    if knn_index is None:
        knn_index = PrecomputedNeighbors(idx, dist)
    else:
        knn_index.set_graph(idx, dist)
    _quiet_library_loggers()
    if params.perplexity is not None:
        return affinity.PerplexityBasedNN(perplexity=params.perplexity, knn_index=knn_index, n_jobs=threads,
                                          symmetrize=True)
    return affinity.Uniform(knn_index=knn_index, symmetrize=params.symmetrize, n_jobs=threads)


def _tsne_distances(distances: np.ndarray, metric: str) -> np.ndarray:
    """openTSNE's Gaussian kernel squares the distance; a cosine distance ``1 - s`` is a squared chord length
    up to a factor 2 (which the perplexity calibration absorbs), so pass its square root."""
    dist = np.asarray(distances, dtype=np.float64)
    if metric == "cosine":
        dist = np.sqrt(np.maximum(dist, 0.0))
    return np.ascontiguousarray(dist)


class _RecordingOptimizer:
    """Wraps openTSNE's gradient descent and records what each call actually ran (iterations, exaggeration,
    momentum, learning rate after openTSNE resolved 'auto')."""

    def __new__(cls):
        from openTSNE.tsne import gradient_descent

        class Recording(gradient_descent):
            def __init__(self):
                super().__init__()
                self.calls: list[dict] = []

            def __call__(self, embedding, P, n_iter, objective_function, learning_rate="auto", momentum=0.8,
                         exaggeration=None, **kwargs):
                self.calls.append({"n_iter": int(n_iter), "exaggeration": float(exaggeration or 1.0),
                                   "momentum": float(momentum), "learning_rate": float(learning_rate)})
                return super().__call__(embedding, P, n_iter, objective_function, learning_rate=learning_rate,
                                        momentum=momentum, exaggeration=exaggeration, **kwargs)

        return Recording()


def _summarise_calls(name: str, calls: list[dict], seconds: float) -> dict:
    exaggerations = [c["exaggeration"] for c in calls for _ in range(c["n_iter"])]
    momenta = sorted({c["momentum"] for c in calls})
    rates = [c["learning_rate"] for c in calls]
    phase = {"phase": name, "n_iter": len(exaggerations), "momentum": momenta[0] if len(momenta) == 1 else momenta,
             "seconds": round(seconds, 3)}
    if exaggerations and len(set(exaggerations)) == 1:
        phase["exaggeration"] = exaggerations[0]
    else:
        phase["exaggerations"] = exaggerations
    phase["learning_rate"] = rates[0] if len(set(rates)) == 1 else [min(rates), max(rates)]
    return phase


def tsne_layout(indices: np.ndarray, distances: np.ndarray, vectors=None, *, params: TsneParams = TsneParams(),
                metric: str = "euclidean", init: Optional[np.ndarray] = None, threads: Optional[int] = None,
                seed: int = 42, progress=None, chunk_iter: int = 50) -> Layout:
    """t-SNE with openTSNE from the stored kNN graph.

    ``vectors`` feed the PCA initialisation (or pass ``init``, an (n, 2) array, used as is). The optimisation
    runs in phases: early exaggeration, optional linear annealing (one iteration per exaggeration value), then
    the main run; each phase in chunks of ``chunk_iter`` iterations so ``progress.update`` can be called.
    Chunking keeps openTSNE's optimiser state (gains, momentum), so it is the same optimisation.
    """
    from openTSNE import TSNEEmbedding

    params.validate()
    threads = _threads(threads)
    n = indices.shape[0]
    check_graph(indices, distances)
    if n < 4:
        raise CorpusmapError("t-SNE needs at least 4 points")
    t0 = time.perf_counter()
    affinities = tsne_affinities(indices, distances, params, metric, threads)
    t_aff = time.perf_counter() - t0
    if init is None:
        if vectors is None:
            raise ValueError("tsne_layout needs `vectors` (for the PCA initialisation) or `init`")
        init = pca_initialization(vectors, seed=seed)
        init_name = "pca"
    else:
        init = np.ascontiguousarray(init, dtype=np.float64)
        init_name = "given"
    t_init = time.perf_counter() - t0 - t_aff

    optimizer = _RecordingOptimizer()
    embedding = TSNEEmbedding(init, affinities, dof=params.dof, negative_gradient_method=params.gradient,
                              random_state=seed, optimizer=optimizer, n_jobs=threads,
                              max_step_norm=params.max_step_norm, learning_rate=params.learning_rate)

    def run(n_iter: int, exaggeration: float, momentum: float, step: int) -> None:
        done = 0
        while done < n_iter:
            it = min(step, n_iter - done)
            embedding.optimize(it, exaggeration=exaggeration, momentum=momentum,
                               learning_rate=params.learning_rate, inplace=True)
            done += it
            if progress is not None:
                progress.update(it)

    schedule = []
    phases = [("early_exaggeration", params.early_exaggeration_iter)]
    for name, n_iter in phases:
        if n_iter:
            start, tp = len(optimizer.calls), time.perf_counter()
            run(n_iter, params.early_exaggeration, params.initial_momentum, chunk_iter)
            schedule.append(_summarise_calls(name, optimizer.calls[start:], time.perf_counter() - tp))
    if params.anneal_iter:
        start, tp = len(optimizer.calls), time.perf_counter()
        for exaggeration in params.anneal_exaggerations():
            run(1, exaggeration, params.final_momentum, 1)
        schedule.append(_summarise_calls("annealing", optimizer.calls[start:], time.perf_counter() - tp))
    if params.n_iter:
        start, tp = len(optimizer.calls), time.perf_counter()
        run(params.n_iter, params.exaggeration, params.final_momentum, chunk_iter)
        schedule.append(_summarise_calls("main", optimizer.calls[start:], time.perf_counter() - tp))

    coords = np.asarray(embedding, dtype=np.float32).copy()
    if not np.isfinite(coords).all():
        raise CorpusmapError("t-SNE diverged (non-finite coordinates); try a smaller --learning-rate")
    stored_k = indices.shape[1]
    info = {
        "method": "tsne",
        "parameters": {**params.settings(), "threads": threads, "seed": seed, "metric": metric,
                       "initialization": init_name,
                       "affinities": ("perplexity" if params.perplexity is not None else "uniform"),
                       "neighbours_used": params.neighbours_needed(), "stored_k": stored_k},
        "schedule": schedule,
        "total_iterations": int(sum(p["n_iter"] for p in schedule)),
        "seconds": {"affinities": round(t_aff, 3), "initialization": round(t_init, 3),
                    "optimization": round(sum(p["seconds"] for p in schedule), 3),
                    "layout": round(time.perf_counter() - t0, 3)},
    }
    return Layout(coords, info)


# ---------------------------------------------------------------------------------------------- t-SNE: add points


def nearest_in(base, queries: np.ndarray, k: int, metric: str = "euclidean", threads: Optional[int] = None,
               block_rows: int = 262144) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest rows of ``base`` for each query (new points, not rows of ``base``), the base read block
    by block. Distances as in the stored graph: true L2 for euclidean, ``1 - similarity`` for cosine."""
    from corpusmap.knn import faiss_threads, search_vectors, to_distance
    from corpusmap.vectors import normalize_rows

    if metric not in ("euclidean", "cosine"):
        raise CorpusmapError(f"unsupported kNN metric {metric!r} (euclidean or cosine)")
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if metric == "cosine":
        q = normalize_rows(q)
    with faiss_threads(_threads(threads)):
        ind, raw = search_vectors(base, q, min(k, base.shape[0]), metric, block_rows=block_rows)
    return ind, to_distance(raw, metric)


class _ReferenceIndex:
    """An openTSNE KNNIndex whose graph is the stored one and whose queries are exact FAISS searches
    against the reference run's vectors."""

    def __new__(cls, reference_vectors, metric: str, threads: int):
        from openTSNE.nearest_neighbors import KNNIndex

        class ReferenceIndex(KNNIndex):
            def __init__(self):  # noqa: D401 - no data matrix copy, unlike KNNIndex
                self.data = reference_vectors
                self.n_samples = reference_vectors.shape[0]
                self.metric = metric
                self.n_jobs = threads
                self.k = 0
                self.indices = self.distances = None

            def set_graph(self, indices, distances):
                self.indices, self.distances = indices, distances
                self.k = indices.shape[1]

            def build(self):
                return self.indices, self.distances

            def query(self, query, k):
                idx, dist = nearest_in(self.data, query, k, metric, threads)
                return idx, _tsne_distances(dist, metric)

        return ReferenceIndex()


@dataclass(frozen=True)
class TransformParams:
    """Placing new points into a finished map (openTSNE's ``transform`` defaults): each new point is optimised
    against the fixed reference points only; the reference points never move."""

    n_iter: int = 250
    early_exaggeration_iter: int = 0
    early_exaggeration: float = 4.0
    exaggeration: float = 1.5
    learning_rate: float = 0.1
    momentum: float = 0.8
    max_grad_norm: float = 0.25
    initialization: str = "median"
    init_k: int = 25
    perplexity: float = 5.0  # only for perplexity-based maps, as openTSNE's transform


def tsne_add_layout(reference_coords: np.ndarray, indices: np.ndarray, distances: np.ndarray, reference_vectors,
                    new_vectors: np.ndarray, *, map_params: TsneParams, metric: str = "euclidean",
                    transform: TransformParams = TransformParams(), threads: Optional[int] = None,
                    seed: int = 42) -> Layout:
    """Place ``new_vectors`` into an existing t-SNE map without moving its points.

    The reference :class:`openTSNE.TSNEEmbedding` is rebuilt (nothing is pickled) from the stored map
    coordinates and affinities from the stored graph with the map's own parameters; the new points' neighbours
    among the reference vectors come from an exact FAISS search. Positions are returned in the stored map's
    coordinate frame.
    """
    from openTSNE import TSNEEmbedding

    threads = _threads(threads)
    t0 = time.perf_counter()
    check_graph(indices, distances, n=reference_coords.shape[0])
    if reference_vectors.shape[0] != reference_coords.shape[0]:
        raise CorpusmapError("the map and the run's vectors have different numbers of rows")
    knn_index = _ReferenceIndex(reference_vectors, metric, threads)
    affinities = tsne_affinities(indices, distances, map_params, metric, threads, knn_index=knn_index)
    ref = np.asarray(reference_coords, dtype=np.float64)
    # openTSNE centres the reference embedding in place before placing points; centre a copy ourselves and
    # shift the new positions back, so they are in the stored map's frame
    centre = (ref.max(axis=0) + ref.min(axis=0)) / 2
    embedding = TSNEEmbedding(ref - centre, affinities, dof=map_params.dof, negative_gradient_method="fft",
                              random_state=seed, n_jobs=threads)
    new = np.ascontiguousarray(new_vectors, dtype=np.float32)
    affinity_params = {} if map_params.perplexity is None else {"perplexity": transform.perplexity}
    k_init = transform.init_k if map_params.perplexity is not None else min(transform.init_k, map_params.k)
    partial = embedding.prepare_partial(new, initialization=transform.initialization, k=k_init, **affinity_params)
    t_prepare = time.perf_counter() - t0
    common = dict(learning_rate=transform.learning_rate, momentum=transform.momentum, inplace=True,
                  max_grad_norm=transform.max_grad_norm, n_jobs=threads)
    if transform.early_exaggeration_iter:
        partial.optimize(transform.early_exaggeration_iter, exaggeration=transform.early_exaggeration, **common)
    if transform.n_iter:
        partial.optimize(transform.n_iter, exaggeration=transform.exaggeration, **common)
    coords = (np.asarray(partial, dtype=np.float64) + centre).astype(np.float32)
    info = {
        "method": "tsne-transform",
        "parameters": {**asdict(transform), "threads": threads, "seed": seed, "metric": metric,
                       "reference_affinities": ("perplexity" if map_params.perplexity is not None else "uniform"),
                       "reference_k": map_params.neighbours_needed()},
        "schedule": [p for p in (
            {"phase": "early_exaggeration", "n_iter": transform.early_exaggeration_iter,
             "exaggeration": transform.early_exaggeration, "momentum": transform.momentum},
            {"phase": "main", "n_iter": transform.n_iter, "exaggeration": transform.exaggeration,
             "momentum": transform.momentum}) if p["n_iter"]],
        "seconds": {"prepare": round(t_prepare, 3), "layout": round(time.perf_counter() - t0, 3)},
    }
    return Layout(coords, info)


# ---------------------------------------------------------------------------------------------- UMAP


@dataclass(frozen=True)
class UmapParams:
    """UMAP settings. ``n_neighbors`` counts the point itself, as umap-learn does, so it can be at most the
    stored k + 1. With a seed umap-learn runs single-threaded and is reproducible; ``seed=None`` lets it use
    every thread, faster but different each run."""

    n_neighbors: int = 15
    min_dist: float = 0.1
    spread: float = 1.0
    n_epochs: Optional[int] = None
    init: str = "auto"  # see :meth:`resolved`
    preset: Optional[str] = None

    def resolved(self, n: int, device: str = "cpu") -> "UmapParams":
        """``init="auto"`` made concrete for ``n`` points: umap-learn's spectral start up to
        :data:`UMAP_SPECTRAL_MAX_N` points (and always on a GPU, where cuML's is fast), PCA above, where the
        spectral start's eigenproblem is what does not scale (it had not finished after 54 minutes on 1M points,
        ``bench/bench_scale.py``). A PCA start keeps the global structure as well (Kobak & Linderman, Nature
        Biotechnology 2021)."""
        if self.init != "auto":
            return self
        spectral = device == "cuda" or n <= UMAP_SPECTRAL_MAX_N
        return replace(self, init="spectral" if spectral else "pca")

    @classmethod
    def preset_params(cls, name: Optional[str], **overrides) -> "UmapParams":
        """The landscape paper compared t-SNE with UMAP(n_neighbors=10), umap-learn's defaults otherwise."""
        if name not in (None,) + PRESETS:
            raise UsageProblem(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
        base = cls(n_neighbors=10, preset=name) if name == "landscape" else cls()
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def validate(self) -> None:
        if self.n_neighbors < 2:
            raise UsageProblem("--n-neighbors must be at least 2")
        if not 0 <= self.min_dist <= self.spread:
            raise UsageProblem("--min-dist must be between 0 and the spread (1)")
        if self.n_epochs is not None and not 1 <= self.n_epochs <= UMAP_MAX_EPOCHS:
            raise UsageProblem(f"--n-epochs must be between 1 and {UMAP_MAX_EPOCHS:,}")
        if self.init not in UMAP_INITS:
            raise UsageProblem(f"--umap-init {self.init!r}: choose from {', '.join(UMAP_INITS)}")


# umap-learn's initialisations. spectral: eigenvectors of the graph Laplacian (ARPACK; its default, which had not
# finished after 54 min on 1M points in bench/bench_scale.py); tswspectral: the same warm-started from a truncated
# SVD, for large graphs; pca; random. auto: spectral up to UMAP_SPECTRAL_MAX_N points, pca above.
UMAP_INITS = ("auto", "spectral", "tswspectral", "pca", "random")
UMAP_SPECTRAL_MAX_N = 300_000  # measured: the spectral start at 300k points took part of a 361 s map


def import_umap():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import umap  # noqa: F401
    except ImportError:
        raise CorpusmapError(UMAP_INSTALL_HINT) from None
    return umap


def check_k_for_umap(params: UmapParams, stored_k: int, run: str = "RUN", n: Optional[int] = None) -> None:
    if params.n_neighbors > stored_k + 1:
        raise UsageProblem(
            f"--n-neighbors {params.n_neighbors} needs {params.n_neighbors - 1} neighbours besides the point "
            f"itself, but the stored kNN graph has k={stored_k}; use --n-neighbors {stored_k + 1} or less"
            f"{_regraph(run, params.n_neighbors - 1, n)}")


def knn_with_self(indices: np.ndarray, distances: np.ndarray, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
    """umap-learn's layout of a kNN graph: the point itself in column 0 at distance 0, then its
    ``n_neighbors - 1`` nearest neighbours."""
    n = indices.shape[0]
    idx = np.empty((n, n_neighbors), dtype=np.int64)
    dist = np.empty((n, n_neighbors), dtype=np.float32)
    idx[:, 0] = np.arange(n)
    dist[:, 0] = 0.0
    idx[:, 1:] = indices[:, :n_neighbors - 1]
    dist[:, 1:] = distances[:, :n_neighbors - 1]
    return idx, dist


def umap_default_epochs(n: int) -> int:
    """The epochs umap-learn runs when ``n_epochs`` is not given (its ``simplicial_set_embedding``: 500 up to
    10,000 points, else 200)."""
    return 500 if n <= 10_000 else 200


def umap_layout(indices: np.ndarray, distances: np.ndarray, vectors, *, params: UmapParams = UmapParams(),
                metric: str = "euclidean", threads: Optional[int] = None, seed: Optional[int] = 42) -> Layout:
    """UMAP with umap-learn from the stored kNN graph (``precomputed_knn``; no second neighbour search).

    umap-learn still receives the vectors: it needs their row count, and it lays out disconnected components
    of the graph from their centroids.
    """
    params.validate()
    check_graph(indices, distances)
    params = params.resolved(len(indices))
    stored_k = indices.shape[1]
    check_k_for_umap(params, stored_k)
    umap = import_umap()
    threads = _threads(threads)
    t0 = time.perf_counter()
    X = vectors_to_numpy(vectors)
    idx, dist = knn_with_self(indices, distances, params.n_neighbors)
    reducer = umap.UMAP(n_neighbors=params.n_neighbors, min_dist=params.min_dist, spread=params.spread,
                        n_epochs=params.n_epochs, init=params.init, metric=metric, random_state=seed,
                        n_jobs=1 if seed is not None else threads, precomputed_knn=(idx, dist, None),
                        low_memory=True, verbose=False)
    from threadpoolctl import threadpool_limits

    # with a seed, one-threaded BLAS too (its spectral initialisation), so the map does not depend on the cores
    limits = threadpool_limits(1, user_api="blas") if seed is not None else contextlib.nullcontext()
    with warnings.catch_warnings(), limits:
        # "no search index: transform unavailable" and "n_jobs overridden by random_state" are expected
        warnings.simplefilter("ignore")
        coords = reducer.fit_transform(X)
    coords = np.asarray(coords, dtype=np.float32)
    if not np.isfinite(coords).all():
        raise CorpusmapError("UMAP produced non-finite coordinates")
    info = {
        "method": "umap",
        "parameters": {**asdict(params), "metric": metric, "seed": seed,
                       "threads": 1 if seed is not None else threads, "stored_k": stored_k,
                       "n_epochs_used": int(reducer.n_epochs) if getattr(reducer, "n_epochs", None) else
                       umap_default_epochs(len(coords)),
                       "deterministic": seed is not None},
        "seconds": {"layout": round(time.perf_counter() - t0, 3)},
    }
    return Layout(coords, info)


CUML_HINT = ("--device cuda lays maps out with RAPIDS cuML, which is not installed: pip install 'corpusmap[gpu]' "
             "(CUDA 12; see docs.rapids.ai for other CUDA versions), or use --device cpu")


def import_cuml():
    try:
        import cuml  # noqa: F401
        import cupy  # noqa: F401
        import cupyx.scipy.sparse  # noqa: F401
    except ImportError:
        raise CorpusmapError(CUML_HINT) from None
    return cuml


def _knn_csr(indices: np.ndarray, distances: np.ndarray, k: int):
    """The first ``k`` neighbours of the stored graph as the (n, n) sparse distance matrix cuML takes."""
    import scipy.sparse

    n = indices.shape[0]
    rows = np.repeat(np.arange(n), k)
    return scipy.sparse.csr_matrix((np.asarray(distances[:, :k], np.float32).ravel(),
                                    (rows, np.asarray(indices[:, :k]).ravel())), shape=(n, n))


def cuml_tsne_layout(indices: np.ndarray, distances: np.ndarray, vectors, *, params: TsneParams, seed: int = 42
                     ) -> Layout:
    """t-SNE on the GPU with cuML, fed the stored graph (``knn_graph``), so the neighbours stay the FAISS ones.

    cuML's t-SNE is perplexity-based only (``perplexity`` default 30, or k/3 of the stored k when smaller) and its
    FFT gradients use atomics: the same seed does not give the same bytes (cuML documents it).
    """
    cuml = import_cuml()
    t0 = time.perf_counter()
    k = indices.shape[1]
    perplexity = params.perplexity or min(30.0, k / 3)
    X = vectors_to_numpy(vectors)
    rate = params.learning_rate if params.learning_rate != "auto" else len(X) / params.early_exaggeration
    model = cuml.manifold.TSNE(n_components=2, perplexity=perplexity, n_neighbors=k, method="fft",
                               learning_rate=rate, early_exaggeration=params.early_exaggeration,
                               exaggeration_iter=params.early_exaggeration_iter,
                               n_iter=params.early_exaggeration_iter + params.anneal_iter + params.n_iter,
                               random_state=seed, init="pca", verbose=False)
    coords = model.fit_transform(X, knn_graph=_knn_csr(indices, distances, k))
    coords = np.asarray(getattr(coords, "get", lambda: coords)(), dtype=np.float32)
    return Layout(coords, {"method": "tsne", "parameters": {**params.settings(), "device": "cuda", "seed": seed,
                                                             "perplexity_used": perplexity, "stored_k": k,
                                                             "deterministic": False},
                           "seconds": {"layout": round(time.perf_counter() - t0, 3)}})


def cuml_umap_layout(indices: np.ndarray, distances: np.ndarray, vectors, *, params: UmapParams, seed: int = 42
                     ) -> Layout:
    """UMAP on the GPU with cuML from the stored graph (``knn_graph``). With ``random_state`` cuML's UMAP is
    reproducible, but its bytes differ from umap-learn's."""
    cuml = import_cuml()
    t0 = time.perf_counter()
    check_k_for_umap(params, indices.shape[1])
    params = params.resolved(len(indices), "cuda")
    if params.init not in ("spectral", "random"):
        raise UsageProblem(f"--device cuda: cuML's UMAP starts from spectral or random, not --umap-init {params.init}")
    X = vectors_to_numpy(vectors)
    idx, dist = knn_with_self(indices, distances, params.n_neighbors)
    model = cuml.manifold.UMAP(n_neighbors=params.n_neighbors, min_dist=params.min_dist, spread=params.spread,
                               n_epochs=params.n_epochs, init=params.init, random_state=seed, verbose=False)
    coords = model.fit_transform(X, knn_graph=_knn_csr(idx, dist, params.n_neighbors))
    coords = np.asarray(getattr(coords, "get", lambda: coords)(), dtype=np.float32)
    return Layout(coords, {"method": "umap", "parameters": {**asdict(params), "device": "cuda", "seed": seed,
                                                             "deterministic": True},
                           "seconds": {"layout": round(time.perf_counter() - t0, 3)}})


def umap_add_layout(reference_coords: np.ndarray, reference_vectors, new_vectors: np.ndarray, *,
                    map_params: UmapParams, metric: str = "euclidean", threads: Optional[int] = None,
                    seed: int = 42) -> Layout:
    """Place ``new_vectors`` into an existing UMAP map without moving its points: umap-learn's own ``transform``
    (the fuzzy graph of each new point's exact nearest reference points, the weighted-mean initialisation,
    then epochs against the fixed reference points), fed exact FAISS neighbours instead of its search index, so it
    works for maps made from the stored graph."""
    import scipy.sparse

    U = import_umap().umap_

    t0 = time.perf_counter()
    threads = _threads(threads)
    k = map_params.n_neighbors
    ref = np.ascontiguousarray(reference_coords, dtype=np.float32)
    if as_vectors(reference_vectors).shape[0] != ref.shape[0]:
        raise CorpusmapError("the map and the run's vectors have different numbers of rows")
    indices, dists = nearest_in(reference_vectors, new_vectors, k, metric, threads)
    dists = np.ascontiguousarray(dists, dtype=np.float32)
    sigmas, rhos = U.smooth_knn_dist(dists, float(k), local_connectivity=0.0)
    rows, cols, vals, _ = U.compute_membership_strengths(indices.astype(np.int32), dists, sigmas, rhos,
                                                           bipartite=True)
    graph = scipy.sparse.coo_matrix((vals, (rows, cols)), shape=(len(indices), len(ref)))
    csr = graph.tocsr()
    csr.eliminate_zeros()
    embedding = U.init_graph_transform(csr, ref)
    n_epochs = max(1, map_params.n_epochs // 3) if map_params.n_epochs else (100 if graph.shape[0] <= 10_000 else 30)
    graph.data[graph.data < graph.data.max() / float(n_epochs)] = 0.0
    graph.eliminate_zeros()
    a, b = U.find_ab_params(map_params.spread, map_params.min_dist)
    rng_state = np.random.RandomState(seed).randint(np.iinfo(np.int32).min + 1, np.iinfo(np.int32).max - 1,
                                                    3).astype(np.int64)
    embedding = U.optimize_layout_euclidean(
        np.ascontiguousarray(embedding, dtype=np.float32), ref.copy(), graph.row, graph.col, n_epochs,
        graph.shape[1], U.make_epochs_per_sample(graph.data, n_epochs), a, b, rng_state, 1.0, 0.25, 5,
        False, verbose=False)
    coords = np.asarray(embedding, dtype=np.float32)
    if not np.isfinite(coords).all():
        raise CorpusmapError("UMAP placed points at non-finite coordinates")
    info = {"method": "umap-transform",
            "parameters": {"reference_n_neighbors": k, "n_epochs": int(n_epochs), "metric": metric, "seed": seed,
                           "threads": threads, "a": float(a), "b": float(b)},
            "seconds": {"layout": round(time.perf_counter() - t0, 3)}}
    return Layout(coords, info)


def placement_recall(reference_coords: np.ndarray, reference_vectors, new_coords: np.ndarray,
                     new_vectors: np.ndarray, k: int = 10, metric: str = "euclidean",
                     threads: Optional[int] = None) -> float:
    """How well added points sit: the mean fraction of each new point's k exact high-D neighbours among the
    reference points that are also among its k nearest reference points in the map."""
    from scipy.spatial import cKDTree

    high, _ = nearest_in(reference_vectors, new_vectors, k, metric, threads)
    _, low = cKDTree(np.asarray(reference_coords, dtype=np.float64)).query(np.asarray(new_coords, np.float64), k)
    low = np.asarray(low).reshape(len(new_coords), k)
    return float(np.mean([len(set(h) & set(lw)) / k for h, lw in zip(high, low)]))


__all__ = ["Layout", "TsneParams", "UmapParams", "TransformParams", "METHODS", "PRESETS", "pca_2d",
           "pca_layout", "pca_initialization", "tsne_affinities", "tsne_layout", "tsne_add_layout",
           "umap_add_layout", "placement_recall",
           "umap_layout", "knn_with_self", "check_k_for_tsne", "check_k_for_umap", "nearest_in",
           "default_threads", "check_graph"]
