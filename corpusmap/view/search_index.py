"""The page's word search: an inverted index (token -> sorted rows) bucketed by token hash.

Tokens are those of :func:`corpusmap.tokens.tokenize` over title + abstract (split fast by
:mod:`corpusmap.view.wordsplit`), so the page's search and word overlay count exactly what Python counts. While
the texts stream by, (token id, row) pairs are appended to one spill file per bucket, so memory holds the
vocabulary and one block, not the index. Each bucket then becomes one lazily loaded data script: its tokens,
their document counts, and their posting lists as LEB128 row gaps, or as a bitmap of n bits where that is
smaller (very common words).
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from corpusmap.view.encoding import bucket_of, typed_array, varint_gaps
from corpusmap.view.wordsplit import block_postings

# Measured on real abstracts: about 90 distinct tokens per abstract, ~1.3 bytes per posting.
BYTES_PER_DOC_ESTIMATE = 130


def choose_buckets(n: int, bucket_bytes: int) -> int:
    """Buckets so that one holds about ``bucket_bytes`` of postings: a power of two, 1 to 4096."""
    want = max(1, int(np.ceil(n * BYTES_PER_DOC_ESTIMATE / max(bucket_bytes, 1))))
    return int(min(4096, 1 << (want - 1).bit_length()))


def search_text(title: Optional[str], abstract: Optional[str]) -> str:
    """The text that search and the word overlay look in."""
    return f"{title or ''}\n{abstract or ''}"


class SearchIndexBuilder:
    """Collects the distinct tokens of each row, block by block, then writes one payload per bucket."""

    def __init__(self, n: int, buckets: int, workdir: Path):
        self.n = n
        self.buckets = buckets
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.vocab: dict[str, int] = {}
        self.bucket_of_token = np.zeros(0, dtype=np.int32)
        self.files = [open(self.workdir / f"{b}.pairs", "wb") for b in range(buckets)]

    def add(self, first_row: int, texts: Sequence[str]) -> None:
        """Index rows ``first_row ..`` with their search texts."""
        self.add_postings(first_row, *block_postings(texts))

    def add_postings(self, first_row: int, tokens: list[str], counts: np.ndarray, rows: np.ndarray) -> None:
        """Add a block's :func:`block_postings` (positions relative to ``first_row``), spilling them by bucket."""
        if not tokens:
            return
        vocab = self.vocab
        ids_of = np.fromiter((vocab.setdefault(t, len(vocab)) for t in tokens), dtype=np.uint32, count=len(tokens))
        self._grow_buckets()
        ids = np.repeat(ids_of, counts)
        rows = rows.astype(np.uint32) + np.uint32(first_row)
        bucket = self.bucket_of_token[ids]
        order = np.argsort(bucket, kind="stable")
        pairs = np.column_stack([ids[order], rows[order]])
        bounds = np.searchsorted(bucket[order], np.arange(self.buckets + 1))
        for b in range(self.buckets):
            if bounds[b + 1] > bounds[b]:
                pairs[bounds[b]:bounds[b + 1]].tofile(self.files[b])

    def _grow_buckets(self) -> None:
        """Hash the tokens added by the last block (the newest keys of the insertion-ordered vocabulary)."""
        new = len(self.vocab) - len(self.bucket_of_token)
        if new:
            tokens = list(itertools.islice(reversed(self.vocab), new))[::-1]
            hashed = np.fromiter((bucket_of(t, self.buckets) for t in tokens), dtype=np.int32, count=new)
            self.bucket_of_token = np.concatenate([self.bucket_of_token, hashed])

    def payloads(self) -> Iterator[tuple[int, dict]]:
        """``(bucket, payload)`` for every bucket, read back one spill file at a time."""
        for f in self.files:
            f.close()
        tokens = np.asarray(list(self.vocab), dtype=object)
        bitmap_bytes = (self.n + 7) // 8
        for b in range(self.buckets):
            path = self.workdir / f"{b}.pairs"
            pairs = np.fromfile(path, dtype=np.uint32).reshape(-1, 2)
            os.unlink(path)
            yield b, _bucket_payload(pairs, tokens, self.n, bitmap_bytes)

    def close(self) -> None:
        for f in self.files:
            f.close()


def _bucket_payload(pairs: np.ndarray, tokens: np.ndarray, n: int, bitmap_bytes: int) -> dict:
    order = np.argsort(pairs[:, 0], kind="stable")  # rows stay ascending within a token
    ids = pairs[order, 0]
    rows = pairs[order, 1]
    uniq, starts, df = np.unique(ids, return_index=True, return_counts=True)
    starts = np.append(starts, len(ids))
    data, offsets = varint_gaps(rows, starts)
    varint_len = np.diff(offsets)
    use_bitmap = varint_len > bitmap_bytes
    if use_bitmap.any():
        pieces, new_offsets, pos = [], [0], 0
        for t in range(len(uniq)):
            if use_bitmap[t]:
                bits = np.zeros(n, dtype=bool)
                bits[rows[starts[t]:starts[t + 1]]] = True
                piece = np.packbits(bits, bitorder="little")
            else:
                piece = data[offsets[t]:offsets[t + 1]]
            pieces.append(piece)
            pos += len(piece)
            new_offsets.append(pos)
        data = np.concatenate(pieces) if pieces else data
        offsets = np.asarray(new_offsets, dtype=np.int64)
    return {
        "tok": tokens[uniq].tolist(),
        "df": typed_array(df.astype(np.uint32)),
        "off": typed_array(offsets.astype(np.uint32)),
        "bitmap": typed_array(use_bitmap.astype(np.uint8)),
        "data": typed_array(data.astype(np.uint8)),
    }
