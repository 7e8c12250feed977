"""A block's inverted index (distinct tokens -> texts), fast and exactly as :func:`corpusmap.tokens.tokenize`,
with the tokenising engine of the excess analysis (:mod:`corpusmap.excess.engines`: polars with Python's own word
characters spelled out, and Python's ``re`` for the few texts whose lower-casing the two disagree on).
"""
from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np

from corpusmap.excess.engines import _polars_patterns, python_tokens


def python_postings(texts: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The same result as :func:`block_postings`, with Python's ``re`` only (the reference)."""
    postings: dict[str, list[int]] = {}
    for j, text in enumerate(texts):
        for token in python_tokens(text):
            postings.setdefault(token, []).append(j)
    counts = np.fromiter(map(len, postings.values()), dtype=np.int64, count=len(postings))
    rows = np.fromiter(itertools.chain.from_iterable(postings.values()), dtype=np.uint32, count=int(counts.sum()))
    return list(postings), counts, rows


def block_postings(texts: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """For a block of texts: its distinct tokens, how many texts hold each, and those texts' positions
    (ascending per token, concatenated)."""
    import polars as pl

    word_pattern, unsafe_pattern = _polars_patterns()
    frame = pl.DataFrame({"t": list(texts)}, schema={"t": pl.String}).with_row_index("j")
    unsafe = frame["t"].str.contains(unsafe_pattern)
    words = pl.col("t").str.to_lowercase().str.extract_all(word_pattern).list.unique().alias("w")
    pairs = frame.filter(~unsafe).select(pl.col("j"), words).explode("w").drop_nulls("w")
    if unsafe.any():
        rest = frame.filter(unsafe)
        extra = [(j, w) for j, t in zip(rest["j"].to_list(), rest["t"].to_list())
                 for w in python_tokens(t)]
        pairs = pl.concat([pairs, pl.DataFrame(extra, schema={"j": pairs.schema["j"], "w": pl.String}, orient="row")])
    grouped = pairs.group_by("w").agg(pl.col("j").sort()).sort("w")  # (group_by's order varies run to run)
    counts = grouped["j"].list.len().to_numpy().astype(np.int64)
    rows = grouped["j"].explode().to_numpy().astype(np.uint32)
    return grouped["w"].to_list(), counts, rows
