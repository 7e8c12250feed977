"""Colours for the regions of a map when there are more regions than palette colours: each region gets one of
the palette's colours so that regions touching on the map differ (the figures of ``plot`` and the page alike)."""
from __future__ import annotations

import numpy as np


def region_colours(codes: np.ndarray, x: np.ndarray, y: np.ndarray, k: int, colours: int) -> np.ndarray:
    """A palette index (0 … ``colours`` − 1) per region (code 0 … ``k`` − 1; negative codes belong to none).

    Two regions touch where cells they own on a grid over the map (a cell belongs to the region with most points
    in it; about 4 points a cell, at most 128 x 128 cells) lie within two cells of each other, so that a thin gap
    between two regions does not part them; weighted by how many such cell pairs there are. Largest
    region first, each takes the colour it shares least with the regions it touches, among those the colour
    fewest regions have so far (so that the ``colours`` largest regions all differ), then the lowest index.
    Deterministic: it depends on the codes and coordinates only.
    """
    codes = np.asarray(codes, dtype=np.int64)
    out = np.zeros(k, dtype=np.int64)
    keep = codes >= 0
    if k == 0 or colours <= 1 or not keep.any():
        return out
    cells = int(np.clip(np.sqrt(keep.sum() / 4), 8, 128))
    weights = _touching(codes[keep], np.asarray(x, dtype=np.float64)[keep], np.asarray(y, dtype=np.float64)[keep],
                        k, cells)
    sizes = np.bincount(codes[keep], minlength=k)
    used = np.zeros(colours, dtype=np.int64)
    done = np.zeros(k, dtype=bool)
    for c in np.argsort(-sizes, kind="stable"):
        if sizes[c] == 0:
            break
        lo, hi = weights.indptr[c], weights.indptr[c + 1]
        neighbours, weight = weights.indices[lo:hi], weights.data[lo:hi]
        conflict = np.zeros(colours)
        coloured = done[neighbours]
        np.add.at(conflict, out[neighbours[coloured]], weight[coloured])
        best = np.lexsort((np.arange(colours), used, conflict))[0]
        out[c], done[c] = best, True
        used[best] += 1
    return out


def _touching(codes: np.ndarray, x: np.ndarray, y: np.ndarray, k: int, cells: int):
    """Sparse symmetric k x k matrix: how many pairs of grid cells at most two cells apart two regions own."""
    from scipy.sparse import coo_matrix

    def grid(v):
        lo, hi = float(v.min()), float(v.max())
        return np.clip(((v - lo) / ((hi - lo) or 1.0) * cells).astype(np.int64), 0, cells - 1)

    cell = grid(y) * cells + grid(x)
    pairs, counts = np.unique(cell * k + codes, return_counts=True)
    cell_of, code_of = pairs // k, pairs % k
    order = np.lexsort((-counts, cell_of))  # per cell, its fullest region first
    first = order[np.r_[True, cell_of[order][1:] != cell_of[order][:-1]]]
    owner = np.full(cells * cells, -1, dtype=np.int64)
    owner[cell_of[first]] = code_of[first]
    owner = owner.reshape(cells, cells)
    a, b = [], []
    for dy, dx in ((dy, dx) for dy in range(3) for dx in range(-2, 3) if dy > 0 or dx > 0):  # half the offsets
        da = owner[:cells - dy, max(0, -dx):cells - max(0, dx)]
        db = owner[dy:, max(0, dx):cells - max(0, -dx)]
        touch = (da >= 0) & (db >= 0) & (da != db)
        a.append(da[touch])
        b.append(db[touch])
    a, b = np.concatenate(a), np.concatenate(b)
    both = np.concatenate([a, b]), np.concatenate([b, a])
    return coo_matrix((np.ones(len(both[0])), both), shape=(k, k)).tocsr()
