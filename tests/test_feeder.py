"""Tokenising in worker processes gives the same token arrays, and so the same vector bytes, as the loader thread."""
from __future__ import annotations

import numpy as np

from conftest import EXAMPLE_CORPUS, cli
from corpusmap.embed import EmbedOptions, EmbedParams, EmbedStage
from corpusmap.run import Run


def test_worker_processes_tokenise_exactly_as_the_encoder(tmp_path):
    from corpusmap.encoders import TransformerEncoder
    from corpusmap.feeder import TokenFeeder

    run = tmp_path / "run"
    assert cli("embed", EXAMPLE_CORPUS, "-o", run, "--prepare-only", "-q").exit_code == 0
    encoder = TransformerEncoder(max_length=64, device="cpu")
    bounds = [(0, 300), (300, 301), (301, 700)]
    with TokenFeeder(encoder, workers=2) as feeder:
        fed = list(feeder.prepared(str(run), bounds))
    for (start, stop), got in zip(bounds, fed):
        texts = Run(run).read_corpus_rows(start, stop, ["text"]).column(0).to_pylist()
        want = encoder.prepare(texts)
        assert np.array_equal(got.lengths, want.lengths) and got.truncated == want.truncated
        for key in want.tokens:
            assert np.array_equal(got.tokens[key], want.tokens[key])
    assert fed[0].truncated > 0  # 64 tokens cut real abstracts


def test_the_same_vectors_with_tokenizer_workers(tmp_path):
    import gzip

    subset = tmp_path / "subset.jsonl"
    subset.write_text("\n".join(gzip.open(EXAMPLE_CORPUS, "rt").read().splitlines()[:240]) + "\n")
    options = EmbedOptions(max_length=48, batch_size=16, shard_rows=60)
    for name, workers in (("thread", 0), ("workers", 2)):
        EmbedStage(device="cpu", tokenizer_workers=workers).run(Run(tmp_path / name),
                                                                 EmbedParams(inputs=(str(subset),), options=options))
    for index in range(4):
        a, b = (tmp_path / name / "embeddings" / f"shard-{index:05d}.npy" for name in ("thread", "workers"))
        assert a.read_bytes() == b.read_bytes()
