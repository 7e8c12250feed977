"""Per-period document frequencies of words, exactly as the excess-vocabulary study counted them.

For each period (a year, or a month ``YYYY-MM``) we count how many abstracts contain each word at least once
(binary document frequency) and how many abstracts the period has. Tokens are those of scikit-learn's
``CountVectorizer`` defaults: ``text.lower()``, then every match of ``(?u)\\b\\w\\w+\\b`` (see
:mod:`corpusmap.tokens`). The counts are identical to ``CountVectorizer(binary=True)`` fitted per period, which the
tests check on real corpora.

Speed without giving up exactness
---------------------------------
The default engine tokenises with polars (Rust, all cores, streaming). Rust's regex ``\\w`` and Python's ``re``
``\\w`` differ on non-ASCII text (combining marks, ``²``, ...), so we never use ``\\w`` there: we spell out
Python's own word-character set (``str.isalnum()`` or ``_``, from this interpreter's Unicode database) as an
explicit class, and match runs of two or more of those characters, which is what ``\\b\\w\\w+\\b`` matches.
Lower-casing differs only on characters that one Unicode version has and the other lacks, and on the
context-dependent final sigma; the few texts that contain such a character (found at run time by comparing
Python's and polars' lower-casing on every code point) are tokenised with Python's ``re`` instead. Engine
``python`` does everything with ``re`` in worker processes.

Memory is bounded by vocabulary x periods: batches are counted one after another and their partial counts merged.
"""
from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import queue
import re
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

import numpy as np
import pyarrow as pa

from corpusmap.errors import CorpusmapError, UsageProblem
from corpusmap.progress import Progress, info
from corpusmap.tokens import TOKEN_PATTERN

#: column names tried, in order, when ``date_col="auto"``
DATE_COLUMNS = ("date", "listing_date", "pub_date", "publication_date", "published", "pubdate", "created",
                "submitted", "update_date")
PERIOD_KINDS = ("year", "month")
ENGINES = ("auto", "polars", "python")
#: accepted years; anything else in a year column is "not a year"
YEAR_RANGE = (1000, 2999)
#: rows tokenised at once by the polars engine (its working memory is a few hundred bytes per token)
MAX_SLICE_ROWS = 16_384
#: partial counts are merged once their rows exceed this (or twice the merged table): memory stays bounded by
#: vocabulary x periods, and merging costs amortised O(1) per partial row
MERGE_ROWS = 500_000
#: share of non-null period values that may be unreadable (they are skipped and counted) before we give up
MAX_INVALID_SHARE = 0.01

_YEAR_STR = r"^\s*([0-9]{4})(?:\.0+)?\s*$"
_DATE_YEAR_STR = r"^\s*([0-9]{4})(?:[-/.T ].*)?\s*$"
_MONTH_STR = r"^\s*([0-9]{4})[-/.]([0-9]{1,2})(?:[-/.T ].*)?\s*$"
_YEAR_RE = re.compile(r"^\d{4}$")
_MONTH_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_TOKEN_RE = re.compile(TOKEN_PATTERN)


# ----------------------------------------------------------------------------------------------- periods

def period_kind_of(label: str) -> str:
    """``"year"`` for ``"2024"``, ``"month"`` for ``"2024-03"``; CorpusmapError otherwise."""
    label = str(label)
    if _YEAR_RE.match(label):
        return "year"
    if _MONTH_RE.match(label):
        return "month"
    raise CorpusmapError(f"{label!r} is not a period (a year such as 2024 or a month such as 2024-03)")


def shift_period(label: str, k: int) -> str:
    """The period ``k`` steps after ``label`` (negative ``k``: before); ``shift_period("2025-01", -1) == "2024-12"``."""
    kind = period_kind_of(label)
    if kind == "year":
        return f"{int(label) + k:04d}"
    year, month = int(label[:4]), int(label[5:7])
    index = year * 12 + (month - 1) + k
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def sort_periods(labels: Iterable[str]) -> list[str]:
    labels = sorted(set(labels))
    kinds = {period_kind_of(p) for p in labels}
    if len(kinds) > 1:
        raise CorpusmapError(f"periods mix years and months: {labels[:5]}")
    return labels


# --------------------------------------------------------------------------------------------- tables

