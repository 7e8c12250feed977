"""Maps for papers (PNG, SVG, PDF): matplotlib (Agg, no pyplot state) for the frame, legend and colour bar; points
drawn as markers up to ``raster_threshold`` points and above that rasterised with numpy, so 20M points take seconds.

The rasteriser bins points into the pixels of the map area. Each pixel's colour is the mean colour of its points
(categories mix; a numeric column is averaged, then colour-mapped) and its opacity grows with the log of its
point count, composited over white, the way datashader shades categorical aggregates. No extra dependency.

Colour modes (see :func:`render_map`): ``categorical`` (the most frequent categories in a qualitative palette,
the rest grey "other", missing values light grey, a legend with counts), ``continuous`` (a colour map and a
colour bar, e.g. for years) and none (one colour, density by opacity).
"""
from __future__ import annotations

import functools

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from corpusmap.atomic import atomic_path
from corpusmap.errors import UsageProblem

RASTER_THRESHOLD = 100_000
OTHER_COLOR = "#b0b0b0"
MISSING_COLOR = "#dcdcdc"
MISSING_VALUE_NAME = "no value"  # under a colour bar, next to MISSING_COLOR
SINGLE_COLOR = "#1f4e79"
HIGHLIGHT_COLOR = "#d62728"
OTHER_NAME = "other"
MISSING_NAME = "(none)"


@dataclass
class Categories:
    """Per-point integer codes into ``names``/``colors``; ``counts`` per category; ``on_top`` codes are drawn
    last (e.g. the highlighted abstracts of a word query)."""

    codes: np.ndarray
    names: list
    colors: list
    counts: list
    on_top: list = field(default_factory=list)
    labelled: int = 0  # the first ``labelled`` categories are real ones (not other/none): candidates for labels


#: the categorical colours, largest category first: tab20's strong shades, then its light ones, both without grey
#: (grey is "other"); the map page uses the same list (``CATEGORICAL`` in view/web/src/colors.js), so a label has
#: one colour in the figure and on the page
CATEGORICAL = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
               "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5")


def qualitative_palette(n: int) -> list:
    """``n`` distinct colours: :data:`CATEGORICAL` (the page's colours, in its order), then, for the categories
    beyond it, colours each as far as can be (CIELAB distance, greedily) from every colour before it, from the
    greys of "other" and "no value" and from the white background (so that the first ones keep their colours
    whatever ``n`` is)."""
    if n <= len(CATEGORICAL):
        return list(CATEGORICAL[:n])
    extra = _farthest_colours()
    return list(CATEGORICAL) + [extra[i % len(extra)] for i in range(n - len(CATEGORICAL))]


@functools.lru_cache(maxsize=1)
def _farthest_colours(more: int = 256) -> tuple:
    """(Beyond a few hundred categories no colour tells one from another: the 256 are repeated.)"""
    levels = np.linspace(0, 1, 18)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    lab = _cielab(grid)
    keep = (np.hypot(lab[:, 1], lab[:, 2]) > 20) & (lab[:, 0] > 25) & (lab[:, 0] < 90)  # no greys, not near black
    grid, lab = grid[keep], lab[keep]
    taken = _cielab(np.array([_rgb(c) for c in (*CATEGORICAL, OTHER_COLOR, MISSING_COLOR, "#ffffff")]))
    nearest = np.min(np.linalg.norm(lab[:, None] - taken[None], axis=2), axis=1)
    out = []
    for _ in range(more):
        i = int(np.argmax(nearest))  # (ties: the first in the grid's order, so the palette is fixed)
        out.append("#" + "".join(f"{round(v * 255):02x}" for v in grid[i]))
        nearest = np.minimum(nearest, np.linalg.norm(lab - lab[i], axis=1))
    return tuple(out)


def _rgb(hex_colour: str) -> tuple:
    return tuple(int(hex_colour[k:k + 2], 16) / 255 for k in (1, 3, 5))


def _cielab(rgb: np.ndarray) -> np.ndarray:
    """sRGB (0..1) to CIELAB (D65)."""
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                                [0.0193339, 0.1191920, 0.9503041]]).T
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.column_stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])])


