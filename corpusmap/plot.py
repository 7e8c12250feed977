"""The plot stage: a publication figure of a stored map (PNG, SVG or PDF), coloured by a column, by words, by
cluster or by each region's excess, with cluster names that never overlap; recorded in
``RUN/maps/<map>.renders.json`` (with the boxes of the names drawn) so that it is redrawn only when its parameters
or what it shows change."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from corpusmap.atomic import read_json, sha256_file, write_json
from corpusmap.errors import CorpusmapError, UsageProblem
from corpusmap.progress import info, log
from corpusmap.run import Run, check_name, read_map_stage
from corpusmap.stage import Stage, check_numbers, refuse_unused
from corpusmap.values import year_colour_range

FORMATS = ("png", "svg", "pdf")
_NOT_COLUMNS = ("x", "y", "text")
RECEIPT = ".receipt.json"  # the render's stage block, beside the staged figure


LABEL_KINDS = ("auto", "keywords", "label")
MAX_REGION_NAMES = 40  # names on one figure at most (largest regions first)


MAX_PIXELS = 20_000  # per side: beyond, a figure is gigabytes in memory
MAX_DPI = 2400


@dataclass(frozen=True)
class PlotParams:
    """A figure of map ``map``. ``color``: ``auto`` (label, else year), ``none``, a column, ``words:w1,w2``
    (abstracts containing any of the words, as whole tokens), ``cluster[:LEVEL]`` or ``cluster:NAME[:LEVEL]``
    (regions of ``corpusmap clusters``, level 0 the coarsest), or ``excess:GROUP:TARGET`` (each region coloured by
    the gap δ of a word group, from ``corpusmap excess --by cluster[:LEVEL]``). ``labels``: ``auto`` (the names of
    the colour's largest categories), ``keywords`` (each region's top words) or ``label`` (each region's dominant
    label), at the regions' medoids."""

    map: str = "tsne"
    color: str = "auto"
    output: Optional[str] = None  # default RUN/maps/MAP.png, or MAP.COLOR.png for another colouring
    width: int = 2000
    height: Optional[int] = None  # None: as high as the map's shape needs (half to twice the width)
    dpi: int = 300
    labels: Optional[str] = None
    title: Optional[str] = None
    max_categories: Optional[int] = None  # None: 10, or every region when region names are on the map
    reference: bool = True
    raster: Optional[bool] = None

    def __post_init__(self):
        check_numbers(self)
        check_name(self.map, "--map")
        for name, most in (("width", MAX_PIXELS), ("height", MAX_PIXELS), ("dpi", MAX_DPI)):
            value = getattr(self, name)
            if value is not None and not 16 <= value <= most:
                raise UsageProblem(f"--{name} must be between 16 and {most:,}, not {value:,}")
        if self.max_categories is not None and not 1 <= self.max_categories <= 20:
            raise UsageProblem("--max-categories must be between 1 and 20")
        if self.output is not None and Path(self.output).suffix.lower().lstrip(".") not in FORMATS:
            raise UsageProblem(f"-o {self.output}: the figure must end in .png, .svg or .pdf")
        if self.labels is not None and self.labels not in LABEL_KINDS:
            raise UsageProblem(f"--labels takes {', '.join(LABEL_KINDS)} (or nothing: auto), not {self.labels!r}")
        if self.max_categories is not None and parse_color(self.color)[0] in ("none", "excess"):
            refuse_unused(["--max-categories"], f"--color {self.color} draws no categories to limit")

    def out_path(self, run: Run) -> Path:
        if self.output is not None:
            return Path(self.output)
        variant = None if self.color == "auto" else _slug(self.color)
        return run.default_render_path(self.map, "png", variant)


def figure_size(path: Path, dpi: int) -> tuple[int, int]:
    """(width, height) in pixels of a written figure: from the PNG header, or the SVG's root element or PDF's page
    box (points) at ``dpi``."""
    path = Path(path)
    if path.suffix.lower() == ".png":  # the IHDR chunk: width and height at bytes 16-24
        with open(path, "rb") as fh:
            head = fh.read(24)
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    data = path.read_bytes()
    pattern = rb'<svg[^>]*width="([0-9.]+)pt"[^>]*height="([0-9.]+)pt"' if path.suffix.lower() == ".svg" else \
        rb"/MediaBox \[\s*0 0 ([0-9.]+) ([0-9.]+)\s*\]"
    m = re.search(pattern, data)
    return (round(float(m.group(1)) * dpi / 72), round(float(m.group(2)) * dpi / 72)) if m else (0, 0)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:60] or "color"


