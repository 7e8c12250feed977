"""`corpusmap map` (2D maps from the stored kNN graph) and `corpusmap plot` (a figure of a stored map)."""
from __future__ import annotations

import click

from corpusmap import layouts
from corpusmap.cli.common import (default, overwrite_option, quiet_option, run_argument, run_command, seed_option,
                                  threads_option, with_jobs)
from corpusmap.errors import UsageProblem
from corpusmap.maps import AddParams, AddStage, MapParams, MapStage
from corpusmap.pipeline import Job
from corpusmap.plot import LABEL_KINDS, MAX_DPI, MAX_PIXELS, PlotParams, PlotStage
from corpusmap.run import Run
from corpusmap.stage import refuse_unused

T, U = layouts.TsneParams, layouts.UmapParams
TSNE_FLAGS = ("k", "perplexity", "exaggeration", "early_exaggeration", "early_exaggeration_iter", "n_iter",
              "dof", "learning_rate", "gradient", "symmetrize")
PLOT_FLAGS = ("width", "height", "dpi", "labels", "title")


def _plot_options(func):
    """--width/--height/--dpi/--labels/--title, shared by `map` (its default PNG) and `plot`."""
    for option in reversed([
        click.option("--width", type=click.IntRange(16, MAX_PIXELS), default=default(PlotParams, "width"),
                     show_default=True, help="Figure width in pixels."),
        click.option("--height", type=click.IntRange(16, MAX_PIXELS), default=default(PlotParams, "height"),
                     help="Figure height in pixels [default: what the map's shape needs at this width, from half "
                          "to twice the width]."),
        click.option("--dpi", type=click.IntRange(16, MAX_DPI), default=default(PlotParams, "dpi"), show_default=True,
                     help="Resolution: font and marker sizes follow it."),
        click.option("--labels", type=click.Choice(LABEL_KINDS), is_flag=False, flag_value="auto", default=None,
                     help="Names on the map, never overlapping: --labels alone names the colour's largest "
                          "categories; keywords or label names the regions of `corpusmap clusters` (their top "
                          "words, or their dominant label) at their medoids."),
        click.option("--title", default=None, help="Title above the map."),
    ]):
        func = option(func)
    return func


def _plot_job(run: Run, name: str, o: dict) -> Job:
    params = PlotParams(map=name, **{k: o[k] for k in PLOT_FLAGS})
    return Job(PlotStage(), run, params, label=f"plot {name}", report=report_plot)


def _umap_flags_given(o: dict) -> list[str]:
    """The UMAP options changed from their defaults."""
    return [f"--{key.replace('_', '-')}" for key in ("n_neighbors", "n_epochs") if o[key] is not None] + \
        (["--min-dist"] if o["min_dist"] != default(U, "min_dist") else []) + \
        (["--umap-init"] if o["umap_init"] != default(U, "init") else []) + \
        (["--umap-parallel"] if o["umap_parallel"] else [])


def map_jobs(o: dict) -> list[Job]:
    if not o["plot"]:
        refuse_unused([f"--{k}" for k in PLOT_FLAGS if o[k] != default(PlotParams, k)],
                      "--no-plot draws no figure")
    given = [("-k" if key == "k" else f"--{key.replace('_', '-')}") for key in TSNE_FLAGS if o[key] is not None]
    umap_given = _umap_flags_given(o)
    if o["add_run"]:
        given += umap_given
        if o["preset"]:
            given.append("--preset")
        given += [flag for flag, key in (("--method", "method"), ("--device", "device"))
                  if o[key] != default(MapParams, key)]
        if given:
            raise UsageProblem(f"--add places points with the reference map's own settings; drop {', '.join(given)}")
        new_run = Run(o["add_run"])
        params = AddParams(reference=o["run"], name=o["name"] or "tsne", seed=o["seed"])
        out = [Job(AddStage(o["threads"]), new_run, params, o["overwrite"], label=f"map --add {o['add_run']}",
                   report=report_map)]
        return out + ([_plot_job(new_run, params.name, o)] if o["plot"] else [])
    if o["method"] != "tsne" and given:
        raise UsageProblem(f"{', '.join(given)} only appl{'y' if len(given) > 1 else 'ies'} to --method tsne")
    if o["perplexity"] is not None and o["symmetrize"] is not None:
        raise UsageProblem("--symmetrize chooses how uniform (-k) affinities are made symmetric; perplexity "
                           "affinities are always (P + P^T) / 2, as openTSNE makes them: drop --symmetrize or use -k")
    if o["method"] != "umap" and umap_given:
        raise UsageProblem(f"{', '.join(umap_given)} only appl{'y' if len(umap_given) > 1 else 'ies'} to --method "
                           "umap")
    if o["method"] == "pca" and o["preset"]:
        raise UsageProblem("--preset applies to --method tsne or umap")
    if o["k"] is not None and o["perplexity"] is not None:
        raise UsageProblem("-k (uniform affinities) and --perplexity exclude each other")
    tsne = T.preset_params(
        o["preset"], k=o["k"], perplexity=o["perplexity"], exaggeration=o["exaggeration"],
        early_exaggeration=o["early_exaggeration"], early_exaggeration_iter=o["early_exaggeration_iter"],
        n_iter=o["n_iter"], dof=o["dof"], gradient=o["gradient"], symmetrize=o["symmetrize"],
        learning_rate=layouts._parse_learning_rate(o["learning_rate"]) if o["learning_rate"] is not None else None)
    umap = U.preset_params(o["preset"], n_neighbors=o["n_neighbors"], min_dist=o["min_dist"], n_epochs=o["n_epochs"],
                           init=o["umap_init"])
    params = MapParams(method=o["method"], name=o["name"], seed=o["seed"], tsne=tsne, umap=umap,
                       umap_parallel=o["umap_parallel"], device=o["device"])
    run = Run(o["run"])
    out = [Job(MapStage(o["threads"]), run, params, o["overwrite"], label=f"map {params.name}", report=report_map)]
    return out + ([_plot_job(run, params.name, o)] if o["plot"] else [])


