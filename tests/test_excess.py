"""The excess-word analysis against a hand computation of the published formulas on a small count table."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from corpusmap.errors import CorpusmapError, UsageProblem
from corpusmap.excess import (CountTable, Criteria, PresenceTable, analyse, analyse_words, check_target,
                              default_targets, group_excess, parse_word_list, subgroup_table)

YEARS = ["2020", "2021", "2022", "2023", "2024"]
TOTALS = [100_000, 110_000, 120_000, 130_000, 140_000]
# word: counts in 2020..2024
COUNTS = {
    "delves":    [30, 28, 35, 40, 900],       # rare word that rose: excess by the ratio rule
    "pandemic":  [9_000, 30_000, 20_000, 10_000, 12_000],  # declining 2021 -> 2022: q = p_2022, no decline projected
    "novelword": [0, 0, 0, 40, 200],          # absent early: the smoothing (+1) keeps q > 0
    "rarest":    [0, 0, 0, 5, 400],           # p in 2023 below 1e-4: not analysed in 2024
    "fading":    [500, 400, 300, 200, 10],   # falls below 1e-4 only in 2024 -> not analysed
    "common":    [40_000, 44_000, 48_000, 52_000, 58_000],  # frequent: excess by the gap rule (delta > 0.01)
    "steady":    [1_000, 1_100, 1_200, 1_300, 1_400],
    "abc":       [10, 10, 10, 100, 5_000],     # three letters: never analysed
    "covid19":   [0, 0, 0, 100, 5_000],         # digits: never analysed
    "naïve":     [10, 10, 10, 100, 5_000],     # not a-z: never analysed
}


def table() -> CountTable:
    words = sorted(COUNTS)
    return CountTable(np.array(words, dtype=object), YEARS, np.array([COUNTS[w] for w in words]),
                      np.array(TOTALS))


def by_hand(word: str, target: str = "2024"):
    """The published formulas, written out with plain floats."""
    j = YEARS.index(target)
    p = [(COUNTS[word][k] + 1) / (TOTALS[k] + 1) for k in range(len(YEARS))]
    pt, p1, p2, p3 = p[j], p[j - 1], p[j - 2], p[j - 3]
    q = p2 + max(0, p2 - p3) * 2
    delta, r = pt - q, pt / q
    excess = (math.log10(r) > math.log10(2) - (math.log10(pt) + 4) * (math.log10(2) / 4)) or delta > 0.01
    analysed = pt >= 1e-4 and p1 >= 1e-4
    return {"p": pt, "q": q, "delta": delta, "ratio": r, "is_excess": excess, "analysed": analysed,
            "p_prev2": p2, "p_prev3": p3}


def test_delta_ratio_and_decision_equal_hand_computation():
    df = analyse_words(table(), "2024").set_index("word")
    analysed = {w for w in COUNTS if w.isascii() and w.isalpha() and len(w) >= 4 and by_hand(w)["analysed"]}
    assert set(df.index) == analysed == {"delves", "pandemic", "novelword", "common", "steady"}
    for word in analysed:
        hand = by_hand(word)
        row = df.loc[word]
        for key in ("p", "q", "delta", "ratio"):
            assert row[key] == hand[key], (word, key)       # exact: same formulas, same float operations
        assert bool(row["is_excess"]) == hand["is_excess"], word
        assert row["count"] == COUNTS[word][-1]
    assert df.loc["delves", "is_excess"] and df.loc["delves", "delta"] < 0.01          # by the ratio rule
    assert df.loc["common", "is_excess"] and df.loc["common", "ratio"] < 1.2           # by the gap rule
    assert not df.loc["steady", "is_excess"]


def test_declining_trend_is_not_projected_down():
    row = analyse_words(table(), "2024").set_index("word").loc["pandemic"]
    assert row["p_prev3"] > row["p_prev2"]
    assert row["q"] == row["p_prev2"]                       # max(0, p_{t-2} - p_{t-3}) = 0
    hand = by_hand("pandemic")
    assert hand["p_prev2"] - (hand["p_prev3"] - hand["p_prev2"]) * 2 < hand["q"]  # a naive trend would go lower


def test_smoothing_for_words_absent_in_early_periods():
    row = analyse_words(table(), "2024").set_index("word").loc["novelword"]
    assert row["p_prev2"] == 1 / (TOTALS[2] + 1) and row["p_prev3"] == 1 / (TOTALS[1] + 1)
    assert row["q"] == 1 / 120_001      # the smoothed zero even falls as totals grow: no decline projected
    assert np.isfinite(row["ratio"]) and row["is_excess"]


def test_frequency_filter_in_t_and_t_minus_1():
    df = analyse_words(table(), "2024").set_index("word")
    assert by_hand("rarest")["p"] >= 1e-4 and (5 + 1) / (TOTALS[3] + 1) < 1e-4
    assert "rarest" not in df.index                    # fails in t-1
    assert (10 + 1) / (TOTALS[4] + 1) < 1e-4 and (200 + 1) / (TOTALS[3] + 1) >= 1e-4
    assert "fading" not in df.index                    # fails in t
    relaxed = analyse_words(table(), "2024", Criteria(min_freq=1e-5)).set_index("word")
    assert {"rarest", "fading"} <= set(relaxed.index)


def test_other_targets_and_configurable_thresholds():
    df = analyse_words(table(), "2023").set_index("word")
    for word in df.index:
        hand = by_hand(word, "2023")
        assert df.loc[word, "delta"] == hand["delta"] and bool(df.loc[word, "is_excess"]) == hand["is_excess"]
    strict = analyse_words(table(), "2024", Criteria(min_delta=0.5, min_ratio=1e4)).set_index("word")
    assert not strict["is_excess"].any()
    anything = analyse_words(table(), "2024", Criteria(letters_only=False, min_letters=3)).set_index("word")
    assert {"abc", "covid19", "naïve"} <= set(anything.index)


def test_ranks_and_analysis_of_default_targets():
    result = analyse(table())
    assert result.targets == ["2023", "2024"]
    df = result.words["2024"]
    assert df["delta"].is_monotonic_decreasing
    assert df.loc[df["rank_delta"] == 1, "word"].item() == df["word"].iloc[0]
    assert df.loc[df["rank_ratio"] == 1, "word"].item() == df.loc[df["ratio"].idxmax(), "word"]
    assert result.excess_words("2024") == df[df["is_excess"]]["word"].tolist() == ["common", "delves", "novelword"]
    assert set(result.excess_words("2024", max_freq=0.01)) == {"delves", "novelword"}
    summary = result.summary().set_index("target")
    assert summary.loc["2024", "excess_words"] == int(df["is_excess"].sum())


def test_targets_need_three_consecutive_earlier_periods():
    periods = ["2016", "2017", "2018", "2019", "2021", "2022", "2023", "2024"]
    assert default_targets(periods) == ["2019", "2024"]
    assert check_target(periods, "2019") == ["2018", "2017", "2016"]
    with pytest.raises(CorpusmapError, match=r"2018 needs the three periods before it .*missing: 2015"):
        check_target(periods, "2018")
    with pytest.raises(CorpusmapError, match=r"missing: 2020"):
        check_target(periods, "2022")
    with pytest.raises(CorpusmapError, match="not in the counts"):
        check_target(periods, "2030")
    with pytest.raises(CorpusmapError, match="is a month"):
        check_target(periods, "2024-01")
    with pytest.raises(CorpusmapError, match="three consecutive earlier periods.*count by month: --period month"):
        analyse(CountTable(np.array(["word"], dtype=object), ["2020", "2021"], np.array([[1, 2]]),
                           np.array([10, 10])))
    months = ["2024-11", "2024-12", "2025-01", "2025-02"]
    assert default_targets(months) == ["2025-02"]


def test_figures_space_periods_as_time_does(monkeypatch, tmp_path):
    """A year missing from the data leaves a gap on the x axis of the word-trend and group figures (not an even
    step), and the dashed counterfactual ends at q."""
    from corpusmap.excess import report

    periods = ["2016", "2017", "2018", "2019", "2021", "2022", "2023", "2024"]
    rng = np.random.default_rng(0)
    counts = rng.integers(100, 200, size=(2, len(periods)))
    counts[0, -1] = 2_000  # "delves" jumps in 2024
    table = CountTable(np.array(["delves", "steady"], dtype=object), periods, counts, np.full(len(periods), 10_000))
    words = analyse_words(table, "2024")
    figures = []
    monkeypatch.setattr(report, "save_figure", lambda fig, path: figures.append(fig) or path)
    assert report.plot_word_trends(tmp_path / "w.png", table, words, "2024") is not None
    ax = figures[0].axes[0]
    line, dashed = ax.lines[0], ax.lines[1]
    assert line.get_xdata().tolist() == [float(p) for p in periods]
    row = words.set_index("word").loc["delves"]
    assert dashed.get_xdata().tolist() == [2021, 2022, 2023, 2024]
    assert dashed.get_ydata()[-1] == pytest.approx(row["q"] * 100)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2016", "2018", "2021", "2023"]
    assert [float(x) for x in ax.get_xticks()] == [2016, 2018, 2021, 2023]

    presence = PresenceTable(pd.DataFrame({"group": "g", "subgroup": None, "period": periods, "n_with": counts[0],
                                           "n_docs": 10_000}), {"g": ["delves"]})
    assert report.plot_groups(tmp_path / "g.png", presence, ["g"]) is not None
    assert figures[1].axes[0].lines[0].get_xdata().tolist() == [float(p) for p in periods]


def _presence() -> PresenceTable:
    rows = []
    n_docs = {"2020": 1000, "2021": 1100, "2022": 1200, "2023": 1300}
    with_any = {"2020": 100, "2021": 90, "2022": 120, "2023": 400}
    for p in n_docs:
        rows.append(("style", None, p, with_any[p], n_docs[p]))
        rows.append(("style", "big", p, with_any[p] - 20, n_docs[p] - 600))
        rows.append(("style", "small", p, 20, 600 if p != "2021" else 250))
        rows.append(("style", "tiny", p, 0, 10))
    frame = pd.DataFrame(rows, columns=["group", "subgroup", "period", "n_with", "n_docs"])
    return PresenceTable(frame, {"style": ["delves", "crucial"]}, "journal")


def test_group_delta_equals_hand_computation():
    res = group_excess(_presence(), "style", "2023")
    p = {y: (w + 1) / (n + 1) for y, w, n in [("2020", 100, 1000), ("2021", 90, 1100), ("2022", 120, 1200),
                                              ("2023", 400, 1300)]}
    q = p["2021"] + max(0, p["2021"] - p["2020"]) * 2
    assert res["p"] == p["2023"] and res["q"] == q == p["2021"]      # 2020 -> 2021 declined
    assert res["delta"] == p["2023"] - q and res["ratio"] == p["2023"] / q
    assert res["n_with"] == 400 and res["n_docs"] == 1300


def test_a_group_in_nearly_every_abstract_is_projected_as_the_study_does_above_one():
    """q is the study's trend, uncapped (03-figures.ipynb: ``f[-3] + np.maximum(0, f[-3] - f[-4]) * 2``): a group
    of common words in nearly every abstract can be projected above all of them, and its δ is that of the study."""
    n_docs = np.array([1000, 1000, 1000, 1000])
    with_any = np.array([800, 950, 990, 999])      # 2020..2023
    f = (with_any + 1) / (n_docs + 1)
    q = f[-3] + np.maximum(0, f[-3] - f[-4]) * 2   # about 1.25
    frame = pd.DataFrame([("common", None, str(2020 + i), with_any[i], n_docs[i]) for i in range(4)],
                         columns=["group", "subgroup", "period", "n_with", "n_docs"])
    res = group_excess(PresenceTable(frame, {"common": ["the"]}, "journal"), "common", "2023")
    assert q > 1.2 and res["q"] == pytest.approx(q) and res["delta"] == pytest.approx(f[-1] - q)
    assert res["ratio"] == pytest.approx(f[-1] / q)


def test_subgroups_need_the_minimum_size_in_all_four_periods():
    sub = subgroup_table(_presence(), "style", "2023", min_group_size=300)
    assert sub["subgroup"].tolist() == ["big"]           # small has 250 in 2021, tiny 10
    assert sub.attrs["skipped"] == 2
    both = subgroup_table(_presence(), "style", "2023", min_group_size=10)
    assert both["delta"].is_monotonic_decreasing and set(both["subgroup"]) == {"big", "small", "tiny"}


def test_word_lists(tmp_path):
    assert parse_word_list("Delves, showcasing,underscores") == ["delves", "showcasing", "underscores"]
    path = tmp_path / "style.txt"
    path.write_text("# style words\ndelves\ncrucial  # common\n\nnotably, intricate\n")
    assert parse_word_list(str(path)) == ["delves", "crucial", "notably", "intricate"]
    with pytest.raises(UsageProblem):
        parse_word_list(str(tmp_path / "missing.txt"))


def test_small_periods_are_named_smallest_first():
    """Of many small periods the note names the eight smallest (the partial last month among them) and counts the
    rest, in period order."""
    from corpusmap.excess.stage import _small_period_notes

    periods = [f"2025-{m:02d}" for m in range(1, 13)]
    totals = np.array([5000, 4000, 4500, 4700, 4800, 4900, 5100, 5200, 5300, 5400, 5500, 300])
    table = CountTable(np.array(["w"], dtype=object), periods, np.ones((1, 12), dtype=np.int64), totals)
    (note,) = _small_period_notes(table, periods[3:], Criteria())
    smallest = sorted(p for _, p in sorted(zip(totals[2:], periods[2:]))[:8])  # t and t-1 of every target
    assert note.startswith(", ".join(f"{p} ({dict(zip(periods, totals))[p]:,})" for p in smallest) + " and 2 more:")
    assert "2025-12 (300)" in note