def parse_color(color: Optional[str]) -> tuple[str, Optional[list]]:
    """``(mode, detail)``: auto, none, column; words (the words); cluster (name, level); excess (group, target)."""
    if color is None or color == "auto":
        return "auto", None
    if color == "none":
        return "none", None
    if color == "cluster" or color.startswith("cluster:"):
        from corpusmap.clusters import parse_cluster_spec

        return "cluster", list(parse_cluster_spec(color))
    if color.startswith("excess:"):
        parts = color.split(":")
        if len(parts) != 3 or not all(parts[1:]):
            raise UsageProblem(f"--color {color!r}: write excess:GROUP:TARGET, e.g. excess:excess_2024:2024")
        return "excess", parts[1:]
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
    drawn_by = ("corpusmap.plot", "corpusmap.render", "corpusmap.labels")

    def key(self, params: PlotParams) -> str:
        return f"renders/{params.map}"  # figures of one map are recorded in one file: one writer at a time

    def needs(self, params: PlotParams) -> set:
        """The map, a clustering named in --color cluster:NAME:LEVEL, and the excess report behind --color excess."""
        mode, detail = parse_color(params.color)
        named = {f"clusters/{detail[0]}"} if mode == "cluster" and detail[0] else set()
        return {f"maps/{params.map}"} | named | ({"excess"} if mode == "excess" else set())

    def where(self, run: Run, params: PlotParams) -> Path:
        return params.out_path(run)

    def stored(self, run: Run, params: PlotParams) -> Optional[dict]:
        block = run.render_block(params.map, params.out_path(run))
        return {"stage": block} if block is not None else None

    def check_files(self, run: Run, params: PlotParams, manifest: dict) -> Optional[str]:
        return run.render_problem(params.out_path(run), manifest["stage"])

    def prepare(self, run: Run, params: PlotParams) -> None:
        from corpusmap.maps import need_map

        run.refuse_own_file(params.out_path(run), params.output, params.map)
        run.need_corpus()
        need_map(run, params.map)
        if not params.reference:
            _refuse_no_reference(params, read_map_stage(run.map_path(params.map)))
        mode, detail = parse_color(params.color)
        if mode == "column" and params.color not in colour_columns(run, params.map):
            raise UsageProblem(f"--color {params.color!r}: no such column{run.read_as_hint(params.color, '--color')}; "
                               "available: "
                               f"{', '.join(colour_columns(run, params.map))}, none, words:w1,w2, cluster[:LEVEL] "
                               "or excess:GROUP:TARGET")
        self.preflight(run, params)

    def preflight(self, run: Run, params: PlotParams) -> None:
        """The clustering of ``--color cluster`` and ``--labels``, and the regions of ``--color excess``."""
        mode, detail = parse_color(params.color)
        if mode == "excess":
            region_deltas(run, *detail)
        elif mode == "cluster" or params.labels in ("keywords", "label"):
            name, level = _cluster_choice(run, params)
            _clustering(run, name).level(level, "--color")

    def check_plan(self, run: Run, params: PlotParams, earlier: list, planned: Optional[dict] = None) -> None:
        from corpusmap.clusters import check_planned_clustering
        from corpusmap.maps import AddStage, MapStage

        mine = [stage for stage, r, p in earlier if isinstance(stage, (MapStage, AddStage))
                and r.path.resolve() == run.path.resolve() and p.name == params.map]
        if not params.reference and not any(isinstance(stage, AddStage) for stage in mine):
            held = run.map_path(params.map)  # (a map a [[map]] job makes never has added points)
            _refuse_no_reference(params, read_map_stage(held) if held.is_file() and not mine else {})
        mode, detail = parse_color(params.color)
        if mode == "excess" or not (mode == "cluster" or params.labels in ("keywords", "label")):
            return
        what = f"--color {params.color}" if mode == "cluster" else f"--labels {params.labels}"
        check_planned_clustering(run, earlier, detail[0] if mode == "cluster" else None,
                                 f"a [[plot]] of {params.map} with {what}", planned)

    def will_read(self, run: Run, params: PlotParams, planned: set) -> set:
        """Also the clustering of --color cluster[:NAME] or --labels (the default one as the run will hold it)."""
        from corpusmap.clusters import planned_clustering

        mode, detail = parse_color(params.color)
        regions = mode == "cluster" or (mode != "excess" and params.labels in ("keywords", "label"))
        chosen = planned_clustering(planned, detail[0] if mode == "cluster" else None) if regions else set()
        return super().will_read(run, params, planned) | chosen

    def inputs(self, run: Run, params: PlotParams) -> dict:
        from corpusmap.clusters import clustering_fingerprint
        from corpusmap.maps import map_fingerprint

        out = {"corpus": run.corpus_fingerprint, f"maps/{params.map}": map_fingerprint(run, params.map)}
        mode, _ = parse_color(params.color)
        if mode in ("cluster", "excess") or params.labels in ("keywords", "label"):
            name = _clustering(run, _cluster_choice(run, params)[0]).name
            out[f"clusters/{name}"] = clustering_fingerprint(run, name)
        if mode == "excess":
            out["excess"] = run.outputs_by_key()["excess"].fingerprint
        return out

    def compute(self, run: Run, params: PlotParams, staging: Path, block: dict) -> dict:
        out = params.out_path(run)
        staged = staging / out.name
        placed = draw(run, params, staged)
        block.update(output=run.relative(out), bytes=staged.stat().st_size, sha256=sha256_file(staged),
                     size=list(figure_size(staged, params.dpi)))
        if placed is not None:
            block["labels"] = [{"text": t, "anchor": a, "box": b, "moved": m}
                               for t, a, b, m in zip(placed.texts, placed.anchors, placed.boxes, placed.moved)]
            block["labels_left_out"] = placed.skipped
            block["regions_not_named"] = placed.unnamed
            if placed.unnamed:
                log.warning("warning: %s: %d region(s) not named: only the %d largest with at least 0.2%% of the "
                            "points are; a coarser level (a lower LEVEL in --color cluster:[NAME:]LEVEL) has "
                            "fewer", out, placed.unnamed, MAX_REGION_NAMES)
            if placed.skipped:
                log.warning("warning: %s: %d region name(s) found no free place and were left out (%s); a larger "
                            "--width and --height make room", out, len(placed.skipped), "; ".join(placed.skipped[:3]))
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
    cmap: str = "viridis"
    norm_range: Optional[tuple] = None
    legend: bool = True  # False: the names on the map say what the colours are


