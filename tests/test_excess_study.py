"""The excess-vocabulary study's lower bound (`excess --group style`), its subgroup analysis and `--lemmatize`,
against the study's own code (berenslab/llm-excess-vocab 02-preprocess-and-count.py and 03-figures.ipynb)
re-written here in numpy on the binary document-term matrix of a corpus built for it, and end to end on real
corpora (the bundled eLife abstracts; arXiv by month where ../shared/data exists)."""
from __future__ import annotations

import collections
import json
import re

import numpy as np
import pandas as pd
import pytest

from conftest import EXAMPLE_CORPUS, cli, read_jsonl
from corpusmap.errors import UsageProblem
from corpusmap.excess import style as sty
from corpusmap.excess.analysis import subgroup_table
from corpusmap.excess.stage import ExcessParams
from corpusmap.excess.tables import PresenceTable

YEARS = np.arange(2016, 2025)
TARGET = 2024
# abstracts per year and per journal (A, B, C): B has exactly 350 in 2018-2020 (the window's small years) and 250
# in 2016-2017 (before the window: not checked); C has 150 in 2018-2020 (< 300) but enough in 2021-2024
SIZES = {2016: (500, 250, 250), 2017: (500, 250, 250), 2018: (500, 350, 150), 2019: (500, 350, 150),
         2020: (500, 350, 150), 2021: (10_000, 7_000, 3_000), 2022: (10_000, 7_000, 3_000),
         2023: (5_000, 3_500, 1_500), 2024: (7_500, 5_000, 2_499)}
# style words by their number of 2024 abstracts (14,999 in all: p = (n + 1) / 15,000). 299 gives p = 0.02 exactly:
# not below the cut-off 0.02 (the study's test is strict); 8,000 gives p > 0.5, below no cut-off
STYLE_COUNTS = {"delvea": 1, "delveb": 4, "delvec": 9, "delved": 20, "delvee": 50, "delvef": 100, "delveg": 200,
                "delveh": 299, "delvei": 600, "delvej": 1200, "delvek": 2500, "delvel": 6000, "delvem": 8000}
COMMON = ("exhibited", "crucial", "additionally", "within", "notably", "insights", "comprehensive", "across",
          "particularly", "enhancing")
ANNOTATION = {**{w: "style" for w in STYLE_COUNTS}, **{w: "style" for w in COMMON},
              "pandemic": "content", "hybridize": "style/content", "leverage": "content/style", "steady": "style",
              "others": "other"}


