"""Periods of the excess analysis: years (``2024``) or months (``2024-03``), and stepping between them."""
from __future__ import annotations

import re
from typing import Iterable, Sequence

from corpusmap.errors import CorpusmapError



#: accepted years; anything else in a year column is "not a year"
YEAR_RANGE = (1000, 2999)
_YEAR_RE = re.compile(r"^\d{4}$")
_MONTH_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
#: the study's LLM era: style words' excess bounds LLM use from 2023 on (ChatGPT came out on 30 November 2022)
LLM_TOOLS_FROM = 2023


def before_llm_tools(label: str) -> bool:
    """Whether period ``label`` lies before LLM writing tools, where a style group's δ bounds no LLM use."""
    return int(str(label)[:4]) < LLM_TOOLS_FROM


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


def period_index(label: str) -> int:
    """The period as a number on a time axis, one per step: the year, or year·12 + month − 1, so that a figure
    spaces periods as time does (a year missing from the data leaves a gap)."""
    if period_kind_of(label) == "year":
        return int(label)
    return int(label[:4]) * 12 + int(label[5:7]) - 1


def sort_periods(labels: Iterable[str]) -> list[str]:
    labels = sorted(set(labels))
    kinds = {period_kind_of(p) for p in labels}
    if len(kinds) > 1:
        raise CorpusmapError(f"periods mix years and months: {labels[:5]}")
    return labels


def earlier_periods(target: str, n: int = 3) -> list[str]:
    """``[t−1, t−2, ..., t−n]``."""
    return [shift_period(str(target), -k) for k in range(1, n + 1)]


def kind_of(periods: Sequence[str]) -> str:
    return period_kind_of(periods[0]) if periods else "year"


def span(periods: Sequence[str], full: bool = False) -> str:
    periods = list(periods)
    if not periods:
        return "no periods"
    if full and len(periods) <= 24:
        return "periods " + ", ".join(periods)
    return f"periods {periods[0]}–{periods[-1]}" if len(periods) > 1 else f"period {periods[0]}"
