"""Count tables and their file formats: binary document frequencies per period (:class:`CountTable`, written as
``counts.parquet`` (long) and ``counts.csv`` (the study's wide shape)), and word-group presence per period and
subgroup (:class:`PresenceTable`); :func:`read_counts` reads tables made elsewhere."""
from __future__ import annotations

import json
import os
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import pyarrow as pa

from corpusmap.errors import CorpusmapError
from corpusmap.excess.periods import _MONTH_RE, _YEAR_RE, period_kind_of, sort_periods, span



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
            raise CorpusmapError(f"period {period} is not in the count table ({span(self.periods)})") from None

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
        return _from_wide(frame.with_columns(pl.all().cast(pl.String)), path, first_line=None)
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
        except (OSError, EOFError, zlib.error, pl.exceptions.PolarsError) as exc:
            from corpusmap.corpus import gzip_damage

            damage = gzip_damage(path)
            raise CorpusmapError(f"count table {path}: {damage}" if damage
                                 else f"cannot read count table {path}: {exc}") from None
        return _from_wide(frame, path, first_line=2)
    raise CorpusmapError(f"count table {path}: expected .csv, .csv.gz, .tsv or .parquet")


def _first_bad_cell(frame, columns: list[str], path: Path, where, rule: str) -> np.ndarray:
    """The cells of ``columns`` as a float matrix, or an error naming the first cell that is not a whole number
    >= 0: its row (``where(i)``), its column, what it holds, and ``rule``."""
    import polars as pl

    first: Optional[tuple[int, int, str]] = None
    matrix = np.empty((frame.height, len(columns)), dtype=np.float64)
    for j, name in enumerate(columns):
        text = frame[name].cast(pl.String).str.strip_chars().fill_null("")
        values = text.cast(pl.Float64, strict=False).to_numpy().astype(np.float64)
        matrix[:, j] = values
        blank = (text == "").to_numpy()
        finite = np.isfinite(values)
        bad = blank | ~finite | (finite & ((values < 0) | (values != np.floor(values))))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            if first is None or i < first[0]:
                first = (i, j, text[i])
    if first is None:
        return matrix
    i, j, cell = first
    what = ("is empty" if cell == "" else f"holds {cell!r}, not a number" if not np.isfinite(matrix[i, j])
            else f"holds {cell!r}, not a whole number >= 0")
    raise CorpusmapError(f"count table {path}: {where(i)}, column {columns[j]!r} {what}; {rule}")


def _from_wide(frame, path: Path, first_line: Optional[int]) -> CountTable:
    """A wide table; ``first_line``: the file line of the first data row (CSV), None for rows (parquet)."""
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

    def where(i: int) -> str:
        row = f"line {first_line + i:,}" if first_line is not None else f"row {i + 1:,}"
        return f"{row} (the totals row)" if is_total[i] else f"{row} (word {words[i]!r})"

    matrix = _first_bad_cell(frame, period_cols, path, where, "the period columns must hold whole numbers (the "
                             "abstracts of the period containing the word)")
    if is_total.sum() == 0:
        raise CorpusmapError(
            f"count table {path} has no totals row: the last row must have an empty word and the number of "
            f"abstracts of each period (the study's shape); the last row here is {where(frame.height - 1)}")
    if is_total.sum() > 1:
        raise CorpusmapError(f"count table {path} has {int(is_total.sum())} rows with an empty word; expected "
                             "exactly one (the totals)")
    matrix = matrix.astype(np.int64)
    word_list = np.array(words.to_list(), dtype=object)[~is_total]
    counts, totals = matrix[~is_total], matrix[is_total][0]
    return _finish_table(word_list, period_cols, counts, totals, path, kinds.pop(), {"source": str(path)})


def _from_long_table(frame, path: Path, metadata: dict) -> CountTable:
    import polars as pl

    words, periods, count = frame["word"].cast(pl.String), frame["period"].cast(pl.String), frame["count"]

    def where(i: int) -> str:
        what = "a totals row" if words[i] is None or words[i] == "" else f"word {words[i]!r}"
        return f"row {i + 1:,} ({what}, period {periods[i]!r})"

    rule = "counts must be whole numbers (abstracts)"
    if not count.dtype.is_integer():
        count = pl.Series("count", _first_bad_cell(frame, ["count"], path, where, rule)[:, 0].astype(np.int64))
    elif count.null_count() or (len(count) and count.min() < 0):
        _first_bad_cell(frame, ["count"], path, where, rule)
    frame = pl.DataFrame({"word": words, "period": periods, "count": count.cast(pl.Int64)})
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


def _jsonable(d: dict) -> dict:
    return {k: v for k, v in d.items() if isinstance(v, (str, int, float, bool, type(None), list, dict))}
