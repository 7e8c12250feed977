"""Per-point columns loaded when the page opens (coordinates and colour codes as typed arrays) and their legends."""
from __future__ import annotations

from collections import Counter
from typing import Any, Optional, Sequence

import numpy as np

from corpusmap.values import year_colour_range
from corpusmap.view.data import ClusterLevel
from corpusmap.view.encoding import typed_array

COLOURED_LABELS = 18  # the page's categorical palette


def normalise(x: np.ndarray, y: np.ndarray, frame: Optional[tuple] = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Coordinates scaled into [-1, 1] (aspect kept, centred): the space regl-scatterplot draws in. ``frame``:
    other points (x, y) that the square must hold as well (a reference map drawn underneath)."""
    fx, fy = (x, y) if frame is None else (np.concatenate([x, frame[0]]), np.concatenate([y, frame[1]]))
    fx = np.asarray(fx, dtype=np.float64)
    fy = np.asarray(fy, dtype=np.float64)
    cx = (fx.min() + fx.max()) / 2
    cy = (fy.min() + fy.max()) / 2
    half = max(fx.max() - fx.min(), fy.max() - fy.min()) / 2 or 1.0
    transform = {"center": [float(cx), float(cy)], "scale": float(1.0 / half)}
    return (*scaled(x, y, transform), transform)


def scaled(x: np.ndarray, y: np.ndarray, transform: dict) -> tuple[np.ndarray, np.ndarray]:
    """``x``, ``y`` in the page's normalised space of :func:`normalise`."""
    (cx, cy), scale = transform["center"], transform["scale"]
    return (((np.asarray(x, dtype=np.float64) - cx) * scale).astype(np.float32),
            ((np.asarray(y, dtype=np.float64) - cy) * scale).astype(np.float32))


def sample_rows(n: int, max_points: int, seed: int) -> Optional[np.ndarray]:
    """Sorted rows of a uniform random sample of ``max_points`` rows, or None when every row is drawn."""
    if n <= max_points:
        return None
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=max_points, replace=False)).astype(np.int64)


def take(values: Any, rows: Optional[np.ndarray]) -> Any:
    """``values[rows]`` for lists, numpy, pandas and pyarrow columns; values itself when rows is None."""
    if rows is None or values is None:
        return values
    if hasattr(values, "take") and hasattr(values, "to_pylist"):  # pyarrow
        import pyarrow as pa

        return values.take(pa.array(rows)).to_pylist()
    if hasattr(values, "iloc"):
        return values.iloc[rows].tolist()
    if isinstance(values, np.ndarray):
        return values[rows]
    return [values[int(r)] for r in rows]


def as_list(values: Any, start: int, stop: int) -> list:
    """Rows ``start..stop-1`` of a column as a Python list."""
    part = values[start:stop] if not hasattr(values, "iloc") else values.iloc[start:stop]
    if hasattr(part, "to_pylist"):
        return part.to_pylist()
    if hasattr(part, "tolist"):
        return part.tolist()
    return list(part)


def _codes_dtype(count: int) -> type:
    return np.uint16 if count < 0xFFFF else np.uint32


def year_column(years: Optional[np.ndarray], every: Optional[np.ndarray] = None
                ) -> tuple[Optional[dict], Optional[dict]]:
    """Years of the drawn points as float32 (NaN = unknown), and the range and colour range of the years of
    ``every`` point (default: the drawn ones; a sampled page states the corpus's range), or (None, None) when no
    point has a year. The colour range: :func:`corpusmap.values.year_colour_range` (the page marks clipped ends
    with ≤ and ≥)."""
    if years is None:
        return None, None
    y = np.asarray(years, dtype=np.float64)
    known = np.asarray(y if every is None else every, dtype=np.float64)
    known = known[np.isfinite(known)]
    if known.size == 0:
        return None, None
    values = np.where(np.isfinite(y), y, np.nan).astype(np.float32)
    lo, hi = year_colour_range(known)
    return typed_array(values), {"min": float(known.min()), "max": float(known.max()),
                                 "colour_min": lo, "colour_max": hi}


def label_column(labels: Optional[Sequence[Optional[str]]], top: int) -> tuple[Optional[dict], Optional[dict]]:
    """Label codes (code = index into names; len(names) = none) and the legend order, most frequent first."""
    if labels is None:
        return None, None
    values = ["" if v is None else str(v) for v in labels]
    counts = Counter(v for v in values if v)
    if not counts:
        return None, None
    names = sorted(counts, key=lambda v: (-counts[v], v))
    code_of = {name: i for i, name in enumerate(names)}
    none = len(names)
    codes = np.fromiter((code_of.get(v, none) for v in values), dtype=np.int64, count=len(values))
    meta = {"names": names, "order": list(range(len(names))), "top": int(min(top, COLOURED_LABELS, len(names)))}
    return typed_array(codes.astype(_codes_dtype(len(names) + 1))), meta