@dataclass
class CountTable:
    """Binary document frequencies: ``counts[i, j]`` = abstracts of period ``periods[j]`` containing ``words[i]``.

    ``totals[j]`` is the number of abstracts of period ``periods[j]``. Words are sorted (code-point order, as
    ``CountVectorizer.get_feature_names_out``), periods ascending.
    """

    words: np.ndarray                      # object array of str, sorted
    periods: list[str]
    counts: np.ndarray                     # int64, (n_words, n_periods)
    totals: np.ndarray                     # int64, (n_periods,)
    period_kind: str = "year"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.words = np.asarray(self.words, dtype=object)
        self.counts = np.asarray(self.counts, dtype=np.int64).reshape(len(self.words), len(self.periods))
        self.totals = np.asarray(self.totals, dtype=np.int64).reshape(len(self.periods))

    # convenient views -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.words)

    def column(self, period: str) -> int:
        try:
            return self.periods.index(str(period))
        except ValueError:
            raise CorpusmapError(f"period {period} is not in the count table ({_span(self.periods)})") from None

    def as_dict(self, period: str) -> dict[str, int]:
        """``{word: count}`` for one period, zero counts left out (the shape of a ``Counter``)."""
        j = self.column(period)
        nz = np.flatnonzero(self.counts[:, j])
        return dict(zip(self.words[nz].tolist(), self.counts[nz, j].tolist()))

    def total(self, period: str) -> int:
        return int(self.totals[self.column(period)])

    def frequencies(self) -> np.ndarray:
        """Smoothed frequencies ``(count + 1) / (total + 1)``, as in the study."""
        return (self.counts.astype(float) + 1) / (self.totals + 1)

    def equals(self, other: "CountTable") -> bool:
        return (self.periods == other.periods and np.array_equal(self.totals, other.totals)
                and len(self.words) == len(other.words) and bool(np.all(self.words == other.words))
                and np.array_equal(self.counts, other.counts))

    # conversions ----------------------------------------------------------------------------------
    def to_long(self) -> pa.Table:
        """Long table ``word, period, count`` (non-zero counts), then one row per period with a null word and
        the number of abstracts of the period (the totals)."""
        rows, cols = np.nonzero(self.counts)
        periods = np.asarray(self.periods, dtype=object)
        words = pa.array(list(self.words[rows]) + [None] * len(self.periods), type=pa.string())
        period_col = pa.array(list(periods[cols]) + list(self.periods), type=pa.string())
        count = pa.array(np.concatenate([self.counts[rows, cols], self.totals]), type=pa.int64())
        meta = {"corpusmap.counts": json.dumps({"period_kind": self.period_kind, **_jsonable(self.meta)})}
        return pa.table({"word": words, "period": period_col, "count": count}).replace_schema_metadata(meta)

    def to_wide(self):
        """polars DataFrame in the study's CSV shape: ``word`` then one column per period, last row the totals
        with an empty word."""
        import polars as pl

        data = {"word": pl.Series("word", list(self.words) + [None], dtype=pl.String)}
        for j, period in enumerate(self.periods):
            data[period] = pl.Series(period, np.append(self.counts[:, j], self.totals[j]), dtype=pl.Int64)
        return pl.DataFrame(data)

    def write(self, out_dir: str | os.PathLike, csv: bool = True) -> dict[str, Path]:
        """Write ``counts.parquet`` (long) and ``counts.csv`` (wide, the study's shape) into ``out_dir``."""
        import pyarrow.parquet as pq

        from corpusmap.atomic import atomic_path

        out_dir = Path(out_dir)
        paths = {"parquet": out_dir / "counts.parquet"}
        with atomic_path(paths["parquet"]) as tmp:
            pq.write_table(self.to_long(), tmp)
        if csv:
            paths["csv"] = out_dir / "counts.csv"
            with atomic_path(paths["csv"]) as tmp:
                self.to_wide().write_csv(tmp)
        return paths

    @classmethod
    def from_long(cls, frame, totals: Mapping[str, int], period_kind: str, meta: Optional[dict] = None
                  ) -> "CountTable":
        """From a polars frame ``period, w, n`` and ``{period: n_abstracts}``."""
        import polars as pl

        periods = sort_periods(totals)
        if frame.height == 0:
            words = np.array([], dtype=object)
            counts = np.zeros((0, len(periods)), dtype=np.int64)
        else:
            vocab = frame.select(pl.col("w").unique().sort())["w"]
            words = np.array(vocab.to_list(), dtype=object)
            index = pl.DataFrame({"w": vocab, "i": np.arange(len(vocab), dtype=np.int64)})
            pindex = pl.DataFrame({"period": periods, "j": np.arange(len(periods), dtype=np.int64)})
            ij = frame.join(index, on="w").join(pindex, on="period")
            counts = np.zeros((len(words), len(periods)), dtype=np.int64)
            counts[ij["i"].to_numpy(), ij["j"].to_numpy()] = ij["n"].to_numpy()
        return cls(words, periods, counts, np.array([totals[p] for p in periods], dtype=np.int64),
                   period_kind, dict(meta or {}))


