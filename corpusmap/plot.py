"""The plot stage: a publication figure of a stored map (PNG, SVG or PDF), coloured by a column, by words, by
cluster or by a region's excess; recorded in ``RUN/maps/<map>.renders.json`` so that it is redrawn only when its
parameters or the map change."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from corpusmap.atomic import read_json, write_json
from corpusmap.errors import CorpusmapError, UsageProblem
from corpusmap.progress import info
from corpusmap.run import Run, check_name
from corpusmap.stage import Stage

FORMATS = ("png", "svg", "pdf")
_NOT_COLUMNS = ("x", "y", "text")
RECEIPT = ".receipt.json"  # the render's stage block, beside the staged figure


@dataclass(frozen=True)
class PlotParams:
    """A figure of map ``map``: ``color`` is ``auto`` (label, else year), ``none``, a column, or
    ``words:w1,w2`` (abstracts containing any of the words, as whole tokens)."""

    map: str = "tsne"
    color: str = "auto"
    output: Optional[str] = None  # default RUN/maps/MAP.png, or MAP.COLOR.png for another colouring
    width: int = 2000
    height: int = 2000
    dpi: int = 300
    labels: bool = False
    title: Optional[str] = None
    max_categories: int = 10
    reference: bool = True
    raster: Optional[bool] = None

    def __post_init__(self):
        check_name(self.map, "--map")
        for name in ("width", "height", "dpi"):
            if getattr(self, name) < 16:
                raise UsageProblem(f"--{name} must be at least 16")
        if not 1 <= self.max_categories <= 20:
            raise UsageProblem("--max-categories must be between 1 and 20")
        if self.output is not None and Path(self.output).suffix.lower().lstrip(".") not in FORMATS:
            raise UsageProblem(f"-o {self.output}: the figure must end in .png, .svg or .pdf")
        parse_color(self.color)

    def out_path(self, run: Run) -> Path:
        if self.output is not None:
            return Path(self.output)
        variant = None if self.color == "auto" else _slug(self.color)
        return run.default_render_path(self.map, "png", variant)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:60] or "color"


def parse_color(color: Optional[str]) -> tuple[str, Optional[list]]:
    """``(mode, words)``: mode is auto, none, words or column."""
    if color is None or color == "auto":
        return "auto", None
    if color == "none":
        return "none", None
    if color.startswith("words:"):
        words = [w.strip().lower() for w in color[len("words:"):].split(",") if w.strip()]
        if not words:
            raise UsageProblem("--color words: needs at least one word, e.g. words:delves,underscores")
        return "words", words
    return "column", None


class PlotStage(Stage):
    """``corpusmap plot``: one figure of a stored map."""

    name = "plot"
    what = "a figure"
    packages = ("matplotlib",)
    redrawn = True  # a figure is cheap: drawn again whenever its parameters change

    def key(self, params: PlotParams) -> str:
        return f"renders/{params.map}"  # figures of one map are recorded in one file: one writer at a time

    def where(self, run: Run, params: PlotParams) -> Path:
        return params.out_path(run)

    def stored(self, run: Run, params: PlotParams) -> Optional[dict]:
        block = run.render_block(params.map, params.out_path(run))
        return {"stage": block} if block is not None else None

    def check_files(self, run: Run, params: PlotParams, manifest: dict) -> Optional[str]:
        path = params.out_path(run)
        if not path.is_file():
            return f"{path} is missing"
        if path.stat().st_size != manifest["stage"].get("bytes"):
            return f"{path} was changed since it was drawn"
        return None

    def prepare(self, run: Run, params: PlotParams) -> None:
        from corpusmap.maps import need_map

        run.need_corpus()
        need_map(run, params.map)
        mode, _ = parse_color(params.color)
        if mode == "column" and params.color not in colour_columns(run, params.map):
            raise UsageProblem(f"--color {params.color!r}: no such column; available: "
                               f"{', '.join(colour_columns(run, params.map))}, none, or words:w1,w2")

    def inputs(self, run: Run, params: PlotParams) -> dict:
        from corpusmap.maps import map_fingerprint

        return {"corpus": run.corpus_fingerprint, f"maps/{params.map}": map_fingerprint(run, params.map)}

    def compute(self, run: Run, params: PlotParams, staging: Path, block: dict) -> dict:
        out = params.out_path(run)
        staged = staging / out.name
        draw(run, params, staged)
        block.update(output=run.relative(out), bytes=staged.stat().st_size)
        block["fingerprint"] = f"{block['output']}@{block['created']}"
        write_json(staging / RECEIPT, block)
        return {"stage": block}

    def commit(self, run: Run, params: PlotParams, staging: Path) -> None:
        from corpusmap.run import writing

        out = params.out_path(run)
        with writing(out):
            out.parent.mkdir(parents=True, exist_ok=True)
            (staging / out.name).replace(out)
        run.record_render(params.map, out, read_json(staging / RECEIPT))
        info(f"plot: wrote {out}")


def colour_columns(run: Run, map_name: str) -> list[str]:
    """Columns a map can be coloured by: the map's own and the corpus's (but never x, y or the text)."""
    import pyarrow.parquet as pq

    cols = [c for c in pq.read_schema(run.map_path(map_name)).names if c not in _NOT_COLUMNS]
    return cols + [c for c in run.corpus_columns() if c not in cols and c not in _NOT_COLUMNS]


def _numeric(array) -> Optional[np.ndarray]:
    """Float values of an Arrow column when it is numeric (or strings that are nearly all numbers)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = array.type
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        sample = array.slice(0, min(len(array), 5000)).drop_null()
        if len(sample) == 0:
            return None
        try:
            values = pc.cast(sample, pa.float64())
            if len(pc.unique(values)) <= 12:  # a few codes: categories, not a scale
                return None
            return pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
    return None


