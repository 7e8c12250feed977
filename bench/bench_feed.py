"""How fast the loader can feed a GPU: tokenising abstracts with a no-op model, in the loader thread (the default) and
in 1..N worker processes (``embed --tokenizer-workers``), in abstracts per second and per core.

    python bench/bench_feed.py [--rows 20000] [--max-length 512] [--workers 1,2]

Texts: the arXiv abstracts of ../shared/data when present, else the bundled eLife ones repeated. The tokenizer is
the bundled all-MiniLM-L6-v2's (BERT's uncased WordPiece, like BERT-base and PubMedBERT). A GPU needs
about 8,500 abstracts/s for BERT-base at ~200 tokens (measured on an H100, see the README); this says how many
cores must tokenise to keep up.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def texts(rows: int) -> list[str]:
    arxiv = ROOT.parent / "shared" / "data" / "arxiv_2025_2026.jsonl.gz"
    source = arxiv if arxiv.is_file() else ROOT / "examples" / "elife_2012_2016.jsonl.gz"
    out = []
    while len(out) < rows:
        with gzip.open(source, "rt") as fh:
            for line in fh:
                out.append(json.loads(line)["abstract"])
                if len(out) == rows:
                    break
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--shard-rows", type=int, default=4096)
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()

    from corpusmap.embed import EmbedParams, prepare_corpus
    from corpusmap.encoders import TransformerEncoder
    from corpusmap.feeder import TokenFeeder
    from corpusmap.run import Run

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    corpus = texts(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "abstracts.jsonl"
        source.write_text("".join(json.dumps({"id": str(i), "abstract": t}) + "\n" for i, t in enumerate(corpus)))
        run = Run(Path(tmp) / "run")
        prepare_corpus(run, EmbedParams(inputs=(str(source),)))
        encoder = TransformerEncoder(max_length=args.max_length, device="cpu")
        bounds = [(s, min(s + args.shard_rows, args.rows)) for s in range(0, args.rows, args.shard_rows)]
        tokens = 0
        t0 = time.perf_counter()
        for start, stop in bounds:
            prepared = encoder.prepare(run.read_corpus_rows(start, stop, ["text"]).column(0).to_pylist())
            tokens += int(prepared.lengths.sum())
        thread = args.rows / (time.perf_counter() - t0)
        print(f"{args.rows:,} abstracts, {tokens / args.rows:.0f} tokens each (max {args.max_length}), "
              f"{os.cpu_count()} cores")
        print("| loader | abstracts/s | per core |\n|---|---:|---:|")
        print(f"| one thread (default) | {thread:,.0f} | {thread:,.0f} |")
        for workers in (int(w) for w in args.workers.split(",")):
            with TokenFeeder(encoder, workers) as feeder:
                list(feeder.prepared(str(run.path), bounds[:workers]))  # the workers have started and loaded
                t0 = time.perf_counter()
                for _ in feeder.prepared(str(run.path), bounds):
                    pass
                rate = args.rows / (time.perf_counter() - t0)
            print(f"| {workers} worker process{'es' * (workers > 1)} | {rate:,.0f} | {rate / workers:,.0f} |")


if __name__ == "__main__":
    main()
