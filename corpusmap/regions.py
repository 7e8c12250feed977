"""Regions of a map as nested clusterings, arrays in and arrays out (the stage is :mod:`corpusmap.clusters`).

* :func:`leiden_levels`: communities of the high-D kNN graph with Leiden (``leidenalg`` on an ``igraph`` graph), the
  RB-configuration (modularity with a resolution γ) quality, at several resolutions. The finest level is found
  first; each coarser level is Leiden run on the graph aggregated by the level below it (each node a cluster, its
  edges summed, ``leidenalg``'s own aggregation so the quality is the same), so every fine cluster lies inside
  exactly one coarse cluster; by default each coarser level has about 4 times fewer clusters, counted as the
  *effective* number of clusters (see :func:`effective_count`), so that a level of one giant cluster and a few
  crumbs does not pass for four regions. Deterministic for a seed: leidenalg is single-threaded.
* :func:`hdbscan_levels`: density clusters of 2D map coordinates (scikit-learn's HDBSCAN) for decreasing minimum
  cluster sizes; nested by putting each fine cluster whole into the coarse cluster that holds most of its points
  (or into a coarse cluster of its own when most of them are coarse noise).

Clusters are numbered per level by size (0 = largest; ties by their first row); -1 is "no cluster" (HDBSCAN noise).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from corpusmap.errors import CorpusmapError, UsageProblem

WEIGHTS = ("uniform", "distance")
FINE_RESOLUTION = 2.0  # the finest level's default resolution (RB configuration, 1 = modularity)
LEVEL_FACTOR = 4.0     # by default each level has about this many times fewer clusters than the one below ...
MIN_TOP_CLUSTERS = 4   # ... but the coarsest level has at least this many (when the finest has more)
                       # (both in effective numbers of clusters)


def effective_count(labels: np.ndarray, sizes: np.ndarray | None = None) -> float:
    """The effective number of clusters, 1 / Σ_c s_c² (s_c: cluster c's share of the points; the inverse Simpson
    index): n equal clusters give n, one cluster of 98% and three crumbs about 1.04. ``sizes``: the points each
    labelled item stands for (nodes of an aggregated graph), default one each."""
    counts = np.bincount(np.asarray(labels), weights=sizes)
    share = counts / counts.sum()
    return float(1.0 / np.sum(share * share))


def knn_edges(indices: np.ndarray, distances: np.ndarray, k: int, weights: str = "uniform"):
    """The symmetrised kNN graph ``A + Aᵀ`` of the first ``k`` neighbours: ``(edges (m, 2) with i < j, weights)``.

    ``uniform``: every directed neighbour link counts 1 (a mutual pair 2). ``distance``: a link counts
    ``exp(-d² / (σ_i σ_j))``, σ_i the distance of point i to its k-th neighbour (self-tuning local scale).
    """
    if weights not in WEIGHTS:
        raise UsageProblem(f"--weights must be one of {', '.join(WEIGHTS)}, not {weights!r}")
    n = indices.shape[0]
    nb = np.asarray(indices[:, :k], dtype=np.int64)
    rows = np.repeat(np.arange(n, dtype=np.int64), nb.shape[1])
    cols = nb.ravel()
    if weights == "uniform":
        w = np.ones(rows.size, dtype=np.float64)
    else:
        d = np.asarray(distances[:, :k], dtype=np.float64)
        sigma = np.maximum(d[:, -1], 1e-12)
        w = np.exp(-(d.ravel() ** 2) / (sigma[rows] * sigma[cols]))
    lo, hi = np.minimum(rows, cols), np.maximum(rows, cols)
    keep = lo != hi
    key = lo[keep] * n + hi[keep]
    order = np.argsort(key, kind="stable")
    key, w = key[order], w[keep][order]
    uniq, start = np.unique(key, return_index=True)
    summed = np.add.reduceat(w, start) if len(w) else w
    return np.column_stack([uniq // n, uniq % n]), summed


def number_by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber cluster labels so that 0 is the largest cluster (ties: the one whose first row comes first);
    -1 stays -1."""
    labels = np.asarray(labels, dtype=np.int64)
    valid = labels >= 0
    if not valid.any():
        return labels.copy()
    uniq, first, counts = np.unique(labels[valid], return_index=True, return_counts=True)
    first_row = np.flatnonzero(valid)[first]
    order = np.lexsort((first_row, -counts))
    new = np.empty(uniq.max() + 1, dtype=np.int64)
    new[uniq[order]] = np.arange(len(uniq))
    out = np.full(labels.shape, -1, dtype=np.int64)
    out[valid] = new[labels[valid]]
    return out