def report_map(result) -> None:
    m = result.manifest
    if not result.computed:
        click.echo(f"{result.where}: the {m.get('method')} map is current; nothing to do")
        return
    seconds = (m.get("seconds") or {}).get("layout")
    timing = f", {seconds:,.1f} s" if seconds is not None else ""
    what = (f"{m['n']:,} points placed in {m['reference']['run']}'s map {m['name']!r} (kNN recall of the placed "
            f"points {m['placement']['knn_recall']:.3f})" if m.get("reference")
            else f"{m['method']} map of {m['n']:,} points")
    click.echo(f"{result.where}: {what}{timing}")


def report_plot(result) -> None:
    m = result.manifest["stage"]
    state = "" if result.computed else " (current; nothing to do)"
    width, height = m.get("size") or (m["params"]["width"], m["params"]["height"])
    size = f"{width}x{height} px"
    if result.where.suffix.lower() in (".pdf", ".svg"):  # a vector page: its size in print units
        dpi = m["params"]["dpi"]
        size = f"{width / dpi:.2f} x {height / dpi:.2f} in ({size} at {dpi} dpi)"
    click.echo(f"{result.where}: {size}{state}")


@with_jobs(map_jobs)
@click.command("map")
@run_argument
@click.option("--method", type=click.Choice(layouts.METHODS), default=default(MapParams, "method"), show_default=True,
              help="t-SNE (openTSNE), UMAP (umap-learn), or the PCA baseline.")
@click.option("--name", default=None, help="Map name: RUN/maps/NAME.parquet (default: the method; with --add: "
              "the t-SNE or UMAP map of RUN to add to, default tsne).")
@seed_option(MapParams)
@threads_option
@click.option("--add", "add_run", default=None, type=click.Path(file_okay=False, path_type=str), metavar="NEW_RUN",
              help="Place NEW_RUN's abstracts (embedded with the same model) into RUN's t-SNE or UMAP map without "
                   "moving its points; writes NEW_RUN/maps/NAME.parquet.")
@click.option("--preset", type=click.Choice(layouts.PRESETS), default=None,
              help="The PubMed-landscape settings. t-SNE: uniform k=10 affinities symmetrised by their mean, 125 "
                   "it. at exaggeration 12 (momentum 0.5), 125 annealing 12 -> 1, 2000 at 1 (or --n-iter); UMAP: "
                   "--n-neighbors 10.")
@click.option("-k", "k", type=click.IntRange(min=1), default=None,
              help=f"t-SNE: uniform affinities on the k nearest neighbours [default: {default(T, 'k')}].")
@click.option("--perplexity", type=click.FloatRange(min=0, min_open=True), default=None,
              help="t-SNE: perplexity-based affinities instead (needs a stored k >= 3 x perplexity).")
@click.option("--exaggeration", type=click.FloatRange(min=0, min_open=True), default=None,
              help=f"t-SNE: exaggeration after the early phase [default: {default(T, 'exaggeration'):g}].")
@click.option("--early-exaggeration", type=click.FloatRange(min=0, min_open=True), default=None,
              help=f"t-SNE: early exaggeration [default: {default(T, 'early_exaggeration'):g}].")
@click.option("--early-exaggeration-iter", type=click.IntRange(min=0), default=None,
              help=f"t-SNE: iterations of early exaggeration [default: {default(T, 'early_exaggeration_iter')}; "
                   "landscape 125].")
@click.option("--n-iter", type=click.IntRange(min=0), default=None,
              help=f"t-SNE: iterations after early exaggeration (and annealing) [default: {default(T, 'n_iter')}; "
                   "landscape 2000].")
@click.option("--dof", type=click.FloatRange(min=0, min_open=True), default=None,
              help="t-SNE: degrees of freedom of the heavy-tailed kernel (1 = Cauchy; < 1 finer clusters).")
