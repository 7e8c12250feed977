"""`embed --preset landscape`: the corpus of the PubMed landscape paper (issue 12, item 5, the corpus half).

The reference is written out here from the paper's notebook (pubmed-landscape scripts/01-rgm-data-parse.ipynb,
cells 31-46, transcribed in the project notes): empty texts dropped, Language == 'eng', len < 4000, len > 250
(strict, on the raw text), then ``x[:y-1]`` where "ABSTRACT TRUNCATED AT" starts at y, then a row is kept iff one
of its last two characters is '.', '?' or '!'. corpusmap must keep exactly the rows, and the texts, this gives.
"""
from __future__ import annotations

import json

import pyarrow as pa
import pytest

from conftest import EXAMPLE_CORPUS, cli, read_jsonl
from corpusmap.corpus import CorpusFilters, CorpusStats, cut_at_truncation, is_finished, iter_corpus
from corpusmap.pubmed import iter_pubmed

LANDSCAPE = CorpusFilters.from_preset("landscape")


def reference(rows: list[dict]) -> list[tuple[str, str]]:
    """(id, text) of the rows the paper's notebook keeps, in its own terms."""
    kept = [r for r in rows if r["abstract"] != ""]
    kept = [r for r in kept if r["language"] == "eng"]
    kept = [r for r in kept if len(r["abstract"]) < 4000]
    kept = [r for r in kept if len(r["abstract"]) > 250]
    texts = [(r["id"], r["abstract"][:y - 1] if (y := r["abstract"].find("ABSTRACT TRUNCATED AT")) != -1
              else r["abstract"]) for r in kept]
    ends = [t[-2:] for _, t in texts]
    return [row for row, end in zip(texts, ends) if end.find(".") != -1 or end.find("?") != -1
            or end.find("!") != -1]


def read(paths, filters=LANDSCAPE) -> tuple[pa.Table, CorpusStats]:
    stats = CorpusStats()
    return pa.Table.from_batches(list(iter_corpus(paths, filters=filters, stats=stats))), stats


def edge_rows() -> list[dict]:
    body = "Word " * 100
    rows = []
    for n in (249, 250, 251, 252, 3998, 3999, 4000, 4001):  # the length limits, on texts that end in '.'
        rows.append({"id": f"len{n}", "abstract": (body * 10)[: n - 1] + ".", "language": "eng"})
    long_text = body * 5
    rows += [
        {"id": "cut-space", "abstract": long_text + "Results. (ABSTRACT TRUNCATED AT 250 WORDS)", "language": "eng"},
        {"id": "cut-mid", "abstract": long_text + "and the results wer ABSTRACT TRUNCATED AT 400 WORDS",
         "language": "eng"},
        {"id": "cut-at-0", "abstract": "ABSTRACT TRUNCATED AT 250 WORDS " + long_text + "end.", "language": "eng"},
        {"id": "end-paren", "abstract": long_text + "as shown (p < 0.05).)", "language": "eng"},
        {"id": "end-quote", "abstract": long_text + 'they said "yes?"', "language": "eng"},
        {"id": "end-bang", "abstract": long_text + "remarkable!", "language": "eng"},
        {"id": "unfinished", "abstract": long_text + "and then", "language": "eng"},
        {"id": "italian", "abstract": long_text + "Fine.", "language": "ita"},
        {"id": "empty", "abstract": "", "language": "eng"},
        {"id": "long-before-cut", "abstract": (body * 10)[:3990] + "x. ABSTRACT TRUNCATED AT 250 WORDS",
         "language": "eng"},
    ]
    return rows


def test_the_rules_on_their_edges(tmp_path):
    rows = edge_rows()
    path = tmp_path / "edges.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    table, stats = read([path])
    got = list(zip(table.column("id").to_pylist(), table.column("text").to_pylist()))
    assert got == reference(rows)
    ids = [i for i, _ in got]
    assert "len251" in ids and "len3999" in ids and not {"len250", "len4000", "italian", "unfinished"} & set(ids)
    assert "long-before-cut" not in ids  # its raw length is over 4000: measured before the cut, as the paper does
    assert dict(got)["cut-space"].endswith("Results. ")  # the cut also drops the '(' before the marker
    assert stats.skipped_non_english == 1 and stats.skipped_empty == 1 and stats.cut_truncated >= 2


def test_cut_and_finished_are_the_papers_expressions():
    for text in ("abc ABSTRACT TRUNCATED AT 2", "ABSTRACT TRUNCATED AT", "xABSTRACT TRUNCATED AT", "no marker",
                 "", "a.", ".)", "x", ".\n"):
        y = text.find("ABSTRACT TRUNCATED AT")
        assert cut_at_truncation(text) == (text[:y - 1] if y != -1 else text)
        end = text[-2:]
        assert is_finished(text) == (end.find(".") != -1 or end.find("?") != -1 or end.find("!") != -1)


def test_real_medline_records(pubmed_dir, tmp_path):
    """The real 2016 MEDLINE sample (Italian records, structured abstracts): the preset keeps what the paper's
    notebook keeps from the same records."""
    path = pubmed_dir / "medline16n0902_sample.xml.gz"
    raw = [{"id": r["pmid"], "abstract": r["abstract"] or "", "language": r["language"]}
           for r in iter_pubmed(path, cut_truncated=False)]
    table, stats = read([path])
    assert list(zip(table.column("id").to_pylist(), table.column("text").to_pylist())) == reference(raw)
    assert stats.skipped_non_english > 0 and stats.rows_kept == len(reference(raw))


def test_the_bundled_corpus_through_the_command_line(tmp_path):
    """`corpusmap embed --preset landscape` on the eLife example (no language column: the function-word test)."""
    run = tmp_path / "run"
    cli("-q", "embed", EXAMPLE_CORPUS, "-o", run, "--model", "tfidf", "--preset", "landscape", "--prepare-only",
        ok=True)
    manifest = json.loads((run / "corpus.json").read_text())
    assert manifest["filters"] == {"min_chars": 251, "max_chars": 3999, "english_only": True, "cut_truncated": True,
                                   "finished_only": True, "preset": "landscape"}
    records = read_jsonl(EXAMPLE_CORPUS)
    rows = [{"id": r["doi"], "abstract": r["abstract"].strip(), "language": "eng"} for r in records]
    import pyarrow.parquet as pq

    table = pq.read_table(run / "corpus.parquet", columns=["id", "text"])
    assert list(zip(table.column("id").to_pylist(), table.column("text").to_pylist())) == reference(rows)


def test_explicit_flags_override_the_preset(tmp_path):
    run = tmp_path / "run"
    cli("-q", "embed", EXAMPLE_CORPUS, "-o", run, "--model", "tfidf", "--preset", "landscape", "--min-chars", "100",
        "--prepare-only", ok=True)
    filters = json.loads((run / "corpus.json").read_text())["filters"]
    assert filters["min_chars"] == 100 and filters["max_chars"] == 3999 and filters["finished_only"]


def test_runs_read_before_the_new_options_stay_current():
    """corpus.json records the new filters only when they are used, so an older run is still current."""
    assert CorpusFilters().record() == {"min_chars": 0, "max_chars": None, "english_only": False}
    assert CorpusFilters(min_chars=5).record() == {"min_chars": 5, "max_chars": None, "english_only": False}


def test_unknown_preset_is_a_usage_error():
    from corpusmap.errors import UsageProblem

    with pytest.raises(UsageProblem, match="landscape"):
        CorpusFilters.from_preset("nosuch")
