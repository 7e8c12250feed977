"""Name placement on figures: no two names overlap, and leader lines cross as few names and lines as the free
spots allow (checked against the nearest-free-spot rule on the same scene)."""
from __future__ import annotations

import numpy as np
import pytest

from corpusmap import labels as L


def _scene(monkeypatch=None):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(-10, 10)
    ax.set_ylim(-10, 10)
    anchors = [tuple(v) for v in np.random.default_rng(3).normal(scale=1.2, size=(18, 2))]
    placed = L.place_labels(ax, fig.canvas.get_renderer(), anchors, [f"region {i} · words · here" for i in range(18)],
                            fontsize=11)
    return placed


def _count(placed) -> tuple[int, int]:
    """(leader lines through a name not over their anchor, pairs of crossing leader lines), by brute force."""
    segs = [(*a, *L.leader_end(a, b)) for a, b, m in zip(placed.anchors, placed.boxes, placed.moved) if m]
    through = 0
    for s in segs:
        t = np.linspace(0, 1, 2001)[:, None]
        pts = np.array(s[:2]) + t * (np.array(s[2:]) - np.array(s[:2]))
        for a, b in zip(placed.anchors, placed.boxes):
            over_anchor = b[0] <= s[0] <= b[2] and b[1] <= s[1] <= b[3]
            if tuple(a) != s[:2] and not over_anchor:
                inside = (pts[1:-1, 0] > b[0]) & (pts[1:-1, 0] < b[2]) & (pts[1:-1, 1] > b[1]) & (pts[1:-1, 1] < b[3])
                through += bool(inside.any())
    crossing = sum(L._crosses_segment(a, b) for i, a in enumerate(segs) for b in segs[i + 1:])
    return through, crossing


def test_leaders_cross_fewer_names_than_the_nearest_free_spot(monkeypatch):
    ours = _scene()
    assert len(ours.texts) == 18 and not ours.skipped
    for i, a in enumerate(ours.boxes):
        for b in ours.boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
    monkeypatch.setattr(L, "_crossings", lambda *args, **kwargs: 0)  # the nearest free spot, whatever it crosses
    nearest = _scene()
    through, crossing = _count(ours)
    through_nearest, crossing_nearest = _count(nearest)
    assert through + crossing < (through_nearest + crossing_nearest) / 2, (through, crossing, through_nearest,
                                                                           crossing_nearest)


@pytest.mark.parametrize("seed", range(5))
def test_segment_tests_agree_with_sampling(seed):
    rng = np.random.default_rng(seed)
    for _ in range(200):
        seg = tuple(rng.uniform(0, 10, 4))
        x0, y0 = rng.uniform(0, 8, 2)
        box = (x0, y0, x0 + rng.uniform(0.5, 3), y0 + rng.uniform(0.5, 3))
        t = np.linspace(0, 1, 4001)[:, None]
        pts = np.array(seg[:2]) + t * (np.array(seg[2:]) - np.array(seg[:2]))
        sampled = ((pts[:, 0] >= box[0]) & (pts[:, 0] <= box[2]) & (pts[:, 1] >= box[1]) & (pts[:, 1] <= box[3])).any()
        if sampled:  # sampling can miss a corner graze, never report one that is not there
            assert L._crosses_box(seg, box)
        other = tuple(rng.uniform(0, 10, 4))
        a, b = np.array(seg).reshape(2, 2), np.array(other).reshape(2, 2)
        m = np.column_stack([a[1] - a[0], b[0] - b[1]])
        if abs(np.linalg.det(m)) > 1e-9:
            s, u = np.linalg.solve(m, b[0] - a[0])
            assert L._crosses_segment(seg, other) == (0 < s < 1 and 0 < u < 1)
