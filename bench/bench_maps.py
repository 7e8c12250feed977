"""Benchmark: corpusmap's maps (kNN graph included) against each library used the plain way.

* corpusmap t-SNE = `corpusmap neighbors RUN` (FAISS) + `corpusmap map RUN --method tsne` (uniform k=10
  affinities from the stored graph, PCA init, FFT gradients) against ``openTSNE.TSNE(...).fit(X)`` (perplexity 30,
  its own Annoy search for 90 neighbours, PCA init, FFT), with the same iterations, threads and seed;
* corpusmap UMAP = the same graph step + `corpusmap map RUN --method umap` (``precomputed_knn``) against
  ``umap.UMAP(...).fit_transform(X)`` (pynndescent), same n_neighbors, seed and threads.

Each contender runs in a fresh Python process, which reports its wall time and peak RSS (ru_maxrss); numba's
JIT compilation is warmed up on 2,000 random points in every UMAP process before the clock starts. The maps are
then scored with corpusmap.metrics (kNN recall and kNN accuracy on primary_category, k=10, 10,000 queries).
Run by hand (not in CI), ideally on an otherwise idle machine:

    .venv/bin/python bench/bench_maps.py                       # arxiv_2025_2026, TF-IDF+SVD 300 dims
    .venv/bin/python bench/bench_maps.py --only tsne --n-iter 500
    .venv/bin/python bench/bench_maps.py --knn-index hnsw         # approximate graph step

Without --source-run the vectors are made once with `corpusmap embed --model tfidf` into --cache.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "data" / "arxiv_2025_2026.jsonl.gz"

_CHILD_HEAD = """
import json, resource, sys, time
import numpy as np
args = json.loads(sys.argv[1])
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
def done(seconds, coords, **extra):
    np.save(args["out"], np.asarray(coords, dtype=np.float32))
    print(json.dumps({"seconds": seconds, "peak_rss_mib": peak(), **extra}))
"""

_WARM_UMAP = """
import warnings; warnings.simplefilter("ignore")
import umap
umap.UMAP(n_neighbors=args["n_neighbors"], n_epochs=20, random_state=0).fit_transform(
    np.random.RandomState(0).normal(size=(2000, 20)).astype(np.float32))
"""

CHILDREN = {
    "corpusmap_tsne": _CHILD_HEAD + """
from corpusmap.cli import main
from corpusmap.maps import read_map
t0 = time.perf_counter()
main(["-q", "neighbors", args["run"], "-k", str(args["k"]), "--threads", str(args["threads"]), "--overwrite",
      "--index", args["knn_index"]], standalone_mode=False)
t1 = time.perf_counter()
main(["-q", "map", args["run"], "--method", "tsne", "--name", "bench_tsne", "--threads", str(args["threads"]),
      "--seed", "42", "--n-iter", str(args["n_iter"]), "--early-exaggeration-iter", str(args["ee_iter"]),
      "--no-plot"], standalone_mode=False)
t2 = time.perf_counter()
table, meta = read_map(args["run"], "bench_tsne")
done(t2 - t0, np.column_stack([table.column("x").to_numpy(), table.column("y").to_numpy()]),
     graph_seconds=t1 - t0, layout_seconds=t2 - t1, schedule=[(p["phase"], p["n_iter"]) for p in meta["schedule"]])
""",
    "opentsne": _CHILD_HEAD + """
from openTSNE import TSNE
from corpusmap.store import open_run
X = open_run(args["run"]).vectors.to_numpy()
t0 = time.perf_counter()
Y = TSNE(n_jobs=args["threads"], random_state=42, n_iter=args["n_iter"],
         early_exaggeration_iter=args["ee_iter"]).fit(X)
done(time.perf_counter() - t0, Y)
""",
    "corpusmap_umap": _CHILD_HEAD + _WARM_UMAP + """
from corpusmap.cli import main
from corpusmap.maps import read_map
t0 = time.perf_counter()
main(["-q", "neighbors", args["run"], "-k", str(args["k"]), "--threads", str(args["threads"]), "--overwrite",
      "--index", args["knn_index"]], standalone_mode=False)
t1 = time.perf_counter()
main(["-q", "map", args["run"], "--method", "umap", "--name", "bench_umap", "--threads", str(args["threads"]),
      "--seed", "42", "--n-neighbors", str(args["n_neighbors"]), "--no-plot"], standalone_mode=False)
t2 = time.perf_counter()
table, _ = read_map(args["run"], "bench_umap")
done(t2 - t0, np.column_stack([table.column("x").to_numpy(), table.column("y").to_numpy()]),
     graph_seconds=t1 - t0, layout_seconds=t2 - t1)
""",
    "umap": _CHILD_HEAD + _WARM_UMAP + """
