"""`corpusmap excess` end to end: a RUN, corpus files and count tables in; tables, report, figures and manifest
out; the same analysis from counts read back; one clear line and a non-zero exit for every bad input."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from corpusmap.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


def invoke(*args):
    result = CliRunner().invoke(main, ["excess", *[str(a) for a in args]])
    assert "Traceback" not in result.output
    return result


def ok(*args):
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def acl_run(shared_data, tmp_path_factory):
    """A RUN directory holding only the corpus of the ACL abstracts (`corpusmap embed --prepare-only`)."""
    run = tmp_path_factory.mktemp("run") / "run"
    r = CliRunner().invoke(main, ["embed", str(shared_data / "acl_2016_2019.jsonl.gz"), "-o", str(run),
                                  "--prepare-only", "--quiet"])
    assert r.exit_code == 0, r.output
    return run


STYLE = "style=propose,novel,demonstrate,outperforms"


@pytest.fixture(scope="module")
def acl_report(acl_run):
    result = ok(acl_run, "--target", "2018", "--target", "2019", "--group-words", STYLE, "--by", "label",
                "--min-group-size", "10", "--no-figures", "-q")
    assert "report in" in result.output
    return acl_run / "excess"


def test_run_outputs_report_and_manifest(acl_report):
    out = acl_report
    for name in ("counts.parquet", "counts.csv", "excess_2018.parquet", "excess_2018.csv", "excess_2019.csv",
                 "excess_words.csv", "summary.csv", "groups.csv", "subgroups.csv", "group_presence.parquet",
                 "report.md", "manifest.json"):
        assert (out / name).is_file(), name
    counts = pd.read_csv(out / "counts.csv", keep_default_na=False)
    assert counts.iloc[-1]["word"] == "" and counts.iloc[-1][["2016", "2017", "2018", "2019"]].tolist() == [
        1534, 2458, 3123, 1070]
    table = pd.read_csv(out / "excess_2018.csv")
    assert table["delta"].is_monotonic_decreasing and table["is_excess"].any()
    assert {"word", "p", "q", "delta", "ratio", "is_excess", "rank_delta", "rank_ratio"} <= set(table.columns)
    report = (out / "report.md").read_text()
    for text in ("## 2018", "## 2019", "Top 20 excess words by gap δ", "excess words by ratio r",
                 "lower bound on the share of abstracts processed with an LLM", "`style`",
                 "δ of `style` by label (2018)"):
        assert text in report, text
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parameters"]["min_freq"] == 1e-4 and manifest["parameters"]["targets"] == ["2018", "2019"]
    assert manifest["parameters"]["by"] == "label" and manifest["parameters"]["min_group_size"] == 10
    assert manifest["stage"]["versions"]["polars"] and manifest["stage"]["versions"]["numpy"]
    assert manifest["counts"]["totals"][-4:] == [1534, 2458, 3123, 1070]
    assert [s["pass"] for s in manifest["scans"]] == ["words + groups"]      # groups in the counting pass
    groups = pd.read_csv(out / "groups.csv")
    assert set(groups["target"].astype(str)) == {"2018", "2019"}
    subgroups = pd.read_csv(out / "subgroups.csv")
    assert (subgroups["min_docs"] >= 10).all() and len(subgroups) >= 2


@pytest.mark.parametrize("table", ["counts.csv", "counts.parquet"])
def test_counts_read_back_give_the_same_analysis(acl_report, tmp_path, table):
    ok("--counts", acl_report / table, "-o", tmp_path, "--target", "2018", "--target", "2019", "--no-figures",
       "-q")
    for target in ("2018", "2019"):
        again = pd.read_parquet(tmp_path / f"excess_{target}.parquet")
        first = pd.read_parquet(acl_report / f"excess_{target}.parquet")
        pd.testing.assert_frame_equal(again, first)
    assert not (tmp_path / "counts.csv").exists()       # the table was given, not recounted


def test_files_with_figures_excess_group_and_subgroups(shared_data, tmp_path):
    ok(shared_data / "acl_2016_2019.jsonl.gz", "-o", tmp_path, "--target", "2019", "--group", "excess",
       "--group-max-freq", "0.05", "--by", "venue", "--min-group-size", "5", "-q")
    figures = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert figures == ["groups.png", "scatter_2019.png", "subgroups_excess_2019_below_0.05_2019.png",
                       "words_2019.png"]
    for name in figures:
        assert (tmp_path / "figures" / name).read_bytes()[:8] == PNG
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [s["pass"] for s in manifest["scans"]] == ["words", "groups"]   # excess words need a second pass
    words = manifest["group_words"]["excess_2019_below_0.05"]
    excess = pd.read_csv(tmp_path / "excess_2019.csv")
    assert sorted(words) == sorted(excess[excess["is_excess"] & (excess["p"] < 0.05)]["word"])
    report = (tmp_path / "report.md").read_text()
    assert "![Top excess words over time, 2019](figures/words_2019.png)" in report
    assert "δ of `excess_2019_below_0.05` by venue (2019)" in report


def test_months_from_listing_dates(shared_data, tmp_path):
    lines = gzip.open(shared_data / "arxiv_2025_2026.jsonl.gz", "rt").read().splitlines()[::40]
    corpus = tmp_path / "arxiv.jsonl"
    corpus.write_text("\n".join(lines) + "\n")
    ok(corpus, "-o", tmp_path / "out", "--period", "month", "--no-figures", "--no-csv", "-q")
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
    ok("--counts", study_csv(tmp_path / "yearly-counts.csv.gz"), "-o", tmp_path / "out", "--no-figures", "-q")
    table = pd.read_csv(tmp_path / "out" / "excess_2024.csv").set_index("word")
    assert table.loc["delves", "is_excess"] and table.loc["showcasing", "is_excess"]
    assert not table.loc["these", "is_excess"] and not table.loc["pandemic", "is_excess"]
    assert "2023" in pd.read_csv(tmp_path / "out" / "summary.csv")["target"].astype(str).tolist()


def test_bad_inputs(tmp_path, acl_run):
    csv = study_csv(tmp_path / "counts.csv")
    res = invoke("--counts", csv, "-o", tmp_path / "o1", "--target", "2022")
    assert res.exit_code == 1 and "needs counts for the three periods before it" in res.output
    assert "missing: 2019" in res.output

    res = invoke("--counts", study_csv(tmp_path / "nototal.csv", with_totals=False), "-o", tmp_path / "o2")
    assert res.exit_code == 1 and "no totals row" in res.output

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    res = invoke(empty, "-o", tmp_path / "o3")
    assert res.exit_code == 1 and "no abstracts" in res.output

    blank = tmp_path / "blank"
    blank.mkdir()
    pq.write_table(pa.table({"text": pa.array([], pa.string()), "year": pa.array([], pa.int32())}),
                   blank / "corpus.parquet")
    res = invoke(blank, "-o", tmp_path / "o5")  # not a run: a folder of inputs, here one empty parquet file
    assert res.exit_code == 1 and "no abstracts" in res.output

    notyear = tmp_path / "notyear.jsonl"
    notyear.write_text("".join(json.dumps({"abstract": f"words number {i}", "year": "spring"}) + "\n"
                               for i in range(20)))
    res = invoke(notyear, "-o", tmp_path / "o4")
    assert res.exit_code == 1 and "year" in res.output
    bad_run = tmp_path / "badrun"
    bad_run.mkdir()
    pq.write_table(pa.table({"text": ["some words"] * 20, "year": ["n.d."] * 20}), bad_run / "corpus.parquet")
    res = invoke(bad_run / "corpus.parquet", "--year-col", "year", "-o", tmp_path / "o6")
    assert res.exit_code == 1 and "holds no years" in res.output and "--year-col" in res.output

    res = invoke("--counts", csv, "-o", tmp_path / "o5", "--group", "excess")
    assert res.exit_code == 2 and "need the abstracts" in res.output
    res = invoke()
    assert res.exit_code == 2 and "give INPUT" in res.output
    res = invoke(notyear)
    assert res.exit_code == 2 and "-o OUT" in res.output
    res = invoke(acl_run, "-o", tmp_path / "o6", "--by", "no_such_column")
    assert res.exit_code == 2 and "--by 'no_such_column': no such column" in res.output
    assert "columns: id, text, title, year, label, collection, booktitle, doi" in res.output  # the corpus's columns, all of them


def test_help():
    result = CliRunner().invoke(main, ["excess", "--help"])
    assert result.exit_code == 0 and "--counts" in result.output and "--group-words" in result.output
