"""`corpusmap map` (2D maps from the stored kNN graph) and `corpusmap plot` (PNG of a stored map)."""
from __future__ import annotations

import click

from corpusmap import progress
from corpusmap.cli.common import run_argument, seed_option, threads_option
from corpusmap.errors import UsageProblem


def _plot_options(func):
    """--width/--height/--dpi/--labels/--title, shared by `map` (its default PNG) and `plot`."""
    for option in reversed([
        click.option("--width", type=click.IntRange(min=16), default=2000, show_default=True,
                     help="PNG width in pixels."),
        click.option("--height", type=click.IntRange(min=16), default=2000, show_default=True,
                     help="PNG height in pixels."),
        click.option("--dpi", type=click.IntRange(min=16), default=300, show_default=True,
                     help="Resolution: font and marker sizes follow it."),
        click.option("--labels/--no-labels", default=False, show_default=True,
                     help="Write the names of the largest categories at their medians."),
        click.option("--title", default=None, help="Title above the map."),
    ]):
        func = option(func)
    return func


@click.command("map")
@run_argument
@click.option("--method", type=click.Choice(["tsne", "umap", "pca"]), default="tsne", show_default=True,
              help="t-SNE (openTSNE), UMAP (umap-learn), or the PCA baseline.")
@click.option("--name", default=None, help="Map name: RUN/maps/NAME.parquet (default: the method; with --add: "
              "the t-SNE map of RUN to add to, default tsne).")
@seed_option
@threads_option
@click.option("--add", "add_run", default=None, type=click.Path(file_okay=False, path_type=str), metavar="NEW_RUN",
              help="Place NEW_RUN's abstracts (embedded with the same model) into RUN's t-SNE map without moving "
                   "its points; writes NEW_RUN/maps/NAME.parquet.")
@click.option("--preset", type=click.Choice(["landscape"]), default=None,
              help="t-SNE: the PubMed-landscape schedule (125 it. at exaggeration 12, momentum 0.5; 125 "
                   "annealing 12 -> 1; 2000 at 1, or --n-iter).")
@click.option("-k", "k", type=click.IntRange(min=1), default=None,
              help="t-SNE: uniform affinities on the k nearest neighbours [default: 10].")
@click.option("--perplexity", type=click.FloatRange(min=0, min_open=True), default=None,
              help="t-SNE: perplexity-based affinities instead (needs a stored k >= 3 x perplexity).")
@click.option("--exaggeration", type=click.FloatRange(min=0, min_open=True), default=None,
              help="t-SNE: exaggeration after the early phase [default: 1].")
@click.option("--early-exaggeration", type=click.FloatRange(min=0, min_open=True), default=None,
              help="t-SNE: early exaggeration [default: 12].")
@click.option("--early-exaggeration-iter", type=click.IntRange(min=0), default=None,
              help="t-SNE: iterations of early exaggeration [default: 250; landscape 125].")
@click.option("--n-iter", type=click.IntRange(min=0), default=None,
              help="t-SNE: iterations after early exaggeration (and annealing) [default: 500; landscape 2000].")
@click.option("--dof", type=click.FloatRange(min=0, min_open=True), default=None,
              help="t-SNE: degrees of freedom of the heavy-tailed kernel (1 = Cauchy; < 1 finer clusters).")
@click.option("--learning-rate", default=None, metavar="auto|FLOAT",
              help="t-SNE: step size; auto = n / exaggeration in each phase [default: auto].")
@click.option("--gradient", type=click.Choice(["fft", "bh"]), default=None,
              help="t-SNE: repulsive forces by FFT interpolation or Barnes-Hut [default: fft].")
@click.option("--n-neighbors", type=click.IntRange(min=2), default=15, show_default=True,
              help="UMAP: neighbours including the point itself (at most the stored k + 1).")
@click.option("--min-dist", type=click.FloatRange(min=0), default=0.1, show_default=True,
              help="UMAP: minimum distance between points in the map.")
@click.option("--n-epochs", type=click.IntRange(min=1), default=None, help="UMAP: epochs [default: umap-learn's].")
@click.option("--umap-parallel", is_flag=True,
              help="UMAP: ignore --seed and use all --threads (faster, not reproducible). With a seed umap-learn "
                   "runs single-threaded.")
@click.option("--plot/--no-plot", default=True, show_default=True,
              help="Also write RUN/maps/NAME.png (coloured by label, else year).")