@dataclass
class PresenceTable:
    """Per-abstract presence of word groups: for each group, (sub)group value and period, the number of
    abstracts containing at least one word of the group (``n_with``) and the number of abstracts (``n_docs``).

    ``frame`` is a pandas DataFrame with columns ``group, subgroup, period, n_with, n_docs``; ``subgroup`` is
    None for the whole corpus. ``groups`` maps group names to their words; ``by`` is the subgroup column.
    """

    frame: Any
    groups: dict
    by: Optional[str] = None
    period_kind: str = "year"

    def series(self, group: str, subgroup: Optional[str] = None):
        """``(periods, n_with, n_docs)`` of one group in the corpus (``subgroup=None``) or one subgroup."""
        df = self.frame
        sel = df[(df["group"] == group) & (df["subgroup"].isna() if subgroup is None else df["subgroup"] == subgroup)]
        sel = sel.sort_values("period")
        return list(sel["period"]), sel["n_with"].to_numpy(np.int64), sel["n_docs"].to_numpy(np.int64)

    def subgroups(self) -> list[str]:
        return sorted(self.frame["subgroup"].dropna().unique().tolist())


@dataclass
class ScanResult:
    counts: Optional[CountTable]
    presence: Optional[PresenceTable]
    stats: dict


# ------------------------------------------------------------------------------------------- tokenising

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


# ------------------------------------------------------------------------------------------ the scan

@dataclass
class _Spec:
    """What the scan reads from each batch (resolved on the first batch)."""
    text_col: str
    period: str
    year_col: str
    date_col: Optional[str]
    title_col: Optional[str]
    by: Optional[str]
    period_col: Optional[str] = None      # the column periods come from, once resolved
    period_from: str = "year"             # "year" (a year column) or "date" (a date column)


def count_words(batches: Iterable, **options) -> CountTable:
    """Count binary document frequencies per period over ``batches``; see :func:`scan_corpus` for options."""
    return scan_corpus(batches, words=True, **options).counts


def count_presence(batches: Iterable, groups: Mapping[str, Iterable[str]], by: Optional[str] = None,
                   **options) -> PresenceTable:
    """Per period (and per value of column ``by``), the number of abstracts containing at least one word of
    each group; see :func:`scan_corpus`."""
    return scan_corpus(batches, words=False, groups=groups, by=by, **options).presence


