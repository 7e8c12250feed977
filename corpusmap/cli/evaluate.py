"""`corpusmap evaluate`: kNN recall, kNN accuracy and year RMSE in high-D, in each map and in a PCA baseline."""
from __future__ import annotations

import click

from corpusmap import progress
from corpusmap.cli.common import run_argument, seed_option


@click.command()
@run_argument
@click.option("--map", "maps", multiple=True, metavar="NAME",
              help="Evaluate only this map (RUN/maps/NAME.parquet); repeatable. Default: every map found.")
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Neighbours.")
@click.option("--queries", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Random query points per metric (all points if fewer).")
@click.option("--label-col", default=None,
              help="Corpus column with class labels for kNN accuracy [default: label; skipped if empty].")
@click.option("--year-col", default=None,
              help="Corpus column with years for year RMSE [default: year; skipped if empty].")
@click.option("--metric", type=click.Choice(["euclidean", "cosine"]), default="euclidean", show_default=True,
              help="High-D distance (maps are always Euclidean).")
@click.option("--no-pca", is_flag=True, help="Leave out the PCA-2D baseline.")
@seed_option
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def evaluate(run, maps, k, queries, label_col, year_col, metric, no_pca, seed, quiet):
    """Measure how well the maps in RUN keep the structure of the vectors; writes RUN/eval/metrics.json and
    metrics.md and prints the table."""
    from corpusmap.evaluate import evaluate_run, format_table

    if quiet:
        progress.set_quiet(True)
    result = evaluate_run(run, maps=list(maps) or None, k=k, queries=queries,
                          label_col=label_col or "label", year_col=year_col or "year", seed=seed, metric=metric,
                          pca=not no_pca, require_labels=label_col is not None, require_years=year_col is not None)
    found = result["maps_found"]
    click.echo(f"Maps found: {', '.join(found)}" if found else
               "No maps found in RUN/maps (run `corpusmap map RUN`); high-D and the PCA baseline only.")
    click.echo(format_table(result))
    for note in result["notes"]:
        click.echo(f"Note: {note}.")
    click.echo(f"Written to {result['run']}/eval/metrics.json and metrics.md")
