"""The excess-vocabulary formulas of Kobak, González-Márquez, Horvát & Lause (Science Advances 2025), on the binary
document frequencies of :mod:`corpusmap.excess.scan`. For a target period t:

- smoothed frequency ``p_t = (count_t + 1) / (total_t + 1)``;
- analysed words: letters a–z only, at least 4 of them, ``p >= 1e-4`` in t and in t−1;
- counterfactual ``q = p_{t−2} + max(0, p_{t−2} − p_{t−3}) · 2`` (the trend of t−3 → t−2 carried two periods on,
  never a projected decline);
- excess gap ``δ = p_t − q``, excess ratio ``r = p_t / q``;
- excess word: ``δ > 0.01`` or ``log10 r > log10 2 − (log10 p_t + 4) · log10(2) / 4``.

Periods are consecutive years or months; t−1, t−2 and t−3 must all be in the counts. For a group of words the
same p, q and δ are computed on the share of abstracts containing at least one word of the group.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Iterable, Optional, Sequence

import numpy as np
import pandas as pd

from corpusmap.errors import CorpusmapError, UsageProblem
from corpusmap.excess.periods import earlier_periods, kind_of, period_kind_of, span
from corpusmap.excess.tables import CountTable, PresenceTable



#: the study's alphabet rule: only these letters
_LETTERS = re.compile(r"^[a-z]+$")


@dataclass(frozen=True)
class Criteria:
    """The study's parameters (defaults as published)."""

    min_freq: float = 1e-4        # analysed words: p >= min_freq in t and in t-1
    min_letters: int = 4          # ... of at least this many letters
    letters_only: bool = True     # ... made only of the letters a-z (False: any token)
    min_delta: float = 0.01       # excess if delta > min_delta ...
    min_ratio: float = 2.0        # ... or log10 r > log10 R - (log10 p - log10 A) * log10(R) / -log10(A)
    ratio_anchor: float = 1e-4    # A: where the ratio threshold equals R (it falls to 1 at p = 1)
    trend_steps: float = 2.0      # q = p_{t-2} + max(0, p_{t-2} - p_{t-3}) * trend_steps

    def __post_init__(self):
        for name in ("min_freq", "min_delta", "min_ratio", "ratio_anchor", "trend_steps"):
            if not math.isfinite(float(getattr(self, name))):  # NaN would switch a rule off without a word
                raise UsageProblem(f"--{name.replace('_', '-')} must be a finite number, not {getattr(self, name)}")

    def as_dict(self) -> dict:
        return asdict(self)


def smoothed_frequency(counts, totals) -> np.ndarray:
    """``(count + 1) / (total + 1)``."""
    return (np.asarray(counts, dtype=float) + 1) / (np.asarray(totals, dtype=float) + 1)


def counterfactual(p_t2, p_t3, trend_steps: float = 2.0) -> np.ndarray:
    """``q = p_{t−2} + max(0, p_{t−2} − p_{t−3}) · 2``: linear trend, never a projected decline, and not capped, as
    in the study (a group in nearly every abstract can be projected above 1, and its δ is the study's)."""
    p_t2, p_t3 = np.asarray(p_t2, dtype=float), np.asarray(p_t3, dtype=float)
    return p_t2 + np.maximum((p_t2 - p_t3) * trend_steps, 0)


def excess_mask(p_t, q, params: Criteria = Criteria()) -> np.ndarray:
    """The study's criterion: ``δ > 0.01`` or ``log10 r > log10 2 − (log10 p_t + 4) · log10(2) / 4``."""
    p_t, q = np.asarray(p_t, dtype=float), np.asarray(q, dtype=float)
    log_r = np.log10(p_t / q)
    log_big_r = np.log10(params.min_ratio)
    log_anchor = np.log10(params.ratio_anchor)        # -4 for 1e-4
    threshold = log_big_r - (np.log10(p_t) - log_anchor) * (log_big_r / -log_anchor)
    return (log_r > threshold) | ((p_t - q) > params.min_delta)


def allowed_words(words: Sequence[str], params: Criteria = Criteria()) -> np.ndarray:
    """Boolean mask of words the analysis looks at (a–z only, at least ``min_letters`` long)."""
    words = np.asarray(words, dtype=object)
    if params.letters_only:
        ok = np.fromiter((bool(_LETTERS.match(w)) for w in words), dtype=bool, count=len(words))
    else:
        ok = np.ones(len(words), dtype=bool)
    lengths = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
    return ok & (lengths >= params.min_letters)