def scan_corpus(batches: Iterable, *, words: bool = True, groups: Optional[Mapping[str, Iterable[str]]] = None,
                by: Optional[str] = None, period: str = "year", year_col: str = "year",
                date_col: Optional[str] = "auto", text_col: str = "text", title_col: Optional[str] = None,
                workers: Optional[int] = None, engine: str = "auto", total_rows: Optional[int] = None,
                progress: bool = True) -> ScanResult:
    """One streaming pass over a corpus: word counts per period and/or group presence per period and subgroup.

    Parameters
    ----------
    batches
        Iterable of ``pyarrow.RecordBatch`` / ``pyarrow.Table`` / polars or pandas DataFrames (any mix), e.g.
        from :func:`corpusmap.corpus.iter_corpus` or ``ParquetFile.iter_batches``. Only the needed columns are read.
    words
        Count every word (the :class:`CountTable`).
    groups
        ``{name: words}``; per-abstract presence of any of the words (the :class:`PresenceTable`).
    by
        Subgroup column for the presence counts (strings, numbers, or lists: an abstract counts in each value).
    period
        ``"year"`` (from ``year_col``; when the corpus has none, from the year of a date column) or ``"month"``
        (``YYYY-MM`` from ``date_col``).
    date_col
        ``"auto"`` tries :data:`DATE_COLUMNS` in order.
    title_col
        When given, words are counted on ``title + " " + text``.
    workers
        Processes of the ``python`` engine (default: all cores). The polars engine uses polars' thread pool, which
        is sized when polars is first imported (``POLARS_MAX_THREADS``; the CLI sets it from ``--workers``).
    engine
        ``"auto"``/``"polars"`` or ``"python"`` (``re`` in worker processes; the reference path).

    Rows without a text or without a period are skipped and counted in ``stats``. Unreadable period values are
    skipped too, but more than 1% of them (or all of them) is an error: the column does not hold periods.
    """
    if period not in PERIOD_KINDS:
        raise UsageProblem(f"--period must be one of {', '.join(PERIOD_KINDS)}, not {period!r}")
    if engine not in ENGINES:
        raise UsageProblem(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if not words and not groups:
        raise UsageProblem("nothing to count: ask for words or for word groups")
    group_lists = {name: sorted({str(w).lower() for w in ws}) for name, ws in (groups or {}).items()}
    for name, ws in group_lists.items():
        if not ws:
            raise UsageProblem(f"word group {name!r} is empty")
    workers = max(1, int(workers or os.cpu_count() or 1))
    engine_used = "python" if engine == "python" else "polars"
    spec = _Spec(text_col, period, year_col, date_col, title_col, by)
    stats: dict[str, Any] = {"rows_read": 0, "abstracts": 0, "missing_text": 0, "missing_period": 0,
                             "invalid_period": 0, "invalid_examples": [], "python_tokenised": 0,
                             "engine": engine_used, "workers": workers if engine_used == "python" else None}
    acc = _Accumulator(words, group_lists, by)
    start = time.monotonic()
    bar_or_not = (Progress("counting words" if words else "finding word groups", total=total_rows,
                           unit="abstracts") if progress else contextlib.nullcontext(_NoProgress()))
    with bar_or_not as bar:
        if engine_used == "polars":
            import polars as pl

            stats["threads"] = pl.thread_pool_size()
            pats = _polars_patterns()
            for batch in _prefetch(batches):
                df = _prepare(batch, spec, stats)
                if df is not None:  # slices keep the working memory bounded whatever the batch size
                    for part in df.iter_slices(MAX_SLICE_ROWS):
                        _count_polars(part, pats, acc, stats)
                bar.update(stats["_last_rows"])
        else:
            _scan_python(batches, spec, acc, stats, workers, bar)
    stats.pop("_last_rows", None)
    stats["seconds"] = round(time.monotonic() - start, 3)
    _check_periods(spec, stats)
    with_text = stats["rows_read"] - stats["missing_text"]
    if stats["abstracts"] == 0 and with_text > 0:
        bad = stats["invalid_period"]
        raise CorpusmapError(
            f"none of the {with_text:,} abstracts has a {spec.period} in column {spec.period_col!r} "
            + (f"({bad:,} unreadable values, e.g. {stats['invalid_examples'][:3]})" if bad else "(it is empty)")
            + ("; name the year column with --year-col, or count by month from a date with --period month"
               if spec.period == "year" else "; name the date column with --date-col"))
    if stats["abstracts"] == 0:
        raise CorpusmapError(
            f"no abstracts to count: {stats['rows_read']:,} rows read, {stats['missing_text']:,} without a text, "
            f"{stats['missing_period']:,} without a {_period_source(spec)}")
    stats["period_column"] = spec.period_col
    meta = {"period_column": spec.period_col, "text_column": text_col, "title_column": title_col,
            "engine": engine_used}
    counts = acc.count_table(period, meta) if words else None
    presence = acc.presence_table(period) if group_lists else None
    skipped = stats["missing_text"] + stats["missing_period"] + stats["invalid_period"]
    info(f"counted {stats['abstracts']:,} abstracts in {stats['seconds']:,.1f} s"
         + (f" ({skipped:,} rows skipped: see the manifest)" if skipped else ""))
    return ScanResult(counts, presence, stats)


class _NoProgress:
    def update(self, n: int = 1) -> None:
        pass


def _period_source(spec: _Spec) -> str:
    return f"{spec.period} (column {spec.period_col!r})" if spec.period_col else spec.period


def _check_periods(spec: _Spec, stats: dict) -> None:
    bad, good = stats["invalid_period"], stats["abstracts"] + stats["missing_text"]
    if bad and (good == 0 or bad > MAX_INVALID_SHARE * (bad + good)):
        what = "year" if spec.period == "year" and spec.period_from == "year" else "date (YYYY-MM...)"
        examples = ", ".join(repr(v) for v in stats["invalid_examples"][:5])
        raise CorpusmapError(
            f"column {spec.period_col!r} does not hold a {what}: {bad:,} of {bad + good:,} values unreadable, "
            f"e.g. {examples}" + ("; for dates use --period month --date-col COLUMN" if what == "year" else ""))
    if bad:
        info(f"skipped {bad:,} rows whose {spec.period_col!r} is not a {spec.period}, "
             f"e.g. {stats['invalid_examples'][:3]}")


def _to_polars(batch):
    import polars as pl

    if isinstance(batch, pl.DataFrame):
        return batch
    if isinstance(batch, (pa.RecordBatch, pa.Table)):
        return pl.from_arrow(batch)
    if isinstance(batch, Mapping):
        return pl.DataFrame(dict(batch), strict=False)
    try:
        import pandas as pd

        if isinstance(batch, pd.DataFrame):
            return pl.from_pandas(batch)
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"cannot read a batch of type {type(batch).__name__}")


def _column_names(batch) -> list[str]:
    if isinstance(batch, (pa.RecordBatch, pa.Table)):
        return list(batch.schema.names)
    if isinstance(batch, Mapping):
        return list(batch.keys())
    return list(batch.columns)


def _select(batch, columns: list[str]):
    """Only the needed columns, before converting (a corpus may carry large extra columns)."""
    if isinstance(batch, (pa.RecordBatch, pa.Table)):
        return batch.select(columns)
    if isinstance(batch, Mapping):
        return {c: batch[c] for c in columns}
    return batch[columns]