def _cluster_choice(run: Run, params: PlotParams) -> tuple[Optional[str], Optional[str]]:
    """The clustering and level a figure uses: those of ``--color cluster:...`` or of the excess report behind
    ``--color excess:...``, else the default clustering's coarsest level."""
    mode, detail = parse_color(params.color)
    if mode == "cluster":
        return tuple(detail)
    if mode == "excess":
        clustering, level, _ = region_deltas(run, *detail)
        return clustering.name, str(level)
    return None, None


def _clustering(run: Run, name: Optional[str]):
    from corpusmap.clusters import read_clustering

    return read_clustering(run, name)


def region_deltas(run: Run, group: str, target: str) -> tuple[object, int, dict]:
    """``(clustering, level, {cluster: δ})`` of word group ``group`` in ``target``, per region, from the excess
    report of ``corpusmap excess RUN --by cluster[:LEVEL]``."""
    import pandas as pd

    from corpusmap.clusters import parse_cluster_spec
    from corpusmap.manifests import read_manifest

    exists = (run.excess_dir / Run.MANIFEST).is_file()
    hint = (f"run `corpusmap excess {run.path} --target {target} --by cluster` first (with --overwrite to replace "
            "the report there; regions need --min-group-size abstracts, 300 by default, in each period of "
            "--size-window)" if exists else
            f"run `corpusmap excess {run.path} --target {target} --by cluster` first (regions need "
            "--min-group-size abstracts, 300 by default, in each period of --size-window)")
    if not exists:
        raise CorpusmapError(f"--color excess:{group}:{target}: no excess report in {run.path}; {hint}")
    manifest = read_manifest(run.excess_dir / Run.MANIFEST, hint)
    by = (manifest.get("parameters") or {}).get("by") or ""
    if not (by == "cluster" or by.startswith("cluster:")):
        raise CorpusmapError(f"--color excess:{group}:{target}: the excess report of {run.path} is not broken down "
                             f"by region (--by {by or 'none'}); {hint}")
    name, level_spec = parse_cluster_spec(by)
    clustering = _clustering(run, name)
    level = clustering.level(level_spec, "--by")
    path = run.excess_dir / "subgroups.parquet"
    table = pd.read_parquet(path) if path.is_file() else pd.DataFrame(columns=["group", "target"])
    rows = table[(table["group"] == group) & (table["target"].astype(str) == str(target))]
    if rows.empty:
        groups = sorted({f"{g}:{t}" for g, t in zip(table["group"], table["target"])})
        raise UsageProblem(f"--color excess:{group}:{target}: the excess report of {run.path} has no region of "
                           f"group {group!r} in {target} " + (f"(it has {', '.join(groups)})" if groups else
                           "(no region has --min-group-size abstracts in every period: lower it)"))
    deltas = {int(str(value).split(":", 1)[0]): float(d) for value, d in zip(rows["subgroup"], rows["delta"])}
    return clustering, level, deltas