def check_target(periods: Sequence[str], target: str, source: str = "the counts") -> list[str]:
    """``[t−1, t−2, t−3]``; a usage error naming ``--target`` and what is missing when the target cannot be
    analysed on ``periods`` (those of ``source``)."""
    target = str(target).strip()
    periods = list(periods)
    kind = kind_of(periods)
    try:
        target_kind = period_kind_of(target)
    except CorpusmapError:
        raise UsageProblem(f"--target {target!r} is not a period; {source} have {span(periods)}") from None
    if target_kind != kind:
        raise UsageProblem(f"--target {target} is a {target_kind} but {source} are per {kind} ({span(periods)})")
    if target not in periods:
        raise UsageProblem(f"--target {target} is not in {source} ({span(periods)})")
    before = earlier_periods(target)
    missing = [p for p in before if p not in periods]
    if missing:
        raise UsageProblem(
            f"--target {target} needs the three periods before it ({', '.join(before)}); missing: "
            f"{', '.join(missing)} ({source} have {span(periods)})")
    return before


def default_targets(periods: Sequence[str]) -> list[str]:
    """Every period whose three predecessors are all present."""
    have = set(periods)
    return [p for p in periods if all(b in have for b in earlier_periods(p))]


def resolve_targets(periods: Sequence[str], targets: Optional[Iterable[str]] = None) -> list[str]:
    periods = list(periods)
    if targets:
        chosen = list(dict.fromkeys(str(t).strip() for t in targets))
        for t in chosen:
            check_target(periods, t)
        return chosen
    chosen = default_targets(periods)
    if not chosen:
        yearly = bool(periods) and all(len(p) == 4 for p in periods)
        raise CorpusmapError(
            f"no period has the three consecutive earlier periods the counterfactual needs; the counts have "
            f"{span(periods, full=True)}" + ("; with dates in the corpus, count by month: --period month"
                                             if yearly else ""))
    return chosen


def analyse_words(table: CountTable, target: str, params: Criteria = Criteria()) -> pd.DataFrame:
    """One row per analysed word of ``target``: counts, p in t..t−3, q, δ, r, log10 r, is_excess, ranks.

    Sorted by δ (descending); ``rank_delta`` and ``rank_ratio`` rank all analysed words (1 = largest).
    """
    target = str(target)
    t1, t2, t3 = check_target(table.periods, target)
    cols = [table.column(p) for p in (target, t1, t2, t3)]
    allowed = allowed_words(table.words, params)
    freqs = smoothed_frequency(table.counts[:, cols], table.totals[cols])
    keep = allowed & (freqs[:, 0] >= params.min_freq) & (freqs[:, 1] >= params.min_freq)
    f = freqs[keep]
    q = counterfactual(f[:, 2], f[:, 3], params.trend_steps)
    p_t = f[:, 0]
    with np.errstate(divide="ignore"):
        ratio = p_t / q
        delta = p_t - q
    df = pd.DataFrame({
        "word": table.words[keep].astype(str),
        "count": table.counts[keep, cols[0]],
        "p": p_t, "p_prev1": f[:, 1], "p_prev2": f[:, 2], "p_prev3": f[:, 3],
        "q": q, "delta": delta, "ratio": ratio, "log10_ratio": np.log10(ratio),
        "is_excess": excess_mask(p_t, q, params),
    })
    df["rank_delta"] = df["delta"].rank(ascending=False, method="first").astype(np.int64)
    df["rank_ratio"] = df["ratio"].rank(ascending=False, method="first").astype(np.int64)
    df = df.sort_values(["delta", "word"], ascending=[False, True], kind="stable").reset_index(drop=True)
    df.attrs.update({"target": target, "periods": [target, t1, t2, t3], "total": int(table.totals[cols[0]])})
    return df


@dataclass
class ExcessAnalysis:
    """Per target period the analysed-word table (see :func:`analyse_words`), plus the counts it came from."""

    table: CountTable
    params: Criteria
    words: dict          # target -> DataFrame

    @property
    def targets(self) -> list[str]:
        return list(self.words)

    def excess_words(self, target: str, max_freq: Optional[float] = None) -> list[str]:
        """The excess words of ``target`` (optionally only those with ``p_t < max_freq``), by δ."""
        df = self.words[str(target)]
        sel = df[df["is_excess"]]
        if max_freq is not None:
            sel = sel[sel["p"] < max_freq]
        return sel["word"].tolist()

    def summary(self) -> pd.DataFrame:
        rows = []
        for t, df in self.words.items():
            rows.append({"target": t, "abstracts": df.attrs["total"], "analysed_words": len(df),
                         "excess_words": int(df["is_excess"].sum()),
                         # absent from t, excess by smoothing alone (a small t: 1/(n+1) above earlier periods')
                         "excess_absent": int((df["is_excess"] & (df["count"] == 0)).sum()),
                         "top_by_delta": ", ".join(df[df["is_excess"]]["word"].head(5)),
                         "top_by_ratio": ", ".join(df[df["is_excess"]].sort_values("ratio", ascending=False)
                                                   ["word"].head(5))})
        return pd.DataFrame(rows)