from corpusmap.store import open_run
X = open_run(args["run"]).vectors.to_numpy()
t0 = time.perf_counter()
Y = umap.UMAP(n_neighbors=args["n_neighbors"], random_state=42, n_jobs=args["threads"]).fit_transform(X)
done(time.perf_counter() - t0, Y)
""",
}


def prepare_run(args) -> Path:
    run = Path(args.cache) / "maps_bench_run"
    if (run / "embeddings" / "manifest.json").is_file():
        return run
    run.mkdir(parents=True, exist_ok=True)
    if args.source_run:
        src = Path(args.source_run)
        print(f"copying corpus and vectors of {src} into {run} ...", flush=True)
        shutil.copy2(src / "corpus.parquet", run / "corpus.parquet")
        if (src / "corpus.json").exists():
            shutil.copy2(src / "corpus.json", run / "corpus.json")
        shutil.copytree(src / "embeddings", run / "embeddings", dirs_exist_ok=True)
    else:
        print(f"embedding {args.corpus} with tfidf into {run} (once) ...", flush=True)
        from corpusmap.cli import main

        main(["embed", str(args.corpus), "-o", str(run), "--model", "tfidf", "--quiet"], standalone_mode=False)
    return run


def run_child(name: str, params: dict) -> dict:
    began = time.perf_counter()
    env = dict(os.environ, OMP_NUM_THREADS=str(params["threads"]))
    proc = subprocess.run([sys.executable, "-c", CHILDREN[name], json.dumps(params)], capture_output=True,
                          text=True, cwd=ROOT, env=env)
    if proc.returncode:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_seconds"] = round(time.perf_counter() - began, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default=str(CORPUS))
    parser.add_argument("--cache", default="/tmp/corpusmap-bench-maps")
    parser.add_argument("--source-run", default=None, help="copy corpus + vectors from this run instead of embedding")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("-k", type=int, default=15, help="stored kNN graph size")
    parser.add_argument("--n-iter", type=int, default=500)
    parser.add_argument("--early-exaggeration-iter", type=int, default=250)
    parser.add_argument("--n-neighbors", type=int, default=15)
    parser.add_argument("--knn-index", choices=["auto", "exact", "ivf", "ivfpq", "hnsw"], default="auto",
                        help="`corpusmap neighbors --index` for the graph step")
    parser.add_argument("--only", choices=["tsne", "umap"], default=None)
    parser.add_argument("--out", default=None, help="write the results as JSON here too")
    args = parser.parse_args()

    run = prepare_run(args)
    from corpusmap import metrics
    from corpusmap.store import open_run

    r = open_run(run)
    vectors = r.vectors.to_numpy()
    labels = r.read_corpus(["label"]).column("label").to_numpy(zero_copy_only=False)
    n, dim = vectors.shape
    print(f"{n:,} abstracts, {dim} dims, {args.threads} threads, load average {os.getloadavg()[0]:.1f}",
          flush=True)
    params = {"run": str(run), "threads": args.threads, "k": args.k, "n_iter": args.n_iter,
              "ee_iter": args.early_exaggeration_iter, "n_neighbors": args.n_neighbors,
              "knn_index": args.knn_index}
    pairs = {"tsne": ("corpusmap_tsne", "opentsne"), "umap": ("corpusmap_umap", "umap")}
    results = {"n": n, "dim": dim, "threads": args.threads, "machine": platform.platform(),
               "cpus": os.cpu_count(), "params": params, "runs": {}}
    for method, names in pairs.items():
        if args.only and method != args.only:
            continue
        for name in names:
            out = Path(args.cache) / f"{name}.npy"
            print(f"running {name} ...", flush=True)
            res = run_child(name, {**params, "out": str(out)})
            coords = __import__("numpy").load(out)
            res["knn_recall"] = metrics.knn_recall(vectors, coords, k=10, queries=10_000, seed=42)
            res["knn_accuracy"] = metrics.knn_accuracy(coords, labels, k=10, queries=10_000, seed=42).accuracy
            res["load_after"] = round(os.getloadavg()[0], 1)
            results["runs"][name] = res
            print(f"  {name}: {res['seconds']:.1f} s, peak RSS {res['peak_rss_mib']:,.0f} MiB, "
                  f"recall {res['knn_recall']:.3f}, accuracy {res['knn_accuracy']:.3f}", flush=True)
        ours, plain = (results["runs"][x] for x in names)
        results[f"{method}_time_ratio"] = ours["seconds"] / plain["seconds"]
        results[f"{method}_rss_ratio"] = ours["peak_rss_mib"] / plain["peak_rss_mib"]
        # one stored graph serves every map and the evaluation: the ratio without the graph step
        results[f"{method}_layout_only_ratio"] = ours["layout_seconds"] / plain["seconds"]
        print(f"{method}: corpusmap/plain wall-time ratio {results[f'{method}_time_ratio']:.2f}, "
              f"peak-RSS ratio {results[f'{method}_rss_ratio']:.2f}, layout-only ratio "
              f"{results[f'{method}_layout_only_ratio']:.2f}, recall {ours['knn_recall']:.3f} vs "
              f"{plain['knn_recall']:.3f}", flush=True)
    print(json.dumps(results, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