def _counts(n_2024: int, rng) -> dict:
    """Abstracts per year for a word that rises to ``n_2024`` in 2024 (about a fifth of that share before)."""
    share = (n_2024 + 1) / 15_000 / 5
    out = {}
    for y in YEARS:
        total = sum(SIZES[int(y)])
        out[int(y)] = int(share * total)
    out[2023] = max(1, n_2024 // 3)
    out[2024] = n_2024
    if n_2024 >= 600:                       # a rising trend 2021 -> 2022 for the frequent ones
        out[2021] = out[2022] // 2
    return out


def build_corpus(seed: int = 12):
    """(records, words, X, years, journals): X[i, j] = abstract i contains word j (the study's binary matrix)."""
    rng = np.random.default_rng(seed)
    years, journals = [], []
    for y in YEARS:
        for j, n in zip("ABC", SIZES[int(y)]):
            years += [int(y)] * n
            journals += [j] * n
    years, journals = np.array(years), np.array(journals)
    counts = {w: _counts(n, rng) for w, n in STYLE_COUNTS.items()}
    counts.update({w: _counts(2_000 + 150 * k, rng) for k, w in enumerate(COMMON)})
    counts["within"] = {int(y): int(0.3 * sum(SIZES[int(y)])) for y in YEARS}       # a common word, not excess
    counts["pandemic"] = _counts(3_000, rng)                                       # excess, content
    counts["hybridize"] = _counts(500, rng)                                        # excess, style/content
    counts["leverage"] = _counts(400, rng)                                         # excess, content/style
    counts["others"] = _counts(300, rng)                                           # excess, other
    counts["zebrafish"] = _counts(700, rng)                                        # excess, not annotated
    counts["steady"] = {int(y): int(0.1 * sum(SIZES[int(y)])) for y in YEARS}       # style, not excess
    counts["abc"] = _counts(900, rng)                                              # three letters: not analysed
    words = np.array(sorted(counts), dtype=object)
    X = np.zeros((len(years), len(words)), dtype=bool)
    for j, w in enumerate(words):
        for y in YEARS:
            pool = np.flatnonzero(years == y)
            X[rng.choice(pool, size=counts[w][int(y)], replace=False), j] = True
    records = [{"id": str(i), "title": f"Paper {i}", "abstract": " ".join(["paper", *words[X[i]]]) + ".",
                "year": int(years[i]), "journal": str(journals[i])} for i in range(len(years))]
    return records, words, X, years, journals


# ---------------------------------------------------------------- the study's code, in numpy -----------------------
def study_excess(words, X, years, target=TARGET, cutoff=1e-4):
    """02 lines 387-419: (subsetWords, ratios, diffs, current_freqs, ind) on the word columns of X."""
    counts = np.stack([X[years == y].sum(axis=0) for y in YEARS], axis=1).astype(float)
    totals = np.array([np.sum(years == y) for y in YEARS], dtype=float)
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    allowed = np.array([np.all([s in alphabet for s in w]) for w in words]) & np.array([len(w) >= 4 for w in words])
    freqs = (counts + 1) / (totals + 1)
    subset = allowed & (freqs[:, YEARS == target].ravel() >= cutoff) & (freqs[:, YEARS == target - 1].ravel()
                                                                        >= cutoff)
    projection = freqs[subset, YEARS == target - 2] + np.maximum(
        (freqs[subset, YEARS == target - 2] - freqs[subset, YEARS == target - 3]) * 2, 0)
    ratios = freqs[subset, YEARS == target] / projection
    diffs = freqs[subset, YEARS == target] - projection
    x = freqs[subset][:, YEARS == target].ravel()
    ind = np.log10(ratios) > np.log10(2) - (np.log10(x) + 4) * (np.log10(2) / 4)
    ind |= diffs > 0.01
    return subset, ratios, diffs, x, ind, totals


def study_style_words(words, X, years, word2type):
    """02 lines 421-429 (``word2type.get``: our corpus has an unannotated excess word; the study had none)."""
    subset, _, _, x, ind, totals = study_excess(words, X, years)
    chatgpt_words = np.array([w for w in words[subset][ind] if word2type.get(w) == "style"])
    chatgpt_words_f = np.array([x[ind][i] for i, w in enumerate(words[subset][ind]) if word2type.get(w) == "style"])
    return chatgpt_words, chatgpt_words_f, totals


def study_delta(f):
    """03 cell 26/28: f over the years, last = target."""
    projection = f[-3] + np.maximum(0, f[-3] - f[-4]) * 2
    return f[-1] - projection


def study_bound(words, X, years, word2type, cutoffs=sty.STUDY_CUTOFFS):
    chatgpt_words, chatgpt_words_f, totals = study_style_words(words, X, years, word2type)
    cutoff_counts = np.zeros((len(cutoffs), YEARS.size))
    for i, cutoff in enumerate(cutoffs):                          # 02 lines 434-440
        ind_words = np.isin(words, chatgpt_words[chatgpt_words_f < cutoff])
        for j, year in enumerate(YEARS):
            ind = years == year
            cutoff_counts[i, j] = np.sum(np.sum(X[ind, :][:, ind_words], axis=1) > 0)
    cutoff_freqs = (cutoff_counts + 1) / (totals + 1)              # 03 cell 26
    deltas = np.array([study_delta(f) for f in cutoff_freqs])
    n_words = [int(np.sum(chatgpt_words_f < c)) for c in cutoffs]
    return deltas, n_words, cutoff_counts, chatgpt_words, chatgpt_words_f


def study_subgroups(words, X, years, journals, word2type, rare_threshold=0.02, common=COMMON, min_size=300):
    """02 lines 445-478 and 03 cell 28 for the subgroups all + journal A/B/C."""
    chatgpt_words, chatgpt_words_f, _ = study_style_words(words, X, years, word2type)
    ind_words_common = np.isin(words, list(common))
    ind_words_rare = np.isin(words, chatgpt_words[chatgpt_words_f < rare_threshold])

    def count(subset_papers):
        group_counts = np.zeros((3, YEARS.size), dtype=int)
        for i, year in enumerate(YEARS):
            ind = subset_papers & (years == year)
            for j, ind_words in enumerate([ind_words_common, ind_words_rare]):
                group_counts[j, i] = np.sum(np.sum(X[ind, :][:, ind_words], axis=1) > 0)
            group_counts[2, i] = np.sum(ind)
        return group_counts

    out = {}
    for label, subset in [("all", np.ones(len(years), dtype=bool))] + [(j, journals == j) for j in "ABC"]:
        c = count(subset)
        delta_common = study_delta((c[0] + 1) / (c[2] + 1))
        delta_rare = study_delta((c[1] + 1) / (c[2] + 1))
        keep = bool(np.all(c[2][-7:-1] >= min_size))
        out[label] = {"delta_common": delta_common, "delta_rare": delta_rare,
                      "delta": (delta_rare + delta_common) / 2, "keep": keep, "totals": c[2]}
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    records, words, X, years, journals = build_corpus()
    path = folder / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    annotation = folder / "annotation.csv"
    pd.DataFrame({"word": list(ANNOTATION), "type": list(ANNOTATION.values()),
                  "part_of_speech": "verb"}).to_csv(annotation)                  # with the study's index column
    return {"path": path, "annotation": annotation, "words": words, "X": X, "years": years, "journals": journals,
            "folder": folder}


@pytest.fixture(scope="module")
def report(corpus):
    out = corpus["folder"] / "out"
    cli("excess", corpus["path"], "-o", out, "--target", "2024", "--group", "style", "--style-words",
        corpus["annotation"], "--by", "journal", "--no-figures", "-q", ok=True)
    return out


def test_the_corpus_is_what_the_test_says(corpus):
    X, words, years = corpus["X"], list(corpus["words"]), corpus["years"]
    in_2024 = years == 2024
    assert in_2024.sum() == 14_999
    for w, n in STYLE_COUNTS.items():
        assert X[in_2024, words.index(w)].sum() == n
    assert (STYLE_COUNTS["delveh"] + 1) / 15_000 == 0.02 and (STYLE_COUNTS["delvem"] + 1) / 15_000 > 0.5


def test_style_words_are_the_studys(corpus, report):
    word2type = dict(ANNOTATION)
    chatgpt_words, chatgpt_words_f, _ = study_style_words(corpus["words"], corpus["X"], corpus["years"], word2type)
    assert set(STYLE_COUNTS) <= set(chatgpt_words) and "within" not in chatgpt_words and "steady" not in chatgpt_words
    for excluded in ("pandemic", "hybridize", "leverage", "others", "zebrafish", "abc"):
        assert excluded not in chatgpt_words
    table = pd.read_csv(report / "excess_2024.csv", keep_default_na=False)
    excess = set(table[table["is_excess"]]["word"])
    assert {"pandemic", "hybridize", "leverage", "others", "zebrafish"} <= excess      # excess, but not style
    group = json.loads((report / "manifest.json").read_text())["group_words"]["style_2024"]
    assert sorted(group) == sorted(chatgpt_words)
    words_table = pd.read_csv(report / "excess_words.csv", keep_default_na=False).set_index("word")
    assert words_table.loc["hybridize", "annotation"] == "style/content" and words_table.loc["zebrafish",
                                                                                             "annotation"] == ""
    summary = pd.read_csv(report / "style_summary.csv").iloc[0]
    assert summary["style_words"] == len(chatgpt_words) and summary["not_annotated"] == 1
    assert summary["excess_words"] == len(excess)
    text = (report / "report.md").read_text()
    assert "1 excess words are not in the annotation" in text.replace(",", "")


def test_bound_over_cutoffs_equals_the_study_formula(corpus, report):
    deltas, n_words, cutoff_counts, _, _ = study_bound(corpus["words"], corpus["X"], corpus["years"],
                                                       dict(ANNOTATION))
    bound = pd.read_parquet(report / "style_bound.parquet")
    assert bound["cutoff"].tolist() == list(sty.STUDY_CUTOFFS)
    assert bound["n_words"].tolist() == n_words and n_words[:8] == [1, 2, 3, 4, 5, 6, 7, 9]
    assert (bound["n_words"] > 0).all()                       # every cut-off has words, as in the study
    groups = json.loads((report / "manifest.json").read_text())["group_words"]
    assert "delveh" not in groups["style_2024_below_0.02"] and "delveh" in groups["style_2024_below_0.05"]  # p < c
    assert "delvem" not in groups["style_2024_below_0.5"] and "delvem" in groups["style_2024"]
    assert bound["n_with"].tolist() == cutoff_counts[:, -1].astype(int).tolist()
    np.testing.assert_allclose(bound["delta"], deltas, rtol=0, atol=1e-15)
    summary = pd.read_parquet(report / "style_summary.parquet").iloc[0]
    k = int(np.argmax(deltas))
    assert summary["max_delta"] == pytest.approx(deltas[k], abs=1e-15)
    assert summary["max_cutoff"] == sty.STUDY_CUTOFFS[k] and summary["max_words"] == n_words[k]
    text = (report / "report.md").read_text()
    assert "each period of t-6 … t-1 (2018–2023), as the study keeps a subgroup" in text
    assert f"max Δ(c) = {deltas[k]:.4f}" in text and f"reached at c = {sty.STUDY_CUTOFFS[k]:g}" in text
    assert "is its subgroup δ of all abstracts" in text and "0.134877" in text   # the headline, explained


def test_subgroup_delta_and_inclusion_equal_the_study(corpus, report):
    ref = study_subgroups(corpus["words"], corpus["X"], corpus["years"], corpus["journals"], dict(ANNOTATION))
    summary = pd.read_parquet(report / "style_summary.parquet").iloc[0]
    for key in ("delta_rare", "delta_common"):
        assert summary[key] == pytest.approx(ref["all"][key], abs=1e-15)
    assert summary["delta_study"] == pytest.approx(ref["all"]["delta"], abs=1e-15)
    sub = pd.read_parquet(report / "subgroups.parquet")
    sub = sub[sub["group"] == "style_2024"].set_index("subgroup")
    assert {j for j in "ABC" if ref[j]["keep"]} == set(sub.index) == {"A", "B"}     # C: 150 in 2018-2020
    assert (sub["delta_rule"] == "study").all()
    for j in sub.index:
        for key in ("delta_rare", "delta_common", "delta"):
            assert sub.loc[j, key] == pytest.approx(ref[j][key], abs=1e-15), (j, key)
        assert sub.loc[j, "n_docs"] == ref[j]["totals"][-1]
        assert sub.loc[j, "min_docs"] == ref[j]["totals"][-7:-1].min()
    text = (report / "report.md").read_text()
    assert "δ of `style_2024` by journal (2024)" in text
    assert "(2018–2023)" in text and "the study's subgroup δ (`--subgroup-delta study`)" in text


def test_subgroup_rules_at_the_library_level(corpus, report):
    frame = pd.read_parquet(report / "group_presence.parquet")
    manifest = json.loads((report / "manifest.json").read_text())
    presence = PresenceTable(frame, manifest["group_words"], "journal")
    rare = sty.cutoff_name("2024", 0.02)
    common = sty.COMMON_GROUP
    for min_size, kept in ((350, {"A", "B"}), (351, {"A"}), (1, {"A", "B", "C"})):   # >= as the study
        table = sty.study_subgroup_table(presence, "style_2024", rare, common, "2024", min_size)
        assert set(table["subgroup"]) == kept, min_size
    ref = study_subgroups(corpus["words"], corpus["X"], corpus["years"], corpus["journals"], dict(ANNOTATION),
                          min_size=351)
    assert {j for j in "ABC" if ref[j]["keep"]} == {"A"}
    # the window is an option: t-3..t (the simple rule) keeps C as well
    table = sty.study_subgroup_table(presence, "style_2024", rare, common, "2024", 300, (-3, 0))
    assert set(table["subgroup"]) == {"A", "B", "C"} and table.attrs["window"] == ["2021", "2022", "2023", "2024"]
    # the one-group δ: the share of abstracts with any style word, per journal
    one = subgroup_table(presence, "style_2024", "2024", 300).set_index("subgroup")
    words, X, years, journals = corpus["words"], corpus["X"], corpus["years"], corpus["journals"]
    style_cols = np.isin(words, manifest["group_words"]["style_2024"])
    for j in one.index:
        n = np.array([np.sum((X[(years == y) & (journals == j)][:, style_cols]).any(axis=1)) for y in YEARS])
        N = np.array([np.sum((years == y) & (journals == j)) for y in YEARS])
        assert one.loc[j, "delta"] == pytest.approx(study_delta((n + 1) / (N + 1)), abs=1e-15)
    assert set(one.index) == {"A", "B"} and (one["delta_rule"] == "group").all()


def test_one_group_subgroup_delta_on_the_command_line(corpus, tmp_path):
    cli("excess", corpus["path"], "-o", tmp_path, "--target", "2024", "--group", "style", "--style-words",
        corpus["annotation"], "--by", "journal", "--subgroup-delta", "group", "--size-window", "t-3:t",
        "--no-figures", "--no-csv", "-q", ok=True)
    sub = pd.read_parquet(tmp_path / "subgroups.parquet")
    assert set(sub["subgroup"]) == {"A", "B", "C"} and (sub["delta_rule"] == "group").all()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["parameters"]["subgroup_delta"] == "group" and manifest["parameters"]["size_window"] == "t-3:t"
    assert manifest["stage"]["params"]["size_window"] == "t-3:t"
    text = (tmp_path / "report.md").read_text()
    assert "`--subgroup-delta group`" in text and "each period of t-3 … t (2021–2024) (the study: 300" in text
    assert "as the study keeps a subgroup" not in text


def test_lower_bound_wording(corpus, report, tmp_path, caplog):
    groups = pd.read_csv(report / "groups.csv").set_index("group")
    assert bool(groups.loc["style_2024", "style_words"])
    assert "| yes |" in (report / "report.md").read_text()
    # excess words (content words too) and undeclared groups are not called a lower bound ...
    cli("excess", corpus["path"], "-o", tmp_path / "a", "--target", "2024", "--group", "excess",
        "--group-words", "mine=delvea,delveb", "--no-figures", "--no-csv", "-q", ok=True)
    text = (tmp_path / "a" / "report.md").read_text()
    assert "none of these δ is a lower bound on LLM-processed abstracts" in text
    assert "| yes |" not in text and "**Lower bound" not in text
    # ... a declared style group is
    cli("excess", corpus["path"], "-o", tmp_path / "b", "--target", "2024", "--group-words", "mine=delvea,delveb",
        "--style-group", "mine", "--no-figures", "--no-csv", "-q", ok=True)
    groups = pd.read_parquet(tmp_path / "b" / "groups.parquet").set_index("group")
    assert bool(groups.loc["mine", "style_words"]) and bool(groups.loc["mine", "lower_bound"])
    assert "| yes |" in (tmp_path / "b" / "report.md").read_text()
    # ... from 2023 on: before LLM writing tools, the same δ bounds nothing
    cli("excess", corpus["path"], "-o", tmp_path / "c", "--target", "2022", "--group-words", "mine=delvea,delveb",
        "--style-group", "mine", "--no-figures", "--no-csv", ok=True)
    groups = pd.read_parquet(tmp_path / "c" / "groups.parquet").set_index("group")
    assert bool(groups.loc["mine", "style_words"]) and not bool(groups.loc["mine", "lower_bound"])
    text = (tmp_path / "c" / "report.md").read_text()
    assert "| no (before 2023) |" in text and "| yes |" not in text and "bounds no LLM use" in text
    line = next(x for x in caplog.text.splitlines() if "group mine in 2022" in x)
    assert "before LLM tools: no bound" in line


def test_annotation_files(tmp_path):
    builtin = sty.builtin_annotation()
    kinds = collections.Counter(builtin.types.values())
    assert len(builtin) == 900 and kinds == {"content": 462, "style": 407, "content/style": 24, "other": 4,
                                             "style/content": 2, "style/count": 1}
    assert builtin.is_style("delves") and not builtin.is_style("covid") and builtin.type_of("prompting") == \
        "content/style"
    assert (sty.DATA_DIR / "LICENSE-llm-excess-vocab").read_text().startswith("MIT License")
    plain = tmp_path / "mine.txt"
    plain.write_text("# my style words\nDelves, showcasing\nintricate\n")
    assert sty.read_annotation(str(plain)).types == {"delves": "style", "showcasing": "style", "intricate": "style"}
    annotated = tmp_path / "mine.csv"
    annotated.write_text("type,word\nstyle,Delves\ncontent, covid\n\n")
    assert sty.read_annotation(str(annotated)).types == {"delves": "style", "covid": "content"}
    for text, message in (("word,type\ndelves,style\ndelves,content\n", "annotated twice"),
                          ("word,type\n", "no annotated words"), ("", "no words")):
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        with pytest.raises(UsageProblem, match=message):
            sty.read_annotation(str(bad))
    with pytest.raises(UsageProblem, match="no such file"):
        sty.read_annotation(str(tmp_path / "missing.csv"))


def test_parameters_and_their_errors(tmp_path):
    params = ExcessParams(source=("x",), group="style")
    assert params.cutoffs == sty.STUDY_CUTOFFS and params.common_words == sty.STUDY_COMMON_WORDS
    assert params.window == (-6, -1) and params.subgroup_delta == "study" and params.rare_max_freq == 0.02
    assert ExcessParams(source=("x",), group="style", cutoffs=(0.5, 0.01, 0.01)).cutoffs == (0.01, 0.5)
    assert sty.parse_window("-3:0") == (-3, 0) and sty.format_window((-6, -1)) == "t-6:t-1"
    for kwargs, flag in ((dict(style_words="a.csv"), "--style-words"), (dict(style_groups=("x",)), "--style-group"),
                         (dict(cutoffs=(0, 0.1)), "--cutoffs"), (dict(cutoffs=("a",)), "--cutoffs"),
                         (dict(size_window="t-1:t-6"), "--size-window"), (dict(size_window="6"), "--size-window"),
                         (dict(size_window="t:t+1"), "--size-window"), (dict(subgroup_delta="mean"),
                                                                        "--subgroup-delta"),
                         (dict(rare_max_freq=2.0), "--rare-max-freq"), (dict(common_words=()), "--common-words")):
        with pytest.raises(UsageProblem, match=flag):
            ExcessParams(source=("x",), **kwargs)
    # an option of the study's analysis where it has no effect is refused, not ignored
    for kwargs, message in ((dict(cutoffs=(0.1,)), "--cutoffs applies to --group style"),
                            (dict(rare_max_freq=0.1, by="label"), "--rare-max-freq applies to --group style"),
                            (dict(common_words=("delve",)), "--common-words applies to --group style"),
                            (dict(min_group_size=5, group="style"), "--min-group-size applies to .* --by"),
                            (dict(size_window="t-3:t-1"), "--size-window applies to .* --by"),
                            (dict(subgroup_delta="group", by="label"), "--subgroup-delta .* --group style"),
                            (dict(subgroup_delta="group", group="style"), "--subgroup-delta .* --by")):
        with pytest.raises(UsageProblem, match=message):
            ExcessParams(source=("x",), **kwargs)
    for kwargs, message in ((dict(counts="c.csv", period="month"), "--period: for reading abstracts"),
                            (dict(counts="c.csv", with_titles=True, text_col="t"), "--with-titles, --text-col: for"),
                            (dict(source=("x",), title_col="headline"), "--title-col names the titles for")):
        with pytest.raises(UsageProblem, match=message):
            ExcessParams(**kwargs)
    ExcessParams(source=("x",), title_col="headline", clean=True)
    ExcessParams(source=("x",), group="style", by="label", subgroup_delta="group", min_group_size=5,
                 size_window="t-3:t-1", cutoffs=(0.1,), rare_max_freq=0.1, common_words=("delve",))
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"abstract": "some words here", "year": 2020}) + "\n")
    for args, text in ((["--group", "style", "--style-words", tmp_path / "none.csv"], "--style-words"),
                       (["--size-window", "later"], "--size-window"), (["--cutoffs", "a,b"], "--cutoffs"),
                       (["--cutoffs", "0.1"], "--cutoffs applies to --group style"),
                       (["--group-words", "a=x,y", "--style-group", "b"], "--style-group b")):
        res = cli("excess", corpus, "-o", tmp_path / "o", *args)
        assert res.exit_code == 2 and text in res.output, res.output