def colouring(run: Run, params: PlotParams, x: np.ndarray, y: np.ndarray) -> Colouring:
    """The colours of the map's points (``x``, ``y``) that ``params.color`` asks for."""
    from corpusmap import render

    n = len(x)
    mode, detail = parse_color(params.color)
    if mode == "none":
        return Colouring()
    if mode == "words":
        from corpusmap.tokens import contains_any

        hits = np.zeros(n, dtype=bool)
        offset = 0
        for batch in run.iter_corpus_batches(["text"]):
            texts = batch.column(0).to_pylist()
            hits[offset:offset + len(texts)] = contains_any(texts, detail)
            offset += len(texts)
        return Colouring(render.highlight(hits, "contains " + ", ".join(detail)), title="abstracts")
    if mode == "cluster":
        clustering = _clustering(run, detail[0])
        level = clustering.level(detail[1], "--color")
        names = clustering.names(level)
        labels = clustering.levels[level]
        text = np.array([f"{c}: {names[c]}" if c >= 0 else None for c in range(-1, len(names))], dtype=object)
        if params.max_categories is None and params.labels in ("keywords", "label"):
            # the regions are named on the map: each a colour of the palette, touching regions different ones; no legend
            from corpusmap.palette import region_colours

            categories = render.categorize(text[labels + 1], len(names))
            palette, named = render.CATEGORICAL, categories.labelled
            slots = region_colours(np.where(categories.codes < named, categories.codes, -1), x, y, named, len(palette))
            categories.colors[:named] = [palette[i] for i in slots]
            return Colouring(categories, title=f"{clustering.name}, level {level}", legend=False)
        return Colouring(render.categorize(text[labels + 1], params.max_categories or 10),
                         title=f"{clustering.name}, level {level}")
    if mode == "excess":
        clustering, level, deltas = region_deltas(run, *detail)
        labels = clustering.levels[level]
        per_cluster = np.full(int(labels.max()) + 2, np.nan)
        for c, d in deltas.items():
            per_cluster[c + 1] = 100 * d
        values = per_cluster[labels + 1]
        span = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
        # RdYlBu: δ 0 is pale yellow, neither the white background nor the grey of regions without a value
        return Colouring(values=values, title=f"δ {detail[0]} {detail[1]} (percentage points)",
                         cmap="RdYlBu_r", norm_range=(-span, span))
    columns = colour_columns(run, params.map)
    column = params.color if mode == "column" else next((c for c in ("label", "year") if c in columns), None)
    if column is None:
        return Colouring()
    array = _column(run, params.map, column)
    if len(array) != n:
        raise CorpusmapError(f"column {column!r} has {len(array):,} rows but the map {n:,} points")
    numeric = _numeric(array)
    if mode == "auto" and column == "label" and numeric is None:
        categories = render.categorize(array, params.max_categories or 10)
        if categories.labelled or "year" not in columns:
            return Colouring(categories, title=column)
        column, array = "year", _column(run, params.map, "year")  # no labels at all: colour by year
        numeric = _numeric(array)
    if numeric is not None and np.isfinite(numeric).any():
        finite = numeric[np.isfinite(numeric)]
        # years: the page's colour range (a few very old papers do not wash out the scale)
        return Colouring(values=numeric, title=column, integer_ticks=bool(np.all(finite == np.round(finite))),
                         norm_range=year_colour_range(finite) if column == "year" else None)
    return Colouring(render.categorize(array, params.max_categories or 10), title=column)