def _resolve(spec: _Spec, names: list[str]) -> None:
    if spec.period_col is not None:
        return
    missing = [c for c in (spec.text_col, spec.title_col, spec.by) if c and c not in names]
    if missing:
        raise CorpusmapError(f"no column {missing[0]!r} in the corpus; its columns are: {', '.join(names)}")
    date_col = spec.date_col
    if date_col == "auto":
        date_col = next((c for c in DATE_COLUMNS if c in names), None)
    elif date_col is not None and date_col not in names:
        raise CorpusmapError(f"no date column {date_col!r} in the corpus; its columns are: {', '.join(names)}")
    if spec.period == "year" and spec.year_col in names:
        spec.period_col, spec.period_from = spec.year_col, "year"
    elif date_col is not None:
        spec.period_col, spec.period_from = date_col, "date"
    elif spec.period == "year":
        raise CorpusmapError(f"no {spec.year_col!r} column and no date column ({', '.join(DATE_COLUMNS)}) in the "
                             f"corpus; its columns are: {', '.join(names)} (use --year-col or --date-col)")
    else:
        raise CorpusmapError(f"--period month needs a date column: none of {', '.join(DATE_COLUMNS)} is in the "
                             f"corpus (its columns are: {', '.join(names)}); name one with --date-col")


def _prepare(batch, spec: _Spec, stats: dict):
    """Columns ``text, period[, by]`` of the rows to count, as a polars DataFrame (None when none is left)."""
    import polars as pl

    names = _column_names(batch)
    _resolve(spec, names)
    wanted = [spec.text_col, spec.period_col] + [c for c in (spec.title_col, spec.by) if c]
    df = _to_polars(_select(batch, list(dict.fromkeys(wanted))))
    stats["_last_rows"] = df.height
    stats["rows_read"] += df.height
    if df.height == 0:
        return None
    text_dtype = df.schema[spec.text_col]
    if text_dtype not in (pl.String, pl.Null):
        raise CorpusmapError(f"column {spec.text_col!r} holds {text_dtype}, not text")
    text = pl.col(spec.text_col).cast(pl.String)
    if spec.title_col:  # a null text stays null: the row is skipped
        text = pl.concat_str([pl.col(spec.title_col).cast(pl.String).fill_null(""), pl.lit(" "), text])
    period, present = _period_exprs(df.schema[spec.period_col], spec)
    cols = [text.alias("text"), period.alias("period"), present.alias("_present")]
    if spec.by:
        by_dtype = df.schema[spec.by]
        cols.append(pl.col(spec.by).cast(pl.List(pl.String) if isinstance(by_dtype, pl.List) else pl.String)
                    .alias("by"))
    out = df.select(cols)
    if spec.by and out.schema["by"] == pl.String:
        out = out.with_columns(_split_list_strings(out["by"]))
    no_text = out["text"].is_null()
    no_period = out["period"].is_null()
    invalid = no_period & out["_present"]
    n_invalid = int(invalid.sum())
    if n_invalid:
        stats["invalid_period"] += n_invalid
        if len(stats["invalid_examples"]) < 5:
            stats["invalid_examples"] += df[spec.period_col].filter(invalid).head(5).cast(pl.String).to_list()
    stats["missing_text"] += int(no_text.sum())
    stats["missing_period"] += int((no_period & ~invalid & ~no_text).sum())
    out = out.filter(~no_text & ~no_period).drop("_present")
    stats["abstracts"] += out.height
    return out if out.height else None


def _split_list_strings(s):
    """Subgroup values stored as list strings (``["cs.CV", "cs.AI"]``, ``['Neuroscience']``) become lists;
    other strings stay as they are (one-element lists)."""
    import polars as pl

    looks_listy = s.str.starts_with("[") & s.str.ends_with("]")
    if not bool(looks_listy.any()):
        return s
    cache: dict = {}

    def parse(v):
        if v is None:
            return None
        if v not in cache:
            cache[v] = _parse_list_string(v)
        return cache[v]

    return pl.Series("by", [parse(v) for v in s.to_list()], dtype=pl.List(pl.String))


def _parse_list_string(value: str) -> list[str]:
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        import ast

        for loader in (json.loads, ast.literal_eval):
            try:
                items = loader(text)
            except (ValueError, SyntaxError, TypeError):
                continue
            if isinstance(items, (list, tuple)):
                return [str(x).strip() for x in items if x is not None and str(x).strip()]
    return [text] if text else []