def _as_arrow_strings(values):
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values, pa.ChunkedArray):
        arr = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    elif isinstance(values, pa.Array):
        arr = values
    else:
        try:
            arr = pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed Python types
            arr = pa.array([None if v is None else str(v) for v in values])
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        try:
            arr = pc.cast(arr, pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # lists, structs: their text form
            arr = pa.array([None if v is None else str(v) for v in arr.to_pylist()], type=pa.string())
    return arr


def categorize(values, max_categories: int = 10) -> Categories:
    """The ``max_categories`` most frequent values get colours; the rest are "other"; null/NaN/"" are "(none)".

    ``values``: an Arrow array (fast for tens of millions of rows), a numpy array or a list.
    """
    import pyarrow.compute as pc

    arr = _as_arrow_strings(values)
    missing = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(arr), ""), True).to_numpy(zero_copy_only=False)
    encoded = pc.dictionary_encode(arr)
    dictionary = encoded.dictionary.to_pylist()
    idx = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    idx[missing] = -1
    counts = np.bincount(idx[idx >= 0], minlength=len(dictionary))
    # most frequent first, ties broken by name (numbers by value: cluster "8: ..." before "10: ...") so the palette
    # is stable
    order = sorted(range(len(dictionary)), key=lambda i: (-counts[i], _natural_key(dictionary[i])))
    order = [i for i in order if counts[i] > 0]
    top = order[:max_categories]
    code_of = np.full(len(dictionary) + 1, len(top), dtype=np.int32)  # last slot: missing (-1)
    code_of[top] = np.arange(len(top), dtype=np.int32)
    codes = code_of[idx]
    names = [dictionary[i] for i in top]
    colors = qualitative_palette(len(top))
    counts_out = [int(counts[i]) for i in top]
    n_other = int(sum(counts[i] for i in order[max_categories:]))
    if n_other:
        names.append(OTHER_NAME)
        colors.append(OTHER_COLOR)
        counts_out.append(n_other)
    n_missing = int(missing.sum())
    if n_missing:
        codes[missing] = len(names)
        names.append(MISSING_NAME)
        colors.append(MISSING_COLOR)
        counts_out.append(n_missing)
    return Categories(codes=codes, names=names, colors=colors, counts=counts_out, labelled=len(top))


