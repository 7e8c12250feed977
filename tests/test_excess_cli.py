"""`corpusmap excess` end to end on the bundled eLife example corpus (2012-2016; the arXiv listing months where
../shared/data exists): a RUN, corpus files and count tables in; tables, report, figures and manifest out; the same
analysis from counts read back; one clear line and a non-zero exit for every bad input."""
from __future__ import annotations

import collections
import gzip
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import EXAMPLE_CORPUS, cli, read_jsonl

PNG = b"\x89PNG\r\n\x1a\n"


RECORDS = read_jsonl(EXAMPLE_CORPUS)
YEARS = ["2012", "2013", "2014", "2015", "2016"]
TOTALS = [collections.Counter(str(r["year"]) for r in RECORDS)[y] for y in YEARS]  # abstracts per year


def first_subject(record):
    return record["subjects"][0] if record["subjects"] else None


def abstracts_per_subject(target: str) -> collections.Counter:
    """The number of abstracts of each (first) subject in the year ``target``, counted from the raw records."""
    return collections.Counter(first_subject(r) for r in RECORDS if str(r["year"]) == target)


@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    """A RUN directory holding only the corpus of the example abstracts (`corpusmap embed --prepare-only`)."""
    run = tmp_path_factory.mktemp("run") / "run"
    cli("embed", EXAMPLE_CORPUS, "-o", run, "--prepare-only", "--quiet", ok=True)
    return run


STYLE = "style=novel,demonstrate,reveal,crucial"


@pytest.fixture(scope="module")
def example_report(example_run):
    result = cli("excess", example_run, "--target", "2015", "--target", "2016", "--group-words", STYLE,
                 "--by", "label", "--min-group-size", "5", "--no-figures", ok=True)
    assert "report in" in result.output
    return example_run / "excess"


def test_quiet_prints_nothing_but_errors(example_run, tmp_path):
    result = cli("-q", "excess", example_run, "-o", tmp_path / "x", "--target", "2015", "--no-figures", ok=True)
    assert result.output == "" and (tmp_path / "x" / "report.md").is_file()


def test_subgroups_summarised_on_the_console(example_run, tmp_path, caplog):
    """--by prints per group and target how many subgroups were kept and the δ range, as in subgroups.parquet;
    when none is large enough it says so and names --min-group-size."""
    cli("excess", example_run, "-o", tmp_path / "a", "--target", "2015", "--group-words", STYLE, "--by", "label",
        "--min-group-size", "5", "--no-figures", ok=True)
    sub = pd.read_parquet(tmp_path / "a" / "subgroups.parquet")
    sub = sub[(sub["group"] == "style") & (sub["target"] == "2015")].sort_values("delta", ascending=False)
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("style by label in 2015:")]
    assert f": {len(sub)} subgroups with at least 5 abstracts" in line  # (the eLife corpus starts in 2012)
    top = sub.iloc[0]
    assert f"to {top['delta'] * 100:+.2f} percentage points ({top['subgroup']})" in line
    caplog.clear()
    cli("excess", example_run, "-o", tmp_path / "b", "--target", "2015", "--group-words", STYLE, "--by", "label",
        "--min-group-size", "100000", "--no-figures", ok=True)
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("style by label in 2015:")]
    assert ": 0 subgroups with at least 100,000 abstracts" in line and "lower --min-group-size" in line
    # a size window over years without abstracts (2012's papers moved to 2008): no size helps, another window might
    caplog.clear()
    gap = tmp_path / "gap.jsonl"
    gap.write_text("".join(json.dumps(dict(r, year=2008 if str(r["year"]) == "2012" else r["year"])) + "\n"
                           for r in read_jsonl(EXAMPLE_CORPUS)))
    cli("excess", gap, "-o", tmp_path / "c", "--target", "2016", "--group-words", STYLE, "--by", "subjects",
        "--min-group-size", "1", "--no-figures", ok=True)
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("style by subjects in 2016:")]
    assert ": 0 subgroups with at least 1 abstract in each period of 2010–2015" in line, line
    assert "the corpus has no abstracts in 2010, 2011, 2012, so none can pass: choose another --size-window" in line