def _period_exprs(dtype, spec: _Spec):
    """Expressions for the period label (str, null when missing or unreadable) and for "a value is present"."""
    import polars as pl

    v = pl.col(spec.period_col)
    month = spec.period == "month"
    present = v.is_not_null()
    lo, hi = YEAR_RANGE
    if dtype == pl.Date or isinstance(dtype, pl.Datetime):
        label = v.dt.strftime("%Y-%m") if month else v.dt.year().cast(pl.String)
    elif dtype.is_integer() and not month:
        label = pl.when(v.is_between(lo, hi)).then(v.cast(pl.String))
    elif dtype.is_float() and not month:
        label = pl.when(v.is_finite() & (v == v.floor()) & v.is_between(lo, hi)).then(v.cast(pl.Int64).cast(pl.String))
    elif dtype == pl.String:
        present = present & (v.str.strip_chars() != "")
        if month:
            y = v.str.extract(_MONTH_STR, 1)
            m = v.str.extract(_MONTH_STR, 2).cast(pl.Int32, strict=False)
            label = pl.when(m.is_between(1, 12) & y.cast(pl.Int32).is_between(lo, hi)).then(
                pl.concat_str([y, pl.lit("-"), m.cast(pl.String).str.zfill(2)]))
        else:
            y = v.str.extract(_YEAR_STR if spec.period_from == "year" else _DATE_YEAR_STR, 1)
            label = pl.when(y.cast(pl.Int32, strict=False).is_between(lo, hi)).then(y)
    else:  # lists, structs, booleans, months from numbers: not periods
        label = pl.lit(None, dtype=pl.String)
    return label.cast(pl.String), present


# ---------------------------------------------------------------------------------- accumulating counts

class _Accumulator:
    """Partial counts merged as they come; merging is amortised (when the buffer outgrows the merged table)."""

    def __init__(self, words: bool, groups: dict[str, list[str]], by: Optional[str]):
        self.words, self.groups, self.by = words, groups, by
        self.totals: Counter = Counter()
        self._word_parts: list = []
        self._word_rows = 0
        self._word_acc = None
        self._presence_parts: list = []
        self._presence_rows = 0
        self._presence_acc = None

    def add_totals(self, totals: Mapping[str, int]) -> None:
        self.totals.update(totals)

    def add_words(self, frame) -> None:
        """A polars frame ``period, w, n``."""
        import polars as pl

        self._word_parts.append(frame.with_columns(pl.col("n").cast(pl.Int64)))
        self._word_rows += frame.height
        if self._word_rows > max(MERGE_ROWS, 2 * (self._word_acc.height if self._word_acc is not None else 0)):
            self._word_acc = self._merge(self._word_acc, self._word_parts, ["period", "w"], ["n"])
            self._word_parts, self._word_rows = [], 0

    def add_presence(self, frame) -> None:
        """A polars frame ``subgroup, period, n_docs, <group>...``."""
        self._presence_parts.append(frame)
        self._presence_rows += frame.height
        if self._presence_rows > max(MERGE_ROWS, 2 * (self._presence_acc.height if self._presence_acc is not None
                                                       else 0)):
            self._presence_acc = self._merge(self._presence_acc, self._presence_parts, ["subgroup", "period"],
                                             ["n_docs", *self.groups])
            self._presence_parts, self._presence_rows = [], 0

    @staticmethod
    def _merge(acc, parts, keys, values):
        import polars as pl

        frames = ([acc] if acc is not None else []) + parts
        if not frames:
            return None
        return (pl.concat(frames, how="vertical").lazy().group_by(keys)
                .agg([pl.col(v).sum() for v in values]).collect())

    def count_table(self, period_kind: str, meta: dict) -> CountTable:
        import polars as pl

        acc = self._merge(self._word_acc, self._word_parts, ["period", "w"], ["n"])
        if acc is None:
            acc = pl.DataFrame({"period": [], "w": [], "n": []},
                               schema={"period": pl.String, "w": pl.String, "n": pl.Int64})
        return CountTable.from_long(acc, dict(self.totals), period_kind, meta)

    def presence_table(self, period_kind: str) -> PresenceTable:
        import pandas as pd

        acc = self._merge(self._presence_acc, self._presence_parts, ["subgroup", "period"],
                          ["n_docs", *self.groups])
        wide = acc.to_pandas() if acc is not None else pd.DataFrame(columns=["subgroup", "period", "n_docs",
                                                                              *self.groups])
        long = wide.melt(id_vars=["subgroup", "period", "n_docs"], value_vars=list(self.groups),
                         var_name="group", value_name="n_with")
        long = long[["group", "subgroup", "period", "n_with", "n_docs"]]
        long = long.astype({"n_with": "int64", "n_docs": "int64"})
        long = long.sort_values(["group", "subgroup", "period"], na_position="first").reset_index(drop=True)
        return PresenceTable(long, {k: list(v) for k, v in self.groups.items()}, self.by, period_kind)


# ---------------------------------------------------------------------------------------- polars engine

def _count_polars(df, pats: tuple[str, str], acc: _Accumulator, stats: dict) -> None:
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


# ---------------------------------------------------------------------------------------- python engine

