"""PNG rendering: exact pixel size, real colours, legends, the numpy rasteriser, on a real corpus's labels."""
from __future__ import annotations

import ast
import gzip
import json

import numpy as np
import pytest

from corpusmap import render
from corpusmap.errors import UsageProblem
from conftest import EXAMPLE_CORPUS


def read_png(path):
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def distinct_colours(pixels: np.ndarray) -> int:
    return len(np.unique(pixels.reshape(-1, 3), axis=0))


@pytest.fixture(scope="module")
def points():
    """PCA coordinates of the example corpus's TF-IDF vectors, with its subjects and years."""
    from sklearn.decomposition import PCA, TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    with gzip.open(EXAMPLE_CORPUS, "rt") as fh:
        records = [json.loads(line) for line in fh if line.strip()]
    records = [r for r in records if r.get("abstract")]
    tfidf = TfidfVectorizer(sublinear_tf=True, min_df=2).fit_transform([r["abstract"] for r in records])
    coords = PCA(2).fit_transform(TruncatedSVD(30, random_state=0).fit_transform(tfidf))
    subjects = []
    for r in records:
        value = r.get("subjects") or []
        if isinstance(value, str):
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                value = [value]
        subjects.append(value[0] if value else None)
    years = np.array([float(r.get("year") or "nan") for r in records])
    return coords[:, 0], coords[:, 1], subjects, years


def test_categorize_top_other_missing():
    values = ["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"] + [None, "", "  "]
    cats = render.categorize(values, max_categories=2)
    assert cats.names == ["a", "b", render.OTHER_NAME, render.MISSING_NAME]
    assert cats.counts == [5, 3, 3, 3]
    assert cats.labelled == 2
    assert cats.codes.tolist() == [0] * 5 + [1] * 3 + [2] * 3 + [3] * 3
    assert len(set(cats.colors)) == 4
    # ties are broken by name, so the palette does not depend on row order
    assert render.categorize(["y", "x"]).names == ["x", "y"]
    assert render.categorize(["10: b", "8: a", "9: c"]).names == ["8: a", "9: c", "10: b"]  # numbers by value
    import pyarrow as pa

    assert render.categorize(pa.chunked_array([["a", None], ["a", "b"]])).counts == [2, 1, 1]
    assert render.categorize(np.array([2012, 2013, 2012])).names == ["2012", "2013"]
    assert render.categorize([["a", "b"], None, ["a", "b"]]).counts == [2, 1]


def test_figures_and_the_page_share_one_palette_without_grey():
    """A label has the same colour in a figure and on the page: the page's CATEGORICAL list is render's; no
    category colour is a grey (grey is "other")."""
    import re
    from pathlib import Path

    from matplotlib.colors import to_rgb

    source = (Path(render.__file__).parent / "view" / "web" / "src" / "colors.js").read_text()
    page = re.findall(r"'(#[0-9a-f]{6})'", re.search(r"CATEGORICAL = \[(.*?)\];", source, re.S).group(1))
    assert tuple(page) == render.CATEGORICAL
    assert render.qualitative_palette(10) == list(render.CATEGORICAL[:10])
    assert len(set(render.qualitative_palette(20))) == 20
    assert render.qualitative_palette(30)[:len(render.CATEGORICAL)] == list(render.CATEGORICAL)  # theirs kept
    # beyond the 18, each colour far from all before it and from the greys (CIELAB ΔE; 50 colours: 27 here)
    lab = render._cielab(np.array([to_rgb(c) for c in render.qualitative_palette(50)]))
    np.testing.assert_allclose(render._cielab(np.array([[1.0, 1, 1], [1, 0, 0]])),  # published sRGB D65 values
                               [[100, 0, 0], [53.24, 80.09, 67.20]], atol=0.02)
    greys = render._cielab(np.array([to_rgb(c) for c in (render.OTHER_COLOR, render.MISSING_COLOR)]))
    for i in range(len(render.CATEGORICAL), 50):
        assert np.linalg.norm(lab[:i] - lab[i], axis=1).min() > 20
        assert np.linalg.norm(greys - lab[i], axis=1).min() > 20
    for colour in render.CATEGORICAL:
        r, g, b = to_rgb(colour)
        assert max(r, g, b) - min(r, g, b) > 0.1, colour  # not a grey