def _column(run: Run, map_name: str, column: str):
    import pyarrow.parquet as pq

    path = run.map_path(map_name)
    if column in pq.read_schema(path).names:
        array = pq.read_table(path, columns=[column], memory_map=True).column(column)
    else:
        array = run.read_corpus([column]).column(column)
    return array.combine_chunks()


@dataclass
class Colouring:
    """How the points are coloured: categories (legend) or values (colour bar), or neither."""

    categories: object = None
    values: Optional[np.ndarray] = None
    title: Optional[str] = None
    integer_ticks: bool = False


def colouring(run: Run, params: PlotParams, n: int) -> Colouring:
    from corpusmap import render

    mode, words = parse_color(params.color)
    if mode == "none":
        return Colouring()
    if mode == "words":
        from corpusmap.tokens import contains_any

        hits = np.zeros(n, dtype=bool)
        offset = 0
        for batch in run.iter_corpus_batches(["text"]):
            texts = batch.column(0).to_pylist()
            hits[offset:offset + len(texts)] = contains_any(texts, words)
            offset += len(texts)
        return Colouring(render.highlight(hits, "contains " + ", ".join(words)), title="abstracts")
    columns = colour_columns(run, params.map)
    column = params.color if mode == "column" else next((c for c in ("label", "year") if c in columns), None)
    if column is None:
        return Colouring()
    array = _column(run, params.map, column)
    if len(array) != n:
        raise CorpusmapError(f"column {column!r} has {len(array):,} rows but the map {n:,} points")
    numeric = _numeric(array)
    if mode == "auto" and column == "label" and numeric is None:
        categories = render.categorize(array, params.max_categories)
        if categories.labelled or "year" not in columns:
            return Colouring(categories, title=column)
        column, array = "year", _column(run, params.map, "year")  # no labels at all: colour by year
        numeric = _numeric(array)
    if numeric is not None and np.isfinite(numeric).any():
        finite = numeric[np.isfinite(numeric)]
        return Colouring(values=numeric, title=column, integer_ticks=bool(np.all(finite == np.round(finite))))
    return Colouring(render.categorize(array, params.max_categories), title=column)


def draw(run: Run, params: PlotParams, out: Path) -> Path:
    """Draw the figure of ``params`` to ``out`` (its suffix decides the format)."""
    import pyarrow.parquet as pq

    from corpusmap import render
    from corpusmap.maps import read_map

    t0 = time.perf_counter()
    data = read_map(run, params.map)
    x, y = data.coords[:, 0], data.coords[:, 1]
    colours = colouring(run, params, len(x))
    background = None
    ref = data.manifest.get("reference")
    if params.reference and ref:
        ref_file = Run(ref.get("run", "")).map_path(ref.get("map"))
        if ref_file.is_file():
            table = pq.read_table(ref_file, columns=["x", "y"])
            background = (table.column("x").to_numpy(), table.column("y").to_numpy())
    render.render_map(x, y, out, categories=colours.categories, values=colours.values, width=params.width,
                      height=params.height, dpi=params.dpi, title=params.title, legend_title=colours.title,
                      labels=params.labels, integer_ticks=colours.integer_ticks, background=background,
                      raster=params.raster)
    info(f"plot: {params.width}x{params.height} px, {len(x):,} points, {time.perf_counter() - t0:.1f} s")
    return out
