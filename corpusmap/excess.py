"""Excess vocabulary: which words became more frequent in a period than their trend predicts.

The definitions are those of Kobak, González-Márquez, Horvát & Lause (Science Advances 2025), on the binary
document frequencies of :mod:`corpusmap.vocab`. For a target period t:

- smoothed frequency ``p_t = (count_t + 1) / (total_t + 1)``;
- analysed words: letters a–z only, at least 4 of them, ``p >= 1e-4`` in t and in t−1;
- counterfactual ``q = p_{t−2} + max(0, p_{t−2} − p_{t−3}) · 2`` (the trend of t−3 → t−2 carried two periods on,
  never a projected decline);
- excess gap ``δ = p_t − q``, excess ratio ``r = p_t / q``;
- excess word: ``δ > 0.01`` or ``log10 r > log10 2 − (log10 p_t + 4) · log10(2) / 4``.

Periods are consecutive years or months; t−1, t−2 and t−3 must all be in the counts.
For a group of words the same p, q and δ are computed on the share of abstracts containing at least one word of
the group; δ of a group of style words is a lower bound on the share of abstracts processed with an LLM.
"""
from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
import pandas as pd

from corpusmap.errors import CorpusmapError, UsageProblem
from corpusmap.vocab import CountTable, PresenceTable, period_kind_of, shift_period

#: the study's alphabet rule: only these letters
_LETTERS = re.compile(r"^[a-z]+$")


@dataclass(frozen=True)
class ExcessParams:
    """The study's parameters (defaults as published)."""

    min_freq: float = 1e-4        # analysed words: p >= min_freq in t and in t-1
    min_letters: int = 4          # ... of at least this many letters
    letters_only: bool = True     # ... made only of the letters a-z (False: any token)
    min_delta: float = 0.01       # excess if delta > min_delta ...
    min_ratio: float = 2.0        # ... or log10 r > log10 R - (log10 p - log10 A) * log10(R) / -log10(A)
    ratio_anchor: float = 1e-4    # A: where the ratio threshold equals R (it falls to 1 at p = 1)
    trend_steps: float = 2.0      # q = p_{t-2} + max(0, p_{t-2} - p_{t-3}) * trend_steps

    def as_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------- the formulas

def smoothed_frequency(counts, totals) -> np.ndarray:
    """``(count + 1) / (total + 1)``."""
    return (np.asarray(counts, dtype=float) + 1) / (np.asarray(totals, dtype=float) + 1)


def counterfactual(p_t2, p_t3, trend_steps: float = 2.0) -> np.ndarray:
    """``q = p_{t−2} + max(0, p_{t−2} − p_{t−3}) · 2``: linear trend, never a projected decline."""
    p_t2, p_t3 = np.asarray(p_t2, dtype=float), np.asarray(p_t3, dtype=float)
    return p_t2 + np.maximum((p_t2 - p_t3) * trend_steps, 0)


def excess_mask(p_t, q, params: ExcessParams = ExcessParams()) -> np.ndarray:
    """The study's criterion: ``δ > 0.01`` or ``log10 r > log10 2 − (log10 p_t + 4) · log10(2) / 4``."""
    p_t, q = np.asarray(p_t, dtype=float), np.asarray(q, dtype=float)
    log_r = np.log10(p_t / q)
    log_big_r = np.log10(params.min_ratio)
    log_anchor = np.log10(params.ratio_anchor)        # -4 for 1e-4
    threshold = log_big_r - (np.log10(p_t) - log_anchor) * (log_big_r / -log_anchor)
    return (log_r > threshold) | ((p_t - q) > params.min_delta)


def allowed_words(words: Sequence[str], params: ExcessParams = ExcessParams()) -> np.ndarray:
    """Boolean mask of words the analysis looks at (a–z only, at least ``min_letters`` long)."""
    words = np.asarray(words, dtype=object)
    if params.letters_only:
        ok = np.fromiter((bool(_LETTERS.match(w)) for w in words), dtype=bool, count=len(words))
    else:
        ok = np.ones(len(words), dtype=bool)
    lengths = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
    return ok & (lengths >= params.min_letters)


