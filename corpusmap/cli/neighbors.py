"""`corpusmap neighbors`: the kNN graph of a run's vectors, computed once and reused by maps and metrics."""
from __future__ import annotations

import click

from corpusmap import progress
from corpusmap.cli.common import device_option, run_argument, seed_option, threads_option
from corpusmap.errors import CorpusmapError, UsageProblem


@click.command()
@run_argument
@click.option("-k", "k", type=click.IntRange(min=1), default=15, show_default=True,
              help="Neighbours per point (self excluded); store at least as many as any map or metric needs.")
@click.option("--index", type=click.Choice(["auto", "exact", "ivf", "ivfpq", "hnsw"]), default="auto",
              show_default=True,
              help="auto: exact below --exact-threshold points; above, ivfpq on the CPU and ivf on a GPU "
                   "(search parameters tuned to --target-recall).")
@click.option("--metric", type=click.Choice(["euclidean", "cosine"]), default="euclidean", show_default=True,
              help="Distance; cosine stores 1 - cosine similarity.")
@device_option
@threads_option
@seed_option
@click.option("--target-recall", type=click.FloatRange(0.0, 1.0), default=0.98, show_default=True,
              help="Approximate indexes: raise nprobe/k_factor/efSearch until recall@k reaches this.")
@click.option("--recall-queries", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Queries on which recall@k against exact search is measured.")
@click.option("--exact-threshold", type=click.IntRange(min=0), default=20_000, show_default=True,
              help="--index auto: exact search below this many points.")
@click.option("--from", "from_indices", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Use your own graph: an (n, k) integer .npy of neighbour rows (self excluded).")
@click.option("--from-distances", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="With --from: an (n, k) .npy of distances (default: computed exactly from the vectors).")
@click.option("--overwrite", is_flag=True, help="Replace a kNN graph computed with other settings.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def neighbors(run, k, index, metric, device, threads, seed, target_recall, recall_queries, exact_threshold,
              from_indices, from_distances, overwrite, quiet):
    """Compute the kNN graph of the vectors in RUN with FAISS and store it in RUN/knn."""
    from corpusmap.neighbors import (build_knn_graph, has_knn_graph, knn_dir, load_knn_graph, load_user_graph,
                                     save_knn_graph)
    from corpusmap.store import open_run

    if quiet:
        progress.set_quiet(True)
    if from_distances and not from_indices:
        raise UsageProblem("--from-distances needs --from indices.npy")
    r = open_run(run)
    if not r.has_vectors():
        raise CorpusmapError(f"no vectors in {run}; run `corpusmap embed INPUT -o {run}` first")
    vectors = r.vectors
    n = vectors.shape[0]
    if from_indices is None and k >= n:
        raise UsageProblem(f"-k {k}: a run of {n:,} vectors has at most {n - 1} neighbours per point")
    if has_knn_graph(r.path) and not overwrite:
        old = load_knn_graph(r.path).manifest
        same = (from_indices is None and old.get("source") == "faiss" and old.get("k") == k
                and old.get("metric") == metric and old.get("index", {}).get("requested") == index
                and old.get("seed") == seed and old.get("n") == n)
        if same:
            click.echo(f"{knn_dir(r.path)}: kNN graph already computed with these settings (k={k}, {metric}, "
                       f"{old['index']['type']}); nothing to do")
            return
        raise CorpusmapError(
            f"{run} already has a kNN graph (k={old.get('k')}, {old.get('metric')}, "
            f"{old.get('index', {}).get('type')}, source {old.get('source')}); add --overwrite to replace it "
            "(maps made from the old graph are then out of date)")
    if from_indices:
        graph = load_user_graph(vectors, from_indices, from_distances, metric=metric)
    else:
        graph = build_knn_graph(vectors, k=k, metric=metric, index=index, device=device, seed=seed,
                                recall_sample=recall_queries, target_recall=target_recall,
                                exact_threshold=exact_threshold, threads=threads)
    out = save_knn_graph(r.path, graph)
    m = graph.manifest
    recall = m["recall"]
    how = ("user graph" + (", distances computed" if m.get("distances_computed") else "")) \
        if m["source"] == "user" else f"{m['index']['type']} index"
    rec = "" if recall.get("value") is None else \
        f", recall@{graph.k} {recall['value']:.3f}" + (f" on {recall['queries']:,} queries" if recall.get(
            "measured") else " (exact)")
    click.echo(f"{out}: {graph.n:,} points, k={graph.k}, {graph.metric}, {how}{rec}, "
               f"{m.get('seconds', 0):,.1f} s")
