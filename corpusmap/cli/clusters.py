"""`corpusmap clusters`: regions of the map as nested clusters with keywords."""
from __future__ import annotations

import click

from corpusmap.cli.common import default, overwrite_option, quiet_option, run_argument, run_command, seed_option, \
    with_jobs
from corpusmap.clusters import ClustersParams, ClustersStage
from corpusmap.errors import UsageProblem
from corpusmap.pipeline import Job
from corpusmap.regions import WEIGHTS
from corpusmap.run import Run

P = ClustersParams


def _numbers(text: str | None, flag: str, kind=float) -> tuple:
    if text is None:
        return ()
    parts = [part.strip() for part in str(text).split(",") if part.strip()]
    if not parts:
        example = "whole numbers, e.g. 500,50" if kind is int else "numbers, e.g. 0.2,1,5"
        raise UsageProblem(f"{flag} takes comma-separated {example}, not {text!r}; or leave it out for the default")
    for part in parts:
        try:
            kind(part)
        except ValueError:
            example = "whole numbers, e.g. 500,50" if kind is int else "numbers, e.g. 0.2,1,5"
            raise UsageProblem(f"{flag} takes comma-separated {example}: {part!r} is not one"
                               + (f" (in {text!r})" if len(parts) > 1 else "")) from None
    return tuple(kind(part) for part in parts)


def jobs(o: dict) -> list[Job]:
    if o["resolution"] is not None and o["levels"] is not None:
        raise UsageProblem("--resolution and --levels exclude each other")
    if o["on"] and (o["resolution"] is not None or o["levels"] is not None):
        raise UsageProblem("--on MAP clusters the map with HDBSCAN: use --min-cluster-size, not --resolution/--levels")
    params = P(name=o["name"], resolutions=_numbers(o["resolution"], "--resolution"),
               levels=o["levels"] or default(P, "levels"), k=o["k"], weights=o["weights"], seed=o["seed"], on=o["on"],
               min_cluster_size=_numbers(o["min_cluster_size"], "--min-cluster-size", int),
               min_samples=o["min_samples"],
               top_words=o["top_words"], min_df=o["min_df"])
    return [Job(ClustersStage(), Run(o["run"]), params, o["overwrite"], label=f"clusters {params.name}",
                report=report)]


def report(result) -> None:
    m = result.manifest
    if not result.computed:
        click.echo(f"{result.where}: the clustering is current; nothing to do")
        return
    counts = " > ".join(f"{level['clusters']:,}" for level in m["levels"])
    click.echo(f"{result.where}: {m['method']} clusters of {m['n']:,} points, {counts} per level "
               f"({sum(m['seconds'].values()):,.1f} s)")


@with_jobs(jobs)
@click.command()
@run_argument
@click.option("--name", default=None, help="RUN/clusters/NAME.* [default: leiden, or hdbscan with --on].")
@click.option("--resolution", default=None, metavar="R1,R2,...",
              help="Leiden resolutions, one level each (low = coarse); default: --levels.")
@click.option("--levels", type=click.IntRange(1, 8), default=None,
              help="Number of levels [default: 3]: the finest at resolution 2, the coarser ones with cluster counts "
                   "spaced geometrically from the finest level's F down to F/4^(levels-1) at the top, but no fewer "
                   "than 4 there.")
@click.option("-k", "k", type=click.IntRange(min=2), default=None,
              help="Neighbours of the stored graph to use [default: 15 or the stored k if smaller].")
@click.option("--weights", type=click.Choice(WEIGHTS), default=default(P, "weights"), show_default=True,
              help="Edge weights: uniform, or from distances (Gaussian with local scales).")
@seed_option(P)
@click.option("--on", default=None, metavar="MAP",
              help="Cluster the 2D map RUN/maps/MAP.parquet with HDBSCAN instead of the high-D graph.")
@click.option("--min-cluster-size", default=None, metavar="M1,M2,...",
              help="--on: HDBSCAN minimum cluster sizes, one level each (large = coarse) [default: n/50,n/500].")
@click.option("--min-samples", type=int, default=None, metavar="N",
              help="--on: HDBSCAN's density neighbours, the same for every level; smaller finds more and larger "
                   "coarse regions [default: each level's minimum cluster size, as scikit-learn].")
@click.option("--top-words", type=click.IntRange(min=1), default=default(P, "top_words"), show_default=True,
              help="Keywords per cluster (c-TF-IDF).")
@click.option("--min-df", type=click.IntRange(min=1), default=default(P, "min_df"), show_default=True,
              help="Keywords occur in at least this many abstracts.")
@overwrite_option
@quiet_option
def clusters(**options):
    """Find the regions of RUN: nested Leiden communities of the stored high-D kNN graph (or HDBSCAN of a map),
    with keywords, in RUN/clusters/NAME.parquet, NAME.summary.parquet and NAME.json."""
    run_command(jobs(options), options["quiet"])
