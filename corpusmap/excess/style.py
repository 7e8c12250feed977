"""The study's lower bound on LLM-processed abstracts (``corpusmap excess --group style``) and its subgroup δ.

Everything here follows berenslab/llm-excess-vocab at commit 95c5976 (``scripts/02-preprocess-and-count.py``,
"02", and ``scripts/03-figures.ipynb``, "03", cells counted from 0):

- **Style words of a target t** (02 lines 415-431, 03 cell 24): the excess words of t (computed on the user's
  corpus, :mod:`corpusmap.excess.analysis`) whose annotation ``type`` is exactly ``"style"``. ``content/style``,
  ``style/content``, ``style/count``, ``other`` and ``content`` are left out (the study tests ``== 'style'``).
  The annotation is the study's own ``results/excess_words.csv`` (900 words, shipped in
  ``corpusmap/excess/data/``, MIT licence, Copyright (c) 2024 Dmitry Kobak, Rita González-Márquez), or the
  user's (:func:`read_annotation`). An excess word that the annotation does not list is left out and counted
  (the study annotated every excess word, so it never met one).
- **The bound over frequency cut-offs** (02 lines 431-442, 03 cell 26): for each cut-off c in
  :data:`STUDY_CUTOFFS`, the group W_c of style words whose smoothed frequency in t is p < c (strictly); its
  n_y = the abstracts of period y containing at least one word of W_c, N_y = all abstracts of y,
  P_y = (n_y + 1) / (N_y + 1) and Δ(c) = P_t − [P_{t−2} + 2 · max(0, P_{t−2} − P_{t−3})]. The study plots Δ(c)
  and labels its maximum, 0.136 at c = 0.02 (291 words) for 2024; it computes no maximum in code. Here the
  maximum and the cut-off where it is reached are computed (:func:`bound_summary`).
- **The subgroup δ** (02 lines 445-478, 03 cell 28): the mean of Δ over the rare style words (p < 0.02 in t,
  :data:`STUDY_RARE_MAX_FREQ`; the call at 02 line 620 passes 0.02) and Δ over the study's fixed common words
  :data:`STUDY_COMMON_WORDS`, both with the same counterfactual, on the subgroup's abstracts. Its value for all
  abstracts, (0.135947 + 0.133807) / 2 = 0.134877, is the paper's headline "at least 13.5% of 2024 abstracts"
  (not the 0.136 maximum over cut-offs). A subgroup is kept only if it has at least 300 abstracts in every year
  2018-2023 (``totals[-7:-1] >= 300``), i.e. t−6 … t−1 (:data:`STUDY_SIZE_WINDOW`); t itself is not checked.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence

import pandas as pd

from corpusmap.errors import CorpusmapError, UsageProblem

#: 03 cell 24 / 02 line 431
STUDY_CUTOFFS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
#: 02 lines 449-452, hard-coded (not derived from a rule, not filtered by type)
STUDY_COMMON_WORDS = ("exhibited", "crucial", "additionally", "within", "notably", "insights", "comprehensive",
                      "across", "particularly", "enhancing")
#: 02 line 620: ``compute_excess_gaps_subgroups(0.02, ...)``
STUDY_RARE_MAX_FREQ = 0.02
#: 03 cell 28: ``totals[-7:-1] >= 300`` with years 2010..2024, i.e. 2018..2023 for 2024: offsets -6..-1
STUDY_SIZE_WINDOW = (-6, -1)
STUDY_MIN_GROUP_SIZE = 300
#: the annotation type the study keeps (exact equality)
STYLE = "style"

DATA_DIR = Path(__file__).with_name("data")
BUILTIN_ANNOTATION = DATA_DIR / "excess_words.csv"
BUILTIN_NAME = "the study's annotation (llm-excess-vocab results/excess_words.csv, 900 words)"


@dataclass(frozen=True)
class Annotation:
    """Word -> annotation type (``style``, ``content``, ...), and where it came from."""

    types: Mapping[str, str]
    source: str
    builtin: bool = False
    part_of_speech: Mapping[str, str] = field(default_factory=dict)

    def type_of(self, word: str) -> Optional[str]:
        return self.types.get(word)

    def is_style(self, word: str) -> bool:
        return self.types.get(word) == STYLE

    def __len__(self) -> int:
        return len(self.types)


def builtin_annotation() -> Annotation:
    """The study's ``excess_words.csv``: 900 words, 407 ``style``."""
    types, pos = _read_annotated_csv(BUILTIN_ANNOTATION.read_text(encoding="utf-8"), str(BUILTIN_ANNOTATION))
    return Annotation(types, BUILTIN_NAME, True, pos)


