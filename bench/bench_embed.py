"""Embedding throughput: corpusmap embed vs plain SentenceTransformer.encode (same model, batch size, device,
texts), in one run, for two corpus sizes; then token-budget batching vs fixed batches.

    .venv/bin/python bench/bench_embed.py [--sizes 2000,4000] [--batch-size 64] [--max-length 256]

Goals: ratio corpusmap/plain throughput >= 1.0; peak RSS grows with the corpus only by its vectors.
"""
from __future__ import annotations

import argparse
import json

from _common import PEAK_RSS, SHARED, run_child

CORPUSMAP = PEAK_RSS + """
import json, sys, tempfile, time, gzip
from corpusmap.corpus import ColumnMap
from corpusmap.embed import EmbedOptions, embed
n, batch, max_length, budget = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]) or None
src = tempfile.mktemp(suffix=".jsonl")
with gzip.open(sys.argv[5], "rt") as fh, open(src, "w") as out:
    for i, line in zip(range(n), fh):
        out.write(line)
from corpusmap.encoders import TransformerEncoder
TransformerEncoder("all-MiniLM-L6-v2", device="cpu")  # warm the file cache like the baseline's load
began = time.perf_counter()
manifest = embed([src], tempfile.mkdtemp(), options=EmbedOptions(batch_size=batch, max_length=max_length,
                 max_tokens_per_batch=budget), device="cpu")
seconds = time.perf_counter() - began
print(json.dumps({"rows": manifest["n"], "seconds": seconds, "peak_mib": peak_mib()}))
"""

PLAIN = PEAK_RSS + """
import json, sys, time, gzip
from sentence_transformers import SentenceTransformer
from corpusmap.encoders import resolve_model
n, batch, max_length = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
with gzip.open(sys.argv[5], "rt") as fh:
    texts = [json.loads(line)["abstract"] for _, line in zip(range(n), fh)]
began_load = time.perf_counter()
model = SentenceTransformer(resolve_model("all-MiniLM-L6-v2"), device="cpu")
model.max_seq_length = max_length
began = time.perf_counter()
vectors = model.encode(texts, batch_size=batch)
seconds = time.perf_counter() - began
print(json.dumps({"rows": len(vectors), "seconds": seconds, "peak_mib": peak_mib()}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2000,4000")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--corpus", default=str(SHARED / "arxiv_2025_2026.jsonl.gz"))
    args = parser.parse_args()
    common = [str(args.batch_size), str(args.max_length)]
    print(f"model all-MiniLM-L6-v2, cpu, batch {args.batch_size}, max_length {args.max_length}")
    print(f"{'n':>6} {'plain/s':>9} {'corpusmap/s':>12} {'ratio':>6} {'plain MiB':>10} {'corpusmap MiB':>14}")
    for n in map(int, args.sizes.split(",")):
        plain = run_child(PLAIN, str(n), *common, "0", args.corpus)
        ours = run_child(CORPUSMAP, str(n), *common, "0", args.corpus)
        rate_plain, rate_ours = n / plain["seconds"], n / ours["seconds"]
        print(f"{n:>6} {rate_plain:>9.1f} {rate_ours:>12.1f} {rate_ours / rate_plain:>6.2f} "
              f"{plain['peak_mib']:>10.0f} {ours['peak_mib']:>14.0f}")
    n = int(args.sizes.split(",")[0])
    fixed = run_child(CORPUSMAP, str(n), *common, "0", args.corpus)
    budget = run_child(CORPUSMAP, str(n), *common, str(args.batch_size * args.max_length // 2), args.corpus)
    print(f"token-budget batching ({args.batch_size * args.max_length // 2} tokens) vs fixed {args.batch_size} rows, "
          f"n={n}: {n / budget['seconds']:.1f} vs {n / fixed['seconds']:.1f} abstracts/s, "
          f"ratio {fixed['seconds'] / budget['seconds']:.2f}")
    print(json.dumps({"note": "ratios > 1 mean corpusmap is faster"}))


if __name__ == "__main__":
    main()
