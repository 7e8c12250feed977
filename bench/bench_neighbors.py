"""Benchmark: the corpusmap FAISS kNN graph against openTSNE's default neighbour search (Annoy) and pynndescent.

All methods get the same vectors, the same k and the same threads; recall@k is measured against exact
float64 neighbours of a seeded sample of queries. Run by hand (not in CI):

    .venv/bin/python bench/bench_neighbors.py                      # arxiv_2025_2026, TF-IDF+SVD 300 dims, k=15
    .venv/bin/python bench/bench_neighbors.py --run RUN -k 15      # vectors of an existing run

Without --run, the vectors of ../shared/data/arxiv_2025_2026.jsonl.gz are made once with
`corpusmap embed --model tfidf` into --cache (default /tmp/corpusmap-bench) and reused.
openTSNE's default for n >= 1000 is ``openTSNE.nearest_neighbors.Annoy`` (50 trees). Because that default
stays far below recall 0.98 on high-dimensional vectors, the same Annoy index (openTSNE's bundled copy, 50
trees) is also run with ``search_k`` doubled until recall@k on the benchmark queries reaches 0.98 ("Annoy at
0.98"; the search for ``search_k`` is not timed, only the build and the final all-points query).
pynndescent's numba functions are compiled on a small warm-up set first, so its time excludes JIT compilation.
Every library is imported before timing starts.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "data" / "arxiv_2025_2026.jsonl.gz"


def load_vectors(args) -> np.ndarray:
    from corpusmap.store import open_run

    run = args.run
    if run is None:
        run = Path(args.cache) / "arxiv_2025_2026_tfidf"
        if not (run / "embeddings" / "manifest.json").is_file():
            print(f"embedding {args.corpus} with tfidf into {run} (once) ...", flush=True)
            from corpusmap.cli import main as cli

            cli(["embed", str(args.corpus), "-o", str(run), "--model", "tfidf", "--quiet"], standalone_mode=False)
    return open_run(run).vectors.to_numpy()


def exact_truth(X: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Exact Euclidean neighbours of ``rows`` in float64 (self excluded), by brute force in chunks."""
    X64 = X.astype(np.float64)
    sq = np.einsum("ij,ij->i", X64, X64)
    out = np.empty((len(rows), k), dtype=np.int64)
    for s in range(0, len(rows), 256):
        r = rows[s:s + 256]
        d = sq[r][:, None] + sq[None, :] - 2 * X64[r] @ X64.T
        d[np.arange(len(r)), r] = np.inf
        part = np.argpartition(d, k, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(d, part, axis=1), axis=1)
        out[s:s + 256] = np.take_along_axis(part, order, axis=1)
    return out


def recall(approx: np.ndarray, exact: np.ndarray) -> float:
    k = exact.shape[1]
    return float(np.mean([len(set(a[:k]) & set(e)) for a, e in zip(approx, exact)]) / k)


def drop_self(ind: np.ndarray, k: int) -> np.ndarray:
    rows = np.arange(ind.shape[0])
    from corpusmap.neighbors import remove_self

    out, _ = remove_self(ind, ind.astype(np.float32), rows, k)
    return out


def run_corpusmap(X, k, threads, index, seed):
    from corpusmap.neighbors import build_knn_graph

    t = time.perf_counter()
    g = build_knn_graph(X, k=k, index=index, threads=threads, seed=seed, device="cpu", progress=False)
    return time.perf_counter() - t, g.indices, {"index": g.manifest["index"]["type"],
                                                 "params": g.manifest["index"]["params"],
                                                 "manifest_recall": g.manifest["recall"]["value"]}


def run_opentsne_default(X, k, threads, seed):
    from openTSNE import affinity

    index = affinity.get_knn_index(X, method="auto", k=k, metric="euclidean", n_jobs=threads,
                                   random_state=seed, verbose=False)
    t = time.perf_counter()
    ind, _ = index.build()
    return time.perf_counter() - t, ind, {"class": type(index).__name__}


def run_annoy_at_recall(X, k, threads, seed, rows, truth, target=0.98):
    """openTSNE's Annoy index (50 trees) with search_k raised until recall@k on ``rows`` reaches ``target``."""
    from joblib import Parallel, delayed
    from openTSNE.dependencies.annoy import AnnoyIndex

    n, n_trees = X.shape[0], 50
    t = time.perf_counter()
    index = AnnoyIndex(X.shape[1], "euclidean")
    index.set_seed(seed)
    for i in range(n):
        index.add_item(i, X[i])
    index.build(n_trees, n_jobs=threads)
    build_s = time.perf_counter() - t

    def query(items, search_k):
        out = np.empty((len(items), k), dtype=np.int64)

        def one(j):
            out[j] = index.get_nns_by_item(int(items[j]), k + 1, search_k=search_k)[1:k + 1]
        Parallel(n_jobs=threads, require="sharedmem")(delayed(one)(j) for j in range(len(items)))
        return out

    search_k = n_trees * (k + 1)  # Annoy's default
    while recall(query(rows, search_k), truth) < target and search_k < n * n_trees:
        search_k *= 2
    t = time.perf_counter()
    ind = query(np.arange(n), search_k)
    return build_s + time.perf_counter() - t, ind, {"n_trees": n_trees, "search_k": search_k}


