"""Benchmark: every CPU stage of the pipeline at growing n, as a user runs it (the command line, default options).

Run by hand (not in CI); resumable: each finished (data, n, stage) is appended to ``--results`` and skipped on the
next run, the runs and the generated data are kept under ``--work``, and an interrupted stage resumes as the
stage itself does.

    .venv/bin/python bench/bench_scale.py docs/scale.png                          # 100k, 300k, 1M
    .venv/bin/python bench/bench_scale.py docs/scale.png --sizes 3000000 --stages embed,neighbors,tsne
    .venv/bin/python bench/bench_scale.py docs/scale.png --only-table

Data: the generators of ``bench_knn_scale.py`` (``mixture``: a Gaussian per leaf of ~16 real 300-D TF-IDF + SVD
arXiv vectors, with the leaf's own covariance, so the data have realistic cluster structure and no near-copies;
``stacked``: the real vectors repeated with small noise). Each generated row takes the abstract, year, listing date and
primary category of a real arXiv record of its leaf (``stacked``: of the vector it copies), so kNN accuracy, clusters'
keywords and excess counting see real text. The vectors reach the run through ``corpusmap embed --vectors``, the
path a user with vectors made elsewhere takes.

Stages, each a fresh ``corpusmap`` process with ``--threads`` where it has one: embed (read the corpus parquet
and store the vectors), neighbors (auto: exact below 20,000 points, else ivfpq tuned to recall 0.98), map t-SNE
and map UMAP (from the stored graph; ``umap``: umap-learn's spectral start, ``umap-pca``: ``--umap-init pca``, the
default's choice above 300,000 points), clusters (nested Leiden on
the graph, c-TF-IDF keywords), evaluate (kNN recall and accuracy of every map and a PCA baseline, 10,000 queries),
excess (counting per listing month and the analysis) and view (the page). Per stage: wall time, CPU time and peak
RSS (GNU time's %M, see :func:`measure`); the exponents of wall and of CPU time vs n are least-squares fits of log
time on log n over the sizes measured (CPU time is the steadier of the two on a shared machine).
"""
from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_knn_scale as kscale  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CORPUSMAP = Path(sys.executable).parent / "corpusmap"
GNU_TIME = "/usr/bin/time"  # Debian package "time"
STAGES = ("embed", "neighbors", "tsne", "umap", "umap-pca", "clusters", "evaluate", "excess", "view")


def records(corpus: Path) -> dict[str, np.ndarray]:
    """The abstract, year and primary category of each record of the arXiv corpus, in file order."""
    with gzip.open(corpus, "rt") as fh:
        rows = [json.loads(line) for line in fh]
    return {"abstract": np.array([r.get("abstract") or "" for r in rows], dtype=object),
            "year": np.array([int(str(r.get("year") or r.get("listing_date", "0"))[:4]) for r in rows]),
            "label": np.array([r.get("primary_category") or "" for r in rows], dtype=object),
            "listing_date": np.array([r.get("listing_date") or "" for r in rows], dtype=object)}


