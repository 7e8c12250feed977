"""GPU embedding throughput for a BERT-base model at max length 512: abstracts/s and the achieved fraction of
the GPU's peak FLOP/s. The weights are random (no hub here); speed does not depend on their values.

    .venv/bin/python bench/bench_gpu_embed.py [--n 20000] [--dtype float16] [--max-tokens 131072] [--device cuda]
                                              [--tokenizer all-MiniLM-L6-v2]

Goal on one H100-class GPU: >= 5,000 abstracts/s (about 40x the landscape paper's ~114/s).
Runs on CPU too (``--device cpu --n 200``) as a smoke test.
"""
from __future__ import annotations

import argparse
import gzip
import json
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "V100": 125.0}


def load_texts(n: int) -> list[str]:
    for path in (ROOT.parent / "shared/data/arxiv_2025_2026.jsonl.gz", ROOT / "examples/elife_2012_2016.jsonl.gz"):
        if path.exists():
            with gzip.open(path, "rt") as fh:
                texts = [json.loads(line)["abstract"] for line in fh]
            return (texts * (n // len(texts) + 1))[:n]
    raise SystemExit("no corpus found")


def bert_base(folder: Path, tokenizer: str) -> Path:
    """A BERT-base checkpoint (random weights) with the uncased BERT vocabulary of ``tokenizer``."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from corpusmap.encoders import resolve_model

    AutoTokenizer.from_pretrained(resolve_model(tokenizer)).save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(BertConfig(max_position_embeddings=512)).save_pretrained(folder)
    return folder


def timed_compute(encoder, prepared, device: str):
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
    began = time.perf_counter()
    encoded = encoder.compute(prepared)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - began, encoded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--dtype", default="float16")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--max-tokens", type=int, default=131072, help="token budget per batch (0 = fixed rows)")
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--tokenizer", default="all-MiniLM-L6-v2", help="model name or folder whose vocabulary to use")
    args = parser.parse_args()

    import torch

    from corpusmap.encoders import TransformerEncoder

    texts = load_texts(args.n)
    model_dir = bert_base(Path(tempfile.mkdtemp()), args.tokenizer)
    encoder = TransformerEncoder(str(model_dir), pooling="sep", max_length=512, batch_size=args.batch_size,
                                 max_tokens_per_batch=args.max_tokens or None, device=args.device, dtype=args.dtype)
    prepared = encoder.prepare(texts)
    cold_s, _ = timed_compute(encoder, prepared, args.device)  # first pass: kernel choices for each batch shape
    compute_s, encoded = timed_compute(encoder, prepared, args.device)
    began = time.perf_counter()
    encoder.encode(texts)
    total_s = time.perf_counter() - began

    d, layers = 768, 12
    lengths = prepared.lengths.astype(float)
    flops = float((layers * (24 * d * d * lengths + 4 * d * lengths ** 2)).sum())
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    achieved = flops / compute_s / 1e12
    print(json.dumps({
        "device": name, "dtype": args.dtype, "n": len(texts), "mean_tokens": float(lengths.mean()),
        "truncated": encoded.truncated, "abstracts_per_s_model": len(texts) / compute_s,
        "abstracts_per_s_model_first_pass": len(texts) / cold_s,
        "abstracts_per_s_with_tokenizing": len(texts) / total_s, "achieved_tflops": achieved,
        "fraction_of_peak": achieved / peak if peak else None, "attention": encoder._transformer().auto_model
        .config._attn_implementation}, indent=1))


if __name__ == "__main__":
    main()