# ----------------------------------------------------------------------------------------- targets

def earlier_periods(target: str, n: int = 3) -> list[str]:
    """``[t−1, t−2, ..., t−n]``."""
    return [shift_period(str(target), -k) for k in range(1, n + 1)]


def check_target(periods: Sequence[str], target: str) -> list[str]:
    """``[t−1, t−2, t−3]``; CorpusmapError naming what is missing when the target cannot be analysed."""
    target = str(target).strip()
    periods = list(periods)
    kind = _kind(periods)
    try:
        target_kind = period_kind_of(target)
    except CorpusmapError:
        raise CorpusmapError(f"target {target!r} is not a period; the counts have {_span(periods)}") from None
    if target_kind != kind:
        raise CorpusmapError(f"target {target} is a {target_kind} but the counts are per {kind} ({_span(periods)})")
    if target not in periods:
        raise CorpusmapError(f"target {target} is not in the counts ({_span(periods)})")
    before = earlier_periods(target)
    missing = [p for p in before if p not in periods]
    if missing:
        raise CorpusmapError(
            f"target {target} needs counts for the three periods before it ({', '.join(before)}); missing: "
            f"{', '.join(missing)} (the counts have {_span(periods)})")
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
        raise CorpusmapError(
            f"no period has the three consecutive earlier periods the counterfactual needs; the counts have "
            f"{_span(periods, full=True)}")
    return chosen


def _kind(periods: Sequence[str]) -> str:
    return period_kind_of(periods[0]) if periods else "year"


def _span(periods: Sequence[str], full: bool = False) -> str:
    periods = list(periods)
    if not periods:
        return "no periods"
    if full and len(periods) <= 24:
        return "periods " + ", ".join(periods)
    return f"periods {periods[0]}–{periods[-1]}" if len(periods) > 1 else f"period {periods[0]}"


# ------------------------------------------------------------------------------------------ words

def analyse_words(table: CountTable, target: str, params: ExcessParams = ExcessParams()) -> pd.DataFrame:
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
    params: ExcessParams
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
                         "top_by_delta": ", ".join(df[df["is_excess"]]["word"].head(5)),
                         "top_by_ratio": ", ".join(df[df["is_excess"]].sort_values("ratio", ascending=False)
                                                   ["word"].head(5))})
        return pd.DataFrame(rows)


def analyse(table: CountTable, targets: Optional[Iterable[str]] = None,
            params: ExcessParams = ExcessParams()) -> ExcessAnalysis:
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


# -------------------------------------------------------------------------------------- word groups

def group_excess(presence: PresenceTable, group: str, target: str, subgroup: Optional[str] = None,
                 params: ExcessParams = ExcessParams()) -> dict:
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