def test_run_outputs_report_and_manifest(example_report):
    out = example_report
    for name in ("counts.parquet", "counts.csv", "excess_2015.parquet", "excess_2015.csv", "excess_2016.csv",
                 "excess_words.csv", "summary.csv", "groups.csv", "subgroups.csv", "group_presence.parquet",
                 "report.md", "manifest.json"):
        assert (out / name).is_file(), name
    counts = pd.read_csv(out / "counts.csv", keep_default_na=False)
    assert TOTALS == [46, 311, 625, 866, 33]
    assert counts.iloc[-1]["word"] == "" and counts.iloc[-1][YEARS].tolist() == TOTALS
    table = pd.read_csv(out / "excess_2015.csv")
    assert table["delta"].is_monotonic_decreasing and table["is_excess"].any()
    assert {"word", "p", "q", "delta", "ratio", "is_excess", "rank_delta", "rank_ratio"} <= set(table.columns)
    report = (out / "report.md").read_text()
    for text in ("## 2015", "## 2016", "Top 20 excess words by gap δ", "excess words by ratio r",
                 "lower bound on the share of abstracts processed with an LLM", "`style`",
                 "δ of `style` by label (2015)"):
        assert text in report, text
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parameters"]["min_freq"] == 1e-4 and manifest["parameters"]["targets"] == ["2015", "2016"]
    assert manifest["parameters"]["by"] == "label" and manifest["parameters"]["min_group_size"] == 5
    assert manifest["stage"]["versions"]["polars"] and manifest["stage"]["versions"]["numpy"]
    assert manifest["counts"]["totals"] == TOTALS
    assert [s["pass"] for s in manifest["scans"]] == ["words + groups"]      # groups in the counting pass
    groups = pd.read_csv(out / "groups.csv")
    assert set(groups["target"].astype(str)) == {"2015", "2016"}
    # the style group's share of abstracts, counted here from the raw records
    words = STYLE.split("=")[1].split(",")
    style = groups[groups["target"].astype(str) == "2015"].iloc[0]
    in_2015 = [r for r in RECORDS if str(r["year"]) == "2015"]
    assert style["n_docs"] == len(in_2015)
    assert style["n_with"] == sum(bool(set(words) & set(re.findall(r"\w+", r["abstract"].lower())))
                                  for r in in_2015)
    subgroups = pd.read_csv(out / "subgroups.csv")
    assert (subgroups["min_docs"] >= 5).all() and len(subgroups) >= 2
    for row in subgroups.itertuples():  # each subject's abstracts in the target year
        assert row.n_docs == abstracts_per_subject(str(row.target))[row.subgroup], row


@pytest.mark.parametrize("table", ["counts.csv", "counts.parquet"])
def test_counts_read_back_give_the_same_analysis(example_report, tmp_path, table):
    cli("excess", "--counts", example_report / table, "-o", tmp_path, "--target", "2015", "--target", "2016",
        "--no-figures", "-q", ok=True)
    for target in ("2015", "2016"):
        again = pd.read_parquet(tmp_path / f"excess_{target}.parquet")
        first = pd.read_parquet(example_report / f"excess_{target}.parquet")
        pd.testing.assert_frame_equal(again, first)
    assert not (tmp_path / "counts.csv").exists()       # the table was given, not recounted


def test_files_with_figures_excess_group_and_subgroups(tmp_path):
    cli("excess", EXAMPLE_CORPUS, "-o", tmp_path, "--target", "2015", "--group", "excess",
        "--group-max-freq", "0.05", "--by", "label", "--min-group-size", "5", "-q", ok=True)
    figures = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert figures == ["groups.png", "scatter_2015.png", "subgroups_excess_2015_below_0.05_2015.png",
                       "words_2015.png"]
    for name in figures:
        assert (tmp_path / "figures" / name).read_bytes()[:8] == PNG
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [s["pass"] for s in manifest["scans"]] == ["words", "groups"]   # excess words need a second pass
    words = manifest["group_words"]["excess_2015_below_0.05"]
    table = pd.read_csv(tmp_path / "excess_2015.csv", keep_default_na=False)
    assert words and sorted(words) == sorted(table[table["is_excess"] & (table["p"] < 0.05)]["word"])
    report = (tmp_path / "report.md").read_text()
    assert "![Top excess words over time, 2015](figures/words_2015.png)" in report
    assert "δ of `excess_2015_below_0.05` by label (2015)" in report
    subgroups = pd.read_csv(tmp_path / "subgroups.csv")
    assert len(subgroups) >= 2 and (subgroups["min_docs"] >= 5).all()
    for row in subgroups.itertuples():
        assert row.n_docs == abstracts_per_subject("2015")[row.subgroup], row


