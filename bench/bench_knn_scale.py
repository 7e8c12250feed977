"""Benchmark: how the kNN graph (corpusmap.knn.build_knn_graph, index=auto -> ivfpq) scales with n.

Run by hand (not in CI); it is resumable: every finished point is appended to ``--results`` (JSON lines) and
skipped on the next run, and generated data sets are kept in ``--data-dir``.

    .venv/bin/python bench/bench_knn_scale.py /tmp/knn_scale.png
    .venv/bin/python bench/bench_knn_scale.py /tmp/knn_scale.png --sizes 100000,300000,1000000,3000000
    .venv/bin/python bench/bench_knn_scale.py /tmp/knn_scale.png --only-table      # table + figure from results

Data (float16 ``.npy`` shards of 262,144 rows, read memory-mapped through ``corpusmap.vectors.ShardedVectors``,
as a run's embeddings are):

* ``real``: TF-IDF (sublinear tf, min_df=2) + TruncatedSVD(300, random_state=42) of the 74,728 arXiv abstracts of
  ../shared/data/arxiv_2025_2026.jsonl.gz (made once, ``--base``); one point at n = 74,728.
* ``stacked``: the real vectors repeated to n rows, each copy plus Gaussian noise of s.d. ``--noise`` per
  dimension (0.0025: the copies of a vector are ~0.06 apart, its nearest other abstract ~0.41). Near-copies: the
  15 neighbours of a point are mostly its own copies, a pathological case for IVF.
* ``mixture``: a fitted mixture with realistic cluster structure. k-means splits the real vectors into leaves of
  ~16 abstracts; a new point picks a leaf (weight = its size) and is its mean plus ``w @ R`` with ``R`` the
  leaf's centred members and ``w ~ N(0, 1/(m-1))``: a Gaussian with the leaf's own covariance. At n = 74,728 its
  1-NN and 15-NN distances match the real vectors' (median 0.38 / 0.45 against 0.41 / 0.44); with more points the
  neighbours get closer, as in a growing corpus, and there are no near-copies.

Each point runs in a fresh Python (one at a time) with ``--threads`` FAISS threads and reports wall time, process
CPU time, peak RSS (VmHWM: includes the pages of the memory-mapped shards that were read) and peak anonymous RSS
(sampled every 50 ms: the memory the process itself allocated), the recall@15 that the manifest reports (held-out
queries against exact search) and the chosen parameters. The exponent of time vs n is a least-squares fit of
log(time) on log(n) per data kind (over the sizes present). OMP_WAIT_POLICY=PASSIVE is set for the children
(``--omp-wait``): on a shared machine spinning OpenMP threads otherwise make timings depend on the neighbours'
load (FAISS's PQ training went from 0.6 s to 7 s under load with the default policy).

``--hnsw-n`` adds a side-by-side at that many real vectors: corpusmap ``index=hnsw``, plain FAISS
``IndexHNSWFlat(d, 32)`` (FAISS defaults; efSearch tuned the same way on the same queries) and corpusmap ``auto``.
"""
from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "data" / "arxiv_2025_2026.jsonl.gz"
SHARD_ROWS = 262_144
K = 15


# --------------------------------------------------------------------------------------------------------------
# data


