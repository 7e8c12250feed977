"""Excess-vocabulary outputs: tables (parquet + CSV), ``report.md`` and figures (matplotlib, Agg, atomic writes).

Figures:

- ``figures/words_<t>.png``: frequency over time of the top excess words of t, each with its counterfactual
  projection (dashed, from t−3 and t−2 on to t), as in Figure 1 of the study;
- ``figures/scatter_<t>.png``: δ against p_t (log x) for every analysed word, and r against p_t with the
  ratio threshold; excess words highlighted, the top ones named;
- ``figures/groups.png``: share of abstracts containing each word group, per period;
- ``figures/subgroups_<group>_<t>.png``: δ of a word group per subgroup;
- ``figures/bound_<t>.png`` (``--group style``): the study's Δ(c) over the frequency cut-offs c, its maximum
  marked (the study's ``figures/delta-curve``).
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from corpusmap.atomic import atomic_path
from corpusmap.excess.analysis import (Criteria, ExcessAnalysis, frequency_series,
                                       group_frequency_series)
from corpusmap.excess.periods import LLM_TOOLS_FROM, before_llm_tools, earlier_periods, period_index
from corpusmap.excess.style import STUDY_MIN_GROUP_SIZE, STUDY_SIZE_WINDOW, format_window
from corpusmap.excess.style import STUDY_COMMON_WORDS
from corpusmap.excess.tables import CountTable, PresenceTable



EXCESS_COLOR = "#c0392b"
OTHER_COLOR = "#9aa5b1"
PROJECTION_COLOR = "#555555"


def write_table(df: pd.DataFrame, base: Path, csv: bool = True) -> list[Path]:
    """``base.parquet`` and ``base.csv``, atomically. Text is parquet's ``string`` (as in ``corpus.parquet``), also
    in a column without values (no subgroups kept; ``subgroup`` of whole groups) rather than the null type, so
    that the schema is the same in every run and tables concatenate in polars and duckdb."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    for i, field in enumerate(table.schema):
        if pa.types.is_null(field.type) or pa.types.is_large_string(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(pa.string()))
    paths = [base.with_suffix(".parquet")]
    with atomic_path(paths[0]) as tmp:
        pq.write_table(table, tmp)
    if csv:
        paths.append(base.with_suffix(".csv"))
        with atomic_path(paths[1]) as tmp:
            df.to_csv(tmp, index=False, float_format="%.10g")
    return paths


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_") or "group"


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=130)
    _plt().close(fig)
    return path


def _positions(periods: Sequence[str]) -> np.ndarray:
    """x of each period: its place in time (see :func:`period_index`)."""
    return np.array([period_index(p) for p in periods], dtype=np.float64)


def _period_ticks(ax, periods: Sequence[str], max_labels: int = 12) -> None:
    step = max(1, math.ceil(len(periods) / max_labels))
    ticks = list(range(0, len(periods), step))
    ax.set_xticks(_positions([periods[i] for i in ticks]))
    ax.set_xticklabels([periods[i] for i in ticks], rotation=45 if len(periods[0]) > 4 or len(ticks) > 8 else 0,
                       ha="right" if len(periods[0]) > 4 or len(ticks) > 8 else "center", fontsize=7)