def test_style_word_tables_need_their_columns_and_may_use_semicolons(tmp_path):
    from corpusmap.errors import UsageProblem

    (tmp_path / "semi.csv").write_text("word;type\ndelve;style\ncell;content\n")  # a spreadsheet's export
    assert sty.read_annotation(str(tmp_path / "semi.csv")).types == {"delve": "style", "cell": "content"}
    for name, text in (("other.csv", "foo,bar\ncell,style\ndelve,style\nshowcase,style\n"),
                       ("semi-other.csv", "w;t\ndelve;style\ncell;content\nintricate;style\nnotably;style\n")):
        (tmp_path / name).write_text(text)
        with pytest.raises(UsageProblem, match=f"--style-words {tmp_path / name}: a table whose header .* names no "
                                               "word and type columns"):
            sty.read_annotation(str(tmp_path / name))
    for text in ("delve, intricate\nshowcasing\n", "delve, intricate\nshowcase, notable\n"):  # lists stay lists
        (tmp_path / "list.txt").write_text(text)
        assert set(sty.read_annotation(str(tmp_path / "list.txt")).types) == set(text.replace(",", " ").split())


def test_lemmas():
    from corpusmap.excess import lemmas

    cases = {"showcasing": "showcase", "showcased": "showcase", "chatbots": "chatbot", "delves": "delve",
             "insights": "insight", "emphasises": "emphasize", "endeavours": "endeavor", "remains": "remain",
             "these": "these", "crucial": "crucial", "discerned": "discern", "underscores": "underscore",
             "analyses": "analyze", "meticulously": "meticulously"}
    assert {w: lemmas.lemmatize(w) for w in cases} == cases
    words = sorted(sty.builtin_annotation().types)
    assert len({lemmas.lemmatize(w) for w in words}) == 767         # the study: 770 (see corpusmap.excess.lemmas)
    df = pd.DataFrame({"target": ["2024"] * 4 + ["2023"], "word": ["prompting", "prompts", "delves", "delve",
                                                                  "delves"],
                       "delta": [0.01, 0.02, 0.05, 0.03, 0.04], "p": [0.01, 0.02, 0.001, 0.002, 0.001]})
    table = lemmas.lemma_table(df, sty.builtin_annotation())
    assert table[["target", "lemma", "n_words", "words"]].values.tolist() == [
        ["2024", "delve", 2, "delves, delve"], ["2024", "prompt", 2, "prompts, prompting"],
        ["2023", "delve", 1, "delves"]]
    assert table.set_index(["target", "lemma"]).loc[("2024", "prompt"), "type"] == "content"  # "prompts", last
    assert table["max_delta"].tolist() == [0.05, 0.02, 0.04]


