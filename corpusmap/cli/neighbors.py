"""`corpusmap neighbors`: the kNN graph of a run's vectors, computed once and reused by maps and metrics."""
from __future__ import annotations

import click

from corpusmap.cli.common import (default, device_option, overwrite_option, quiet_option, run_argument, run_command,
                                  seed_option, threads_option, with_jobs)
from corpusmap.knn import INDEXES, METRICS
from corpusmap.neighbors import NeighborsParams, NeighborsStage
from corpusmap.pipeline import Job
from corpusmap.run import Run

P = NeighborsParams


def jobs(o: dict) -> list[Job]:
    params = P(k=o["k"], metric=o["metric"], index=o["index"], target_recall=o["target_recall"],
               recall_queries=o["recall_queries"], exact_threshold=o["exact_threshold"], seed=o["seed"],
               from_indices=o["from_indices"], from_distances=o["from_distances"])
    return [Job(NeighborsStage(device=o["device"], threads=o["threads"]), Run(o["run"]), params, o["overwrite"],
                report=report)]


def report(result) -> None:
    m = result.manifest
    if not result.computed:
        click.echo(f"{result.where}: the kNN graph is current (k={m['k']}, {m['metric']}, {m['index']['type']}); "
                   "nothing to do")
        return
    recall = m["recall"]
    how = ("user graph" + (", distances computed" if m.get("distances_computed") else "")) \
        if m["source"] == "user" else f"{m['index']['type']} index"
    below = recall.get("reached_target") is False
    rec = "" if recall.get("value") is None else \
        f", recall@{m['k']} {recall['value']:.{4 if below else 3}f}" + (
            f" on {recall['queries']:,} queries" if recall.get("measured") else " (exact)")
    if below:
        rec += f", below --target-recall {recall['target']:g}"
    click.echo(f"{result.where}: {m['n']:,} points, k={m['k']}, {m['metric']}, {how}{rec}, "
               f"{m.get('seconds', 0):,.1f} s")


@with_jobs(jobs)
@click.command()
@run_argument
@click.option("-k", "k", type=click.IntRange(min=1), default=default(P, "k"), show_default=True,
              help="Neighbours per point (self excluded); store at least as many as any map or metric needs.")
@click.option("--index", type=click.Choice(INDEXES), default=default(P, "index"), show_default=True,
              help="auto: exact below --exact-threshold points; above, ivfpq on the CPU and ivf on a GPU "
                   "(search parameters tuned to --target-recall).")
@click.option("--metric", type=click.Choice(METRICS), default=default(P, "metric"), show_default=True,
              help="Distance; cosine stores 1 - cosine similarity.")
@device_option
@threads_option
@seed_option(P)
@click.option("--target-recall", type=click.FloatRange(0.0, 1.0), default=default(P, "target_recall"),
              show_default=True, help="Approximate indexes: raise nprobe/k_factor/efSearch until recall@k "
                                      "reaches this.")
@click.option("--recall-queries", type=click.IntRange(min=1), default=default(P, "recall_queries"),
              show_default=True, help="Queries on which recall@k against exact search is measured.")
@click.option("--exact-threshold", type=click.IntRange(min=0), default=default(P, "exact_threshold"),
              show_default=True, help="--index auto: exact search below this many points.")
@click.option("--from", "from_indices", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Use your own graph: an (n, k) integer .npy of neighbour rows (self excluded).")
@click.option("--from-distances", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="With --from: an (n, k) .npy of distances (default: computed exactly from the vectors).")
@overwrite_option
@quiet_option
def neighbors(**options):
    """Compute the kNN graph of the vectors in RUN with FAISS and store it in RUN/knn."""
    run_command(jobs(options), options["quiet"])
