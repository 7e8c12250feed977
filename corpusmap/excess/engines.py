"""The tokenising engines of the scan: polars (Rust, all cores) made exact to scikit-learn's ``CountVectorizer``,
and Python's ``re`` in worker processes (the reference path).

Rust's regex ``\\w`` and Python's ``re`` ``\\w`` differ on non-ASCII text (combining marks, ``²``, ...), so the
polars engine never uses ``\\w``: it spells out Python's own word-character set (``str.isalnum()`` or ``_``, from
this interpreter's Unicode database) as an explicit class, and matches runs of two or more of those characters,
which is what ``\\b\\w\\w+\\b`` matches. Lower-casing differs only on characters that one Unicode version has and
the other lacks, and on the context-dependent final sigma; the few texts that contain such a character (found at
run time by comparing Python's and polars' lower-casing on every code point) are tokenised with Python's ``re``.
"""
from __future__ import annotations

import functools
import re
import sys
from collections import Counter
from typing import Optional

from corpusmap.tokens import TOKEN_PATTERN



_TOKEN_RE = re.compile(TOKEN_PATTERN)
_BLOCK = 256


@functools.lru_cache(maxsize=1)
def _code_point_blocks() -> tuple[list[int], list[str]]:
    """Every code point except surrogates, as strings of 256 consecutive characters (and their first code point)."""
    starts = [s for s in range(0, sys.maxunicode + 1, _BLOCK) if not 0xD800 <= s < 0xE000]
    return starts, ["".join(map(chr, range(s, s + _BLOCK))) for s in starts]


@functools.lru_cache(maxsize=1)
def python_word_class() -> str:
    """A regex character class (Rust regex syntax) of exactly the characters Python's ``re`` calls ``\\w`` in str
    patterns (``c.isalnum() or c == "_"``), from this interpreter's Unicode database."""
    starts, blocks = _code_point_blocks()
    ranges: list[list[int]] = []
    for start, block in zip(starts, blocks):
        for m in re.finditer(r"\w+", block):
            a, b = start + m.start(), start + m.end() - 1
            if ranges and ranges[-1][1] == a - 1:
                ranges[-1][1] = b
            else:
                ranges.append([a, b])
    return "[" + "".join(_esc(a) if a == b else f"{_esc(a)}-{_esc(b)}" for a, b in ranges) + "]"


@functools.lru_cache(maxsize=1)
def unsafe_characters() -> str:
    """Characters whose lower-casing differs between Python's ``str.lower`` and polars, plus capital sigma
    (context-dependent lower-casing). Texts containing any of them are tokenised with Python's ``re``.

    Blocks of 256 code points are compared whole; a block whose lower-casing agrees and keeps its length
    (every character maps to one character) agrees character by character, so only the other blocks are
    compared character by character."""
    import polars as pl

    starts, blocks = _code_point_blocks()
    ours = [b.lower() for b in blocks]
    theirs = pl.Series(blocks, dtype=pl.String).str.to_lowercase().to_list()
    suspects = [c for b, o, t in zip(blocks, ours, theirs) if o != t or len(o) != _BLOCK for c in b]
    unsafe = {"\u03a3"}  # Σ: final-sigma rule; both implement it, each on its own Unicode version
    if suspects:
        theirs_c = pl.Series(suspects, dtype=pl.String).str.to_lowercase().to_list()
        unsafe.update(c for c, t in zip(suspects, theirs_c) if c.lower() != t)
    return "".join(sorted(unsafe))


def _esc(cp: int) -> str:
    return f"\\x{{{cp:X}}}"


@functools.lru_cache(maxsize=1)
def _polars_patterns() -> tuple[str, str]:
    return python_word_class() + "{2,}", "[" + "".join(_esc(ord(c)) for c in unsafe_characters()) + "]"


def python_tokens(text: str) -> set[str]:
    """The distinct tokens of one text, as ``CountVectorizer`` finds them."""
    return set(_TOKEN_RE.findall(text.lower()))