def make_inputs(kind: str, n: int, args) -> tuple[Path, Path]:
    """(corpus.parquet, vectors.npy) of ``kind`` at ``n`` under --work (made once)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    where = Path(args.work) / f"{kind}_{n}"
    corpus, vectors = where / "input.parquet", where / "vectors.npy"
    if (where / "inputs.done").is_file():
        return corpus, vectors
    where.mkdir(parents=True, exist_ok=True)
    base_path = Path(args.work) / "arxiv300.npy"
    if not base_path.is_file():
        print(f"making the real vectors {base_path} (TF-IDF + SVD 300) ...", flush=True)
        kscale.make_base(args.corpus, base_path)
    base = np.load(base_path)
    model = kscale.mixture_model(base, Path(args.work) / "mixture_model.npz") if kind == "mixture" else None
    meta = records(args.corpus)
    print(f"generating {kind} n={n:,} in {where} ...", flush=True)
    out = np.lib.format.open_memmap(str(vectors) + ".tmp.npy", mode="w+", dtype=np.float16, shape=(n, base.shape[1]))
    writer = pq.ParquetWriter(str(corpus) + ".tmp", pa.schema([("id", pa.string()), ("abstract", pa.string()),
                                                               ("year", pa.int32()), ("label", pa.string()),
                                                               ("listing_date", pa.string())]))
    for shard in range(math.ceil(n / kscale.SHARD_ROWS)):
        x, source = kscale.generate_shard(kind, n, shard, base, args, model, sources=True)
        lo = shard * kscale.SHARD_ROWS
        out[lo:lo + len(x)] = x.astype(np.float16)
        writer.write_table(pa.table({"id": [f"g{i}" for i in range(lo, lo + len(x))],
                                     "abstract": meta["abstract"][source].tolist(),
                                     "year": meta["year"][source].astype(np.int32),
                                     "label": meta["label"][source].tolist(),
                                     "listing_date": meta["listing_date"][source].tolist()}))
    writer.close()
    out.flush()
    del out
    os.replace(str(vectors) + ".tmp.npy", vectors)
    os.replace(str(corpus) + ".tmp", corpus)
    (where / "inputs.done").write_text(json.dumps({"kind": kind, "n": n, "seed": args.seed, "noise": args.noise}))
    return corpus, vectors


def command(stage: str, run: Path, corpus: Path, vectors: Path, threads: int) -> list[str]:
    t = ["--threads", str(threads)]
    return {
        "embed": ["embed", str(corpus), "-o", str(run), "--vectors", str(vectors), "--id-col", "id",
                  "--text-col", "abstract", "--year-col", "year", "--label-col", "label"],
        "neighbors": ["neighbors", str(run), *t],
        "tsne": ["map", str(run), "--method", "tsne", "--no-plot", *t],
        "umap": ["map", str(run), "--method", "umap", "--umap-init", "spectral", "--no-plot", *t],
        "umap-pca": ["map", str(run), "--method", "umap", "--umap-init", "pca", "--name", "umap_pca", "--no-plot", *t],
        "clusters": ["clusters", str(run)],
        "evaluate": ["evaluate", str(run)],
        "excess": ["excess", str(run), "--period", "month", "--no-figures", *t],
        "view": ["view", str(run), "--map", "tsne"],
    }[stage]


def measure(argv: list[str], log: Path, threads: int) -> dict:
    """Run ``corpusmap ARGV`` in a fresh process (its output to ``log``): wall and CPU seconds, peak RSS.

    The peak RSS is GNU time's ``%M`` (ru_maxrss of its child: the largest of the corpusmap process and the worker
    processes it waited for); it is not taken from this process' own wait4, because a child's ru_maxrss counts the
    memory of the process that forked it, here the benchmark with its data."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE"}
    rss = log.parent / "maxrss.txt"
    with open(log, "a") as fh:
        fh.write(f"\n$ corpusmap {' '.join(argv)}\n")
        fh.flush()
        began = time.perf_counter()
        proc = subprocess.Popen([GNU_TIME, "-f", "%M", "-o", str(rss), str(CORPUSMAP), *argv], stdout=fh,
                                stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - began
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise SystemExit(f"corpusmap {' '.join(argv)} failed (exit {code}); its output is in {log}")
    peak_kib = int(rss.read_text().split()[-1])
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "peak_rss_mib": peak_kib / 1024}


# --------------------------------------------------------------------------------------------------------------
# report


def exponent(rows: list[dict], key: str = "wall") -> float:
    """Least-squares slope of log(``key``) on log(n): cost grows like n^slope."""
    if len(rows) < 2:
        return float("nan")
    return float(np.polyfit(np.log([r["n"] for r in rows]), np.log([r[key] for r in rows]), 1)[0])