def test_months_from_listing_dates(shared_data, tmp_path):
    lines = gzip.open(shared_data / "arxiv_2025_2026.jsonl.gz", "rt").read().splitlines()[::40]
    corpus = tmp_path / "arxiv.jsonl"
    corpus.write_text("\n".join(lines) + "\n")
    cli("excess", corpus, "-o", tmp_path / "out", "--period", "month", "--no-figures", "--no-csv", "-q", ok=True)
    summary = pd.read_parquet(tmp_path / "out" / "summary.parquet")
    assert summary["target"].iloc[0] == "2025-06" and all(len(t) == 7 for t in summary["target"])
    counts = pd.read_parquet(tmp_path / "out" / "counts.parquet")
    assert counts[counts["word"].isna()]["count"].sum() == len(lines)


def study_csv(path: Path, with_totals: bool = True) -> Path:
    df = pd.DataFrame({"word": ["delves", "showcasing", "these", "pandemic"],
                       "2020": [10, 12, 9000, 500], "2021": [11, 12, 9100, 2000], "2022": [12, 13, 9200, 1500],
                       "2023": [30, 14, 9300, 1000], "2024": [300, 150, 9400, 900]})
    if with_totals:
        df.loc[len(df)] = [""] + [10_000] * 5
    df.to_csv(path, index=False)
    return path


def test_study_csv_shape(tmp_path):
    cli("excess", "--counts", study_csv(tmp_path / "yearly-counts.csv.gz"), "-o", tmp_path / "out",
        "--no-figures", "-q", ok=True)
    table = pd.read_csv(tmp_path / "out" / "excess_2024.csv").set_index("word")
    assert table.loc["delves", "is_excess"] and table.loc["showcasing", "is_excess"]
    assert not table.loc["these", "is_excess"] and not table.loc["pandemic", "is_excess"]
    assert "2023" in pd.read_csv(tmp_path / "out" / "summary.csv")["target"].astype(str).tolist()


def test_a_report_of_the_capped_counterfactual_is_recomputed(tmp_path):
    """A report stored by a corpusmap that capped q at 1 (definitions 2) is not current: the same command computes
    it again, with the study's uncapped q."""
    from corpusmap.excess.stage import ExcessParams, ExcessStage

    csv, out = study_csv(tmp_path / "counts.csv"), tmp_path / "out"
    params = ExcessParams(counts=str(csv), output=str(out), figures=False)
    cli("excess", "--counts", csv, "-o", out, "--no-figures", "-q", ok=True)
    path = out / "manifest.json"
    manifest = json.loads(path.read_text())
    assert manifest["stage"]["definitions"] == 3 and ExcessStage().status(params.workspace(), params).current
    manifest["stage"]["definitions"] = 2
    path.write_text(json.dumps(manifest))
    status = ExcessStage().status(params.workspace(), params)
    assert not status.current and "(2 -> 3)" in status.reason
    cli("excess", "--counts", csv, "-o", out, "--no-figures", "-q", ok=True)  # no --overwrite needed
    assert json.loads(path.read_text())["stage"]["definitions"] == 3


