"""Names on a figure: placed at their anchors (cluster medoids) without overlapping each other, moved out along
a spiral of candidate positions when they must, with a leader line back to the anchor. A name takes the nearest
free spot among those that cross the fewest lines: leader lines it would hide, and names and leaders its own
leader would cross.

Boxes are measured by matplotlib's renderer in pixels, so what the tests check (no two boxes overlap) is what is
drawn. Labels are placed in the order given (most important first); one that finds no free place within
``max_shift`` pixels is left out and counted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

BOX_PAD = 0.2  # padding of the box behind a name, in font sizes


@dataclass
class Placed:
    """The labels drawn: their texts, anchors (pixels), boxes (x0, y0, x1, y1 in pixels) and those left out."""

    texts: list = field(default_factory=list)
    anchors: list = field(default_factory=list)
    boxes: list = field(default_factory=list)
    moved: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    unnamed: int = 0  # regions given no name at all (too small, or beyond the most a figure names)


def medoid(x: np.ndarray, y: np.ndarray, sample: int = 2000, seed: int = 0) -> tuple[float, float]:
    """The point of (a seeded sample of) the cloud with the least total distance to the others."""
    if len(x) > sample:
        rows = np.random.default_rng(seed).choice(len(x), sample, replace=False)
        x, y = x[rows], y[rows]
    pts = np.column_stack([x, y]).astype(np.float64)
    total = np.sqrt(((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1)).sum(1)
    best = int(total.argmin())
    return float(pts[best, 0]), float(pts[best, 1])


def _candidates(step: float, max_shift: float) -> list[tuple[float, float]]:
    """Offsets (pixels) to try: the anchor itself, then rings of 16 directions at growing radii."""
    out = [(0.0, 0.0)]
    radius = step
    while radius <= max_shift:
        for angle in np.linspace(0, 2 * np.pi, 16, endpoint=False):
            out.append((radius * np.cos(angle), radius * np.sin(angle)))
        radius += step
    return out


def _overlaps(box, boxes, pad: float) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < b[2] + pad and b[0] < x1 + pad and y0 < b[3] + pad and b[1] < y1 + pad for b in boxes)


def leader_end(anchor: tuple[float, float], box) -> tuple[float, float]:
    """Where a leader line from ``anchor`` meets the label's box: the box's nearest point."""
    return min(max(anchor[0], box[0]), box[2]), min(max(anchor[1], box[1]), box[3])


def _crosses_box(seg, box, pad: float = 0.0) -> bool:
    """Whether segment ``seg`` (x0, y0, x1, y1) passes through ``box`` (grown by ``pad``): Liang-Barsky clipping."""
    x0, y0, x1, y1 = seg
    dx, dy = x1 - x0, y1 - y0
    lo, hi = 0.0, 1.0
    for p, q in ((-dx, x0 - (box[0] - pad)), (dx, box[2] + pad - x0), (-dy, y0 - (box[1] - pad)),
                 (dy, box[3] + pad - y0)):
        if p == 0:
            if q < 0:
                return False
        else:
            t = q / p
            if p < 0:
                lo = max(lo, t)
            else:
                hi = min(hi, t)
            if lo > hi:
                return False
    return True


def _crosses_segment(a, b) -> bool:
    """Whether segments ``a`` and ``b`` properly intersect (shared end points do not count)."""
    def side(p, q, r):
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])

    p1, p2, p3, p4 = (a[0], a[1]), (a[2], a[3]), (b[0], b[1]), (b[2], b[3])
    d1, d2, d3, d4 = side(p3, p4, p1), side(p3, p4, p2), side(p1, p2, p3), side(p1, p2, p4)
    return d1 * d2 < 0 and d3 * d4 < 0


def _crossings(box, leader, placed: "Placed", leaders: list, pad: float) -> int:
    """Lines crossed at a spot: leader lines the name would hide, and names and leaders its own leader would
    cross (a name already over the anchor is crossed whatever the spot, so it is not counted)."""
    count = sum(_crosses_box(seg, box) for seg in leaders)
    if leader is not None:
        x, y = leader[0], leader[1]
        count += sum(_crosses_box(leader, b, pad) for b in placed.boxes
                     if not (b[0] <= x <= b[2] and b[1] <= y <= b[3]))
        count += sum(_crosses_segment(leader, seg) for seg in leaders)
    return count


def place_labels(ax, renderer, anchors: Sequence[tuple[float, float]], texts: Sequence[str], *, fontsize: float,
                 max_shift: float | None = None, pad: float = 2.0, leader_color: str = "#333333") -> Placed:
    """Draw ``texts`` at data-coordinate ``anchors`` on ``ax`` so that no two overlap (see the module docstring)."""
    fig_box = ax.get_window_extent(renderer)
    # nearer spots come first, so a wide search only matters for a name that finds no place close to its anchor
    max_shift = max_shift if max_shift is not None else 0.5 * min(fig_box.width, fig_box.height)
    placed = Placed()
    leaders: list = []  # leader lines drawn, (x0, y0, x1, y1) in pixels
    to_pixels, to_data = ax.transData, ax.transData.inverted()
    for (ax_x, ax_y), text in zip(anchors, texts):
        px, py = to_pixels.transform((ax_x, ax_y))
        # a light box behind the name keeps it readable over points and stays text in SVG and PDF (a stroke path
        # effect would turn it into outlines)
        artist = ax.text(ax_x, ax_y, text, fontsize=fontsize, ha="center", va="center", color="black",
                         weight="bold", zorder=5,
                         bbox={"boxstyle": f"round,pad={BOX_PAD}", "facecolor": "white", "edgecolor": "none",
                               "alpha": 0.75})
        artist.draw(renderer)  # lays out the box, so that it can be measured
        extent = artist.get_bbox_patch().get_window_extent(renderer)
        w, h = extent.width, extent.height
        step = max(h, 4.0)
        spot, fewest = None, None
        for dx, dy in _candidates(step, max_shift):  # the nearest free spot among those crossing fewest lines
            cx, cy = px + dx, py + dy
            box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
            inside = box[0] >= fig_box.x0 and box[2] <= fig_box.x1 and box[1] >= fig_box.y0 and box[3] <= fig_box.y1
            if inside and not _overlaps(box, placed.boxes, pad):
                moved = (dx, dy) != (0.0, 0.0)
                crossed = _crossings(box, (px, py, *leader_end((px, py), box)) if moved else None, placed,
                                     leaders, pad)
                if fewest is None or crossed < fewest:
                    spot, fewest = (cx, cy, box, moved), crossed
                if crossed == 0:
                    break
        if spot is None:
            artist.remove()
            placed.skipped.append(text)
            continue
        cx, cy, box, moved = spot
        artist.set_position(to_data.transform((cx, cy)))
        if moved:
            # the leader line runs from the anchor to the nearest point of the label's box
            ex, ey = leader_end((px, py), box)
            leaders.append((px, py, ex, ey))
            (lx0, ly0), (lx1, ly1) = to_data.transform((px, py)), to_data.transform((ex, ey))
            ax.plot([lx0, lx1], [ly0, ly1], color=leader_color, linewidth=max(0.4, fontsize / 18), zorder=4)
            ax.plot([lx0], [ly0], marker="o", markersize=fontsize / 5, color=leader_color, zorder=4)
        placed.texts.append(text)
        placed.anchors.append((float(px), float(py)))
        placed.boxes.append(tuple(float(v) for v in box))
        placed.moved.append(moved)
    return placed