def run_pynndescent(X, k, threads, seed):
    from pynndescent import NNDescent

    NNDescent(X[:2000], n_neighbors=k + 1, n_jobs=threads, random_state=seed).neighbor_graph  # JIT warm-up
    t = time.perf_counter()
    ind, _ = NNDescent(X, n_neighbors=k + 1, metric="euclidean", n_jobs=threads, random_state=seed).neighbor_graph
    elapsed = time.perf_counter() - t
    return elapsed, drop_self(ind, k), {"n_neighbors": k + 1}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, default=None, help="use the vectors of this run")
    p.add_argument("--corpus", type=Path, default=CORPUS)
    p.add_argument("--cache", default=os.environ.get("CORPUSMAP_BENCH_CACHE", "/tmp/corpusmap-bench"))
    p.add_argument("-k", type=int, default=15)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--queries", type=int, default=2000, help="queries for recall against exact search")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--methods", default="ivfpq,exact,ivf,opentsne,annoy98,pynndescent",
                   help="comma list of ivfpq (auto), exact, ivf, hnsw (corpusmap), opentsne, annoy98, pynndescent")
    p.add_argument("--limit", type=int, default=None, help="only the first N vectors (a quick smoke run)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)

    X = np.ascontiguousarray(load_vectors(args)[:args.limit], dtype=np.float32)
    n, d = X.shape
    rows = np.sort(np.random.default_rng(args.seed).choice(n, size=min(args.queries, n), replace=False))
    print(f"{n:,} vectors x {d} dims, k={args.k}, {args.threads} threads, load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; exact truth for {len(rows):,} queries ...",
          flush=True)
    truth = exact_truth(X, rows, args.k)
    import faiss, openTSNE, pynndescent  # noqa: E401,F401 - imports are not timed

    def ours(index):
        return lambda: run_corpusmap(X, args.k, args.threads, index, args.seed)

    runners = {
        "corpusmap auto (ivfpq above 20,000 points: IVF-PQ fast scan + exact re-ranking, tuned to 0.98)": (
            "ivfpq", ours("auto")),
        "corpusmap exact (BLAS brute force)": ("exact", ours("exact")),
        "corpusmap ivf (ListBatchedIVF, nprobe tuned to 0.98)": ("ivf", ours("ivf")),
        "corpusmap hnsw (FAISS HNSW, efSearch tuned to 0.98)": ("hnsw", ours("hnsw")),
        "openTSNE default (Annoy, 50 trees)": ("opentsne", lambda: run_opentsne_default(X, args.k, args.threads,
                                                                                         args.seed)),
        "Annoy at 0.98 (openTSNE's index, search_k raised)": ("annoy98", lambda: run_annoy_at_recall(
            X, args.k, args.threads, args.seed, rows, truth)),
        "pynndescent": ("pynndescent", lambda: run_pynndescent(X, args.k, args.threads, args.seed)),
    }
    wanted = set(args.methods.split(","))
    results = []
    for name, (key, fn) in runners.items():
        if key not in wanted:
            continue
        load = os.getloadavg()[0]
        seconds, ind, extra = fn()
        r = {"method": name, "seconds": round(seconds, 2), "recall": round(recall(ind[rows], truth), 4),
             "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2), **extra}
        results.append(r)
        print(f"  {name}: {seconds:,.1f} s, recall@{args.k} {r['recall']:.4f} (load {load:.2f}) {extra}",
              flush=True)

    base = next((r for r in results if r["method"].startswith("openTSNE")), None)
    tuned = next((r for r in results if r["method"].startswith("Annoy at")), None)
    print(f"\n| method | seconds | recall@{args.k} | speed-up vs openTSNE default | vs Annoy at 0.98 |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        ratios = [f"{b['seconds'] / r['seconds']:.2f}x" if b else "—" for b in (base, tuned)]
        print(f"| {r['method']} | {r['seconds']:,.1f} | {r['recall']:.4f} | {ratios[0]} | {ratios[1]} |")
    if args.json:
        args.json.write_text(json.dumps({"n": n, "dim": d, "k": args.k, "threads": args.threads,
                                         "machine": platform.platform(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