def test_an_output_folder_of_other_files_is_refused_and_kept(example_run, tmp_path):
    """The report replaces its folder as a whole: -o onto a folder of other files (the user's, or the RUN itself)
    is refused in one line naming it, and nothing in it is lost; an empty folder and an excess report are fine."""
    csv, mine = study_csv(tmp_path / "counts.csv"), tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    res = cli("excess", "--counts", csv, "-o", mine, "--no-figures")
    assert res.exit_code == 2 and f"-o {mine}: " in res.output and "choose an empty or new folder" in res.output
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "my notes"
    before = sorted(str(p.relative_to(example_run)) for p in example_run.rglob("*") if ".corpusmap" not in p.parts)
    res = cli("excess", example_run, "-o", example_run, "--target", "2015", "--no-figures")
    assert res.exit_code == 2 and f"-o {example_run}: " in res.output, res.output
    assert sorted(str(p.relative_to(example_run)) for p in example_run.rglob("*")
                  if ".corpusmap" not in p.parts) == before
    (tmp_path / "empty").mkdir()
    cli("excess", "--counts", csv, "-o", tmp_path / "empty", "--no-figures", "-q", ok=True)
    cli("excess", "--counts", csv, "-o", tmp_path / "empty", "--no-figures", "--top", "5", "--overwrite", "-q",
        ok=True)  # an excess report's folder is replaced
    assert json.loads((tmp_path / "empty" / "manifest.json").read_text())["parameters"]["top"] == 5


def test_a_report_computed_again_in_a_moved_run_has_the_same_fingerprint(example_run, tmp_path):
    """report.md names the run's path, so it differs in a moved (copied) run; the tables do not, and the output's
    fingerprint is theirs: a page or figure drawn from the report stays current when it is computed again there."""
    first, moved = tmp_path / "first", tmp_path / "moved"
    shutil.copytree(example_run, first)
    shutil.rmtree(first / "excess", ignore_errors=True)
    args = ("--target", "2015", "--group-words", STYLE, "-q")
    cli("excess", first, *args, ok=True)
    shutil.copytree(first, moved)
    shutil.rmtree(moved / "excess")
    cli("excess", moved, *args, ok=True)
    report = (moved / "excess" / "report.md").read_text()
    assert str(moved) in report and report != (first / "excess" / "report.md").read_text()
    stored = [json.loads((run / "excess" / "manifest.json").read_text()) for run in (first, moved)]
    assert stored[0]["files"].keys() == stored[1]["files"].keys() and "report.md" in stored[1]["files"]
    assert stored[0]["stage"]["fingerprint"] == stored[1]["stage"]["fingerprint"]


