"""The scan: one streaming pass over a corpus that counts, per period, the abstracts containing each word (binary
document frequency) and the presence of word groups per period and subgroup, exactly as the excess-vocabulary
study counted them.

Tokens are those of scikit-learn's ``CountVectorizer`` defaults: ``text.lower()``, then every match of
``(?u)\\b\\w\\w+\\b`` (see :mod:`corpusmap.tokens`); the counts are identical to ``CountVectorizer(binary=True)``
fitted per period, which the tests check on real corpora. The engines are in :mod:`corpusmap.excess.engines`.
Memory is bounded by vocabulary x periods: batches are counted one after another and their partial counts merged.
"""
from __future__ import annotations

import contextlib
import functools
import os
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import pyarrow as pa

from corpusmap.corpus import prefetch
from corpusmap.errors import CorpusmapError, UsageProblem
from corpusmap.excess.engines import _collect_python, _count_polars, _polars_patterns, _python_batch
from corpusmap.excess.periods import YEAR_RANGE
from corpusmap.excess.tables import CountTable, PresenceTable
from corpusmap.progress import Progress, info
from corpusmap.values import parse_list_string



#: column names tried, in order, when ``date_col="auto"``
DATE_COLUMNS = ("date", "listing_date", "pub_date", "publication_date", "published", "pubdate", "created",
                "submitted", "update_date")
PERIOD_KINDS = ("year", "month")
ENGINES = ("auto", "polars", "python")
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


@dataclass
class ScanResult:
    counts: Optional[CountTable]
    presence: Optional[PresenceTable]
    stats: dict


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
    cleaner: Any = None                   # a cleanup.Cleaner when clean=True
    clean_title_col: Optional[str] = None  # titles for the study's errata filter (None: not applied)


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
                progress: bool = True, clean: bool = False, clean_title_col: Optional[str] = "title"
                ) -> ScanResult:
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
    clean
        Clean every abstract as the excess-vocabulary study did before counting (:mod:`corpusmap.excess.cleanup`):
        errata (by their title in ``clean_title_col``, when the corpus has that column) become empty abstracts,
        still counted in their period's total, and the study's boilerplate rules edit the text. The abstract is
        cleaned before a title is prepended (``title_col``). What each rule changed is in ``stats["clean"]``.

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
    if workers is not None and workers < 0:
        raise UsageProblem(f"--threads must be at least 1, got {workers}")
    workers = max(1, int(workers or os.cpu_count() or 1))
    engine_used = "python" if engine == "python" else "polars"
    spec = _Spec(text_col, period, year_col, date_col, title_col, by)
    if clean:
        from corpusmap.excess.cleanup import Cleaner

        spec.cleaner, spec.clean_title_col = Cleaner(), clean_title_col
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
            for batch in prefetch(batches):
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
    if spec.cleaner is not None:
        stats["clean"] = {**spec.cleaner.as_dict(), "title_column": spec.clean_title_col}
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
        years_only = what != "year" and any(re.fullmatch(r"\s*\d{4}\s*", str(v)) for v in stats["invalid_examples"])
        fix = ("; for dates use --period month --date-col COLUMN" if what == "year" else
               "; dates without a month (PubMed gives many) cannot be counted by month: use --period year"
               if years_only else "")
        raise CorpusmapError(
            f"column {spec.period_col!r} does not hold a {what}: {bad:,} of {bad + good:,} values unreadable, "
            f"e.g. {examples}{fix}")
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
    missing = [(c, flag) for c, flag in ((spec.text_col, "--text-col"), (spec.title_col, "--title-col"),
                                         (spec.by, "--by")) if c and c not in names]
    if missing:
        raise CorpusmapError(f"{missing[0][1]} {missing[0][0]!r}: no such column in the corpus; its columns are: "
                             f"{', '.join(names)}")
    if spec.clean_title_col and spec.clean_title_col not in names:
        spec.clean_title_col = None   # no titles: the errata filter cannot be applied (reported)
    date_col = spec.date_col
    if date_col == "auto":
        date_col = next((c for c in DATE_COLUMNS if c in names), None)
    elif date_col is not None and date_col not in names:
        raise CorpusmapError(f"--date-col {date_col!r}: no such column in the corpus; its columns are: "
                             f"{', '.join(names)}")
    # years from the year column, unless --date-col names a column explicitly: then from its dates
    if spec.period == "year" and spec.year_col in names and spec.date_col in ("auto", None):
        spec.period_col, spec.period_from = spec.year_col, "year"
    elif date_col is not None:
        spec.period_col, spec.period_from = date_col, "date"
    elif spec.period == "year":
        raise CorpusmapError(f"no {spec.year_col!r} column and no date column ({', '.join(DATE_COLUMNS)}) in the "
                             f"corpus; its columns are: {', '.join(names)} (use --year-col or --date-col)")
    else:
        raise CorpusmapError(f"--period month needs a date column: none of {', '.join(DATE_COLUMNS)} is in the "
                             f"corpus (its columns are: {', '.join(names)}); name one with --date-col")