@click.option("--learning-rate", default=None, metavar="auto|FLOAT",
              help="t-SNE: step size; auto = n / exaggeration in each phase [default: auto].")
@click.option("--gradient", type=click.Choice(["fft", "bh"]), default=None,
              help="t-SNE: repulsive forces by FFT interpolation or Barnes-Hut [default: fft].")
@click.option("--symmetrize", type=click.Choice(layouts.SYMMETRIZE), default=None,
              help="t-SNE uniform affinities: max = P + P^T > 0 (openTSNE's default since 1.0.3), mean = "
                   "(P + P^T) / 2 (its default before; the landscape map) [default: max; landscape: mean].")
@click.option("--n-neighbors", type=click.IntRange(min=2), default=None,
              help=f"UMAP: neighbours including the point itself, at most the stored k + 1 [default: "
                   f"{default(U, 'n_neighbors')}; landscape: 10].")
@click.option("--min-dist", type=click.FloatRange(0, default(U, "spread")), default=default(U, "min_dist"),
              show_default=True, help="UMAP: minimum distance between points in the map, at most UMAP's spread.")
@click.option("--n-epochs", type=click.IntRange(min=1), default=None, help="UMAP: epochs [default: umap-learn's].")
@click.option("--umap-init", type=click.Choice(layouts.UMAP_INITS), default=default(U, "init"), show_default=True,
              help="UMAP: initialisation. spectral (umap-learn's default) solves an eigenproblem of the graph, "
                   "the part of a map of a million points that does not scale; tswspectral warm-starts it from a "
                   "truncated SVD; pca; random; auto: spectral up to 300,000 points (on a GPU always), pca above.")
@click.option("--umap-parallel", is_flag=True,
              help="UMAP: ignore --seed and use all --threads (faster, not reproducible). With a seed umap-learn "
                   "runs single-threaded.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=default(MapParams, "device"), show_default=True,
              help="cuda: t-SNE or UMAP on a GPU with RAPIDS cuML (pip install 'corpusmap[gpu]'), fed the stored "
                   "graph; cuML's t-SNE is perplexity-based and not bit-reproducible.")
@click.option("--plot/--no-plot", default=True, show_default=True,
              help="Also write RUN/maps/NAME.png (coloured by label, else year).")
@_plot_options
@overwrite_option
@quiet_option
def map_command(**options):
    """Lay out RUN in 2D from its stored kNN graph and write RUN/maps/NAME.parquet (+ a PNG).

    The parquet holds id, x, y and the corpus metadata columns; every parameter, the seed, the optimiser's
    schedule and the package versions are in its key-value metadata (key "corpusmap").
    """
    run_command(map_jobs(options), options["quiet"])


def plot_jobs(o: dict) -> list[Job]:
    params = PlotParams(map=o["name"], color=o["color"], output=o["out"], max_categories=o["max_categories"],
                        reference=o["reference"], raster=o["raster"], **{k: o[k] for k in PLOT_FLAGS})
    return [Job(PlotStage(), Run(o["run"]), params, label=f"plot {o['name']} {o['color']}", report=report_plot)]


@with_jobs(plot_jobs)
@click.command()
@run_argument
@click.option("--map", "name", default=default(PlotParams, "map"), show_default=True,
              help="Which map: RUN/maps/NAME.parquet.")
@click.option("--color", "--colour", "color", default=default(PlotParams, "color"), show_default=True,
              metavar="auto|none|COLUMN|words:W1,W2|cluster[:LEVEL]|cluster:NAME[:LEVEL]|excess:GROUP:TARGET",
              help="Colour by a column (numbers: colour bar; text: categories), by whether the abstract contains "
                   "any of some words, by region (corpusmap clusters; level 0 = coarsest; the run's only "
                   "clustering, else leiden, or cluster:NAME[:LEVEL], e.g. cluster:hdbscan:1), by each region's "
                   "excess gap (corpusmap excess --by cluster), or auto (label, else year).")
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Figure file, .png, .svg or .pdf [default: RUN/maps/NAME.png, or NAME.COLOR.png for another "
                   "colouring].")
@click.option("--max-categories", type=click.IntRange(1, 20), default=default(PlotParams, "max_categories"),
              help="Categories with their own colour and a legend; the rest are grey 'other' [default: 10; with "
                   "region names on the map (--color cluster --labels keywords|label): every region coloured, touching "
                   "regions differently, no legend].")
@click.option("--reference/--no-reference", default=default(PlotParams, "reference"), show_default=True,
              help="For points added with `map --add`: draw the reference map in grey underneath.")
@click.option("--raster/--no-raster", default=None,
              help="Force or forbid pixel rasterisation [default: above 100,000 points]; --no-raster also "
                   "draws the points of an SVG/PDF as vector shapes (else one embedded bitmap).")
@_plot_options
@quiet_option
def plot(**options):
    """Draw a stored map of RUN as a figure for a paper: colours, legend or colour bar, optional labels."""
    run_command(plot_jobs(options), options["quiet"])