def make_base(corpus: Path, out: Path) -> None:
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    with gzip.open(corpus, "rt") as fh:
        texts = [json.loads(line).get("abstract") or "" for line in fh]
    tfidf = TfidfVectorizer(sublinear_tf=True, min_df=2).fit_transform(texts)
    z = TruncatedSVD(300, random_state=42).fit_transform(tfidf).astype(np.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(str(out) + ".tmp.npy", z)
    os.replace(str(out) + ".tmp.npy", out)


def mixture_model(base: np.ndarray, cache: Path, leaf: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Leaves of ~``leaf`` real vectors (k-means, seeded): (members sorted by leaf, leaf sizes, the row of ``base``
    each member is)."""
    if cache.is_file():
        z = np.load(cache)
        if "order" in z:
            return z["members"], z["counts"], z["order"]
    import faiss

    c = len(base) // leaf
    km = faiss.Kmeans(base.shape[1], c, niter=20, seed=1234, max_points_per_centroid=1000, verbose=False)
    km.train(base)
    _, a = km.index.search(base, 1)
    a = a[:, 0]
    order = np.argsort(a, kind="stable")
    members, counts = base[order], np.bincount(a, minlength=c)
    np.savez(str(cache) + ".tmp.npz", members=members, counts=counts, order=order)
    os.replace(str(cache) + ".tmp.npz", cache)
    return members, counts, order


def generate_shard(kind: str, n: int, shard: int, base: np.ndarray, args, model=None, sources: bool = False):
    """Rows ``shard * SHARD_ROWS`` on of data set ``kind`` at ``n``; with ``sources``, also the row of ``base``
    each generated row stands for (the vector it copies, or a real member of its leaf), drawn from a separate
    stream so that the vectors are the same either way."""
    lo, hi = shard * SHARD_ROWS, min(n, (shard + 1) * SHARD_ROWS)
    rng = np.random.default_rng([args.seed, n, shard, 1 if kind == "stacked" else 2])
    d = base.shape[1]
    if kind in ("real", "stacked"):
        source = np.arange(lo, hi) % len(base)
        x = base[source]
        if kind == "stacked":
            x = x + rng.normal(0, args.noise, (hi - lo, d)).astype(np.float32)
        return (x, source) if sources else x
    members, counts, order = model
    offsets = np.concatenate([[0], np.cumsum(counts)])
    use = np.flatnonzero(counts >= 2)
    comp = np.sort(rng.choice(use, size=hi - lo, p=counts[use] / counts[use].sum()))
    out = np.empty((hi - lo, d), dtype=np.float32)
    source = np.empty(hi - lo, dtype=np.int64)
    pick = np.random.default_rng([args.seed, n, shard, 3])
    starts = np.searchsorted(comp, use)
    stops = np.searchsorted(comp, use, side="right")
    for c, a, b in zip(use, starts, stops):
        if b > a:
            m = members[offsets[c]:offsets[c + 1]]
            mu = m.mean(axis=0)
            w = rng.normal(0, 1 / math.sqrt(len(m) - 1), (b - a, len(m))).astype(np.float32)
            out[a:b] = mu + w @ (m - mu)
            source[a:b] = order[offsets[c] + pick.integers(0, len(m), b - a)]
    perm = rng.permutation(hi - lo)  # leaves interleaved, as documents of one topic are in a corpus
    return (out[perm], source[perm]) if sources else out[perm]


def dataset(kind: str, n: int, base_path: Path, args) -> Path:
    """The directory of float16 shards of ``kind`` at ``n`` (made once)."""
    where = Path(args.data_dir) / f"{kind}_{n}"
    if (where / "done").is_file():
        return where
    where.mkdir(parents=True, exist_ok=True)
    base = np.load(base_path)
    model = mixture_model(base, Path(args.data_dir) / "mixture_model.npz") if kind == "mixture" else None
    print(f"  generating {kind} n={n:,} in {where} ...", flush=True)
    for shard in range(math.ceil(n / SHARD_ROWS)):
        path = where / f"shard_{shard:05d}.npy"
        if not path.is_file():
            x = generate_shard(kind, n, shard, base, args, model).astype(np.float16)
            np.save(str(path) + ".tmp.npy", x)
            os.replace(str(path) + ".tmp.npy", path)
    (where / "done").write_text(json.dumps({"kind": kind, "n": n, "noise": args.noise, "seed": args.seed}))
    return where


def open_shards(where: Path):
    from corpusmap.vectors import Shard, ShardedVectors

    paths = sorted(where.glob("shard_*.npy"))
    shards, start = [], 0
    for i, p in enumerate(paths):
        rows = np.load(p, mmap_mode="r").shape[0]
        shards.append(Shard(index=i, start=start, stop=start + rows, path=p))
        start += rows
    dim = np.load(paths[0], mmap_mode="r").shape[1]
    return ShardedVectors(shards, dim, "float16")


# --------------------------------------------------------------------------------------------------------------
# one measured point (in a child process)


def _status() -> dict:
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) / 1024  # MiB
    return out


def child(method: str, where: str, threads: int, seed: int, target: float) -> dict:
    import faiss  # noqa: F401  (imported before the baseline is taken, like numpy)

    from corpusmap import knn

    peak = {"anon": 0.0}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak["anon"] = max(peak["anon"], _status()["RssAnon"])
            time.sleep(0.05)

    vectors = open_shards(Path(where))
    before = _status()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0, c0 = time.perf_counter(), _cpu()
    if method == "faiss_hnsw":
        info = plain_faiss_hnsw(vectors, threads, seed, target)
    else:
        index = {"corpusmap_auto": "auto", "corpusmap_hnsw": "hnsw"}[method]
        g = knn.build_knn_graph(vectors, k=K, index=index, device="cpu", threads=threads, seed=seed,
                                target_recall=target, progress=False)
        m = g.manifest
        info = {"index": m["index"]["type"], "recall": m["recall"]["value"], "params": m["index"]["params"],
                "phases": m.get("phases"), "index_bytes": (m.get("memory") or {}).get("index_bytes")}
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    stop.set()
    sampler.join()
    after = _status()
    return {**info, "wall": wall, "cpu": cpu, "peak_rss_mib": after["VmHWM"],
            "peak_anon_mib": max(peak["anon"], after["RssAnon"]), "baseline_anon_mib": before["RssAnon"],
            "n": len(vectors), "dim": vectors.shape[1]}


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def plain_faiss_hnsw(vectors, threads: int, seed: int, target: float) -> dict:
    """FAISS ``IndexHNSWFlat(d, 32)`` with its defaults, efSearch tuned as corpusmap tunes it (same queries,
    same lower-bound rule), then all points searched; recall on corpusmap's held-out queries."""
    import faiss

    from corpusmap import knn

    faiss.omp_set_num_threads(threads)
    x = vectors.to_numpy(np.float32)
    n, d = x.shape
    idx = faiss.IndexHNSWFlat(d, 32)
    idx.add(x)
    tune_rows = knn._sample(n, 1000, seed, knn._STREAM_TUNE)
    check_rows = knn.recall_queries(n, 1000, seed)
    truth, _ = knn.exact_search(vectors, np.concatenate([tune_rows, check_rows]), K)

    def lower(ef: int) -> float:
        idx.hnsw.efSearch = ef
        dd, ii = idx.search(x[tune_rows], K + 1)
        mean, se = knn._recall_stats(knn.remove_self(ii, dd, tune_rows, K)[0], truth[:1000])
        return mean - knn.RECALL_MARGIN_SE * se

    ef, _ = knn._smallest_reaching(lower, K + 1, 4096, target)
    idx.hnsw.efSearch = ef
    dd, ii = idx.search(x, K + 1)
    ind, _ = knn.remove_self(ii, dd, np.arange(n), K)
    return {"index": "faiss IndexHNSWFlat(d, 32)", "recall": knn.recall_at_k(ind[check_rows], truth[1000:]),
            "params": {"M": 32, "efConstruction": int(idx.hnsw.efConstruction), "efSearch": int(ef)}}


def run_point(method: str, where: Path, args) -> dict:
    env = dict(os.environ)
    if args.omp_wait:
        env["OMP_WAIT_POLICY"] = args.omp_wait
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[2]);"
            "import bench_knn_scale as b; print(json.dumps(b.child(sys.argv[3], sys.argv[4], int(sys.argv[5]),"
            " int(sys.argv[6]), float(sys.argv[7]))))")
    proc = subprocess.run([sys.executable, "-c", code, str(ROOT), str(ROOT / "bench"), method, str(where),
                           str(args.threads), str(args.seed), str(args.target)],
                          capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode:
        raise SystemExit(f"{method} on {where} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------------------------
# report


def load_results(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def exponent(rows: list[dict], key: str) -> float:
    if len(rows) < 2:
        return float("nan")
    x = np.log([r["n"] for r in rows])
    y = np.log([r[key] for r in rows])
    return float(np.polyfit(x, y, 1)[0])


def report(results: list[dict], png: Path) -> None:
    scale = sorted((r for r in results if r["method"] == "corpusmap_auto" and r["kind"] != "hnsw_side"),
                   key=lambda r: (r["kind"], r["n"]))
    print()
    print(f"{'data':8s} {'n':>9s} {'wall s':>8s} {'cpu s':>8s} {'peak RSS':>9s} {'peak anon':>9s} "
          f"{'index MB':>8s} {'n*d*4 MB':>8s} {'recall':>7s}  params")
    for r in scale:
        p = r.get("params") or {}
        print(f"{r['kind']:8s} {r['n']:>9,d} {r['wall']:>8.1f} {r['cpu']:>8.1f} {r['peak_rss_mib']:>8.0f}M "
              f"{r['peak_anon_mib']:>8.0f}M {((r.get('index_bytes') or 0) / 2**20):>8.0f} "
              f"{r['n'] * r['dim'] * 4 / 2**20:>8.0f} {r['recall']:>7.4f}  nlist={p.get('nlist')} "
              f"nprobe={p.get('nprobe')} k_factor={p.get('k_factor')}")
    print()
    kinds = sorted({r["kind"] for r in scale if r["kind"] != "real"})
    for kind in kinds:
        rows = [r for r in scale if r["kind"] == kind]
        sizes = ", ".join(f"{r['n']:,}" for r in rows)
        print(f"exponent of time vs n, {kind} (n = {sizes}): "
              f"wall {exponent(rows, 'wall'):.2f}, cpu {exponent(rows, 'cpu'):.2f}")
    side = [r for r in results if r["kind"] == "hnsw_side"]
    if side:
        print("\nside by side on the real vectors:")
        for r in sorted(side, key=lambda r: (r["n"], r["method"])):
            print(f"  n={r['n']:>7,d} {r['method']:16s} wall {r['wall']:7.1f} s  cpu {r['cpu']:7.1f} s  "
                  f"peak anon {r['peak_anon_mib']:6.0f} MiB (baseline {r['baseline_anon_mib']:.0f})  "
                  f"recall {r['recall']:.4f}  {json.dumps(_short(r.get('params') or {}))}")
    if not scale:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.8))
    for kind in sorted({r["kind"] for r in scale}):
        rows = [r for r in scale if r["kind"] == kind]
        n = [r["n"] for r in rows]
        ax.plot(n, [r["wall"] for r in rows], "o-", label=f"{kind} wall (exp {exponent(rows, 'wall'):.2f})")
        ax.plot(n, [r["cpu"] for r in rows], "s--", label=f"{kind} cpu (exp {exponent(rows, 'cpu'):.2f})")
        bx.plot(n, [r["peak_anon_mib"] for r in rows], "o-", label=f"{kind} peak anon RSS")
        bx.plot(n, [(r.get("index_bytes") or 0) / 2**20 for r in rows], "^:", label=f"{kind} index (codes)")
    allrows = sorted(scale, key=lambda r: r["n"])
    n0, t0 = allrows[0]["n"], allrows[0]["cpu"]
    grid = np.geomspace(n0, allrows[-1]["n"], 20)
    ax.plot(grid, t0 * grid / n0 * np.log(grid) / np.log(n0), "k:", lw=1, label="n log n")
    ax.plot(grid, t0 * (grid / n0) ** 1.3, "k-.", lw=1, label="n^1.3")
    bx.plot(grid, grid * allrows[0]["dim"] * 4 / 2**20, "k:", lw=1, label="n*d*4 bytes (float32 copy)")
    for a, title, unit in ((ax, f"kNN graph (k={K}, recall >= 0.98)", "seconds"), (bx, "memory", "MiB")):
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_xlabel("n")
        a.set_ylabel(unit)
        a.set_title(title)
        a.legend(fontsize=7)
        a.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    print(f"\nfigure: {png}")


def _short(params: dict) -> dict:
    keys = ("nlist", "nprobe", "k_factor", "efSearch", "efConstruction", "keep_max_size_level0", "M")
    return {k: params[k] for k in keys if k in params}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("png", type=Path, help="where to write the log-log figure")
    p.add_argument("--data-dir", default="/work/scratch/knn/bench")
    p.add_argument("--results", type=Path, default=None, help="JSON lines (default: DATA_DIR/results.jsonl)")
    p.add_argument("--base", type=Path, default=None, help="real 300-D vectors .npy (made from --corpus if absent)")
    p.add_argument("--corpus", type=Path, default=CORPUS)
    p.add_argument("--sizes", default="100000,300000,1000000")
    p.add_argument("--kinds", default="stacked,mixture")
    p.add_argument("--noise", type=float, default=0.0025)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--target", type=float, default=0.98)
    p.add_argument("--hnsw-n", default="37000", help="sizes of the hnsw side-by-side ('' to skip)")
    p.add_argument("--omp-wait", default="PASSIVE", help="OMP_WAIT_POLICY of the children ('' to inherit)")
    p.add_argument("--only-table", action="store_true")
    args = p.parse_args(argv)

    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    results_path = args.results or data_dir / "results.jsonl"
    results = load_results(results_path)
    done = {(r["kind"], r["n"], r["method"]) for r in results}
    if not args.only_table:
        base = args.base or data_dir / "arxiv300.npy"
        if not base.is_file():
            print(f"making the real vectors {base} from {args.corpus} (TF-IDF + SVD 300) ...", flush=True)
            make_base(args.corpus, base)
        n_real = int(np.load(base, mmap_mode="r").shape[0])
        points = [("real", n_real, "corpusmap_auto")]
        points += [(kind, int(n), "corpusmap_auto") for n in args.sizes.split(",") if n
                   for kind in args.kinds.split(",") if kind]
        points += [("hnsw_side", int(n), m) for n in args.hnsw_n.split(",") if n
                   for m in ("corpusmap_hnsw", "faiss_hnsw", "corpusmap_auto")]
        for kind, n, method in points:
            if (kind, n, method) in done:
                continue
            where = dataset("real" if kind == "hnsw_side" else kind, n, base, args)
            print(f"{kind} n={n:,} {method} ...", flush=True)
            r = {"kind": kind, "method": method, **run_point(method, where, args),
                 "threads": args.threads, "omp_wait": args.omp_wait, "when": time.strftime("%Y-%m-%d %H:%M")}
            print(f"  wall {r['wall']:.1f} s, cpu {r['cpu']:.1f} s, peak anon {r['peak_anon_mib']:.0f} MiB, "
                  f"recall {r['recall']:.4f}", flush=True)
            with open(results_path, "a") as fh:
                fh.write(json.dumps(r) + "\n")
            results.append(r)
    report(results, args.png)


if __name__ == "__main__":
    main()