def tokens(text: str) -> set:
    return set(re.findall(r"\b\w\w+\b", text.lower()))


def test_example_corpus_end_to_end(tmp_path, caplog):
    """The bundled eLife corpus with everything on; the style groups' abstract counts recounted from the raw
    records."""
    result = cli("excess", EXAMPLE_CORPUS, "-o", tmp_path, "--target", "2015", "--group", "style", "--by", "label",
                 "--min-group-size", "5", "--clean", "--lemmatize", ok=True)
    assert "report in" in result.output
    for name in ("style_bound.csv", "style_summary.csv", "excess_lemmas.csv", "subgroups.csv",
                 "figures/bound_2015.png", "report.md"):
        assert (tmp_path / name).is_file(), name
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    params = manifest["parameters"]
    assert params["group"] == "style" and params["annotation"].startswith("the study's annotation")
    assert params["cutoffs"] == list(sty.STUDY_CUTOFFS) and params["clean"] and params["lemmatize"]
    assert manifest["stage"]["sources"]["annotation"]                 # the shipped list's checksum
    table = pd.read_csv(tmp_path / "excess_2015.csv", keep_default_na=False)
    annotation = sty.builtin_annotation()
    style = table[table["is_excess"] & table["word"].map(annotation.is_style)]
    records = [r for r in read_jsonl(EXAMPLE_CORPUS) if str(r["year"]) == "2015"]
    bound = pd.read_csv(tmp_path / "style_bound.csv")
    for _, row in bound[bound["n_words"] > 0].iterrows():
        group = set(style[style["p"] < row["cutoff"]]["word"])
        assert len(group) == row["n_words"]
        assert row["n_with"] == sum(bool(group & tokens(r["abstract"])) for r in records)
    assert manifest["lemmas"]["2015"] == pd.read_csv(tmp_path / "excess_lemmas.csv")["lemma"].nunique()
    said = [r.getMessage() for r in caplog.records]  # and on the console
    assert f"lemmas 2015: the {int(table['is_excess'].sum()):,} excess words are " \
           f"{manifest['lemmas']['2015']:,} lemmas (excess_lemmas.csv)" in said
    assert "## Excess words as lemmas (`--lemmatize`)" in (tmp_path / "report.md").read_text()