def test_bad_inputs(tmp_path, example_run):
    csv = study_csv(tmp_path / "counts.csv")
    res = cli("excess", "--counts", csv, "-o", tmp_path / "o1", "--target", "2022")
    assert res.exit_code == 2 and "--target 2022 needs the three periods before it" in res.output
    assert "missing: 2019" in res.output

    res = cli("excess", "--counts", study_csv(tmp_path / "nototal.csv", with_totals=False), "-o", tmp_path / "o2")
    assert res.exit_code == 1 and "no totals row" in res.output

    # how words are counted does not apply to a table counted elsewhere
    res = cli("excess", "--counts", csv, "-o", tmp_path / "o3", "--engine", "python", "--batch-rows", "10")
    assert res.exit_code == 2 and "--engine, --batch-rows: for counting words" in res.output
    assert not (tmp_path / "o3").exists()
    res = cli("excess", EXAMPLE_CORPUS, "-o", tmp_path / "o3", "--batch-rows", "10")  # files: not read by it
    assert res.exit_code == 2 and "--batch-rows: it sets the rows per batch read from a RUN" in res.output
    assert not (tmp_path / "o3").exists()
    # abstracts beside a count table are read only for word groups: without one they would be ignored
    res = cli("excess", EXAMPLE_CORPUS, "--counts", csv, "-o", tmp_path / "o3")
    assert res.exit_code == 2 and "--counts gives the word counts, and INPUT would be read only" in res.output
    res = cli("excess", example_run, "--counts", csv, "-o", tmp_path / "o3")  # a RUN as much as INPUT
    assert res.exit_code == 2 and "--counts gives the word counts, and RUN would be read only" in res.output
    res = cli("excess", "--counts", csv)  # no RUN to write RUN/excess into
    assert res.exit_code == 2 and f"--counts {csv}: give an output directory with -o OUT" in res.output

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    res = cli("excess", empty, "-o", tmp_path / "o3")
    assert res.exit_code == 1 and "no abstracts" in res.output

    blank = tmp_path / "blank"
    blank.mkdir()
    pq.write_table(pa.table({"text": pa.array([], pa.string()), "year": pa.array([], pa.int32())}),
                   blank / "corpus.parquet")
    res = cli("excess", blank, "-o", tmp_path / "o5")  # not a run: a folder of inputs, here one empty parquet file
    assert res.exit_code == 1 and "no abstracts" in res.output

    notyear = tmp_path / "notyear.jsonl"
    notyear.write_text("".join(json.dumps({"abstract": f"words number {i}", "year": "spring"}) + "\n"
                               for i in range(20)))
    res = cli("excess", notyear, "-o", tmp_path / "o4")
    assert res.exit_code == 1 and "year" in res.output
    bad_run = tmp_path / "badrun"
    bad_run.mkdir()
    pq.write_table(pa.table({"text": ["some words"] * 20, "year": ["n.d."] * 20}), bad_run / "corpus.parquet")
    res = cli("excess", bad_run / "corpus.parquet", "--year-col", "year", "-o", tmp_path / "o6")
    assert res.exit_code == 1 and "holds no years" in res.output and "--year-col" in res.output

    res = cli("excess", "--counts", csv, "-o", tmp_path / "o5", "--group", "excess")
    assert res.exit_code == 2 and "need the abstracts" in res.output
    res = cli("excess")
    assert res.exit_code == 2 and "give INPUT" in res.output
    res = cli("excess", notyear)
    assert res.exit_code == 2 and "-o OUT" in res.output
    res = cli("excess", example_run, "-o", tmp_path / "o6", "--by", "no_such_column")
    assert res.exit_code == 2 and "--by 'no_such_column': no such column" in res.output
    # the corpus's columns, all of them: the normalised ones, then the source's other fields
    others = [f for f in RECORDS[0] if f not in ("doi", "abstract", "title", "year", "subjects")]
    assert others == ["article_type", "license"]
    assert "columns: " + ", ".join(["id", "text", "title", "year", "label", *others]) in res.output

    # NaN or infinite thresholds would switch a rule off without a word
    for flag, value in (("--min-delta", "nan"), ("--min-freq", "nan"), ("--min-ratio", "inf")):
        res = cli("excess", example_run, "-o", tmp_path / "o7", flag, value)
        assert res.exit_code == 2 and f"{flag} must be a finite number" in res.output, res.output
    res = cli("excess", example_run, "-o", tmp_path / "o7", "--min-freq", "1.5")  # a share of the abstracts
    assert res.exit_code == 2 and "'--min-freq': 1.5 is not in the range 0<=x<=1" in res.output, res.output
    res = cli("excess", example_run, "-o", tmp_path / "o7", "--group", "excess", "--group-max-freq", "nan")
    assert res.exit_code == 2 and "--group-max-freq must be a finite number" in res.output
    res = cli("excess", example_run, "-o", tmp_path / "o7", "--group-words", "")
    assert res.exit_code == 2 and "'--group-words': an empty value" in res.output
    res = cli("excess", example_run, "-o", tmp_path / "nodate", "--date-col", "", "--no-figures", "-q")
    assert res.exit_code == 0, res.output  # '' is a value here: no date column (as none)
    # a damaged count table is named with where it breaks
    damaged = tmp_path / "damaged.csv.gz"
    packed = gzip.compress(csv.read_bytes())
    damaged.write_bytes(packed[:len(packed) // 2])
    res = cli("excess", "--counts", damaged, "-o", tmp_path / "o8")
    assert res.exit_code == 1 and f"count table {damaged}: truncated or corrupt gzip data: it ends early" in res.output
    # an explicit --date-col gives the years, even where a year column exists
    res = cli("excess", example_run, "-o", tmp_path / "o9", "--date-col", "title")
    assert res.exit_code == 1 and "column 'title' does not hold a date" in res.output
    assert not any((tmp_path / name).exists() for name in ("o7", "o8", "o9"))


def test_targets_the_abstracts_lack_fail_before_counting(example_run, tmp_path, monkeypatch):
    """A --target outside the years of RUN's abstracts (2012–2016), or one without its three earlier years, is
    refused from the year column before a scan of every abstract."""
    import corpusmap.excess.stage as stage

    def no_scan(*args, **kwargs):
        raise AssertionError("the abstracts were scanned")

    monkeypatch.setattr(stage, "scan_corpus", no_scan)
    res = cli("excess", example_run, "-o", tmp_path / "o1", "--target", "2099")
    assert res.exit_code == 2 and "--target 2099 is not in the abstracts of" in res.output
    assert "(periods 2012–2016)" in res.output
    res = cli("excess", example_run, "-o", tmp_path / "o1", "--target", "2015", "--target", "2014")
    assert res.exit_code == 2 and "--target 2014 needs the three periods before it (2013, 2012, 2011); missing: " \
        "2011" in res.output
    assert not (tmp_path / "o1").exists()


def test_group_words_from_an_annotation_table(example_run, tmp_path):
    """A CSV with a ``word`` column (like the study's excess_words.csv) gives that column's words, not every
    cell."""
    table = tmp_path / "annotated.csv"
    table.write_text(',"word","type","comment"\n0,"delves","style","a comment, with words"\n1,"showcase","style",\n')
    cli("excess", example_run, "-o", tmp_path / "out", "--target", "2015", "--group-words", table, "--no-figures",
        "-q", ok=True)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["group_words"] == {"annotated": ["delves", "showcase"]}


def test_help():
    result = cli("excess", "--help")
    assert result.exit_code == 0 and "--counts" in result.output and "--group-words" in result.output


def test_by_a_list_column_that_also_feeds_the_label_counts_every_value(tmp_path):
    """eLife's `subjects` lists become the corpus label (their first value); `--by subjects` still counts an
    abstract in each of its subjects, as counted here from the raw records."""
    out = tmp_path / "out"
    cli("excess", EXAMPLE_CORPUS, "-o", out, "--target", "2015", "--group-words", STYLE, "--by", "subjects",
        "--min-group-size", "5", "--no-figures", "--no-csv", "-q", ok=True)
    sub = pd.read_parquet(out / "subgroups.parquet")
    expected = collections.Counter(s for r in read_jsonl(EXAMPLE_CORPUS) if r["year"] == 2015 for s in r["subjects"])
    assert len(sub) >= 5 and dict(zip(sub["subgroup"], sub["n_docs"])) == {s: expected[s] for s in sub["subgroup"]}
    assert expected["Cell biology"] == 212 and sub["n_docs"].sum() > 866   # abstracts with several subjects


def test_the_group_tables_have_one_schema_whether_or_not_subgroups_are_kept(tmp_path):
    """No subgroup large enough: subgroups.parquet still has its columns' types (not parquet's null type), so
    that the tables of several runs concatenate; whole groups' subgroup column is text."""
    import pyarrow.parquet as pq

    schemas = {}
    for size in (5, 100_000):
        out = tmp_path / f"min{size}"
        cli("excess", EXAMPLE_CORPUS, "-o", out, "--target", "2015", "--group-words", STYLE, "--by", "subjects",
            "--min-group-size", size, "--no-figures", "--no-csv", "-q", ok=True)
        schemas[size] = pq.read_schema(out / "subgroups.parquet").remove_metadata()
        assert (pq.read_table(out / "subgroups.parquet").num_rows == 0) == (size > 5)
        groups = pq.read_schema(out / "groups.parquet")
        assert str(groups.field("subgroup").type) == "string"
    assert schemas[5] == schemas[100_000] and not any(str(f.type) == "null" for f in schemas[5])


def test_counts_with_the_abstracts_of_another_corpus(example_report, tmp_path):
    """Word groups are measured on the abstracts given beside --counts: abstracts that lack the table's target
    periods are refused in one line (the same abstracts are fine)."""
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps(r) + "\n" for r in read_jsonl(EXAMPLE_CORPUS) if r["year"] >= 2015))
    counts = example_report / "counts.parquet"
    for group in (["--group", "excess"], ["--group", "style"], ["--group-words", STYLE]):
        res = cli("excess", other, "--counts", counts, "-o", tmp_path / "o", "--target", "2015", *group, "-q")
        assert res.exit_code == 2 and "no period 2012, 2013, 2014" in res.output and "--target" in res.output, \
            res.output
        assert not (tmp_path / "o").exists()
    cli("excess", EXAMPLE_CORPUS, "--counts", counts, "-o", tmp_path / "same", "--target", "2015", "--group",
        "excess", "--no-figures", "-q", ok=True)