def _count_polars(df, pats: tuple[str, str], acc, stats: dict) -> None:
    import polars as pl

    word_pat, unsafe_pat = pats
    unsafe = df["text"].str.contains(unsafe_pat)
    n_unsafe = int(unsafe.sum())
    acc.add_totals(dict(df.group_by("period").len().iter_rows()))
    tokens = pl.col("text").str.to_lowercase().str.extract_all(word_pat).list.unique().alias("w")
    keep = [c for c in df.columns if c != "text"]
    safe_lf = (df.filter(~unsafe) if n_unsafe else df).lazy().select(*keep, tokens)
    if n_unsafe:
        stats["python_tokenised"] += n_unsafe
        rest = df.filter(unsafe)
        py = rest.select(keep).with_columns(
            pl.Series("w", [sorted(python_tokens(t)) for t in rest["text"].to_list()], dtype=pl.List(pl.String)))
        token_lf = pl.concat([safe_lf, py.lazy()], how="vertical")
    else:
        token_lf = safe_lf
    count_q = (lambda lf: lf.select("period", "w").explode("w").drop_nulls("w")
               .group_by("period", "w").len(name="n"))
    if acc.groups:
        tok = token_lf.collect(engine="streaming")
        if acc.words:
            acc.add_words(count_q(tok.lazy()).collect(engine="streaming"))
        acc.add_presence(_presence_polars(tok, acc.groups, acc.by))
    else:
        acc.add_words(count_q(token_lf).collect(engine="streaming"))


def _presence_polars(tok, groups: dict[str, list[str]], by: Optional[str]):
    import polars as pl

    # every group's words lie in their union: keep only those tokens (a few per abstract) once, then test each
    # group on the short lists (the same flags, far fewer membership tests when there are many groups)
    union = sorted({w for words in groups.values() for w in words})
    if len(groups) > 1:
        tok = tok.with_columns(pl.col("w").list.eval(pl.element().filter(pl.element().is_in(union))))
    flags = tok.select(
        "period", *(["by"] if by else []),
        *[pl.col("w").list.eval(pl.element().is_in(words)).list.any().cast(pl.Int64).alias(name)
          for name, words in groups.items()])
    aggs = [pl.len().cast(pl.Int64).alias("n_docs")] + [pl.col(name).sum() for name in groups]
    whole = flags.group_by("period").agg(aggs).with_columns(pl.lit(None, dtype=pl.String).alias("subgroup"))
    parts = [whole]
    if by:
        sub = flags.filter(pl.col("by").is_not_null())
        if isinstance(sub.schema["by"], pl.List):
            sub = sub.with_columns(pl.col("by").list.unique()).explode("by").filter(pl.col("by").is_not_null())
        parts.append(sub.group_by("period", "by").agg(aggs).rename({"by": "subgroup"}))
    cols = ["subgroup", "period", "n_docs", *groups]
    return pl.concat([p.select(cols) for p in parts], how="vertical")


def _collect_python(results, acc, bar) -> None:
    import polars as pl

    for rows, res in results:
        bar.update(rows)
        if res is None:
            continue
        totals, word_counts, presence = res
        acc.add_totals(totals)
        if acc.words:
            period, w, n = [], [], []
            for p, counter in word_counts.items():
                period += [p] * len(counter)
                w += list(counter.keys())
                n += list(counter.values())
            acc.add_words(pl.DataFrame({"period": period, "w": w, "n": n},
                                       schema={"period": pl.String, "w": pl.String, "n": pl.Int64}))
        if acc.groups:
            rows_ = [{"subgroup": sg, "period": p, "n_docs": v[0],
                      **{g: v[1 + i] for i, g in enumerate(acc.groups)}} for (sg, p), v in presence.items()]
            schema = {"subgroup": pl.String, "period": pl.String, "n_docs": pl.Int64,
                      **{g: pl.Int64 for g in acc.groups}}
            acc.add_presence(pl.DataFrame(rows_, schema=schema))


def _python_batch(payload, words: bool, groups: dict[str, list[str]]):
    """Worker: ``(totals, {period: Counter}, {(subgroup, period): [n_docs, n_with per group]})``."""
    texts, periods, subgroups = payload
    totals: Counter = Counter(periods)
    word_counts: dict[str, Counter] = {}
    presence: dict = {}
    sets = {g: frozenset(ws) for g, ws in groups.items()}
    for i, (text, period) in enumerate(zip(texts, periods)):
        toks = python_tokens(text)
        if words:
            word_counts.setdefault(period, Counter()).update(toks)
        if groups:
            flags = [int(not s.isdisjoint(toks)) for s in sets.values()]
            keys = [None]
            if subgroups is not None and subgroups[i] is not None:
                sg = subgroups[i]
                keys += sorted({str(v) for v in sg if v is not None}) if isinstance(sg, list) else [str(sg)]
            for key in keys:
                slot = presence.setdefault((key, period), [0] * (1 + len(flags)))
                slot[0] += 1
                for j, f in enumerate(flags):
                    slot[1 + j] += f
    return dict(totals), word_counts, presence