def test_arxiv_months_end_to_end(shared_data, tmp_path):
    """A quarter of the arXiv listings (2025-03 .. 2026-07) by month: the bound of 2026-03 recounted from the raw
    records."""
    records = read_jsonl(shared_data / "arxiv_2025_2026.jsonl.gz", every=4)
    corpus = tmp_path / "arxiv.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in records))
    cli("excess", corpus, "-o", tmp_path / "out", "--period", "month", "--target", "2026-03", "--group", "style",
        "--by", "primary_category", "--min-group-size", "50", "--no-figures", "--no-csv", "-q", ok=True)
    summary = pd.read_parquet(tmp_path / "out" / "style_summary.parquet").iloc[0]
    bound = pd.read_parquet(tmp_path / "out" / "style_bound.parquet")
    assert summary["style_words"] > 10 and summary["max_cutoff"] in sty.STUDY_CUTOFFS
    best = bound[bound["cutoff"] == summary["max_cutoff"]].iloc[0]
    words = set(json.loads((tmp_path / "out" / "manifest.json").read_text())["group_words"][best["group"]])
    month = [r for r in records if r["listing_date"].startswith("2026-03")]
    assert best["n_docs"] == len(month)
    assert best["n_with"] == sum(bool(words & tokens(r["abstract"])) for r in month)
    sub = pd.read_parquet(tmp_path / "out" / "subgroups.parquet")
    assert len(sub) >= 2 and (sub["min_docs"] >= 50).all() and (sub["delta_rule"] == "study").all()