def _scan_python(batches, spec: _Spec, acc: _Accumulator, stats: dict, workers: int, bar: Progress) -> None:
    """``re`` tokenisation in worker processes (spawned: polars' threads make forking unsafe)."""
    def payloads():
        for batch in batches:
            df = _prepare(batch, spec, stats)
            rows = stats["_last_rows"]
            if df is None:
                yield rows, None
                continue
            yield rows, (df["text"].to_list(), df["period"].to_list(),
                         df["by"].to_list() if spec.by else None)

    task = functools.partial(_python_batch, words=acc.words, groups=acc.groups)
    if workers == 1:
        results = ((rows, task(p) if p else None) for rows, p in payloads())
        _collect_python(results, acc, bar)
        return
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    with ctx.Pool(workers) as pool:
        pending: list = []
        def results():
            for rows, p in payloads():
                pending.append((rows, pool.apply_async(task, (p,)) if p else None))
                while len(pending) > 2 * workers:
                    r, fut = pending.pop(0)
                    yield r, fut.get() if fut else None
            while pending:
                r, fut = pending.pop(0)
                yield r, fut.get() if fut else None
        _collect_python(results(), acc, bar)


def _collect_python(results, acc: _Accumulator, bar: Progress) -> None:
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


# -------------------------------------------------------------------------------------------- prefetch

