"""Benchmark: corpusmap's word counting (`corpusmap excess`) against scikit-learn's CountVectorizer(binary=True)
fitted per year, the way the excess-vocabulary study counted; same abstracts, one run. Run by hand (not in CI):

    .venv/bin/python bench/bench_excess.py                     # whole arxiv_2025_2026 (74,728 abstracts)
    .venv/bin/python bench/bench_excess.py --workers 2 --cache /tmp/corpusmap-bench

The corpus is read once with corpusmap's reader into a RUN-like folder (corpus.parquet in row groups of 8,192, as
`corpusmap embed` writes it; the reader's time is reported as "reader"), plus folders with the first 25% of the
rows and with the corpus four times over. Then each measurement runs in its own Python process, so that its
peak RSS is its own:

- ``ours``: stream RUN/corpus.parquet in record batches through ``vocab.count_words`` (polars engine), as
  `corpusmap excess RUN` does;
- ``ours_25`` and ``ours_x4``: the same on the first 25% of the rows and on the corpus repeated four times
  (299k abstracts): peak memory must not grow with the number of abstracts;
- ``reference``: load the texts and years, then one ``CountVectorizer(binary=True).fit_transform`` per year and
  column sums (the study's method); its counting time excludes loading;
- ``ours_e2e``: corpusmap's reader on the JSONL straight into the counting, as `corpusmap excess FILE` does.

Counts of ``ours`` and ``reference`` must be identical (every word, every year, every total). CPU seconds are
reported beside wall seconds because the machine may be shared.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from _common import SHARED, run_child  # noqa: E402

CORPUS = SHARED / "arxiv_2025_2026.jsonl.gz"


def _cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(mode: str, source: str, out: str, workers: str) -> None:
    """Runs in a fresh process; prints one JSON line."""
    if workers != "0":
        os.environ["POLARS_MAX_THREADS"] = workers
    import numpy as np
    import pyarrow.parquet as pq

    from corpusmap import vocab
    from corpusmap.progress import set_quiet

    set_quiet(True)
    result: dict = {"mode": mode}
    if mode.startswith("ours"):
        vocab._polars_patterns()                     # building the exact character classes: reported apart
        base = _current_rss_mib()
        t0, c0 = time.perf_counter(), _cpu()
        if mode == "ours_e2e":
            from corpusmap.corpus import iter_corpus

            batches = iter_corpus([source])
        else:
            batches = vocab.read_run_batches(source, ["text", "year"], 16384)
        table = vocab.count_words(batches, progress=False)
        result.update(seconds=time.perf_counter() - t0, cpu_seconds=_cpu() - c0, baseline_rss_mib=base)
        import polars as pl

        result["threads"] = pl.thread_pool_size()
        periods, totals, words, counts = table.periods, table.totals, table.words, table.counts
    else:
        from sklearn.feature_extraction.text import CountVectorizer

        t0 = time.perf_counter()
        data = pq.read_table(Path(source) / "corpus.parquet", columns=["text", "year"])
        texts, years = data["text"].to_pylist(), data["year"].to_pylist()
        del data
        result["load_seconds"] = time.perf_counter() - t0
        base = _current_rss_mib()
        t0, c0 = time.perf_counter(), _cpu()
        per_year = {}
        for year in sorted({y for y in years if y is not None}):
            docs = [t for t, y in zip(texts, years) if y == year]
            cv = CountVectorizer(binary=True)
            X = cv.fit_transform(docs)
            per_year[str(year)] = (len(docs), cv.get_feature_names_out(), np.asarray(X.sum(axis=0)).ravel())
        result.update(seconds=time.perf_counter() - t0, cpu_seconds=_cpu() - c0, baseline_rss_mib=base)
        periods = sorted(per_year)
        vocab_all = sorted(set().union(*(set(f.tolist()) for _, f, _ in per_year.values())))
        index = {w: i for i, w in enumerate(vocab_all)}
        words = np.array(vocab_all, dtype=object)
        counts = np.zeros((len(words), len(periods)), dtype=np.int64)
        for j, p in enumerate(periods):
            n, feats, sums = per_year[p]
            counts[[index[w] for w in feats.tolist()], j] = sums
        totals = np.array([per_year[p][0] for p in periods])
    result.update(abstracts=int(np.sum(totals)), peak_rss_mib=_rss_mib(), words=len(words))
    result["abstracts_per_s"] = result["abstracts"] / result["seconds"]
    vocab.CountTable(words, periods, counts, totals).write(out, csv=False)
    print(json.dumps(result))


def _run(mode, source, out, workers) -> dict:
    code = ("import sys; sys.path.insert(0, 'bench'); import bench_excess as b; "
            "b.child(*sys.argv[1:])")
    return run_child(code, mode, str(source), str(out), str(workers))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/corpusmap-bench/excess"))
    ap.add_argument("--workers", type=int, default=0, help="polars threads (0: all cores)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()

    import pyarrow as pa
    import pyarrow.parquet as pq

    from corpusmap.corpus import iter_corpus
    from corpusmap.vocab import read_counts

    args.cache.mkdir(parents=True, exist_ok=True)
    full, quarter, four = (args.cache / f"run{suffix}" for suffix in ("", "_25", "_x4"))   # RUN-like folders
    for folder in (full, quarter, four):
        folder.mkdir(exist_ok=True)
    t0, c0 = time.perf_counter(), _cpu()
    table = pa.Table.from_batches(list(iter_corpus([args.corpus])))
    reader = {"seconds": time.perf_counter() - t0, "cpu_seconds": _cpu() - c0, "abstracts": table.num_rows}
    rows = {"row_group_size": 8192, "compression": "zstd"}   # as `corpusmap embed` writes RUN/corpus.parquet
    pq.write_table(table, full / "corpus.parquet", **rows)
    pq.write_table(table.slice(0, table.num_rows // 4), quarter / "corpus.parquet", **rows)
    pq.write_table(pa.concat_tables([table] * 4), four / "corpus.parquet", **rows)
    del table

    results = {"reader": reader}
    for mode, source in (("reference", full), ("ours", full), ("ours_25", quarter), ("ours_x4", four),
                         ("ours_e2e", args.corpus)):
        out = args.cache / mode
        results[mode] = _run("ours" if mode in ("ours_25", "ours_x4") else mode, source, out, args.workers)
        results[mode]["mode"] = mode
        print(f"{mode:10s} {json.dumps(results[mode])}", flush=True)

    ours, ref = read_counts(args.cache / "ours" / "counts.parquet"), read_counts(args.cache / "reference" /
                                                                                   "counts.parquet")
    identical = ours.equals(ref)
    o, r, q, x4 = results["ours"], results["reference"], results["ours_25"], results["ours_x4"]
    summary = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average_at_end": os.getloadavg(),
        "abstracts": o["abstracts"],
        "identical_counts": identical,
        "speedup_counting": r["seconds"] / o["seconds"],
        "speedup_cpu": r["cpu_seconds"] / o["cpu_seconds"],
        "speedup_ref_counting_vs_ours_end_to_end": r["seconds"] / results["ours_e2e"]["seconds"],
        "speedup_ref_with_reader_vs_ours_end_to_end": (r["seconds"] + reader["seconds"])
        / results["ours_e2e"]["seconds"],
        "ours_peak_rss_mib_25_100_400": [q["peak_rss_mib"], o["peak_rss_mib"], x4["peak_rss_mib"]],
        "results": results,
    }
    print()
    print(f"{o['abstracts']:,} abstracts, {o['words']:,} distinct words, counts identical: {identical}")
    print(f"{'':28s}{'wall s':>9s}{'cpu s':>9s}{'abstracts/s':>13s}{'peak RSS MiB':>14s}")
    for name, row in (("CountVectorizer per year", r), ("corpusmap (RUN parquet)", o), ("corpusmap, 25% of rows", q),
                      ("corpusmap, corpus x4", x4), ("corpusmap from JSONL (e2e)", results["ours_e2e"])):
        print(f"{name:28s}{row['seconds']:9.2f}{row['cpu_seconds']:9.2f}{row['abstracts_per_s']:13,.0f}"
              f"{row['peak_rss_mib']:14,.0f}")
    print(f"{'reader (JSONL -> batches)':28s}{reader['seconds']:9.2f}{reader['cpu_seconds']:9.2f}"
          f"{reader['abstracts'] / reader['seconds']:13,.0f}")
    print(f"speed-up: {summary['speedup_counting']:.1f}x wall, {summary['speedup_cpu']:.1f}x CPU; end to end from "
          f"JSONL (reader included on both sides): {summary['speedup_ref_with_reader_vs_ours_end_to_end']:.1f}x")
    print(f"peak RSS at 25% / 100% / 400% of the abstracts: {q['peak_rss_mib']:,.0f} / {o['peak_rss_mib']:,.0f} / "
          f"{x4['peak_rss_mib']:,.0f} MiB; reference {r['peak_rss_mib']:,.0f} MiB; "
          f"load average {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    if not identical:
        raise SystemExit("counts differ")


if __name__ == "__main__":
    main()