def periods_present(read_column: Callable[[str], Iterable], names: Sequence[str], *, period: str = "year",
                    year_col: str = "year", date_col: Optional[str] = "auto") -> set[str]:
    """The periods that rows of a corpus with columns ``names`` fall in, read from the period column alone (the
    batches of ``read_column(name)``) as the scan reads it: every counted period is among them, so a ``--target``
    outside them can be refused before a scan of every abstract."""
    spec = _Spec(text_col=None, period=period, year_col=year_col, date_col=date_col, title_col=None, by=None)
    _resolve(spec, list(names))
    found: set[str] = set()
    for batch in read_column(spec.period_col):
        df = _to_polars(_select(batch, [spec.period_col]))
        label, _ = _period_exprs(df.schema[spec.period_col], spec)
        found.update(v for v in df.select(label.alias("p"))["p"].unique().to_list() if v is not None)
    return found


def _prepare(batch, spec: _Spec, stats: dict):
    """Columns ``text, period[, by]`` of the rows to count, as a polars DataFrame (None when none is left)."""
    import polars as pl

    names = _column_names(batch)
    _resolve(spec, names)
    wanted = [spec.text_col, spec.period_col] + [c for c in (spec.title_col, spec.by, spec.clean_title_col) if c]
    df = _to_polars(_select(batch, list(dict.fromkeys(wanted))))
    stats["_last_rows"] = df.height
    stats["rows_read"] += df.height
    if df.height == 0:
        return None
    text_dtype = df.schema[spec.text_col]
    if text_dtype not in (pl.String, pl.Null):
        raise CorpusmapError(f"column {spec.text_col!r} holds {text_dtype}, not text")
    text = pl.col(spec.text_col).cast(pl.String)
    period, present = _period_exprs(df.schema[spec.period_col], spec)
    cols = [text.alias("text"), period.alias("period"), present.alias("_present")]
    if spec.title_col:
        cols.append(pl.col(spec.title_col).cast(pl.String).alias("_title"))
    if spec.cleaner is not None and spec.clean_title_col:
        cols.append(pl.col(spec.clean_title_col).cast(pl.String).alias("_clean_title"))
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
    if not out.height:
        return None
    if spec.cleaner is not None:
        out = _clean(out, spec.cleaner)
    if spec.title_col:  # the title goes first (a null text was skipped above)
        out = out.with_columns(pl.concat_str([pl.col("_title").fill_null(""), pl.lit(" "), pl.col("text")])
                               .alias("text")).drop("_title")
    return out


def _clean(out, cleaner):
    """The study's clean-up of the ``text`` column; an erratum loses its title too (it contributes no word)."""
    import polars as pl

    from corpusmap.excess.cleanup import is_erratum

    titles = out["_clean_title"].to_list() if "_clean_title" in out.columns else None
    out = out.with_columns(pl.Series("text", cleaner.clean(out["text"].to_list(), titles), dtype=pl.String))
    if titles is not None:
        if "_title" in out.columns:
            errata = pl.Series([is_erratum(t) for t in titles], dtype=pl.Boolean)
            out = out.with_columns(pl.when(errata).then(None).otherwise(pl.col("_title")).alias("_title"))
        out = out.drop("_clean_title")
    return out


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
    items = parse_list_string(value)
    if items is None:
        return [value.strip()] if value.strip() else []
    return [str(x).strip() for x in items if x is not None and str(x).strip()]


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