@pytest.mark.parametrize("raster", [False, True])
def test_categorical_png_has_requested_size_and_colours(tmp_path, points, raster):
    x, y, subjects, _ = points
    out = render.render_map(x, y, tmp_path / "map.png", categories=render.categorize(subjects), width=900,
                            height=700, dpi=150, legend_title="subject", labels=True, title="eLife",
                            raster=raster)
    pixels = read_png(out)
    assert pixels.shape == (700, 900, 3)
    assert distinct_colours(pixels) > 20
    non_white = (pixels < 245).any(axis=2).mean()
    assert 0.01 < non_white < 0.9
    assert list(tmp_path.iterdir()) == [out]  # atomic: no temporary file left


def test_continuous_png_with_colour_bar(tmp_path, points):
    x, y, _, years = points
    out = render.render_map(x, y, tmp_path / "year.png", values=years, legend_title="year", integer_ticks=True,
                            width=640, height=480, dpi=100)
    pixels = read_png(out)
    assert pixels.shape == (480, 640, 3)
    # viridis: both ends of the scale appear (dark purple and yellow-green)
    assert distinct_colours(pixels) > 30
    # points without a value get the missing grey, named under the bar (δ = 0 is pale yellow on RdYlBu: not the same)
    some = np.where(np.arange(len(x)) % 4 == 0, np.nan, years)
    for values, named in ((years, False), (some, True)):
        svg = render.render_map(x, y, tmp_path / "v.svg", values=values, width=640, height=480, dpi=100).read_text()
        assert (f">{render.MISSING_VALUE_NAME}<" in svg) == named


def test_a_long_tail_of_old_years_does_not_wash_out_the_scale(tmp_path, points, monkeypatch):
    """Years 2012-2016 with 1.5% of the papers moved to 1900: on the full range the recent years share the top of
    the scale (few colours); on the page's range (2nd-98th percentile, arrows on the bar) they spread over it."""
    from corpusmap.values import year_colour_range

    x, y, _, years = points
    old = years.copy()
    old[np.arange(len(old)) % 67 == 0] = 1900
    lo, hi = year_colour_range(old[np.isfinite(old)])
    assert lo == 2012 and hi in (2015, 2016)
    recent = np.isfinite(old) & (old > 1900)
    colours = {}
    for name, norm in (("full", (1900, 2016)), ("clipped", (lo, hi))):  # the recent points' colours on each
        out = render.render_map(x[recent], y[recent], tmp_path / f"{name}.png", values=old[recent],
                                norm_range=norm, width=640, height=480, dpi=100)
        colours[name] = distinct_colours(read_png(out)[:, :500])  # the points, left of the colour bar
    assert colours["clipped"] > 2 * colours["full"], colours
    # rasterised (as above 100,000 points), a pixel's mean is of the values clipped to the scale: a 1900 paper
    # among recent ones counts as the scale's low end, not as a pull of the mean below it
    images = [read_png(render.render_map(x, y, tmp_path / f"r{i}.png", values=v, norm_range=(lo, hi), raster=True,
                                         width=320, height=240, dpi=100))
              for i, v in enumerate((old, np.clip(old, lo, hi)))]
    assert np.array_equal(images[0][:, :250], images[1][:, :250])
    # plot colours a year column on that range (any other numeric column on its full range)
    import pyarrow as pa

    from corpusmap import plot

    for column, expected in (("year", (lo, hi)), ("score", None)):
        monkeypatch.setattr(plot, "colour_columns", lambda run, name: [column])
        monkeypatch.setattr(plot, "_column", lambda run, name, col: pa.array(old))
        got = plot.colouring(None, plot.PlotParams(color=column), old, old)
        assert got.norm_range == expected and got.title == column