def report(results: list[dict], png: Path) -> None:
    kinds = sorted({r["kind"] for r in results})
    sizes = sorted({r["n"] for r in results})
    for kind in kinds:
        print(f"\n{kind}: wall seconds / peak RSS GiB per stage")
        print(f"{'stage':10s} " + " ".join(f"{n:>17,d}" for n in sizes) + "  exponent (wall, CPU)")
        for stage in STAGES:
            rows = sorted((r for r in results if r["kind"] == kind and r["stage"] == stage), key=lambda r: r["n"])
            if not rows:
                continue
            by_n = {r["n"]: r for r in rows}
            cells = [f"{by_n[n]['wall']:>8.1f}/{by_n[n]['peak_rss_mib'] / 1024:>6.2f} GiB" if n in by_n
                     else f"{'':>17s}" for n in sizes]
            print(f"{stage:10s} " + " ".join(cells) + f"  {exponent(rows):5.2f}, {exponent(rows, 'cpu'):5.2f}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 5))
    for kind in kinds:
        for stage in STAGES:
            rows = sorted((r for r in results if r["kind"] == kind and r["stage"] == stage), key=lambda r: r["n"])
            if not rows:
                continue
            n = [r["n"] for r in rows]
            style = "o-" if kind == "mixture" else "s--"
            label = f"{stage} ({kind}, n^{exponent(rows):.2f})" if len(rows) > 1 else f"{stage} ({kind})"
            line, = ax.plot(n, [r["wall"] for r in rows], style, label=label)
            bx.plot(n, [r["peak_rss_mib"] / 1024 for r in rows], style, color=line.get_color(),
                    label=f"{stage} ({kind})")
    grid = np.geomspace(sizes[0], sizes[-1], 20)
    ax.plot(grid, 10 * grid / grid[0], "k:", lw=1, label="∝ n")
    for a, title, unit in ((ax, "wall time per stage (2 threads)", "seconds"), (bx, "peak RSS per stage", "GiB")):
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_xlabel("abstracts n")
        a.set_ylabel(unit)
        a.set_title(title)
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=7)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    print(f"\nfigure: {png}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("png", type=Path, help="where to write the log-log figure")
    p.add_argument("--work", default="/work/scratch/scale", help="generated data and the runs")
    p.add_argument("--results", type=Path, default=None, help="JSON lines (default: WORK/results.jsonl)")
    p.add_argument("--corpus", type=Path, default=kscale.CORPUS)
    p.add_argument("--sizes", default="100000,300000,1000000")
    p.add_argument("--kinds", default="mixture")
    p.add_argument("--stages", default=",".join(STAGES))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=42, help="seed of the generated data")
    p.add_argument("--noise", type=float, default=0.0025, help="stacked: s.d. of the noise per dimension")
    p.add_argument("--only-table", action="store_true")
    args = p.parse_args(argv)
    unknown = set(args.stages.split(",")) - set(STAGES)
    if unknown:
        p.error(f"unknown stages {sorted(unknown)}; known: {', '.join(STAGES)}")

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results_path = args.results or work / "results.jsonl"
    results = [json.loads(line) for line in results_path.read_text().splitlines()] if results_path.is_file() else []
    done = {(r["kind"], r["n"], r["stage"]) for r in results}
    if not args.only_table:
        for n in (int(s) for s in args.sizes.split(",") if s):
            for kind in (k for k in args.kinds.split(",") if k):
                corpus, vectors = make_inputs(kind, n, args)
                run = work / f"{kind}_{n}" / "run"
                for stage in (s for s in STAGES if s in args.stages.split(",")):
                    if (kind, n, stage) in done:
                        continue
                    print(f"{kind} n={n:,} {stage} ...", flush=True)
                    r = {"kind": kind, "n": n, "stage": stage, "threads": args.threads,
                         **measure(command(stage, run, corpus, vectors, args.threads), run.parent / "log.txt",
                                   args.threads), "when": time.strftime("%Y-%m-%d %H:%M")}
                    print(f"  wall {r['wall']:.1f} s, cpu {r['cpu']:.1f} s, peak RSS {r['peak_rss_mib']:.0f} MiB",
                          flush=True)
                    with open(results_path, "a") as fh:
                        fh.write(json.dumps(r) + "\n")
                    results.append(r)
    if results:
        report(results, args.png)


if __name__ == "__main__":
    main()
