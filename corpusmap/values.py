"""Cell values as users' data stores them: years in numbers, strings or dates, and lists stored as strings.

One parser each, used by the corpus reader, the metrics and the excess scan alike.
"""
from __future__ import annotations

import ast
import json
import re
from typing import Any, Optional

import numpy as np

YEAR_RANGE = (1000, 2999)
FULL_YEAR_SPAN = 40  # years: up to this span a colour scale covers them all
_LEADING_YEAR_RE = re.compile(r"^\s*(\d{4})(?!\d)")
_YEAR_ANYWHERE_RE = re.compile(r"(?<!\d)(1[5-9]\d\d|2[01]\d\d)(?!\d)")
_COMPACT_DATE_RE = re.compile(r"^\s*(\d{4})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])\s*$")  # 20210304 (ISO 8601 basic)


def parse_year(value: Any) -> Optional[int]:
    """A year from an int, a float, or a string that starts with four digits ('2021', '2021-03-04') or holds a
    plausible year somewhere ('Spring 2021'), or a compact date (20210304, as a number or a string); ``None`` when
    there is none or it lies outside 1000–2999."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (float, np.floating)) and (not np.isfinite(value) or value != int(value)):
        return None
    if isinstance(value, (int, np.integer, float, np.floating)):
        year = int(value)
        if 10_000_101 <= year <= 29_991_231:  # perhaps a compact date
            year = compact_date_year(year) or year
    else:
        text = str(value)
        match = _COMPACT_DATE_RE.match(text) or _LEADING_YEAR_RE.match(text) or _YEAR_ANYWHERE_RE.search(text)
        if not match:
            return None
        year = int(match.group(1))
    return year if YEAR_RANGE[0] <= year <= YEAR_RANGE[1] else None


def compact_date_year(value):
    """The year of dates written as the number YYYYMMDD (20210304), elementwise for arrays; 0 where the value is
    not such a date (a month 01-12, a day 01-31, a year in :data:`YEAR_RANGE`)."""
    v = np.asarray(value, dtype=np.int64)
    year, month, day = v // 10_000, v // 100 % 100, v % 100
    ok = (year >= YEAR_RANGE[0]) & (year <= YEAR_RANGE[1]) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= 31)
    out = np.where(ok, year, 0)
    return int(out) if out.ndim == 0 else out


def year_array(values) -> np.ndarray:
    """:func:`parse_year` of each value as float64, NaN where there is no year."""
    import pyarrow as pa

    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
            out = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)
            whole = np.isfinite(out) & (out == np.floor(out)) & (np.abs(out) < 2 ** 53)
            compact = np.zeros(len(out), dtype=np.int64)
            compact[whole] = compact_date_year(out[whole].astype(np.int64))
            out = np.where(compact > 0, compact, out)
            bad = ~np.isfinite(out) | (out != np.floor(out)) | (out < YEAR_RANGE[0]) | (out > YEAR_RANGE[1])
            out[bad] = np.nan
            return out
        values = values.to_pylist()
    cache: dict = {}
    out = np.empty(len(values), dtype=np.float64)
    for i, value in enumerate(values):
        key = value if isinstance(value, (str, int, float, type(None))) else repr(value)
        if key not in cache:
            year = parse_year(value)
            cache[key] = np.nan if year is None else float(year)
        out[i] = cache[key]
    return out


def parse_list_string(text: str) -> Optional[list]:
    """The list that ``text`` spells as JSON (``["a", "b"]``) or Python (``['a', 'b']``), else ``None``."""
    text = text.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return None
    for loader in (json.loads, ast.literal_eval):
        try:
            items = loader(text)
        except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError):
            continue
        if isinstance(items, (list, tuple)):
            return list(items)
    return None


def year_colour_range(known: np.ndarray) -> tuple[float, float]:
    """The years a colour scale spans (whole years): all of them when they span at most :data:`FULL_YEAR_SPAN`,
    else the 2nd-98th percentile, so that a few very old papers do not wash out the scale (values beyond take
    its end colours; the page and the figures mark those ends)."""
    known = np.asarray(known, dtype=np.float64)
    lo, hi = np.quantile(known, [0.02, 0.98])
    if hi <= lo or known.max() - known.min() <= FULL_YEAR_SPAN:
        lo, hi = known.min(), known.max()
    return float(np.floor(lo)), float(np.ceil(hi))