def leiden_levels(indices: np.ndarray, distances: np.ndarray, resolutions: Sequence[float] = (), *, k: int,
                  levels: int = 3, weights: str = "uniform", seed: int = 42, iterations: int = -1,
                  fine_resolution: float = FINE_RESOLUTION, factor: float = LEVEL_FACTOR
                  ) -> tuple[list[np.ndarray], list[float]]:
    """Nested Leiden clusterings, coarse to fine, and the resolution of each level.

    ``resolutions`` (ascending) gives every level's resolution. Without them the finest level uses
    ``fine_resolution``, and the ``levels - 1`` coarser ones aim at effective cluster counts (:func:`effective_count`)
    spaced geometrically from the finest level's F down to max(F / factor^(levels-1), 4): each uses the resolution
    whose clustering of the level below comes closest to its count (bisection on the small aggregated graph).
    ``iterations``: Leiden passes per run (-1: until converged, see :func:`_optimise`).
    """
    import igraph as ig
    import leidenalg as la

    if any(r <= 0 for r in resolutions):
        raise UsageProblem("--resolution takes positive numbers, e.g. 0.2,1,5")
    resolutions = sorted(float(r) for r in resolutions)
    n = indices.shape[0]
    edges, w = knn_edges(indices, distances, k, weights)
    graph = ig.Graph(n=n, edges=edges, directed=False, edge_attrs={"weight": w})
    optimiser = la.Optimiser()
    optimiser.set_rng_seed(int(seed) & 0x7FFFFFFF)
    finest = resolutions[-1] if resolutions else float(fine_resolution)
    partition = la.RBConfigurationVertexPartition(graph, weights="weight", resolution_parameter=finest)
    _optimise(optimiser, partition, iterations)
    node_labels = np.asarray(partition.membership, dtype=np.int64)
    found, used = [node_labels], [finest]
    coarser = list(reversed(resolutions[:-1])) if resolutions else [None] * (levels - 1)
    fine_count = effective_count(node_labels)
    top = max(min(MIN_TOP_CLUSTERS, fine_count), fine_count / factor ** (levels - 1), 1.0)
    # target counts spaced geometrically from the finest level's count down to the top level's
    targets = [top * (fine_count / top) ** (i / max(levels - 1, 1)) for i in range(levels - 1)][::-1]
    for position, resolution in enumerate(coarser):
        if resolution is None:
            resolution = _resolution_for(partition, optimiser, targets[position], used[-1], iterations,
                                         np.bincount(node_labels).astype(np.float64))
        partition = partition.aggregate_partition()  # one node per cluster of the level below
        partition.resolution_parameter = resolution
        _optimise(optimiser, partition, iterations)
        node_labels = np.asarray(partition.membership, dtype=np.int64)[node_labels]
        found.append(node_labels)
        used.append(float(resolution))
    return [number_by_size(labels) for labels in reversed(found)], list(reversed(used))


CONVERGED = 1e-3  # a Leiden pass that adds less than this share of the quality ends the optimisation


def _optimise(optimiser, partition, iterations: int) -> None:
    """``iterations`` Leiden passes, or for -1 passes until one improves the quality by less than
    :data:`CONVERGED` of its value. leidenalg's own -1 (until a pass improves nothing) kept going on 100,000
    points for 12+ passes of 8 s each that moved the quality by 1e-5 and the cluster count by one."""
    if iterations >= 0:
        optimiser.optimise_partition(partition, n_iterations=iterations)
        return
    while True:
        gain = optimiser.optimise_partition(partition, n_iterations=1)
        if gain <= CONVERGED * abs(partition.quality()):
            return


def _resolution_for(partition, optimiser, target: float, upper: float, iterations: int, sizes: np.ndarray,
                    steps: int = 14, close: float = 0.02) -> float:
    """The resolution (below ``upper``) whose Leiden clustering of ``partition``'s aggregated graph has the
    effective number of clusters closest to ``target`` (in ratio; ``sizes``: points per node): bisection on
    log(resolution), ending early within ``close``."""
    lo, hi = np.log(upper) - 12.0, np.log(upper)
    best, best_gap = upper, None
    for _ in range(steps):
        mid = (lo + hi) / 2
        trial = partition.aggregate_partition()
        trial.resolution_parameter = float(np.exp(mid))
        _optimise(optimiser, trial, iterations)
        count = effective_count(np.asarray(trial.membership), sizes)
        gap = abs(np.log(count / target))
        if best_gap is None or gap < best_gap:
            best, best_gap = float(np.exp(mid)), gap
        if gap < close:
            break
        if count > target:
            hi = mid
        else:
            lo = mid
    return float(f"{best:.4g}")