def analyse(table: CountTable, targets: Optional[Iterable[str]] = None,
            params: Criteria = Criteria()) -> ExcessAnalysis:
    """Excess-word tables for ``targets`` (default: every period with three earlier ones)."""
    chosen = resolve_targets(table.periods, targets)
    return ExcessAnalysis(table, params, {t: analyse_words(table, t, params) for t in chosen})


def frequency_series(table: CountTable, words: Sequence[str]) -> pd.DataFrame:
    """Smoothed frequency of ``words`` (rows) in every period (columns); words not in the table get 1/(n+1)."""
    index = {w: i for i, w in enumerate(table.words.tolist())}
    counts = np.zeros((len(words), len(table.periods)), dtype=np.int64)
    for k, w in enumerate(words):
        i = index.get(w)
        if i is not None:
            counts[k] = table.counts[i]
    return pd.DataFrame(smoothed_frequency(counts, table.totals), index=list(words), columns=table.periods)


def group_excess(presence: PresenceTable, group: str, target: str, subgroup: Optional[str] = None,
                 params: Criteria = Criteria()) -> dict:
    """p, q, δ and r of a word group in ``target``: on the share of abstracts containing any of its words."""
    periods, n_with, n_docs = presence.series(group, subgroup)
    if not periods:
        raise CorpusmapError(f"no abstracts for word group {group!r}" + (f" in {subgroup!r}" if subgroup else ""))
    t1, t2, t3 = check_target(periods, target)
    idx = [periods.index(p) for p in (str(target), t1, t2, t3)]
    p = smoothed_frequency(n_with[idx], n_docs[idx])
    q = float(counterfactual(p[2], p[3], params.trend_steps))
    return {"group": group, "subgroup": subgroup, "target": str(target), "n_words": len(presence.groups[group]),
            "n_with": int(n_with[idx[0]]), "n_docs": int(n_docs[idx[0]]),
            "min_docs": int(n_docs[idx].min()),
            "p": float(p[0]), "p_prev1": float(p[1]), "p_prev2": float(p[2]), "p_prev3": float(p[3]),
            "q": q, "delta": float(p[0] - q), "ratio": float(p[0] / q)}


def group_table(presence: PresenceTable, targets: Sequence[str], params: Criteria = Criteria(),
                groups_for: Optional[dict] = None) -> pd.DataFrame:
    """δ of every group for every target it belongs to (``groups_for``: target -> group names; default all)."""
    rows = []
    for t in targets:
        for g in (groups_for or {}).get(t, list(presence.groups)):
            periods = presence.series(g)[0]
            if all(p in periods for p in [str(t), *earlier_periods(t)]):
                rows.append(group_excess(presence, g, t, None, params))
    return pd.DataFrame(rows)


def group_frequency_series(presence: PresenceTable, group: str, subgroup: Optional[str] = None) -> pd.Series:
    periods, n_with, n_docs = presence.series(group, subgroup)
    return pd.Series(smoothed_frequency(n_with, n_docs), index=periods)


#: the numeric columns of a group's or subgroup's δ (:func:`group_excess`), typed even in an empty table
GROUP_NUMBERS = ("n_words", "n_with", "n_docs", "min_docs", "p", "p_prev1", "p_prev2", "p_prev3", "q", "delta", "ratio")


def subgroup_table(presence: PresenceTable, group: str, target: str, min_group_size: int = 300,
                   params: Criteria = Criteria(), window: tuple = (-6, -1)) -> pd.DataFrame:
    """δ of ``group`` in ``target`` (the one-group δ) for every subgroup with at least ``min_group_size``
    abstracts in each period of ``window`` (offsets from the target, both included): by default t−6 … t−1, the
    study's rule (2018–2023 for 2024, ``03-figures.ipynb`` cell 28); ``(-3, 0)`` is t−3 … t. Window periods before
    the corpus's first period are not checked (see :func:`corpusmap.excess.style.size_filter`). Sorted by δ
    (descending); ``attrs``: ``skipped`` (left out for size), ``min_group_size``, ``window`` (the periods checked)
    and ``window_requested``. ``min_docs`` is the smallest subgroup size over the checked periods."""
    from corpusmap.excess.style import size_filter

    size = size_filter(presence, group, target, min_group_size, tuple(window))
    rows = []
    for s in size["keep"]:
        row = group_excess(presence, group, target, s, params)
        row["min_docs"] = size["min_docs"][s]
        rows.append(row)
    out = pd.DataFrame(rows, columns=["group", "subgroup", "target", *GROUP_NUMBERS])
    out = out.astype({c: "int64" if c.startswith(("n_", "min_")) else "float64" for c in GROUP_NUMBERS})
    out.insert(3, "delta_rule", "group")
    out = out.sort_values(["delta", "subgroup"], ascending=[False, True], kind="stable").reset_index(drop=True)
    out.attrs.update(skipped=size["skipped"], unmeasurable=size["unmeasurable"], min_group_size=int(min_group_size),
                     window=size["periods"], window_requested=size["requested"], delta_rule="group")
    return out