def _prefetch(iterable: Iterable, depth: int = 2) -> Iterator:
    """Read the next batches in a thread while the current one is counted (polars releases the GIL)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def feed():
        try:
            for item in iterable:
                if not put((True, item)):
                    return
            put((True, done))
        except BaseException as exc:  # handed to the consumer
            put((False, exc))

    thread = threading.Thread(target=feed, name="corpusmap-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is done:
                return
            yield item
    finally:
        stop.set()


# ------------------------------------------------------------------------------------ reading a table

def read_counts(path: str | os.PathLike) -> CountTable:
    """Read a count table: our ``counts.parquet`` (long), or a wide table (CSV, ``.csv.gz``, TSV or parquet):
    a word column (``word``, else the first column), one column per period (``2024`` or ``2024-03``), and one
    row with an empty word holding the number of abstracts per period (the study's ``yearly-counts.csv.gz``)."""
    import polars as pl

    path = Path(path)
    if not path.exists():
        raise CorpusmapError(f"count table {path} does not exist")
    name = path.name.lower()
    if name.endswith(".parquet") or name.endswith(".pq"):
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if {"word", "period", "count"} <= set(table.column_names):
            return _from_long_table(pl.from_arrow(table), path, table.schema.metadata or {})
        frame = pl.from_arrow(table)
        return _from_wide(frame.with_columns(pl.all().cast(pl.String)), path)
    if name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz")):
        sep = "\t" if ".tsv" in name else ","
        try:
            if name.endswith(".gz"):
                import gzip

                with gzip.open(path, "rb") as fh:
                    data = fh.read()
            else:
                data = path.read_bytes()
            frame = pl.read_csv(data, separator=sep, infer_schema=False)
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise CorpusmapError(f"cannot read count table {path}: {exc}") from None
        return _from_wide(frame, path)
    raise CorpusmapError(f"count table {path}: expected .csv, .csv.gz, .tsv or .parquet")


def _from_wide(frame, path: Path) -> CountTable:
    import polars as pl

    if frame.width < 2 or frame.height == 0:
        raise CorpusmapError(f"count table {path} is empty or has no period columns")
    word_col = "word" if "word" in frame.columns else frame.columns[0]
    period_cols = [c for c in frame.columns if c != word_col]
    bad = [c for c in period_cols if not (_YEAR_RE.match(c.strip()) or _MONTH_RE.match(c.strip()))]
    if bad:
        raise CorpusmapError(f"count table {path}: column {bad[0]!r} is not a period (a year such as 2024 or a "
                             f"month such as 2024-03); expected a word column and one column per period")
    renamed = {c: c.strip() for c in period_cols}
    frame = frame.rename(renamed)
    period_cols = [renamed[c] for c in period_cols]
    kinds = {period_kind_of(c) for c in period_cols}
    if len(kinds) > 1:
        raise CorpusmapError(f"count table {path}: period columns mix years and months")
    if len(set(period_cols)) != len(period_cols):
        raise CorpusmapError(f"count table {path}: a period column appears twice")
    words = frame[word_col].cast(pl.String)
    is_total = (words.is_null() | (words.str.strip_chars() == "")).to_numpy()
    if is_total.sum() == 0:
        raise CorpusmapError(
            f"count table {path} has no totals row: the last row must have an empty word and the number of "
            f"abstracts of each period (the study's shape)")
    if is_total.sum() > 1:
        raise CorpusmapError(f"count table {path} has {int(is_total.sum())} rows with an empty word; expected "
                             "exactly one (the totals)")
    values = frame.select(period_cols)
    try:
        matrix = values.select(pl.all().cast(pl.String).str.strip_chars().cast(pl.Float64)).to_numpy()
    except pl.exceptions.PolarsError:
        raise CorpusmapError(f"count table {path}: the period columns must hold whole numbers") from None
    if np.isnan(matrix).any() or (matrix != np.floor(matrix)).any() or (matrix < 0).any():
        raise CorpusmapError(f"count table {path}: the period columns must hold whole numbers >= 0 (found empty "
                             "cells, fractions or negative numbers)")
    matrix = matrix.astype(np.int64)
    word_list = np.array(words.to_list(), dtype=object)[~is_total]
    counts, totals = matrix[~is_total], matrix[is_total][0]
    return _finish_table(word_list, period_cols, counts, totals, path, kinds.pop(), {"source": str(path)})


def _from_long_table(frame, path: Path, metadata: dict) -> CountTable:
    import polars as pl

    frame = frame.select(pl.col("word").cast(pl.String), pl.col("period").cast(pl.String),
                         pl.col("count").cast(pl.Int64))
    is_total = frame["word"].is_null() | (frame["word"] == "")
    totals_df = frame.filter(is_total)
    if totals_df.height == 0:
        raise CorpusmapError(f"count table {path} has no totals rows (rows with an empty word holding the "
                             "number of abstracts per period)")
    if totals_df["period"].n_unique() != totals_df.height:
        raise CorpusmapError(f"count table {path}: a period has more than one totals row")
    totals = dict(totals_df.select("period", "count").iter_rows())
    for p in totals:
        period_kind_of(p)
    body = frame.filter(~is_total).rename({"word": "w", "count": "n"})
    extra = set(body["period"].unique().to_list()) - set(totals)
    if extra:
        raise CorpusmapError(f"count table {path}: periods {sorted(extra)[:3]} have counts but no totals")
    if body.select(pl.struct("w", "period").is_duplicated().any()).item():
        raise CorpusmapError(f"count table {path}: a word appears twice in the same period")
    meta = {}
    raw = metadata.get(b"corpusmap.counts")
    if raw:
        meta = json.loads(raw)
    kind = meta.pop("period_kind", None) or period_kind_of(next(iter(totals)))
    table = CountTable.from_long(body, totals, kind, {**meta, "source": str(path)})
    _validate(table, path)
    return table


def _finish_table(words, periods, counts, totals, path, kind, meta) -> CountTable:
    order = np.argsort(periods, kind="stable")
    periods = [periods[i] for i in order]
    counts, totals = counts[:, order], totals[order]
    if len(words) and len(set(words.tolist())) != len(words):
        dup = Counter(words.tolist()).most_common(1)[0][0]
        raise CorpusmapError(f"count table {path}: word {dup!r} appears twice")
    worder = np.argsort(words.astype(str), kind="stable") if len(words) else np.array([], dtype=np.int64)
    table = CountTable(words[worder], periods, counts[worder], totals, kind, meta)
    _validate(table, path)
    return table


def _validate(table: CountTable, path) -> None:
    if (table.totals <= 0).any():
        empty = [p for p, t in zip(table.periods, table.totals) if t <= 0]
        raise CorpusmapError(f"count table {path}: period {empty[0]} has no abstracts (total 0)")
    over = table.counts > table.totals[None, :]
    if over.any():
        i, j = np.argwhere(over)[0]
        raise CorpusmapError(f"count table {path}: word {table.words[i]!r} is counted in {table.counts[i, j]:,} "
                             f"abstracts of {table.periods[j]}, more than the total {table.totals[j]:,}; is the "
                             "last row really the totals?")


# ------------------------------------------------------------------------------------------------- misc

def _span(periods: Sequence[str]) -> str:
    if not periods:
        return "no periods"
    return f"periods {periods[0]}–{periods[-1]}" if len(periods) > 1 else f"period {periods[0]}"


def _jsonable(d: dict) -> dict:
    return {k: v for k, v in d.items() if isinstance(v, (str, int, float, bool, type(None), list, dict))}


def read_run_batches(run: str | os.PathLike, columns: Optional[Sequence[str]] = None,
                     batch_size: int = 16_384) -> Iterator[pa.RecordBatch]:
    """Stream ``RUN/corpus.parquet`` in record batches (only those of ``columns`` that it has)."""
    import pyarrow.parquet as pq

    from corpusmap.store import open_run

    path = open_run(run).corpus_path
    pf = pq.ParquetFile(path, pre_buffer=False)   # pre-buffering makes the reader's memory creep with the file
    names = pf.schema_arrow.names
    cols = None if columns is None else [c for c in dict.fromkeys(columns) if c in names]
    yield from pf.iter_batches(batch_size=batch_size, columns=cols)


__all__ = [
    "CountTable", "PresenceTable", "ScanResult", "count_words", "count_presence", "scan_corpus", "read_counts",
    "shift_period", "period_kind_of", "sort_periods", "python_tokens", "python_word_class", "unsafe_characters",
    "read_run_batches", "DATE_COLUMNS",
]
