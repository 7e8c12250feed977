"""`corpusmap evaluate`: kNN recall, kNN accuracy and year RMSE in high-D, in each map and in a PCA baseline."""
from __future__ import annotations

import click

from corpusmap.cli.common import (default, overwrite_option, quiet_option, run_argument, run_command, seed_option,
                                  threads_option, with_jobs)
from corpusmap.evaluate import EvaluateParams, EvaluateStage, format_cluster_table, format_table
from corpusmap.pipeline import Job
from corpusmap.run import Run

P = EvaluateParams


def jobs(o: dict) -> list[Job]:
    params = P(maps=tuple(o["maps"]), k=o["k"], queries=o["queries"], label_col=o["label_col"],
               year_col=o["year_col"], metric=o["metric"], pca=not o["no_pca"], seed=o["seed"],
               clusters=tuple(o["clusters"]))
    return [Job(EvaluateStage(threads=o["threads"]), Run(o["run"]), params, o["overwrite"], report=report)]


def report(result) -> None:
    from corpusmap.evaluate import read_results

    run = Run(result.where.parent)
    outcome = read_results(run)
    found = outcome["maps_found"]
    click.echo(f"Maps found: {', '.join(found)}" if found else
               f"No maps found in {run.maps_dir} (run `corpusmap map {run.path}`); high-D and the PCA baseline only.")
    click.echo(format_table(outcome))
    if outcome.get("clusters"):
        click.echo(format_cluster_table(outcome))
    for note in outcome["notes"]:
        click.echo(f"Note: {note}.")
    state = "" if result.computed else " (current; nothing recomputed)"
    click.echo(f"Written to {result.where}/metrics.json and metrics.md{state}")


@with_jobs(jobs)
@click.command()
@run_argument
@click.option("--map", "maps", multiple=True, metavar="NAME",
              help="Evaluate only this map (RUN/maps/NAME.parquet); repeatable. Default: every map found.")
@click.option("-k", "k", type=click.IntRange(min=1), default=default(P, "k"), show_default=True, help="Neighbours.")
@click.option("--queries", type=click.IntRange(min=1), default=default(P, "queries"), show_default=True,
              help="Random query points per metric (all points if fewer).")
@click.option("--label-col", default=None,
              help="Corpus column with class labels for kNN accuracy [default: label; skipped if empty].")
@click.option("--year-col", default=None,
              help="Corpus column with years for year RMSE [default: year; skipped if empty].")
@click.option("--metric", type=click.Choice(["euclidean", "cosine"]), default=default(P, "metric"),
              show_default=True, help="High-D distance (maps are always Euclidean).")
@click.option("--no-pca", is_flag=True, help="Leave out the PCA-2D baseline.")
@click.option("--clusters", multiple=True, metavar="NAME",
              help="Measure the agreement (NMI, ARI) of this clustering with the labels; repeatable. Default: every "
                   "clustering found.")
@seed_option(P)
@threads_option
@overwrite_option
@quiet_option
def evaluate(**options):
    """Measure how well the maps in RUN keep the structure of the vectors; writes RUN/eval/metrics.json and
    metrics.md and prints the table."""
    run_command(jobs(options), options["quiet"])