def group_table(presence: PresenceTable, targets: Sequence[str], params: ExcessParams = ExcessParams(),
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


def subgroup_table(presence: PresenceTable, group: str, target: str, min_group_size: int = 300,
                   params: ExcessParams = ExcessParams()) -> pd.DataFrame:
    """δ of ``group`` in ``target`` for every subgroup with at least ``min_group_size`` abstracts in each of
    t, t−1, t−2 and t−3; sorted by δ (descending). ``skipped`` in ``attrs``: subgroups left out for size."""
    needed = [str(target), *earlier_periods(target)]
    df = presence.frame
    sub = df[(df["group"] == group) & df["subgroup"].notna() & df["period"].isin(needed)]
    sizes = sub.pivot_table(index="subgroup", columns="period", values="n_docs", aggfunc="sum", fill_value=0)
    sizes = sizes.reindex(columns=needed, fill_value=0)
    big = sizes.index[(sizes >= min_group_size).all(axis=1)]
    rows = [group_excess(presence, group, target, s, params) for s in big]
    out = pd.DataFrame(rows, columns=["group", "subgroup", "target", "n_words", "n_with", "n_docs", "min_docs",
                                      "p", "p_prev1", "p_prev2", "p_prev3", "q", "delta", "ratio"])
    out = out.sort_values(["delta", "subgroup"], ascending=[False, True], kind="stable").reset_index(drop=True)
    out.attrs["skipped"] = int(len(sizes) - len(big))
    out.attrs["min_group_size"] = int(min_group_size)
    return out


def parse_word_list(spec: str) -> list[str]:
    """Words from ``w1,w2,...`` or from a file (one word per line or comma/space separated; ``#`` comments)."""
    from pathlib import Path

    path = Path(spec)
    if path.is_file():
        lines = [line.split("#", 1)[0] for line in path.read_text(encoding="utf-8").splitlines()]
        raw = re.split(r"[\s,;]+", " ".join(lines))
    else:
        if "," not in spec and ("/" in spec or spec.endswith((".txt", ".csv"))):
            raise UsageProblem(f"word list file {spec} does not exist")
        raw = spec.split(",")
    words = list(dict.fromkeys(w.strip().lower() for w in raw if w.strip()))
    if not words:
        raise UsageProblem(f"no words in {spec!r}")
    return words


# --------------------------------------------------------------------------------------- the whole run

@dataclass
class ExcessRun:
    """What :func:`run_excess` made: the analysis, group results and the paths written."""

    analysis: ExcessAnalysis
    presence: Optional[PresenceTable]
    groups: pd.DataFrame
    subgroups: dict
    manifest: dict
    out_dir: object


def run_excess(out_dir, *, open_batches: Optional[Callable[[], Iterable]] = None, counts_path=None,
               source: str = "", source_info: Optional[dict] = None, targets: Optional[Sequence[str]] = None,
               params: ExcessParams = ExcessParams(), scan_options: Optional[dict] = None,
               group_words: Optional[dict] = None, excess_group: bool = False,
               group_max_freq: Optional[float] = None, by: Optional[str] = None, min_group_size: int = 300,
               top: int = 20, figures: bool = True, csv: bool = True, argv: Optional[Sequence[str]] = None
               ) -> ExcessRun:
    """Count (or read counts), analyse every target, measure word groups, write tables, figures, report and
    manifest into ``out_dir``.

    ``open_batches()`` must return a fresh iterable of batches each time it is called (a second pass over the
    corpus measures the excess-word groups). ``counts_path``: analyse a count table made elsewhere; word groups
    and subgroups still need ``open_batches``.
    """
    from pathlib import Path

    from corpusmap import excess_report as rep
    from corpusmap.atomic import write_json
    from corpusmap.vocab import read_counts, scan_corpus

    started = time.time()
    out_dir = Path(out_dir)
    scan_options = dict(scan_options or {})
    group_words = {k: list(v) for k, v in (group_words or {}).items()}
    if by and not group_words and not excess_group:
        excess_group = True          # subgroups need a word group: the excess words of each target
    wants_presence = bool(group_words or excess_group or by)
    if open_batches is None and counts_path is None:
        raise UsageProblem("give the abstracts (INPUT or RUN) or a count table (--counts)")
    if wants_presence and open_batches is None:
        raise UsageProblem("word groups (--group, --group-words) and --by need the abstracts themselves "
                           "(per-abstract presence), not only a count table: give INPUT or RUN as well")
    for t in targets or ():
        period_kind_of(str(t).strip())  # a malformed target fails before any counting
    notes: list[str] = []
    scans: list[dict] = []
    presence = None

    # 1. counts (and the presence of user groups, in the same pass when counting)
    if counts_path is not None:
        table = read_counts(counts_path)
        count_source = str(counts_path)
        if open_batches is not None:
            notes.append(f"Word counts come from {counts_path}; word groups were measured on the abstracts.")
            scan_options["period"] = table.period_kind   # groups per the same kind of period as the counts
    else:
        result = scan_corpus(open_batches(), words=True, groups=group_words or None,
                             by=by if group_words else None, **scan_options)
        table, presence = result.counts, result.presence
        scans.append({"pass": "words" + (" + groups" if group_words else ""), **result.stats})
        count_source = source
    period = table.period_kind

    # 2. analysis
    analysis = analyse(table, targets, params)
    targets = analysis.targets

    small = [p for t in targets for p in (t, shift_period(t, -1))
             if table.total(p) + 1 < 1 / params.min_freq] if params.min_freq > 0 else []
    if small:
        small = sorted(set(small))
        notes.append(
            f"{', '.join(small[:8])}{' ...' if len(small) > 8 else ''}: fewer than {1 / params.min_freq - 1:,.0f} "
            f"abstracts, so even an absent word has a smoothed frequency 1/(n+1) above --min-freq "
            f"{params.min_freq:g}: every word passes the frequency filter and small counts dominate; read these "
            "periods with care.")

    # 3. word groups
    groups_for: dict[str, list[str]] = {t: list(group_words) for t in targets}
    all_group_words = dict(group_words)
    if excess_group:
        extra: dict[str, list[str]] = {}
        for t in targets:
            words = analysis.excess_words(t, group_max_freq)
            name = f"excess_{t}" + (f"_below_{group_max_freq:g}" if group_max_freq is not None else "")
            if not words:
                notes.append(f"{t} has no excess words" + (f" below frequency {group_max_freq:g}"
                                                            if group_max_freq is not None else "")
                             + ": no excess-word group for it.")
                continue
            extra[name] = words
            groups_for[t].append(name)
        all_group_words.update(extra)
        need = dict(extra)
        if presence is None:      # user groups not measured yet (counts came from a table)
            need.update(group_words)
        if need:
            result = scan_corpus(open_batches(), words=False, groups=need, by=by, **scan_options)
            scans.append({"pass": "groups", **result.stats})
            presence = _merge_presence(presence, result.presence)
    elif wants_presence and presence is None:
        result = scan_corpus(open_batches(), words=False, groups=group_words, by=by, **scan_options)
        scans.append({"pass": "groups", **result.stats})
        presence = result.presence
    for name, words in group_words.items():
        unusable = [w for w in words if not _TOKEN_FULL.match(w)]
        if unusable:
            notes.append(f"Group `{name}`: {', '.join(unusable[:5])} can never match a token "
                         "(tokens are runs of 2+ letters, digits or underscores).")
    groups_df = group_table(presence, targets, params, groups_for) if presence is not None else pd.DataFrame()
    subgroups: dict = {}
    if by and presence is not None:
        for t in targets:
            for g in groups_for[t]:
                subgroups[(g, t)] = subgroup_table(presence, g, t, min_group_size, params)

    # 4. outputs
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if counts_path is None:
        written += list(table.write(out_dir, csv=csv).values())
    for t, df in analysis.words.items():
        written += rep.write_table(df, out_dir / f"excess_{rep.safe_name(t)}", csv)
    excess_all = pd.concat([df[df["is_excess"]].assign(target=t) for t, df in analysis.words.items()],
                           ignore_index=True)
    excess_all = excess_all[["target"] + [c for c in excess_all.columns if c != "target"]]
    written += rep.write_table(excess_all, out_dir / "excess_words", csv)
    written += rep.write_table(analysis.summary(), out_dir / "summary", csv)
    if presence is not None:
        written += rep.write_table(presence.frame, out_dir / "group_presence", csv)
        if not groups_df.empty:
            written += rep.write_table(groups_df, out_dir / "groups", csv)
        if subgroups:
            sub_all = pd.concat([d.assign(target=t) for (g, t), d in subgroups.items()], ignore_index=True)
            written += rep.write_table(sub_all, out_dir / "subgroups", csv)
    figs: dict[str, str] = {}
    if figures:
        fig_dir = out_dir / "figures"
        for t, df in analysis.words.items():
            st = rep.safe_name(t)
            made = ((f"words_{t}", rep.plot_word_trends(fig_dir / f"words_{st}.png", table, df, t, 12, params=params)),
                    (f"scatter_{t}", rep.plot_delta_scatter(fig_dir / f"scatter_{st}.png", df, t, params=params)))
            for key, path in made:
                if path is not None:
                    figs[key] = str(path.relative_to(out_dir))
                    written.append(path)
        if presence is not None and presence.groups:
            path = rep.plot_groups(fig_dir / "groups.png", presence, list(presence.groups))
            if path is not None:
                figs["groups"] = str(path.relative_to(out_dir))
                written.append(path)
        for (g, t), sub in subgroups.items():
            key = f"subgroups_{rep.safe_name(g)}_{t}"
            path = rep.plot_subgroups(fig_dir / f"{key}.png", sub, g, t, by)
            if path is not None:
                figs[key] = str(path.relative_to(out_dir))
                written.append(path)
    stats = scans[0] if scans and counts_path is None else None
    if stats is not None:
        stats = {**stats, "title_column": scan_options.get("title_col")}
    report_path = out_dir / "report.md"
    manifest_path = out_dir / "manifest.json"
    files = [str(p.relative_to(out_dir)) for p in written] + ["report.md", "manifest.json"]
    text = rep.render_report(analysis, source=count_source, stats=stats, top=top, groups_df=groups_df,
                             group_words={g: all_group_words[g] for g in (presence.groups if presence else {})},
                             subgroups=subgroups, by=by, figures=figs, notes=notes, files=files)
    rep.write_report(report_path, text)
    manifest = {
        "command": "excess",
        "argv": list(argv) if argv is not None else None,
        "corpusmap_version": _version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.time() - started, 3),
        "source": {"description": source, "counts": str(counts_path) if counts_path else None,
                   **_plain(source_info or {})},
        "parameters": {**params.as_dict(), "targets": targets, "period": period,
                       "scan": {k: v for k, v in scan_options.items() if k != "progress"},
                       "group_words": group_words, "excess_group": excess_group, "group_max_freq": group_max_freq,
                       "by": by, "min_group_size": min_group_size, "top": top, "figures": figures, "csv": csv},
        "counts": {"periods": table.periods, "totals": table.totals.tolist(), "words": len(table),
                   "period_kind": table.period_kind},
        "scans": scans,
        "results": analysis.summary().to_dict(orient="records"),
        "groups": groups_df.to_dict(orient="records") if not groups_df.empty else [],
        "group_words": {g: all_group_words[g] for g in (presence.groups if presence else {})},
        "notes": notes,
        "outputs": files,
        "versions": package_versions(),
    }
    write_json(manifest_path, manifest)
    return ExcessRun(analysis, presence, groups_df, subgroups, manifest, out_dir)


def _plain(value):
    """JSON-ready copy: objects with ``as_dict()`` (reader statistics) become dicts."""
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _merge_presence(first: Optional[PresenceTable], second: PresenceTable) -> PresenceTable:
    if first is None:
        return second
    frame = pd.concat([first.frame, second.frame], ignore_index=True)
    return PresenceTable(frame, {**first.groups, **second.groups}, second.by or first.by, second.period_kind)


_TOKEN_FULL = re.compile(r"^\w\w+$")


def _version() -> str:
    from corpusmap import __version__

    return __version__


def package_versions() -> dict:
    from corpusmap.store import package_versions as versions

    return versions("pandas", "polars", "matplotlib", "click", "scikit-learn")


__all__ = [
    "ExcessParams", "ExcessAnalysis", "smoothed_frequency", "counterfactual", "excess_mask", "allowed_words",
    "analyse", "analyse_words", "check_target", "default_targets", "resolve_targets", "earlier_periods",
    "frequency_series", "group_excess", "group_table", "group_frequency_series", "subgroup_table",
    "parse_word_list", "run_excess", "ExcessRun", "package_versions",
]