def region_labels(run: Run, params: PlotParams, x: np.ndarray, y: np.ndarray,
                  limit: int = MAX_REGION_NAMES) -> tuple[list, int]:
    """``(x, y, text)`` of each region of the chosen level with at least 0.2% of the points (and 3), up to
    ``limit`` of them in cluster order (largest first), at its medoid: its keywords (``labels=keywords``) or its
    dominant label and that label's share of its members (``labels=label``); and how many regions were not named."""
    from corpusmap.labels import medoid

    name, level_spec = _cluster_choice(run, params)
    clustering = _clustering(run, name)
    level = clustering.level(level_spec, "--color")
    labels = clustering.levels[level]
    rows = clustering.summary[clustering.summary["level"] == level].sort_values("cluster")
    texts = rows["name"].tolist() if params.labels == "keywords" else \
        [f"{d} {share:.0%}" if d is not None else "(unlabelled)"  # (the share tells regions of one label apart)
         for d, share in zip(rows["dominant_label"], rows["dominant_share"])]
    out = []
    for c in range(len(texts)):
        members = labels == c
        if members.sum() >= max(3, 0.002 * len(x)) and len(out) < limit:
            out.append((*medoid(x[members], y[members]), texts[c]))
    return out, len(texts) - len(out)


def _refuse_no_reference(params: PlotParams, manifest: dict) -> None:
    """--no-reference on a map (``manifest``) without points added to another run's map: an option with no
    effect."""
    if not manifest.get("reference"):
        refuse_unused(["--no-reference"], f"the map {params.map!r} has no points added with `corpusmap map --add`, "
                                          "so no reference map to leave out")


def draw(run: Run, params: PlotParams, out: Path):
    """Draw the figure of ``params`` to ``out`` (its suffix decides the format); returns the names placed
    (:class:`corpusmap.labels.Placed`) or ``None``."""
    from corpusmap import render
    from corpusmap.maps import read_map, reference_coords

    t0 = time.perf_counter()
    data = read_map(run, params.map)
    x, y = data.coords[:, 0], data.coords[:, 1]
    colours = colouring(run, params, x, y)
    if params.max_categories is not None and colours.categories is None:
        refuse_unused(["--max-categories"], f"--color {params.color} draws no categories to limit")
    background = reference_coords(data) if params.reference else None
    labels, unnamed = region_labels(run, params, x, y) if params.labels in ("keywords", "label") \
        else (params.labels == "auto", 0)
    if labels is True and (colours.categories is None or not colours.categories.labelled):
        raise UsageProblem(f"--labels alone names the colour's categories, and --color {params.color} has none to "
                           "name; colour by a label column or by cluster, or name regions with --labels keywords")
    placed = []
    render.render_map(x, y, out, categories=colours.categories, values=colours.values, width=params.width,
                      height=params.height, dpi=params.dpi, title=params.title, legend_title=colours.title,
                      labels=labels, integer_ticks=colours.integer_ticks, background=background,
                      raster=params.raster, cmap=colours.cmap, norm_range=colours.norm_range,
                      legend=colours.legend, on_labels=placed.append)
    info(f"plot: {params.width} px wide, {len(x):,} points, {time.perf_counter() - t0:.1f} s")
    if placed:
        placed[0].unnamed = unnamed
    return placed[0] if placed else None