def plot_word_trends(path: Path, table: CountTable, words_df: pd.DataFrame, target: str, n: int = 12,
                     by: str = "delta", params: Criteria = Criteria()) -> Optional[Path]:
    """Small multiples: frequency (% of abstracts) of the top-``n`` excess words of ``target`` over all periods,
    with the counterfactual projection from t−3 and t−2 to t (dashed) and the excess gap at t."""
    excess = words_df[words_df["is_excess"]].sort_values(by, ascending=False, kind="stable").head(n)
    if excess.empty:
        return None
    plt = _plt()
    words = excess["word"].tolist()
    freqs = frequency_series(table, words) * 100
    periods = table.periods
    x = _positions(periods)
    jt = periods.index(str(target))
    t1, t2, t3 = earlier_periods(target)
    j2, j3 = periods.index(t2), periods.index(t3)
    steps = np.arange(x[j3], x[jt] + 1)  # t−3 .. t in steps of one period, whichever of them the data holds
    ncols = min(4, len(words))
    nrows = math.ceil(len(words) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.1 * nrows), squeeze=False)
    for ax, (_, row) in zip(axes.ravel(), excess.iterrows()):
        y = freqs.loc[row["word"]].to_numpy()
        ax.plot(x, y, "-o", color="#2c3e50", ms=2.5, lw=1)
        proj = y[j2] + np.maximum(y[j2] - y[j3], 0) * (steps - x[j2]) / (x[jt] - x[j2]) * params.trend_steps
        ax.plot(steps, proj, "--", color=PROJECTION_COLOR, lw=1)
        ax.plot([x[jt], x[jt]], [row["q"] * 100, row["p"] * 100], "-", color=EXCESS_COLOR, lw=2)
        ax.plot([x[jt]], [row["p"] * 100], "o", color=EXCESS_COLOR, ms=4)
        ax.set_title(f"{row['word']}\nδ={row['delta'] * 100:+.2f} pp, r={row['ratio']:.2f}", fontsize=8)
        ax.set_ylim(bottom=0)
        ax.tick_params(labelsize=7)
        _period_ticks(ax, periods, max_labels=6)
        ax.spines[["top", "right"]].set_visible(False)
    for ax in axes.ravel()[len(words):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("% of abstracts", fontsize=7)
    fig.suptitle(f"Top excess words of {target} by {'gap δ' if by == 'delta' else 'ratio r'} "
                 f"(dashed: counterfactual from {t3} and {t2})", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_delta_scatter(path: Path, words_df: pd.DataFrame, target: str, annotate: int = 8,
                       params: Criteria = Criteria()) -> Optional[Path]:
    """Left: δ against p_t (log x), right: r against p_t (log–log) with the ratio threshold; excess words red."""
    if words_df.empty:
        return None
    plt = _plt()
    ex = words_df["is_excess"].to_numpy()
    p = words_df["p"].to_numpy()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, y in ((a1, words_df["delta"].to_numpy() * 100), (a2, words_df["ratio"].to_numpy())):
        ax.scatter(p[~ex], y[~ex], s=3, c=OTHER_COLOR, alpha=0.5, lw=0, rasterized=True, label="other words")
        ax.scatter(p[ex], y[ex], s=9, c=EXCESS_COLOR, lw=0, label=f"excess words ({int(ex.sum()):,})")
        ax.set_xscale("log")
        ax.set_xlabel(f"frequency in {target} (share of abstracts, p)")
        ax.spines[["top", "right"]].set_visible(False)
    a1.axhline(params.min_delta * 100, color=PROJECTION_COLOR, lw=0.8, ls="--")
    a1.axhline(0, color="black", lw=0.5)
    a1.set_ylabel("excess gap δ = p − q (percentage points)")
    a2.set_yscale("log")
    xs = np.logspace(np.log10(max(p.min(), 1e-12)), 0, 100)
    lr, la = np.log10(params.min_ratio), np.log10(params.ratio_anchor)
    a2.plot(xs, 10 ** (lr - (np.log10(xs) - la) * (lr / -la)), "--", color=PROJECTION_COLOR, lw=0.8,
            label="ratio threshold")
    a2.axhline(1, color="black", lw=0.5)
    a2.set_ylabel("excess ratio r = p / q")
    top = words_df[ex]
    for ax, key, scale in ((a1, "delta", 100), (a2, "ratio", 1)):   # each panel names its own top words
        ranked = top.nlargest(annotate, key)
        for k, (_, row) in enumerate(ranked.iterrows()):  # a column of names, largest first, lines to points
            ax.annotate(row["word"], (row["p"], row[key] * scale), xytext=(0.03, 0.95 - 0.065 * k),
                        textcoords="axes fraction", fontsize=7, va="top",
                        arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "#777", "shrinkB": 2})
    a2.legend(fontsize=7, loc="lower right", frameon=False)
    fig.suptitle(f"Words analysed in {target}: {len(words_df):,}, excess: {int(ex.sum()):,}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_groups(path: Path, presence: PresenceTable, groups: Sequence[str]) -> Optional[Path]:
    """Share of abstracts (%) containing at least one word of each group, per period."""
    if not groups:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    periods = sorted(presence.frame["period"].unique().tolist())
    for g in groups:
        s = group_frequency_series(presence, g).reindex(periods)
        ax.plot(_positions(periods), s.to_numpy() * 100, "-o", ms=3, lw=1.2, label=g)
    _period_ticks(ax, periods)
    ax.set_ylabel("% of abstracts with any word of the group")
    ax.set_ylim(bottom=0)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_bound(path: Path, bound: pd.DataFrame, target: str) -> Optional[Path]:
    """Δ(c) (percentage points) of the style words with p < c against the cut-off c (log x), the maximum marked."""
    valid = bound[bound["n_words"] > 0]
    if valid.empty:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    ax.plot(valid["cutoff"], valid["delta"] * 100, "-o", color=EXCESS_COLOR, ms=4, lw=1.2)
    best = valid.loc[valid["delta"].idxmax()]
    ax.annotate(f"max Δ = {best['delta']:.3f} at c = {best['cutoff']:g} ({int(best['n_words'])} words)",
                (best["cutoff"], best["delta"] * 100), xytext=(-8, 0), textcoords="offset points", fontsize=8,
                ha="right", va="center")
    ax.set_ylim(top=max(valid["delta"].max() * 100 * 1.12, 1e-9))
    ax.set_xscale("log")
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xlabel(f"frequency cut-off c (style excess words of {target} with p < c)")
    ax.set_ylabel("excess gap Δ (percentage points)")
    ax.set_title(f"Lower bound on LLM-processed abstracts, {target}", fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_subgroups(path: Path, sub_df: pd.DataFrame, group: str, target: str, by: str,
                   n: int = 40) -> Optional[Path]:
    """Horizontal bars: δ (percentage points) of ``group`` in ``target`` per subgroup, largest first."""
    if sub_df.empty:
        return None
    plt = _plt()
    df = sub_df.head(n).iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.8 + 0.24 * len(df)))
    colors = [EXCESS_COLOR if d > 0 else OTHER_COLOR for d in df["delta"]]
    ax.barh(np.arange(len(df)), df["delta"] * 100, color=colors)
    ax.set_yticks(np.arange(len(df)))
    ax.set_yticklabels([f"{s} (n={n:,})" for s, n in zip(df["subgroup"], df["n_docs"])], fontsize=7)
    ax.axvline(0, color="black", lw=0.5)
    window = sub_df.attrs.get("window") or []
    rule = ("the study's subgroup δ, (δ_rare + δ_common) / 2" if sub_df.attrs.get("delta_rule") == "study"
            else "the group's δ")
    ax.set_xlabel(f"excess gap of word group {group!r} in {target}: {rule} (percentage points)", fontsize=8)
    ax.set_title(f"By {by}: subgroups with at least {sub_df.attrs.get('min_group_size', 0):,} abstracts "
                 + (f"in each period {window[0]}–{window[-1]}" if window else ""), fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return save_figure(fig, path)


def _md_word(w: str) -> str:
    return str(w).replace("\\", "\\\\").replace("_", "\\_").replace("|", "\\|").replace("*", "\\*")


def _pct(x: float, digits: int = 3) -> str:
    return f"{x * 100:.{digits}f}%"


def _pp(x: float) -> str:
    return f"{x * 100:+.3f} pp"


def _word_rows(df: pd.DataFrame, periods: list[str]) -> list[str]:
    t, t1, t2, t3 = periods
    lines = [f"| # | word | abstracts | p {t3} | p {t2} | p {t1} | p {t} | q | δ | r |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for i, (_, r) in enumerate(df.iterrows(), 1):
        lines.append(f"| {i} | {_md_word(r['word'])} | {int(r['count']):,} | {_pct(r['p_prev3'])} | "
                     f"{_pct(r['p_prev2'])} | {_pct(r['p_prev1'])} | {_pct(r['p'])} | {_pct(r['q'])} | "
                     f"{_pp(r['delta'])} | {r['ratio']:.2f} |")
    return lines


def render_report(analysis: ExcessAnalysis, *, source: str, stats: Optional[dict] = None, top: int = 20,
                  groups_df: Optional[pd.DataFrame] = None, group_words: Optional[dict] = None,
                  subgroups: Optional[dict] = None, by: Optional[str] = None, figures: Optional[dict] = None,
                  notes: Sequence[str] = (), files: Sequence[str] = (), study: Optional[dict] = None,
                  clean: Optional[dict] = None, lemmas: Optional[pd.DataFrame] = None) -> str:
    """The markdown report; ``figures`` maps names (``words_<t>``, ...) to paths relative to the report.
    ``study``: the ``--group style`` results (see :func:`corpusmap.excess.stage.compute_excess`); ``clean``: what
    ``--clean`` changed; ``lemmas``: the ``--lemmatize`` table."""
    table, params = analysis.table, analysis.params
    figures = figures or {}
    periods = table.periods
    kind = table.period_kind
    out = ["# Excess vocabulary", ""]
    out.append(f"Source: {source}. {int(table.totals.sum()):,} abstracts in {len(periods)} {kind}s "
               f"({periods[0]}–{periods[-1]}); {len(table):,} distinct words.")
    if stats:
        skipped = {k: stats.get(k, 0) for k in ("missing_text", "missing_period", "invalid_period")}
        if any(skipped.values()):
            out.append(f"Rows skipped: {skipped['missing_text']:,} without a text, {skipped['missing_period']:,} "
                       f"without a {kind}, {skipped['invalid_period']:,} with an unreadable {kind}.")
        if stats.get("title_column"):
            out.append(f"Words were counted on title + abstract (column `{stats['title_column']}`).")
    out += ["", "Abstracts per period: " + ", ".join(f"{p}: {n:,}" for p, n in zip(periods, table.totals)), ""]
    for note in notes:
        out.append(f"> {note}")
    if notes:
        out.append("")
    out += ["## Method", "",
            "As in Kobak, González-Márquez, Horvát & Lause (Science Advances 2025). A word's frequency in a "
            "period is the share of that period's abstracts containing it at least once (lower-cased tokens of "
            "`\\b\\w\\w+\\b`, as scikit-learn's `CountVectorizer`), smoothed: p = (count + 1) / (total + 1).",
            "",
            f"- analysed words: {'letters a–z only, ' if params.letters_only else ''}at least "
            f"{params.min_letters} characters, p ≥ {params.min_freq:g} in t and in t−1;",
            f"- counterfactual q = p(t−2) + max(0, p(t−2) − p(t−3)) · {params.trend_steps:g} (the trend, never a "
            "projected decline);",
            "- excess gap δ = p − q, excess ratio r = p / q;",
            f"- excess word: δ > {params.min_delta:g} or log10 r > log10 {params.min_ratio:g} − "
            f"(log10 p − log10 {params.ratio_anchor:g}) · log10({params.min_ratio:g}) / "
            f"{-math.log10(params.ratio_anchor):g}.",
            ""]
    if clean is not None:
        out += ["Abstracts were cleaned before counting as the study did (`--clean`; see *Clean-up* below).", ""]
    out += ["## Summary", "",
            "| target | abstracts | analysed words | excess words | top by δ | top by r |",
            "|---|---:|---:|---:|---|---|"]
    for _, r in analysis.summary().iterrows():
        out.append(f"| {r['target']} | {r['abstracts']:,} | {r['analysed_words']:,} | {r['excess_words']:,} | "
                   f"{_md_word(r['top_by_delta'])} | {_md_word(r['top_by_ratio'])} |")
    out.append("")
    if clean is not None:
        out += _clean_section(clean)
    if study and study.get("annotation"):
        out += _bound_section(study, figures)
    if groups_df is not None and not groups_df.empty:
        out += _group_section(groups_df, group_words or {}, study or {})
    for t, df in analysis.words.items():
        t_periods = [t, *earlier_periods(t)]
        ex = df[df["is_excess"]]
        absent = int((ex["count"] == 0).sum())
        out += [f"## {t}", "",
                f"{len(df):,} words analysed, **{len(ex):,} excess words** "
                f"(compared with {', '.join(reversed(t_periods[1:]))}; {df.attrs['total']:,} abstracts in {t})."
                + (f" {absent:,} of them do not occur in {t}: with so few abstracts an absent word's smoothed "
                   "frequency 1/(n+1) lies above its share in the earlier periods, so they are excess by the "
                   "smoothing alone." if absent else ""), ""]
        if ex.empty:
            out += ["No excess words.", ""]
        else:
            out += [f"### Top {min(top, len(ex))} excess words by gap δ", ""]
            out += _word_rows(ex.head(top), t_periods) + [""]
            by_r = ex.sort_values("ratio", ascending=False, kind="stable").head(top)
            out += [f"### Top {min(top, len(ex))} excess words by ratio r", ""]
            out += _word_rows(by_r, t_periods) + [""]
        for key, title in ((f"words_{t}", "Top excess words over time"),
                           (f"scatter_{t}", "All analysed words")):
            if key in figures:
                out += [f"![{title}, {t}]({figures[key]})", ""]
        if groups_df is not None and not groups_df.empty:
            g = groups_df[groups_df["target"] == t]
            if not g.empty:
                best = g.sort_values("delta", ascending=False).iloc[0]
                out += [f"Word groups in {t}: the largest gap is {_pp(best['delta'])} for `{best['group']}` "
                        f"(see *Word groups* above).", ""]
        for (group, target), sub in (subgroups or {}).items():
            if target != t:
                continue
            out += _subgroup_section(sub, group, t, by, figures.get(f"subgroups_{safe_name(group)}_{t}"),
                                     study or {})
    if lemmas is not None:
        out += _lemma_section(lemmas, analysis, top)
    if files:
        out += ["## Files", ""] + [f"- `{f}`" for f in files] + [""]
    return "\n".join(out).rstrip() + "\n"


def _group_section(groups_df: pd.DataFrame, group_words: dict, study: dict) -> list[str]:
    has_style = "style_words" in groups_df.columns and bool(groups_df["style_words"].any())
    out = ["## Word groups", "",
           "For a group of words, p is the share of abstracts containing at least one of them; q and δ as for "
           "single words. Only a group of *style* words (words whose rise reflects how texts are written, not "
           "what they are about) gives a bound: **δ of a group of style words is a lower bound on the share of "
           "abstracts processed with an LLM** in that period, since an abstract can be LLM-edited without using "
           "any of the words. Style groups here are the study's `style_<t>` groups (`--group style`) and groups "
           "declared with `--style-group`. For the other groups (`--group excess`, whose excess words include "
           "content words such as *covid* in 2020, and `--group-words` groups not declared style) δ measures how "
           "much more often their words occur than their trend predicts, not LLM use.", "",
           "| target | group | words | abstracts with any | p | q | δ | r | style words: lower bound |",
           "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for _, r in groups_df.iterrows():
        style = bool(r.get("style_words", False))
        lower = "yes" if r.get("lower_bound", False) else f"no (before {LLM_TOOLS_FROM})" if style else "no"
        out.append(f"| {r['target']} | `{r['group']}` | {r['n_words']:,} | {r['n_with']:,} of {r['n_docs']:,} | "
                   f"{_pct(r['p'], 2)} | {_pct(r['q'], 2)} | **{_pp(r['delta'])}** | {r['ratio']:.2f} | "
                   f"{lower} |")
    out.append("")
    if has_style and not bool(groups_df.get("lower_bound", pd.Series(dtype=bool)).all()):
        out += [_PRE_LLM, ""]
    if not has_style:
        out += ["None of these groups is a group of style words, so none of these δ is a lower bound on "
                "LLM-processed abstracts (`--group style` gives the study's).", ""]
    for g, words in group_words.items():
        shown = ", ".join(_md_word(w) for w in list(words)[:40])
        more = f" … ({len(words):,} in all)" if len(words) > 40 else ""
        out.append(f"- `{g}`: {shown}{more}")
    out.append("")
    return out


_PRE_LLM = (f"A target before {LLM_TOOLS_FROM} lies before LLM writing tools (the study's era starts in "
            f"{LLM_TOOLS_FROM}): there the style words' δ measures other changes in writing and noise, and bounds no "
            "LLM use.")


def _bound_section(study: dict, figures: dict) -> list[str]:
    """``--group style``: the study's lower bound over frequency cut-offs and its subgroup δ of all abstracts."""
    cutoffs, rare, common = study["cutoffs"], study["rare_max_freq"], study["common_words"]
    out = ["## Lower bound on LLM-processed abstracts (the study's)", "",
           f"As Kobak et al. (2025) compute it (llm-excess-vocab `02-preprocess-and-count.py` lines 415–442, "
           f"`03-figures.ipynb` cells 24–28). Style words of a target t: its excess words (found above, on this "
           f"corpus) whose annotation is exactly `style` (annotation: {study['annotation']}; `content/style`, "
           f"`style/content`, `other` and `content` are left out, as in the study). For each cut-off c "
           f"({', '.join(f'{c:g}' for c in cutoffs)}): the style words with p < c in t, the share P of abstracts "
           "containing at least one of them, smoothed (n + 1) / (N + 1), the counterfactual "
           "q = P(t−2) + 2 · max(0, P(t−2) − P(t−3)) and Δ(c) = P(t) − q. Each Δ(c) is a lower bound on the share "
           "of abstracts of t processed with an LLM; the study reports the largest (0.136 at c = 0.02 for 2024 "
           "PubMed, a label in its Figure; it computes no maximum in code). It is a lower bound under the study's "
           "argument: the style words' rise beyond their trend comes from LLM-assisted writing. Before such tools "
           "(the study: from 2023 on) or in small periods, a positive Δ measures other changes and noise.", "",
           f"The study's headline number, \"at least 13.5%\" of 2024 PubMed abstracts, is its subgroup δ of all "
           f"abstracts: the mean of Δ of the rare style words (p < {rare:g}) and Δ of its ten fixed common words "
           f"({', '.join(STUDY_COMMON_WORDS)}): (0.135947 + 0.133807) / 2 = 0.134877 (`03-figures.ipynb` cell 28), "
           "not the maximum over cut-offs."
           + ("" if tuple(common) == STUDY_COMMON_WORDS else
              f" Here the common words are the {len(common)} of --common-words: {', '.join(common)}."), ""]
    summary = study["summary"]
    bounds = study["bounds"]
    for t, info in study["style"].items():
        counts = info["annotation_counts"]
        kinds = ", ".join(f"{k} {v:,}" for k, v in counts.items()) or "none"
        out += [f"### {t}", "", f"Excess words of {t} by annotation: {kinds}. Style group `style_{t}`: "
                f"{len(info['words']):,} words.", ""]
        row = summary[summary["target"] == t] if not summary.empty else summary
        tb = bounds[bounds["target"] == t] if not bounds.empty else bounds
        if row.empty or tb.empty:
            out += ["No style excess words: no bound.", ""]
            continue
        r = row.iloc[0]
        out += ["| cut-off c | style words with p < c | abstracts with any | P | q | Δ(c) |",
                "|---:|---:|---:|---:|---:|---:|"]
        for _, b in tb.iterrows():
            if b["n_words"] == 0:
                out.append(f"| {b['cutoff']:g} | 0 | – | – | – | – (no word) |")
                continue
            best = r["max_cutoff"] is not None and b["cutoff"] == r["max_cutoff"]
            delta = f"**{b['delta']:.4f}**" if best else f"{b['delta']:.4f}"
            out.append(f"| {b['cutoff']:g} | {int(b['n_words']):,} | {int(b['n_with']):,} of {int(b['n_docs']):,} | "
                       f"{_pct(b['p'], 2)} | {_pct(b['q'], 2)} | {delta} |")
        out.append("")
        if r["max_cutoff"] is not None and not _isnan(r["max_delta"]):
            best = (f"max Δ(c) = {r['max_delta']:.4f} ({r['max_delta'] * 100:.1f}%), reached at "
                    f"c = {r['max_cutoff']:g} ({int(r['max_words']):,} style words)")
            out += [f"**Lower bound on LLM-processed abstracts in {t}: {best}.**" if not before_llm_tools(t) else
                    f"Style words' excess in {t}: {best}. {_PRE_LLM}", ""]
        if _isnan(r["delta_study"]):
            out += [f"The study's mean of the rare and common words' Δ is not defined for {t}: no style word has "
                    f"p < {rare:g}.", ""]
        else:
            out += [f"The study's subgroup δ of all abstracts (its headline quantity): (Δ_rare + Δ_common) / 2 = "
                    f"({_num(r['delta_rare'])} + {_num(r['delta_common'])}) / 2 = **{r['delta_study']:.4f}** "
                    f"({int(r['rare_words']):,} rare style words with p < {rare:g}; {len(common)} common words).",
                    ""]
        if f"bound_{t}" in figures:
            out += [f"![Lower bound over frequency cut-offs, {t}]({figures[f'bound_{t}']})", ""]
    return out


def _num(x: float) -> str:
    return f"{x:.4f}" if x >= 0 else f"({x:.4f})"


def _isnan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _clean_section(clean: dict) -> list[str]:
    n, changed = clean.get("abstracts", 0), clean.get("changed", 0)
    out = ["## Clean-up (`--clean`)", "",
           "Before counting, every abstract went through the study's clean-up (llm-excess-vocab "
           "`02-preprocess-and-count.py`, `cleanup_abstracts_inplace`, lines 43–357): abstracts whose title marks "
           "an erratum, correction or retraction become empty (they still count in their period's total), then "
           "the study's boilerplate rules run in its order (copyright lines, publisher notes, *Graphical "
           "abstract* and similar tails, section headings of structured abstracts when the text has both RESULTS "
           "and CONCLUSIONS, citation tails, ...). Each rule edits only the texts that contain its literal "
           "selector. The rules are the study's as written, side effects included: the title filter is a "
           "substring test (a title such as 'Grammatical Error Correction: A Survey' matches it too), and "
           "`^Abstract:?\\s*` also shortens a first word that begins with 'Abstract' ('Abstractions' → 'ions').",
           "",
           f"{changed:,} of {n:,} abstracts changed ({changed / n * 100 if n else 0:.2f}%)."
           + ("" if clean.get("title_column") else " The corpus has no title column: the errata filter was not "
              "applied."), ""]
    rules = clean.get("rules") or {}
    if rules:
        out += ["| rule (selector) | abstracts changed |", "|---|---:|"]
        out += [f"| `{name}` | {count:,} |" for name, count in rules.items()]
        out.append("")
    return out


def _lemma_section(lemmas: pd.DataFrame, analysis: ExcessAnalysis, top: int) -> list[str]:
    out = ["## Excess words as lemmas (`--lemmatize`)", "",
           "As the study reports them (`03-figures.ipynb` cells 19–22): only the excess words are lemmatised, "
           "after detection; counting and detection use the words as written. Lemma = British spellings made "
           "American (whole words, from `breame`), then the study's manual map (chatbots, circrnas, "
           "coronaviruses, showcased/showcases/showcasing), else the verb lemma if it differs from the word, else "
           "the noun lemma (`lemminflect` in place of NLTK's WordNet, which cannot be installed offline). A "
           "lemma's type is that of its alphabetically last word, as in the study. All lemmas are in "
           "`excess_lemmas.csv`.", "",
           "| target | excess words | unique lemmas |", "|---|---:|---:|"]
    for t, df in analysis.words.items():
        sub = lemmas[lemmas["target"] == t]
        out.append(f"| {t} | {int(df['is_excess'].sum()):,} | {sub['lemma'].nunique():,} |")
    out.append("")
    merged = lemmas[lemmas["n_words"] > 1]
    if not merged.empty:
        out += [f"Lemmas that join several excess words (largest δ first, at most {top} per target):", "",
                "| target | lemma | words | largest δ |" + (" type |" if "type" in lemmas.columns else ""),
                "|---|---|---|---:|" + ("---|" if "type" in lemmas.columns else "")]
        for t, sub in merged.groupby("target", sort=False):
            for _, r in sub.sort_values("max_delta", ascending=False).head(top).iterrows():
                out.append(f"| {t} | {_md_word(r['lemma'])} | {_md_word(r['words'])} | {_pp(r['max_delta'])} |"
                           + (f" {'–' if pd.isna(r['type']) else r['type']} |" if "type" in lemmas.columns
                              else ""))
        out.append("")
    return out


def _subgroup_section(sub: pd.DataFrame, group: str, t: str, by: Optional[str], figure: Optional[str],
                      study: dict) -> list[str]:
    min_size = sub.attrs.get("min_group_size", 0)
    window, requested = sub.attrs.get("window") or [], sub.attrs.get("window_requested") or []
    win = study.get("window")
    span = f"{requested[0]}–{requested[-1]}" if requested else "–"
    checked = "" if window == requested else (f"; before the corpus, so checked in {window[0]}–{window[-1]}"
                                              if window else "; all before the corpus, so not checked")
    rule = sub.attrs.get("delta_rule", "group")
    unmeasurable = sub.attrs.get("unmeasurable", 0)
    as_study = tuple(win or ()) == STUDY_SIZE_WINDOW and min_size == STUDY_MIN_GROUP_SIZE
    out = [f"### δ of `{group}` by {by or 'subgroup'} ({t})", "",
           f"Subgroups with at least {min_size:,} abstracts in each period of "
           + (format_window(win).replace(":", " … ") + " " if win else "") + f"({span}{checked})"
           + (", as the study keeps a subgroup (2018–2023 for 2024: `03-figures.ipynb` cell 28)" if as_study else
              f" (the study: {STUDY_MIN_GROUP_SIZE} abstracts in each of t-6 … t-1)")
           + f": {len(sub):,} (left out: {sub.attrs.get('skipped', 0):,}"
           + (f", of which {unmeasurable:,} large enough but without abstracts in one of "
              f"{', '.join(reversed([t, *earlier_periods(t)]))}, the periods its δ is measured on"
              if unmeasurable else "") + ").",
           ""]
    if rule == "study":
        out += ["δ is the study's subgroup δ (`--subgroup-delta study`): the mean of Δ of the rare style words "
                f"(p < {study.get('rare_max_freq', 0.02):g} in {t} over the whole corpus) and Δ of the study's "
                "common words, each on the subgroup's abstracts. As δ of style words, it is a lower bound on the "
                "subgroup's share of LLM-processed abstracts" + (f" from {LLM_TOOLS_FROM} on; {t} lies before LLM "
                                                                 "writing tools, so here it bounds no LLM use."
                                                                 if before_llm_tools(t) else "."), ""]
    else:
        style_group = group in (study.get("style_groups") or []) or (
            bool(study.get("annotation")) and group.startswith("style_"))  # built-in only with --group style
        out += ["δ is the group's own δ on the subgroup's abstracts (`--subgroup-delta group`"
                + ("" if study.get("subgroup_delta", "study") == "group" or not study.get("annotation") else
                   "; the study's rare/common mean applies to `--group style` only") + ")"
                + (": not a lower bound on LLM use (not a group of style words)." if not style_group else
                   f": style words, but {t} lies before LLM writing tools ({LLM_TOOLS_FROM}), so it bounds no "
                   "LLM use." if before_llm_tools(t) else
                   ", a lower bound on the subgroup's share of LLM-processed abstracts (style words)."), ""]
    if sub.empty:
        if unmeasurable and unmeasurable == sub.attrs.get("skipped", 0):
            return out + ["No subgroup has abstracts in every period δ is measured on.", ""]
        return out + ["No subgroup is large enough; lower `--min-group-size` to see smaller ones.", ""]
    if rule == "study":
        out += [f"| {by or 'subgroup'} | abstracts in {t} | Δ rare | Δ common | δ |", "|---|---:|---:|---:|---:|"]
        for _, r in sub.iterrows():
            out.append(f"| {_md_word(r['subgroup'])} | {r['n_docs']:,} | {_pp(r['delta_rare'])} | "
                       f"{_pp(r['delta_common'])} | **{_pp(r['delta'])}** |")
    else:
        out += [f"| {by or 'subgroup'} | abstracts in {t} | p | q | δ | r |", "|---|---:|---:|---:|---:|---:|"]
        for _, r in sub.iterrows():
            out.append(f"| {_md_word(r['subgroup'])} | {r['n_docs']:,} | {_pct(r['p'], 2)} | {_pct(r['q'], 2)} | "
                       f"{_pp(r['delta'])} | {r['ratio']:.2f} |")
    out.append("")
    if figure:
        out += [f"![δ by {by}, {t}]({figure})", ""]
    return out


def write_report(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