def test_regions_as_subgroups_with_both_rules(tmp_path):
    """`--by cluster:1` (regions of the map as subgroups) with the study's subgroup δ and with the one-group δ;
    each region's study δ recomputed from its abstracts."""
    run = tmp_path / "run"
    for args in (["embed", EXAMPLE_CORPUS, "-o", run, "--model", "tfidf", "--dim", "50"],
                 ["neighbors", run, "-k", "10"], ["clusters", run]):
        cli(*args, "-q", ok=True)
    cli("excess", run, "--target", "2015", "--group", "style", "--by", "cluster:1", "--min-group-size", "3",
        "--no-figures", "--no-csv", "-q", ok=True)
    manifest = json.loads((run / "excess" / "manifest.json").read_text())
    regions = pd.read_parquet(run / "excess" / "subgroups.parquet")
    assert len(regions) >= 2 and (regions["delta_rule"] == "study").all()
    from corpusmap.clusters import read_clustering
    from corpusmap.run import Run

    labels = read_clustering(Run(run)).levels[1]
    corpus = Run(run).read_corpus(["text", "year"]).to_pydict()
    rare = set(manifest["group_words"][sty.cutoff_name("2015", 0.02)])
    common = set(sty.STUDY_COMMON_WORDS)
    for _, row in regions.iterrows():
        c = int(row["subgroup"].split(":")[0])
        rows = [(tokens(t), str(y)) for t, y, lab in zip(corpus["text"], corpus["year"], labels) if lab == c]
        ys = ["2015", "2014", "2013", "2012"][::-1]
        deltas = []
        for words in (rare, common):
            n = np.array([sum(bool(words & tk) for tk, y in rows if y == yr) for yr in ys])
            N = np.array([sum(y == yr for _, y in rows) for yr in ys])
            deltas.append(study_delta((n + 1) / (N + 1)))
        assert row["delta_rare"] == pytest.approx(deltas[0], abs=1e-15)
        assert row["delta_common"] == pytest.approx(deltas[1], abs=1e-15)
        assert row["delta"] == pytest.approx(sum(deltas) / 2, abs=1e-15)
    cli("excess", run, "--target", "2015", "--group", "style", "--by", "cluster:1", "--min-group-size", "3",
        "--subgroup-delta", "group", "--no-figures", "--no-csv", "--overwrite", "-q", ok=True)
    one = pd.read_parquet(run / "excess" / "subgroups.parquet")
    assert set(one["subgroup"]) == set(regions["subgroup"]) and (one["delta_rule"] == "group").all()
    assert "ratio" in one.columns and not one["delta"].equals(regions["delta"])