@_plot_options
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def map_command(run, method, name, seed, threads, add_run, preset, k, perplexity, exaggeration, early_exaggeration,
                early_exaggeration_iter, n_iter, dof, learning_rate, gradient, n_neighbors, min_dist, n_epochs,
                umap_parallel, plot, width, height, dpi, labels, title, quiet):
    """Lay out RUN in 2D from its stored kNN graph and write RUN/maps/NAME.parquet (+ a PNG).

    The parquet holds id, x, y and the corpus metadata columns; every parameter, the seed, the optimiser's
    schedule and the package versions are in its key-value metadata (key "corpusmap").
    """
    from corpusmap import layouts
    from corpusmap.maps import add_to_map, make_map

    if quiet:
        progress.set_quiet(True)
    tsne_flags = {"preset": preset, "k": k, "perplexity": perplexity, "exaggeration": exaggeration,
                  "early_exaggeration": early_exaggeration, "early_exaggeration_iter": early_exaggeration_iter,
                  "n_iter": n_iter, "dof": dof, "learning_rate": learning_rate, "gradient": gradient}
    given = [("-k" if key == "k" else f"--{key.replace('_', '-')}") for key, value in tsne_flags.items()
             if value is not None]
    if method != "tsne" and given and not add_run:
        raise UsageProblem(f"{', '.join(given)} only apply to --method tsne")
    if k is not None and perplexity is not None:
        raise UsageProblem("-k (uniform affinities) and --perplexity exclude each other")
    plot_options = {"width": width, "height": height, "dpi": dpi, "labels": labels, "title": title}
    if add_run:
        if given:
            raise UsageProblem(f"--add places points with the reference map's own settings; drop {', '.join(given)}")
        result = add_to_map(run, add_run, name=name or "tsne", threads=threads, seed=seed, plot=plot,
                            plot_options=plot_options)
        click.echo(f"{result.path}: {result.n:,} points of {add_run} placed in {run}'s map {result.name!r}"
                   + (f"; {result.png}" if result.png else ""))
        return
    tsne = layouts.TsneParams.preset_params(
        preset, k=k, perplexity=perplexity, exaggeration=exaggeration, early_exaggeration=early_exaggeration,
        early_exaggeration_iter=early_exaggeration_iter, n_iter=n_iter, dof=dof,
        learning_rate=layouts._parse_learning_rate(learning_rate) if learning_rate is not None else None,
        gradient=gradient)
    umap = layouts.UmapParams(n_neighbors=n_neighbors, min_dist=min_dist, n_epochs=n_epochs)
    result = make_map(run, method, name=name, seed=seed, threads=threads, tsne=tsne, umap=umap,
                      umap_deterministic=not umap_parallel, plot=plot, plot_options=plot_options)
    seconds = result.metadata.get("seconds", {}).get("layout")
    timing = f", {seconds:,.1f} s" if seconds is not None else ""
    click.echo(f"{result.path}: {method} map of {result.n:,} points{timing}" +
               (f"; {result.png}" if result.png else ""))


@click.command()
@run_argument
@click.option("--map", "name", default="tsne", show_default=True, help="Which map: RUN/maps/NAME.parquet.")
@click.option("--color", "--colour", "color", default="auto", show_default=True,
              metavar="auto|none|COLUMN|words:W1,W2",
              help="Colour by a column (numbers: colour bar; text: categories), by whether the abstract contains "
                   "any of some words, or auto (label, else year).")
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="PNG file [default: RUN/maps/NAME.png, or NAME.COLOR.png for another colouring].")
@click.option("--max-categories", type=click.IntRange(1, 20), default=10, show_default=True,
              help="Categories with their own colour; the rest are grey 'other'.")
@click.option("--reference/--no-reference", default=True, show_default=True,
              help="For points added with `map --add`: draw the reference map in grey underneath.")
@click.option("--raster/--no-raster", default=None,
              help="Force or forbid pixel rasterisation [default: above 100,000 points].")
@_plot_options
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def plot(run, name, color, out, max_categories, reference, raster, width, height, dpi, labels, title, quiet):
    """Draw a stored map of RUN as a PNG for a paper: colours, legend or colour bar, optional labels."""
    from corpusmap.maps import plot_map

    if quiet:
        progress.set_quiet(True)
    path = plot_map(run, name, color=color, out=out, width=width, height=height, dpi=dpi, labels=labels,
                    title=title, max_categories=max_categories, reference=reference, raster=raster)
    click.echo(f"{path}: {width}x{height} px")