def hdbscan_levels(coords: np.ndarray, min_sizes: Sequence[int], *, min_samples: int | None = None
                   ) -> list[np.ndarray]:
    """HDBSCAN of 2D coordinates for each minimum cluster size (descending: coarse to fine), made nested;
    ``min_samples`` (None: each size itself, scikit-learn's default) sets the neighbours of the density estimate."""
    from sklearn.cluster import HDBSCAN

    if not min_sizes or any(int(m) < 2 for m in min_sizes):
        raise UsageProblem("--min-cluster-size takes whole numbers of at least 2, e.g. 500,50")
    sizes = sorted({int(m) for m in min_sizes}, reverse=True)
    coords = np.ascontiguousarray(coords, dtype=np.float64)
    if len(coords) < 2 * sizes[-1]:
        raise UsageProblem(f"--min-cluster-size {sizes[-1]:,}: {len(coords):,} points are too few for clusters of "
                           f"at least that size; give sizes below {len(coords) // 2:,}")
    raw = [HDBSCAN(min_cluster_size=m, min_samples=min_samples, copy=True).fit(coords).labels_ for m in sizes]
    for m, labels in zip(sizes, raw):
        if labels.max() < 0:
            raise CorpusmapError(f"HDBSCAN found no cluster of at least {m:,} points; use a smaller "
                                 "--min-cluster-size" + ("" if min_samples else ", or a small --min-samples "
                                                         "(e.g. 10) for larger regions"))
    levels = [number_by_size(raw[-1])]
    for m, labels in zip(sizes[-2::-1], reversed(raw[:-1])):  # from the finest up: coarse levels hold fine clusters
        fine = levels[0]
        coarse = number_by_size(labels)
        parent = majority(coarse, fine)
        lonely = np.flatnonzero(parent < 0)  # a fine cluster mostly in coarse noise: a coarse cluster for now
        parent[lonely] = coarse.max() + 1 + np.arange(len(lonely))
        nested = coarse.copy()
        inside = fine >= 0
        nested[inside] = parent[fine[inside]]
        levels.insert(0, number_by_size(_merge_small(nested, coords, m)))
    return levels


def _merge_small(nested: np.ndarray, coords: np.ndarray, min_size: int) -> np.ndarray:
    """Coarse clusters left with fewer than ``min_size`` points once they hold whole fine clusters (a fine cluster
    in coarse noise made its own, or one that lost most points to the majority parent of its fine clusters) join,
    whole, the large coarse cluster of the point nearest to their centre: the levels stay nested and every
    cluster keeps the level's minimum size."""
    from sklearn.neighbors import KDTree

    inside = nested >= 0
    sizes = np.bincount(nested[inside])
    big = np.flatnonzero(sizes >= min_size)
    if not len(big):
        big = np.array([int(sizes.argmax())])
    small = np.flatnonzero((sizes > 0) & (sizes < min_size) & ~np.isin(np.arange(len(sizes)), big))
    if not len(small):
        return nested
    sums = np.zeros((len(sizes), coords.shape[1]))
    np.add.at(sums, nested[inside], coords[inside])
    centres = sums[small] / sizes[small, None]
    in_big = np.flatnonzero(np.isin(nested, big))
    nearest = KDTree(coords[in_big]).query(centres, k=1, return_distance=False)[:, 0]
    target = np.arange(len(sizes))
    target[small] = nested[in_big[nearest]]
    out = nested.copy()
    out[inside] = target[nested[inside]]
    return out


def majority(coarse: np.ndarray, fine: np.ndarray) -> np.ndarray:
    """For each fine cluster, the coarse label most of its points carry (-1 where they are mostly unclustered)."""
    valid = fine >= 0
    if not valid.any():
        return np.zeros(0, dtype=np.int64)
    n_fine = int(fine.max()) + 1
    shift = coarse[valid] + 1  # -1 -> 0
    counts = np.zeros((n_fine, int(coarse.max()) + 2), dtype=np.int64)
    np.add.at(counts, (fine[valid], shift), 1)
    return counts.argmax(axis=1) - 1


def parents(levels: list[np.ndarray]) -> list[np.ndarray]:
    """For each level, each cluster's parent in the level above (-1 for the top level); checks the nesting."""
    out = [np.full(int(levels[0].max()) + 1 if levels[0].size and levels[0].max() >= 0 else 0, -1, dtype=np.int64)]
    for above, below in zip(levels, levels[1:]):
        n_below = int(below.max()) + 1 if below.size and below.max() >= 0 else 0
        parent = np.full(n_below, -1, dtype=np.int64)
        valid = below >= 0
        parent[below[valid]] = above[valid]
        pairs = np.unique(np.column_stack([below[valid], above[valid]]), axis=0)
        if len(pairs) != len(np.unique(below[valid])):
            raise CorpusmapError("the levels are not nested: a cluster lies in two clusters of the level above")
        out.append(parent)
    return out