def test_with_titles_on_texts_that_begin_with_their_titles_is_refused(tmp_path):
    run = tmp_path / "titled"
    cli("embed", EXAMPLE_CORPUS, "-o", run, "--title-col", "title", "--model", "tfidf", "--prepare-only", "-q",
        ok=True)
    res = cli("excess", run, "--with-titles", "-o", tmp_path / "out")
    assert res.exit_code == 2 and "--with-titles: the texts of" in res.output and "read with --title-col" in res.output
    assert not (tmp_path / "out").exists()


def test_a_group_whose_words_never_occur_is_named(example_run, tmp_path, caplog):
    """Its δ is the smoothing's alone (1/(n+1) in each period): a warning says so, and the report."""
    cli("excess", example_run, "-o", tmp_path / "z", "--target", "2015", "--group-words", "ghost=zzzqqq,qqqzzz",
        "--group-words", STYLE, "--no-figures", ok=True)
    warned = [r.getMessage() for r in caplog.records if "none of its words occurs" in r.getMessage()]
    assert len(warned) == 1 and "group ghost: none of its words occurs in 2015, 2014, 2013, 2012" in warned[0]
    totals = dict(zip(YEARS, TOTALS))
    p = 1 / (totals["2015"] + 1)
    groups = pd.read_parquet(tmp_path / "z" / "groups.parquet").set_index("group")
    assert groups.loc["ghost", "p"] == pytest.approx(p) and groups.loc["ghost", "n_with"] == 0
    assert "group ghost: none of its words occurs" in (tmp_path / "z" / "report.md").read_text()


