"""Reading speed: corpusmap's corpus step vs polars ``read_ndjson`` + ``write_parquet`` on the same JSONL.

Each measurement runs in a fresh Python process (imports not timed) and the methods are interleaved, so a busy
machine slows them alike; the table gives the best and the median wall time, the CPU time of the process (all its
threads) and the peak RSS. Methods:

* ``corpusmap``: the corpus step of ``corpusmap embed`` (``corpusmap.embed._read_corpus``: normalised batches
  written to a zstd parquet, exactly the corpus.parquet of a run).
* ``corpusmap-lines``: the same with the Arrow chunk reader switched off, i.e. every record through ``json.loads``
  and per-value Python (how the reader worked before); its output must be byte-identical.
* ``polars``: ``pl.read_ndjson`` of the file, the same columns selected (text stripped, year as Int32, the label
  column; lists kept as lists), ``write_parquet`` with zstd.

    python bench/bench_read.py [--input FILE.jsonl.gz] [--repeats 5] [--methods corpusmap,polars]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PEAK_RSS, SHARED, run_child  # noqa: E402

CHILD = PEAK_RSS + r'''
import hashlib, json, sys, time
method, source, out = sys.argv[1], sys.argv[2], sys.argv[3]
if method.startswith("corpusmap"):
    from corpusmap import corpus
    from corpusmap.embed import EmbedParams, _read_corpus
    from corpusmap import progress
    progress.set_quiet(True)
    if method == "corpusmap-lines":
        corpus._JsonlReader._arrow = lambda self, data, records: None
    params = EmbedParams(inputs=(source,))
    paths = corpus.resolve_inputs(params.inputs)
    def work():
        stats = _read_corpus(params, paths, __import__("pathlib").Path(out))
        return stats.rows_kept
else:
    import polars as pl
    def work():
        frame = pl.read_ndjson(source)
        label = next(c for c in ("label", "journal", "primary_category", "venue", "subjects") if c in frame.columns)
        text = next(c for c in ("abstract", "text") if c in frame.columns)
        ident = next(c for c in ("id", "pmid", "doi") if c in frame.columns)
        core = [pl.col(ident).cast(pl.String).alias("id"), pl.col(text).str.strip_chars().alias("text"),
                pl.col("title"), pl.col("year").cast(pl.Int32, strict=False), pl.col(label).alias("label")]
        rest = [c for c in frame.columns if c not in (ident, text, "title", "year", label)]
        frame = frame.select(core + rest)
        frame.write_parquet(out, compression="zstd")
        return frame.height
cpu0, wall0 = time.process_time(), time.perf_counter()
rows = work()
wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
digest = hashlib.sha256(open(out, "rb").read()).hexdigest()
print(json.dumps({"method": method, "rows": rows, "seconds": wall, "cpu_seconds": cpu, "peak_mib": peak_mib(),
                  "sha256": digest}))
'''


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default=str(SHARED / "arxiv_2025_2026.jsonl.gz"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--methods", default="corpusmap,polars,corpusmap-lines")
    args = parser.parse_args(argv)
    methods = args.methods.split(",")
    results: dict[str, list[dict]] = {m: [] for m in methods}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for method in methods:
                out = str(Path(tmp) / f"{method}.parquet")
                result = run_child(CHILD, method, args.input, out)
                results[method].append(result)
                print(f"  repeat {repeat + 1}: {method:16s} {result['seconds']:6.2f} s wall, "
                      f"{result['cpu_seconds']:6.2f} s CPU, {result['peak_mib']:,.0f} MiB", file=sys.stderr)
    summary = {}
    for method, runs in results.items():
        walls = [r["seconds"] for r in runs]
        summary[method] = {"best_s": min(walls), "median_s": statistics.median(walls),
                           "cpu_s": statistics.median(r["cpu_seconds"] for r in runs),
                           "peak_mib": max(r["peak_mib"] for r in runs), "rows": runs[0]["rows"],
                           "sha256": runs[0]["sha256"]}
    reference = summary.get("polars")
    print(f"\nReading {args.input} ({summary[methods[0]]['rows']:,} rows), {args.repeats} interleaved repeats\n")
    print("| method | best wall (s) | median wall (s) | CPU (s) | peak RSS (MiB) | vs polars (best / median) |")
    print("|---|---:|---:|---:|---:|---:|")
    for method, s in summary.items():
        ratio = (f"{s['best_s'] / reference['best_s']:.2f}x / {s['median_s'] / reference['median_s']:.2f}x"
                 if reference else "")
        print(f"| {method} | {s['best_s']:.2f} | {s['median_s']:.2f} | {s['cpu_s']:.2f} | {s['peak_mib']:,.0f} | "
              f"{ratio} |")
    if "corpusmap" in summary and "corpusmap-lines" in summary:
        same = summary["corpusmap"]["sha256"] == summary["corpusmap-lines"]["sha256"]
        print(f"\ncorpus.parquet of the Arrow reader and of the line reader byte-identical: {same}")
        summary["identical"] = same
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