def test_highlight_draws_hits_on_top(tmp_path, points):
    x, y, _, _ = points
    hits = np.zeros(len(x), dtype=bool)
    hits[::9] = True
    cats = render.highlight(hits, "contains cell")
    assert cats.counts == [int(hits.sum()), int((~hits).sum())]
    out = render.render_map(x, y, tmp_path / "w.png", categories=cats, width=400, height=400, dpi=100)
    pixels = read_png(out).reshape(-1, 3).astype(int)
    red = (pixels[:, 0] > 180) & (pixels[:, 1] < 90) & (pixels[:, 2] < 90)
    assert red.sum() > 50


def test_many_points_are_rasterised_quickly(tmp_path):
    import time

    rng = np.random.default_rng(0)
    n = 1_000_000
    codes = rng.integers(0, 12, n)
    x = rng.normal(size=n) + (codes % 4) * 4
    y = rng.normal(size=n) + (codes // 4) * 4
    t0 = time.perf_counter()
    out = render.render_map(x, y, tmp_path / "big.png", categories=render.categorize(codes), width=800,
                            height=800, dpi=100, labels=True)
    assert time.perf_counter() - t0 < 60
    pixels = read_png(out)
    assert pixels.shape == (800, 800, 3) and distinct_colours(pixels) > 100


def test_background_points_and_single_colour(tmp_path, points):
    x, y, _, _ = points
    out = render.render_map(x[:100], y[:100], tmp_path / "bg.png", background=(x, y), width=300, height=300,
                            dpi=100)
    pixels = read_png(out)
    assert pixels.shape == (300, 300, 3) and distinct_colours(pixels) > 3


def test_bad_sizes_are_usage_errors(tmp_path, points):
    x, y, _, _ = points
    with pytest.raises(UsageProblem):
        render.render_map(x, y, tmp_path / "a.png", width=5)
    with pytest.raises(UsageProblem, match="too narrow"):
        render.render_map(x, y, tmp_path / "a.png", categories=render.categorize([str(i) for i in range(len(x))]),
                          width=40, height=400, dpi=100)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("kind,height", [("categories", 16), ("categories", 100), ("values", 16)])
def test_too_short_for_the_legend_is_a_usage_error(tmp_path, points, kind, height):
    x, y, subjects, years = points
    colour = {"categories": render.categorize(subjects)} if kind == "categories" else {"values": years}
    with pytest.raises(UsageProblem, match="too short for the map and its legend at --dpi 100; use a larger --height"):
        render.render_map(x, y, tmp_path / "a.png", width=400, height=height, dpi=100, **colour)
    assert not list(tmp_path.iterdir())
    render.render_map(x, y, tmp_path / "a.png", width=400, height=200, dpi=100, **colour)  # room enough


def test_svg_points_are_one_bitmap_unless_raster_is_forbidden(tmp_path, points):
    x, y, _, _ = points
    cats = render.categorize(np.arange(len(x)) % 3)
    render.render_map(x, y, tmp_path / "a.svg", categories=cats, width=400, height=300, dpi=100)
    render.render_map(x, y, tmp_path / "v.svg", categories=cats, width=400, height=300, dpi=100, raster=False)
    bitmap, vector = (tmp_path / "a.svg").read_text(), (tmp_path / "v.svg").read_text()
    assert "<image" in bitmap and "<image" not in vector and vector.count("<use") >= len(x)


def test_the_default_height_fits_the_maps_shape(tmp_path):
    rng = np.random.default_rng(0)
    wide_x, wide_y = rng.uniform(0, 2, 3000), rng.uniform(0, 1, 3000)
    out = render.render_map(wide_x, wide_y, tmp_path / "wide.png", width=1000, height=None, dpi=100)
    pixels = read_png(out)
    assert pixels.shape[1] == 1000 and 500 <= pixels.shape[0] <= 560  # the 2:1 cloud and its margins
    inked = np.flatnonzero((pixels < 250).any(axis=(1, 2)))
    assert (inked[-1] - inked[0]) / pixels.shape[0] > 0.85  # the points fill the height, no band of white
    tall = render.render_map(wide_y, wide_x * 2, tmp_path / "tall.png", width=600, height=None, dpi=100)
    assert read_png(tall).shape[:2] == (1200, 600)  # at most twice the width