def read_annotation(path: Optional[str]) -> Annotation:
    """The built-in annotation (``path=None``), or the user's ``--style-words FILE``: a CSV with a header naming
    ``word`` and ``type`` columns (others, such as the study's unnamed index, part_of_speech and comment, are
    ignored; the study's own file is accepted as it is), or a plain word list (one per line or comma/space
    separated, ``#`` comments), whose words are all style words. Words are lower-cased (tokens are); types are
    kept exactly, as the study compares them with ``== 'style'``."""
    if path is None:
        return builtin_annotation()
    p = Path(path)
    if not p.is_file():
        raise UsageProblem(f"--style-words {path}: no such file")
    from corpusmap.excess.words import parse_word_list, read_word_file

    text = read_word_file(p, f"--style-words {path}")
    first = next((line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")), "")
    for sep in (",", ";", "\t"):  # (a spreadsheet's export may separate by ; or tabs)
        header = [h.strip().strip('"').lower() for h in next(csv.reader([first], delimiter=sep), [])] if first else []
        if "word" in header and "type" in header:
            types, pos = _read_annotated_csv(text, path, sep)
            return Annotation(types, f"--style-words {path}", False, pos)
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    for sep in (",", ";", "\t"):  # rows of as many fields, the last a column of few values (types): a table
        rows = [line.split(sep) for line in lines]
        if len(rows) >= 3 and len(rows[0]) >= 2 and len({len(r) for r in rows}) == 1 \
                and len({r[-1].strip() for r in rows[1:]}) <= (len(rows) - 1) / 2:
            raise UsageProblem(f"--style-words {path}: a table whose header ({first.strip()[:60]}) names no word "
                               "and type columns; name them so (word,type), or give a list of words")
    try:
        words = parse_word_list(str(p))
    except UsageProblem:
        raise UsageProblem(f"--style-words {path}: no words in it (give a CSV with columns word,type or a list "
                           "of words)") from None
    return Annotation({w: STYLE for w in words}, f"--style-words {path} (a word list: all style words)")


def _read_annotated_csv(text: str, path: str, delimiter: str = ",") -> tuple[dict, dict]:
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    reader = csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter)
    header = [h.strip().lower() for h in next(reader)]
    iw, it = header.index("word"), header.index("type")
    ip = header.index("part_of_speech") if "part_of_speech" in header else None
    types: dict[str, str] = {}
    pos: dict[str, str] = {}
    for n, row in enumerate(reader, 2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(iw, it):
            raise UsageProblem(f"--style-words {path}: line {n} has no {'type' if len(row) > iw else 'word'} "
                               "field")
        word, kind = row[iw].strip().lower(), row[it].strip()
        if not word:
            continue
        if word in types and types[word] != kind:
            raise UsageProblem(f"--style-words {path}: {word!r} is annotated twice ({types[word]!r} and {kind!r})")
        types[word] = kind
        if ip is not None and len(row) > ip:
            pos[word] = row[ip].strip()
    if not types:
        raise UsageProblem(f"--style-words {path}: no annotated words")
    return types, pos


def annotate(words_df: pd.DataFrame, annotation: Annotation) -> pd.Series:
    """The annotation type of each word of an analysed-word table (None where the word is not annotated)."""
    return words_df["word"].map(lambda w: annotation.types.get(w))


def style_excess(words_df: pd.DataFrame, annotation: Annotation) -> pd.DataFrame:
    """The excess words of one target (its :func:`~corpusmap.excess.analysis.analyse_words` table) annotated
    exactly ``style``, with their p in t; sorted by δ as the table is."""
    ex = words_df[words_df["is_excess"]]
    return ex[annotate(ex, annotation) == STYLE]


def annotation_counts(words_df: pd.DataFrame, annotation: Annotation) -> dict:
    """How the excess words of one target are annotated: ``{type: n}`` plus ``"(not annotated)"``."""
    ex = words_df[words_df["is_excess"]]
    types = annotate(ex, annotation).fillna("(not annotated)")
    return {str(k): int(v) for k, v in types.value_counts().sort_index().items()}


def below(style_df: pd.DataFrame, cutoff: float) -> list[str]:
    """The style words with p < cutoff (strict, 02 line 436), in the table's order."""
    return style_df[style_df["p"] < cutoff]["word"].tolist()


def cutoff_name(target: str, cutoff: float) -> str:
    return f"style_{target}_below_{cutoff:g}"


def style_name(target: str) -> str:
    return f"style_{target}"


COMMON_GROUP = "style_common"


def delta_of(n_with: Sequence[int], n_docs: Sequence[int], trend_steps: float = 2.0) -> dict:
    """Δ of a word set from its counts ``[t, t−1, t−2, t−3]``: the smoothed shares P, the counterfactual
    ``q = P_{t−2} + trend_steps · max(0, P_{t−2} − P_{t−3})`` and ``Δ = P_t − q`` (03 cells 26 and 28)."""
    from corpusmap.excess.analysis import counterfactual, smoothed_frequency

    p = smoothed_frequency(n_with, n_docs)
    q = float(counterfactual(p[2], p[3], trend_steps))
    return {"p": float(p[0]), "p_prev1": float(p[1]), "p_prev2": float(p[2]), "p_prev3": float(p[3]), "q": q,
            "delta": float(p[0] - q), "ratio": float(p[0] / q)}


def bound_table(presence, target: str, cutoffs: Sequence[float], words: Mapping[float, Sequence[str]],
                names: Mapping[float, str], subgroup: Optional[str] = None, trend_steps: float = 2.0
                ) -> pd.DataFrame:
    """One row per cut-off: the number of style words with p < c, the abstracts of t containing any of them,
    P_t, q, Δ(c) and r. A cut-off below every style word's p has no words: its Δ is NaN (the study's cut-offs
    all had words) and it never counts as the maximum."""
    from corpusmap.excess.periods import earlier_periods

    needed = [str(target), *earlier_periods(target)]
    rows = []
    for c in cutoffs:
        ws = list(words.get(c, []))
        row = {"target": str(target), "cutoff": float(c), "group": names[c], "n_words": len(ws)}
        if ws:
            periods, n_with, n_docs = presence.series(names[c], subgroup)
            idx = _positions(periods, needed)
            row.update(n_with=int(n_with[idx[0]]), n_docs=int(n_docs[idx[0]]),
                       **delta_of(n_with[idx], n_docs[idx], trend_steps))
        else:
            periods, _, n_docs = presence.series(next(iter(presence.groups)), subgroup)
            row.update(n_with=0, n_docs=int(n_docs[_positions(periods, [str(target)])[0]]) if periods else 0,
                       p=math.nan, p_prev1=math.nan, p_prev2=math.nan, p_prev3=math.nan, q=math.nan,
                       delta=math.nan, ratio=math.nan)
        rows.append(row)
    return pd.DataFrame(rows, columns=["target", "cutoff", "group", "n_words", "n_with", "n_docs", "p", "p_prev1",
                                       "p_prev2", "p_prev3", "q", "delta", "ratio"])


def bound_summary(table: pd.DataFrame) -> dict:
    """The maximum Δ over the cut-offs that have words, the cut-off where it is reached (the smallest, on a
    tie) and that group's number of words; NaN/None when no cut-off has words."""
    valid = table[table["n_words"] > 0]
    if valid.empty:
        return {"max_delta": math.nan, "max_cutoff": None, "max_words": 0}
    best = valid.loc[valid["delta"].idxmax()]
    return {"max_delta": float(best["delta"]), "max_cutoff": float(best["cutoff"]),
            "max_words": int(best["n_words"])}


def study_delta(presence, rare_group: Optional[str], common_group: Optional[str], target: str,
                subgroup: Optional[str] = None, trend_steps: float = 2.0) -> dict:
    """The study's subgroup δ: ``(Δ_rare + Δ_common) / 2`` (03 cell 28), with each Δ on the abstracts of the
    subgroup (None: all abstracts). A missing group (no rare style word) gives NaN for its Δ and the mean."""
    from corpusmap.excess.periods import earlier_periods

    needed = [str(target), *earlier_periods(target)]
    out: dict = {}
    for key, group in (("rare", rare_group), ("common", common_group)):
        if group is None:
            out.update({f"n_with_{key}": 0, f"p_{key}": math.nan, f"q_{key}": math.nan,
                        f"delta_{key}": math.nan})
            continue
        periods, n_with, n_docs = presence.series(group, subgroup)
        idx = _positions(periods, needed)
        d = delta_of(n_with[idx], n_docs[idx], trend_steps)
        out.update({f"n_with_{key}": int(n_with[idx[0]]), f"p_{key}": d["p"], f"q_{key}": d["q"],
                    f"delta_{key}": d["delta"]})
        out["n_docs"] = int(n_docs[idx[0]])
    out["delta"] = (out["delta_rare"] + out["delta_common"]) / 2
    return out


def parse_window(spec: str) -> tuple[int, int]:
    """``t-6:t-1`` (or ``-6:-1``) -> ``(-6, -1)``: period offsets from the target, both ends included."""
    import re

    side = r"\s*(?:t([+-]\d+)?|([+-]?\d+))\s*"
    m = re.fullmatch(side + ":" + side, str(spec))
    if m is None:
        raise UsageProblem(f"--size-window must be FIRST:LAST offsets from the target period, e.g. t-6:t-1 (the "
                           f"study) or t-3:t, not {spec!r}")
    a, b = (int(m.group(i) or m.group(i + 1) or 0) for i in (1, 3))
    if a > b:
        raise UsageProblem(f"--size-window {spec}: FIRST must not be after LAST, e.g. t-6:t-1")
    if b > 0:
        raise UsageProblem(f"--size-window {spec}: LAST (t{b:+d}) lies after the target t; the window ends at t or "
                           "before it, e.g. t-6:t-1")
    return a, b


def format_window(window: tuple[int, int]) -> str:
    return ":".join("t" if k == 0 else f"t{k:+d}" for k in window)


def size_filter(presence, group: str, target: str, min_group_size: int, window: tuple[int, int]) -> dict:
    """Which subgroups have at least ``min_group_size`` abstracts (raw, unsmoothed) in every period of the
    window (03 cell 28: ``np.all(totals[-7:-1] >= 300)``). Periods of the window before the corpus's first period
    cannot be checked: they are left out of the check (``clipped``), as the study's corpus always reached back
    far enough. Returns ``{"keep": [...], "skipped": n, "periods": [...], "requested": [...]}``."""
    from corpusmap.excess.periods import shift_period

    requested = [shift_period(str(target), k) for k in range(window[0], window[1] + 1)]
    df = presence.frame
    first = min(df["period"]) if len(df) else str(target)
    periods = [p for p in requested if p >= first]
    sub = df[(df["group"] == group) & df["subgroup"].notna() & df["period"].isin(periods)]
    all_subgroups = sorted(df[(df["group"] == group) & df["subgroup"].notna()]["subgroup"].unique().tolist())
    sizes = sub.pivot_table(index="subgroup", columns="period", values="n_docs", aggfunc="sum", fill_value=0)
    sizes = sizes.reindex(index=all_subgroups, columns=periods, fill_value=0)
    big = sizes.index[(sizes >= min_group_size).all(axis=1)].tolist() if periods else all_subgroups
    # a share needs abstracts: a subgroup without any in t, t-1, t-2 or t-3 cannot be measured (the window
    # need not contain t)
    from corpusmap.excess.periods import earlier_periods

    needed = [str(target), *earlier_periods(target)]
    here = df[(df["group"] == group) & df["subgroup"].notna() & df["period"].isin(needed) & (df["n_docs"] > 0)]
    measurable = set(here.groupby("subgroup")["period"].nunique().loc[lambda n: n == len(needed)].index)
    keep = [s for s in big if s in measurable]
    min_docs = sizes.min(axis=1) if periods else pd.Series(0, index=all_subgroups)
    return {"keep": keep, "skipped": len(all_subgroups) - len(keep), "periods": periods, "requested": requested,
            "unmeasurable": len(big) - len(keep), "min_docs": {k: int(v) for k, v in min_docs.items()}}


def study_subgroup_table(presence, group: str, rare_group: Optional[str], common_group: str, target: str,
                         min_group_size: int = STUDY_MIN_GROUP_SIZE, window: tuple[int, int] = STUDY_SIZE_WINDOW,
                         trend_steps: float = 2.0) -> pd.DataFrame:
    """The study's subgroup analysis for one target: for every subgroup with at least ``min_group_size``
    abstracts in each period of the window, Δ_rare, Δ_common and their mean ``delta``; sorted by ``delta``
    (descending). ``group`` names the style group the rows are filed under (``style_<t>``)."""
    size = size_filter(presence, common_group, target, min_group_size, window)
    rows = []
    for s in size["keep"]:
        rows.append({"group": group, "subgroup": s, "target": str(target), "delta_rule": "study",
                     "min_docs": size["min_docs"][s],
                     **study_delta(presence, rare_group, common_group, target, s, trend_steps)})
    cols = ["group", "subgroup", "target", "delta_rule", "n_docs", "min_docs", "n_with_rare", "p_rare", "q_rare",
            "delta_rare", "n_with_common", "p_common", "q_common", "delta_common", "delta"]
    out = pd.DataFrame(rows, columns=cols)
    out = out.sort_values(["delta", "subgroup"], ascending=[False, True], kind="stable").reset_index(drop=True)
    out.attrs.update(skipped=size["skipped"], unmeasurable=size["unmeasurable"], min_group_size=int(min_group_size),
                     window=size["periods"], window_requested=size["requested"], delta_rule="study")
    return out


__all__ = ["Annotation", "STUDY_CUTOFFS", "STUDY_COMMON_WORDS", "STUDY_RARE_MAX_FREQ", "STUDY_SIZE_WINDOW",
           "STYLE", "BUILTIN_ANNOTATION", "builtin_annotation", "read_annotation", "annotate", "style_excess",
           "annotation_counts", "below", "bound_table", "bound_summary", "study_delta", "delta_of",
           "parse_window", "format_window", "size_filter", "study_subgroup_table", "cutoff_name", "style_name",
           "COMMON_GROUP"]


def _positions(periods: list, needed: list) -> list[int]:
    """Where each of ``needed`` is in ``periods``; a period the group's abstracts lack is an error naming it."""
    missing = [p for p in needed if p not in periods]
    if missing:
        raise CorpusmapError(f"no abstracts of period(s) {', '.join(map(str, missing))} to compute the style "
                             "groups from; the counts (--counts) cover periods the corpus does not: give the "
                             "corpus they were counted from, or targets it covers")
    return [periods.index(p) for p in needed]