def _natural_key(text: str) -> tuple:
    """Sort key comparing runs of digits by their value: "8" < "10"."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part)
                 for part in re.split(r"(\d+)", str(text)) if part)


def highlight(mask: np.ndarray, hit_name: str, other_name: str = OTHER_NAME) -> Categories:
    """Two categories: points where ``mask`` is true (drawn on top, in red) and the rest (grey)."""
    mask = np.asarray(mask, dtype=bool)
    codes = np.where(mask, 0, 1).astype(np.int32)
    return Categories(codes=codes, names=[hit_name, other_name], colors=[HIGHLIGHT_COLOR, OTHER_COLOR],
                      counts=[int(mask.sum()), int((~mask).sum())], on_top=[0], labelled=0)


MARGIN = 0.02  # of the figure, around the map


def _font_size(width: int, height: int, dpi: int) -> float:
    return float(np.clip(min(width, height) / dpi * 1.25, 5.0, 16.0))


def _point_style(n: int, area_pt2: float) -> tuple[float, float]:
    """Marker area (pt^2) and alpha for ``n`` points on an axes of ``area_pt2``."""
    size = float(np.clip(0.12 * area_pt2 / max(n, 1), 0.4, 40.0))
    alpha = 0.9 if n < 10_000 else (0.7 if n < 50_000 else 0.5)
    return size, alpha


def _equal_aspect_limits(x: np.ndarray, y: np.ndarray, box_w: float, box_h: float, pad: float = 0.02):
    """Data limits that fill a ``box_w`` x ``box_h`` pixel box at equal scale in x and y."""
    finite = np.isfinite(x) & np.isfinite(y)
    if not finite.any():
        return (-1.0, 1.0, -1.0, 1.0)
    x0, x1 = float(np.min(x[finite])), float(np.max(x[finite]))
    y0, y1 = float(np.min(y[finite])), float(np.max(y[finite]))
    w, h = max(x1 - x0, 1e-12), max(y1 - y0, 1e-12)
    x0, x1, y0, y1 = x0 - pad * w, x1 + pad * w, y0 - pad * h, y1 + pad * h
    w, h = x1 - x0, y1 - y0
    scale = max(w / box_w, h / box_h)  # data units per pixel
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return (cx - scale * box_w / 2, cx + scale * box_w / 2, cy - scale * box_h / 2, cy + scale * box_h / 2)


def _pixel_index(x, y, limits, w: int, h: int):
    x0, x1, y0, y1 = limits
    col = np.floor((np.asarray(x, dtype=np.float64) - x0) / (x1 - x0) * w).astype(np.int64)
    row = np.floor((y1 - np.asarray(y, dtype=np.float64)) / (y1 - y0) * h).astype(np.int64)
    ok = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    return row * w + col, ok


def _spread(image: np.ndarray, radius: int) -> np.ndarray:
    """Sum over a (2r+1)^2 neighbourhood (a point covers more than one pixel when points are few)."""
    if radius <= 0:
        return image
    h, w = image.shape[:2]
    padded = np.pad(image, [(radius, radius), (radius, radius)] + [(0, 0)] * (image.ndim - 2))
    out = np.zeros_like(image)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out += padded[dy:dy + h, dx:dx + w]
    return out


def _alpha(count: np.ndarray, floor: float = 0.35) -> np.ndarray:
    occupied = count > 0
    if not occupied.any():
        return np.zeros_like(count, dtype=np.float64)
    top = max(float(np.quantile(count[occupied], 0.99)), 1.0)
    a = floor + (1 - floor) * np.log1p(count) / math.log1p(top)
    return np.where(occupied, np.clip(a, 0, 1), 0.0)


def rasterize(x, y, w: int, h: int, limits, *, rgb: Optional[np.ndarray] = None, codes: Optional[np.ndarray] = None,
              palette: Optional[np.ndarray] = None, values: Optional[np.ndarray] = None, cmap=None, norm=None,
              spread: int = 0, background: Optional[tuple] = None) -> np.ndarray:
    """An (h, w, 3) float image of the points over white.

    Colour per point from ``codes`` into ``palette`` (k, 3), from ``values`` through ``cmap``/``norm`` (mean value
    per pixel of the values clipped to the norm's range, then coloured: a value beyond the scale counts as its
    end, so that one very old paper does not pull a pixel of recent ones off the scale), or one colour ``rgb``.
    ``background``: (x, y) drawn first in light grey.
    """
    npix = w * h
    image = np.ones((h, w, 3))
    if background is not None:
        bpix, bok = _pixel_index(background[0], background[1], limits, w, h)
        bcount = _spread(np.bincount(bpix[bok], minlength=npix).reshape(h, w).astype(np.float64), spread)
        a = (_alpha(bcount, 0.25) * 0.5)[..., None]
        grey = np.array([0.75, 0.75, 0.75])
        image = a * grey + (1 - a) * image
    pix, ok = _pixel_index(x, y, limits, w, h)
    pix = pix[ok]
    count = _spread(np.bincount(pix, minlength=npix).reshape(h, w).astype(np.float64), spread)
    if codes is not None:
        codes = np.asarray(codes)[ok]
        sums = np.zeros((h, w, 3))
        for c in range(3):
            sums[..., c] = np.bincount(pix, weights=palette[codes, c], minlength=npix).reshape(h, w)
        colour = _spread(sums, spread) / np.maximum(count, 1)[..., None]
    elif values is not None:
        v = np.clip(np.asarray(values, dtype=np.float64)[ok], norm.vmin, norm.vmax)  # beyond the scale: its ends
        good = np.isfinite(v)
        vsum = _spread(np.bincount(pix[good], weights=v[good], minlength=npix).reshape(h, w), spread)
        vcount = _spread(np.bincount(pix[good], minlength=npix).reshape(h, w).astype(np.float64), spread)
        mean = vsum / np.maximum(vcount, 1)
        colour = np.asarray(cmap(norm(mean)))[..., :3]
        colour = np.where((vcount > 0)[..., None], colour, np.array([0.86, 0.86, 0.86]))
    else:
        colour = np.broadcast_to(np.asarray(rgb, dtype=np.float64), (h, w, 3))
    a = _alpha(count)[..., None]
    return a * colour + (1 - a) * image


def _layout(width: int, height: int, dpi: int, fs: float, title, categories, values, legend_title, legend=True):
    """The figure, its renderer, the legend (at the right edge: its measured width decides the map's room) and the
    map's axes rectangle (figure fractions) and title height (pixels)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    px_per_pt = dpi / 72.0
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)
    renderer = fig.canvas.get_renderer()
    top_px = (fs * 2.4 * px_per_pt) if title else MARGIN * height
    shown, legend = legend, None
    if categories is not None and shown:
        handles = [Line2D([], [], marker="o", linestyle="", markersize=fs * 0.8, markerfacecolor=c,
                          markeredgewidth=0, color=c) for c in categories.colors]
        texts = [_legend_label(nm, c) for nm, c in zip(categories.names, categories.counts)]
        legend = fig.legend(handles, texts, loc="center right", bbox_to_anchor=(1 - MARGIN / 2, 0.5),
                            frameon=False, fontsize=fs * 0.85, title=legend_title, title_fontsize=fs * 0.95,
                            handletextpad=0.3, borderaxespad=0.0, labelspacing=0.4)
        right_frac = legend.get_window_extent(renderer).width / width + MARGIN
    elif values is not None and shown:
        right_frac = float(np.clip(fs * 10 * px_per_pt / width, 0.08, 0.35))
    else:
        right_frac = 0.0
    ax_rect = [MARGIN, MARGIN, 1 - right_frac - 2 * MARGIN, 1 - top_px / height - 2 * MARGIN]
    return fig, renderer, legend, ax_rect, top_px


