"""Tokenising off the critical path: worker processes read their shard's texts from ``RUN/corpus.parquet`` and
tokenise them with the model's own tokenizer (saved once and loaded in each worker), handing back flat token arrays
(int32 ids and lengths) to the process that owns the GPU, which only pads, copies and runs the model.

One loader thread (the default) tokenises one shard ahead; a GPU eats BERT-base batches faster than one core
tokenises them, so on a GPU node use as many workers as it has spare cores (``--tokenizer-workers``). The token
arrays are exactly those of :meth:`corpusmap.encoders.TransformerEncoder.prepare`, so the vectors are the same
bytes either way.
"""
from __future__ import annotations

import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from typing import Iterator, Sequence

import numpy as np

_TOKENIZER = None  # in each worker: (tokenizer, max_length)


def _init(tokenizer_dir: str, max_length: int) -> None:
    global _TOKENIZER
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core per worker: the workers are the parallelism
    from transformers import AutoTokenizer

    _TOKENIZER = (AutoTokenizer.from_pretrained(tokenizer_dir), max_length)


def encode_batch(tokenizer, max_length: int, texts: Sequence[str]):
    """The tokenizer's encoding of ``texts`` (stripped, truncated at ``max_length``, unpadded) and how many were
    cut."""
    texts = [t.strip() for t in texts]
    enc = tokenizer(texts, truncation=True, max_length=max_length, padding=False)
    if getattr(enc, "encodings", None):
        truncated = sum(1 for e in enc.encodings if e.overflowing)
    else:
        full = tokenizer(texts, truncation=False, padding=False)["input_ids"]
        truncated = sum(1 for ids in full if len(ids) > max_length)
    return enc, truncated


def tokenize_texts(tokenizer, max_length: int, texts: Sequence[str]):
    """``(tokens {name: flat int32}, lengths int64, truncated)`` of ``texts``, as the encoder tokenises them."""
    import itertools

    enc, truncated = encode_batch(tokenizer, max_length, texts)
    lengths = np.fromiter((len(ids) for ids in enc["input_ids"]), dtype=np.int64, count=len(texts))
    total = int(lengths.sum())
    tokens = {key: np.fromiter(itertools.chain.from_iterable(enc[key]), dtype=np.int32, count=total)
              for key in ("input_ids", "token_type_ids") if key in enc}
    return tokens, lengths, truncated


def _tokenize_rows(run_dir: str, start: int, stop: int):
    from corpusmap.run import Run

    texts = Run(run_dir).read_corpus_rows(start, stop, ["text"]).column(0).to_pylist()
    tokenizer, max_length = _TOKENIZER
    return tokenize_texts(tokenizer, max_length, texts)


class TokenFeeder:
    """A pool of tokenising processes for one encoder; :meth:`prepared` yields shards' :class:`Prepared` in order,
    keeping ``ahead`` shards in flight."""

    def __init__(self, encoder, workers: int, ahead: int | None = None):
        import multiprocessing

        self.encoder = encoder
        self.workers = max(1, int(workers))
        self.ahead = ahead or self.workers + 1
        self._dir = tempfile.TemporaryDirectory(prefix="corpusmap-tokenizer-")
        encoder._model.tokenizer.save_pretrained(self._dir.name)
        self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_init, initargs=(self._dir.name, encoder.max_length))

    def prepared(self, run_dir: str, bounds: Sequence[tuple[int, int]]) -> Iterator:
        from corpusmap.encoders import Prepared

        pending = []
        queue = list(bounds)
        while queue or pending:
            while queue and len(pending) < self.ahead:
                start, stop = queue.pop(0)
                pending.append(self._pool.submit(_tokenize_rows, run_dir, start, stop))
            tokens, lengths, truncated = pending.pop(0).result()
            yield Prepared(tokens, truncated, lengths)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._dir.cleanup()

    def __enter__(self) -> "TokenFeeder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