@pytest.mark.parametrize("flag,value", [("--min-freq", "1"), ("--min-letters", "100")])
def test_filters_that_leave_no_word_are_a_warning(example_run, tmp_path, caplog, flag, value):
    cli("-q", "excess", example_run, "-o", tmp_path / "z", "--target", "2015", flag, value, "--no-figures", ok=True)
    warned = [r.getMessage() for r in caplog.records if "nothing to analyse" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("warning: 2015: no word passes --min-freq ")
    assert f"{flag} {value}" in warned[0] and warned[0].split(": ", 1)[1] in (tmp_path / "z" / "report.md").read_text()


def test_excess_words_absent_from_a_small_target_are_counted(example_report):
    """2016 has 33 abstracts: a word absent from it has p = 1/34, above its earlier share, so it passes as excess
    by smoothing alone; the summary counts those (independently: count 0 and is_excess in its table)."""
    summary = pd.read_parquet(example_report / "summary.parquet").set_index("target")
    for t in ("2015", "2016"):
        table = pd.read_parquet(example_report / f"excess_{t}.parquet")
        assert summary.loc[t, "excess_absent"] == int((table["is_excess"] & (table["count"] == 0)).sum())
    assert summary.loc["2016", "excess_absent"] > 0.8 * summary.loc["2016", "excess_words"]
    assert summary.loc["2015", "excess_absent"] == 0


def test_counting_pubmed_by_month_names_the_year_only_dates_and_the_fix(pubmed_dir, tmp_path):
    run = tmp_path / "pubmed"
    cli("embed", pubmed_dir, "-o", run, "--model", "tfidf", "-q", ok=True)
    res = cli("excess", run, "--period", "month", "-o", tmp_path / "out")
    assert res.exit_code == 1 and "e.g. '20" in res.output
    assert "dates without a month (PubMed gives many) cannot be counted by month: use --period year" in res.output
    assert not (tmp_path / "out").exists()