def cluster_columns(levels: Sequence[ClusterLevel], xn_all: np.ndarray, yn_all: np.ndarray,
                    rows: Optional[np.ndarray]) -> tuple[list[dict], list[dict]]:
    """Per level: the codes of the drawn rows, and names, sizes, anchors (medoids, as the figures of ``plot``
    use) and palette colours (touching regions differ, as in the figures) over all rows."""
    from corpusmap.palette import region_colours

    columns, metas = [], []
    for level in levels:
        codes = np.asarray(level.codes, dtype=np.int64)
        k = len(level.names)
        sizes = np.bincount(codes[codes >= 0], minlength=k)
        cx, cy = _medoids(codes, xn_all, yn_all, k)
        drawn = codes if rows is None else codes[rows]
        column = np.where(drawn >= 0, drawn, k).astype(_codes_dtype(k + 1))
        order = [int(c) for c in np.argsort(-sizes, kind="stable") if sizes[c] > 0]
        columns.append(typed_array(column))
        metas.append({"name": str(level.name), "names": [str(v) for v in level.names],
                      "x": np.round(cx, 5).tolist(), "y": np.round(cy, 5).tolist(),
                      "anchors": _anchors(codes, xn_all, yn_all, k), "size": sizes.tolist(), "order": order,
                      "colours": region_colours(codes, xn_all, yn_all, k, COLOURED_LABELS).tolist()})
    return columns, metas


def _anchors(codes: np.ndarray, x: np.ndarray, y: np.ndarray, k: int, cells: int = 32) -> list:
    """Per cluster, more places for its name, [x0, y0, x1, y1, ...]: in each cell of a ``cells`` x ``cells`` grid
    over the map holding 3 or more of its members, the member nearest their mean (the fullest cells first), so that
    a view zoomed into a cluster, its medoid off screen, still names it. At most ``cells``² places in all (a cell
    holds few clusters), each a member point."""
    keep = codes >= 0
    xs, ys, cs = x[keep], y[keep], codes[keep]
    gx = np.clip(((xs + 1) / 2 * cells).astype(np.int64), 0, cells - 1)
    gy = np.clip(((ys + 1) / 2 * cells).astype(np.int64), 0, cells - 1)
    group = (cs * cells + gy) * cells + gx
    order = np.argsort(group, kind="stable")
    groups, starts, counts = np.unique(group[order], return_index=True, return_counts=True)
    if not len(groups):
        return [[] for _ in range(k)]
    xs, ys = xs[order].astype(np.float64), ys[order].astype(np.float64)
    of = np.repeat(np.arange(len(groups)), counts)
    mx, my = np.add.reduceat(xs, starts) / counts, np.add.reduceat(ys, starts) / counts
    distance = (xs - mx[of]) ** 2 + (ys - my[of]) ** 2
    closest = np.flatnonzero(distance == np.minimum.reduceat(distance, starts)[of])  # (no second sort of all rows)
    nearest = closest[np.r_[True, of[closest[1:]] != of[closest[:-1]]]]  # each group's first member nearest its mean
    owner = groups // (cells * cells)
    out = [[] for _ in range(k)]
    for j in np.lexsort((-counts, owner)):  # by cluster, the fullest cells first
        if counts[j] >= 3:
            out[int(owner[j])] += [round(float(xs[nearest[j]]), 5), round(float(ys[nearest[j]]), 5)]
    return out


def _medoids(codes: np.ndarray, x: np.ndarray, y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each cluster's medoid (:func:`corpusmap.labels.medoid`): a member point, so that a region spread over
    several islands is named on one of them and not in the gap (or another region) between them."""
    from corpusmap.labels import medoid

    keep = codes >= 0
    order = np.argsort(codes[keep], kind="stable")
    c = codes[keep][order]
    bounds = np.searchsorted(c, np.arange(k + 1))
    xs, ys = x[keep][order], y[keep][order]
    out = np.zeros((2, k))
    for j in range(k):
        if bounds[j + 1] > bounds[j]:
            out[:, j] = medoid(xs[bounds[j]:bounds[j + 1]], ys[bounds[j]:bounds[j + 1]])
    return out[0], out[1]


def point_style(n: int, point_size: Optional[float], opacity: Optional[float]) -> dict:
    """Point size (CSS pixels) and opacity that keep dense maps readable."""
    if point_size is None:
        point_size = 6 if n <= 2_000 else 4 if n <= 10_000 else 3 if n <= 50_000 else 2.5 if n <= 200_000 else 2
    if opacity is None:
        opacity = 0.85 if n <= 10_000 else 0.7 if n <= 50_000 else 0.5 if n <= 200_000 else 0.35
    return {"point_size": float(point_size), "opacity": float(opacity)}