def fitted_height(x, y, width: int, dpi: int, *, title=None, categories=None, values=None, legend_title=None,
                  background=None, legend: bool = True) -> int:
    """The figure height at which a ``width`` pixels wide map fills its axes (equal scale in x and y), between half
    and twice the width, and at least the legend's height."""
    fs = _font_size(width, width, dpi)
    fig, renderer, legend, ax_rect, top_px = _layout(width, width, dpi, fs, title, categories, values, legend_title,
                                                     legend)
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if background is not None:
        x, y = np.concatenate([x, background[0]]), np.concatenate([y, background[1]])
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return int(width)
    aspect = max(np.ptp(y[ok]), 1e-12) / max(np.ptp(x[ok]), 1e-12)
    box_h = ax_rect[2] * width * aspect
    # the axes are height * (1 - 2 margins) - the title's room high, which is a margin without a title
    height = (box_h + top_px) / (1 - 2 * MARGIN) if title else box_h / (1 - 3 * MARGIN)
    if legend is not None:
        height = max(height, legend.get_window_extent(renderer).height + 4 * MARGIN * width)
    return int(round(float(np.clip(height, width / 2, 2 * width))))


def render_map(x, y, out, *, categories: Optional[Categories] = None, values=None, width: int = 2000,
               height: Optional[int] = 2000, dpi: int = 300, title: Optional[str] = None,
               legend_title: Optional[str] = None, labels: bool = False, max_labels: int = 12,
               raster: Optional[bool] = None, raster_threshold: int = RASTER_THRESHOLD, cmap: str = "viridis",
               integer_ticks: bool = False, background=None, seed: int = 0, on_labels=None, norm_range=None,
               legend: bool = True) -> Path:
    """Draw a map of exactly ``width`` x ``height`` pixels to ``out`` (PNG, or SVG/PDF with the points rasterised
    and the text as text, by the suffix), written atomically. ``height=None``: :func:`fitted_height` (the text at
    the size of a square figure of that width).

    ``categories`` (see :func:`categorize`, :func:`highlight`) or ``values`` (numbers, NaN = missing) choose the
    colouring; neither gives one colour. ``labels``: True writes the names of the largest categories at their
    medoids; a list of ``(x, y, text)`` writes those texts at those points (most important first); either way no
    two labels overlap (:mod:`corpusmap.labels`), and ``on_labels`` receives what was placed.
    ``raster`` forces or forbids the numpy rasteriser (default: above ``raster_threshold`` points); ``False``
    also draws the markers of an SVG/PDF as vector shapes (else they are one embedded bitmap).
    ``background``: (x, y) of other points (e.g. the reference map of added points), drawn in light grey.
    ``norm_range``: (low, high) of the colour scale for ``values`` (default: their range). ``legend=False``: no
    legend or colour bar (e.g. when the names on the map say what the colours are).
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize, to_rgb

    fs = None
    if height is None and isinstance(width, (int, np.integer)) and width >= 16:
        fs = _font_size(width, width, dpi)
        height = fitted_height(x, y, width, dpi, title=title, categories=categories, values=values,
                               legend_title=legend_title, background=background, legend=legend)
    for name, value in (("width", width), ("height", height), ("dpi", dpi)):
        if not isinstance(value, (int, np.integer)) or value < 16:
            raise UsageProblem(f"--{name} must be an integer of at least 16")
    if width * height > 400_000_000:
        raise UsageProblem("the image would exceed 400 megapixels; lower --width/--height")
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = len(x)
    out = Path(out)
    fs = fs or _font_size(width, height, dpi)
    px_per_pt = dpi / 72.0
    fig, renderer, legend_box, ax_rect, top_px = _layout(width, height, dpi, fs, title, categories, values,
                                                         legend_title, legend)
    if ax_rect[2] < 0.2:
        raise UsageProblem(f"the image is too narrow for the map and its legend at --dpi {dpi}; use a larger --width "
                           "or a lower --dpi")
    legend_px = legend_box.get_window_extent(renderer).height if legend_box is not None else \
        4 * fs * px_per_pt / 0.6 if values is not None and legend else 0  # the colour bar: 60% high, 4 lines
    if ax_rect[3] < 0.2 or legend_px > (1 - 2 * MARGIN) * height:
        raise UsageProblem(f"the image is too short for the map and its legend at --dpi {dpi}; use a larger --height "
                           "or a lower --dpi")
    ax = fig.add_axes(ax_rect)
    ax.set_axis_off()
    box_w = max(int(round(ax_rect[2] * width)), 1)
    box_h = max(int(round(ax_rect[3] * height)), 1)
    limits = _equal_aspect_limits(x, y, box_w, box_h)
    if background is not None:
        bx, by = (np.asarray(background[0], np.float64), np.asarray(background[1], np.float64))
        limits = _equal_aspect_limits(np.concatenate([x, bx]), np.concatenate([y, by]), box_w, box_h)
    ax.set_xlim(limits[0], limits[1])
    ax.set_ylim(limits[2], limits[3])

    use_raster = (n > raster_threshold) if raster is None else raster
    palette = None
    if categories is not None:
        palette = np.array([to_rgb(c) for c in categories.colors])
    norm = cm = None
    if values is not None:
        values = np.asarray(values, dtype=np.float64)
        finite = values[np.isfinite(values)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if norm_range is not None:
            lo, hi = (float(v) for v in norm_range)
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        norm, cm = Normalize(lo, hi), colormaps[cmap]

    if use_raster:
        spread = 1 if n < 1_000_000 else 0
        if categories is not None and categories.on_top:
            # later points do not win in a mean, so draw the highlighted points in a second pass
            hits = np.isin(categories.codes, categories.on_top)
            img = rasterize(x[~hits], y[~hits], box_w, box_h, limits, codes=categories.codes[~hits],
                            palette=palette, spread=spread, background=background)
            over = rasterize(x[hits], y[hits], box_w, box_h, limits, codes=categories.codes[hits], palette=palette,
                             spread=spread)
            pix, ok = _pixel_index(x[hits], y[hits], limits, box_w, box_h)
            covered = _spread(np.bincount(pix[ok], minlength=box_w * box_h).reshape(box_h, box_w)
                              .astype(np.float64), spread) > 0
            img = np.where(covered[..., None], over, img)
        elif categories is not None:
            img = rasterize(x, y, box_w, box_h, limits, codes=categories.codes, palette=palette, spread=spread,
                            background=background)
        elif values is not None:
            img = rasterize(x, y, box_w, box_h, limits, values=values, cmap=cm, norm=norm, spread=spread,
                            background=background)
        else:
            img = rasterize(x, y, box_w, box_h, limits, rgb=to_rgb(SINGLE_COLOR), spread=spread,
                            background=background)
        ax.imshow(np.clip(img, 0, 1), extent=limits, origin="upper", interpolation="nearest", aspect="auto")
    else:
        area_pt2 = (box_w / px_per_pt) * (box_h / px_per_pt)
        size, alpha = _point_style(n if background is None else max(n, len(background[0])), area_pt2)
        if background is not None:
            bsize, _ = _point_style(len(background[0]), area_pt2)
            ax.scatter(background[0], background[1], s=bsize, c="#d0d0d0", linewidths=0, alpha=0.6,
                       rasterized=raster is not False)
        order = np.random.RandomState(seed).permutation(n)
        if categories is not None:
            if categories.on_top:
                top = np.isin(categories.codes[order], categories.on_top)
                order = np.concatenate([order[~top], order[top]])
            colours = palette[categories.codes[order]]
        elif values is not None:
            v = values[order]
            colours = np.asarray(cm(norm(np.where(np.isfinite(v), v, lo))))[:, :3]
            colours[~np.isfinite(v)] = to_rgb(MISSING_COLOR)
            # missing first, so they sit under the coloured points
            first = np.argsort(np.isfinite(v), kind="stable")
            order, colours = order[first], colours[first]
        else:
            colours = np.broadcast_to(np.asarray(to_rgb(SINGLE_COLOR)), (n, 3))
        # in SVG/PDF the markers are one embedded bitmap, unless raster=False asks for vector shapes
        ax.scatter(x[order], y[order], s=size, c=colours, linewidths=0, alpha=alpha, rasterized=raster is not False)

    legend_x = ax_rect[0] + ax_rect[2] + MARGIN / 2
    if labels is True and categories is not None:  # the largest categories, at their medoids
        from corpusmap.labels import medoid

        labels = [(*medoid(x[categories.codes == code], y[categories.codes == code]), categories.names[code])
                  for code in range(min(categories.labelled, max_labels))
                  if (categories.codes == code).sum() >= max(10, 0.005 * n)]
    if labels and labels is not True:
        from corpusmap.labels import place_labels

        placed = place_labels(ax, renderer, [(lx, ly) for lx, ly, _ in labels],
                              [_short(text, 40) for _, _, text in labels], fontsize=fs * 0.8)
        if on_labels is not None:
            on_labels(placed)
    if categories is None and values is not None and legend:
        cax = fig.add_axes([legend_x + 0.01, 0.2, fs * 1.2 * px_per_pt / width, 0.6])
        finite = values[np.isfinite(values)]
        below, above = bool((finite < norm.vmin).any()), bool((finite > norm.vmax).any())
        extend = "both" if below and above else "min" if below else "max" if above else "neither"
        bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cm), cax=cax, extend=extend)  # arrows: values beyond
        bar.ax.tick_params(labelsize=fs * 0.8)
        if legend_title:
            bar.set_label(legend_title, fontsize=fs * 0.9)
        if integer_ticks:
            from matplotlib.ticker import MaxNLocator

            bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        if not np.isfinite(values).all():  # points without a value: their grey named under the bar
            from matplotlib.patches import Rectangle

            side = fs * 1.2 * px_per_pt
            fig.add_artist(Rectangle((legend_x + 0.01, 0.2 - 2.2 * side / height), side / width, side / height,
                                     transform=fig.transFigure, facecolor=MISSING_COLOR, edgecolor="none"))
            fig.text(legend_x + 0.01 + 1.4 * side / width, 0.2 - 1.7 * side / height, MISSING_VALUE_NAME,
                     fontsize=fs * 0.8, va="center")
    if title:
        fig.text(0.5, 1 - (fs * 1.2 * px_per_pt) / height, title, ha="center", va="center", fontsize=fs * 1.2)

    import matplotlib

    fmt = out.suffix.lstrip(".").lower() or "png"
    # same figure, same bytes: no creation date in SVG/PDF, and SVG's element ids hashed from a fixed salt
    metadata = {"png": {"Creator": "corpusmap"}, "svg": {"Creator": "corpusmap", "Date": None},
                "pdf": {"Creator": "corpusmap", "CreationDate": None}}.get(fmt)
    style = {"svg.fonttype": "none", "pdf.fonttype": 42, "svg.hashsalt": "corpusmap"}
    with atomic_path(out) as tmp, matplotlib.rc_context(style):
        with open(tmp, "wb") as fh:
            fig.savefig(fh, format=fmt, dpi=dpi, facecolor="white", metadata=metadata)
    return out


def _short(text: str, limit: int) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _legend_label(name: str, count: int) -> str:
    return f"{_short(name, 32)} ({count:,})"


__all__ = ["Categories", "categorize", "highlight", "qualitative_palette", "rasterize", "render_map",
           "RASTER_THRESHOLD"]
