"""Corpus readers on the real shared corpora: row counts, every format and compression, column mapping, filters."""
from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpusmap.corpus import (ColumnMap, CorpusFilters, CorpusStats, first_label, iter_corpus, looks_english,
                              parse_year, resolve_inputs)
from corpusmap.errors import CorpusmapError


def read_all(paths, **kwargs) -> pa.Table:
    stats = kwargs.pop("stats", None) or CorpusStats()
    return pa.Table.from_batches(list(iter_corpus(paths, stats=stats, **kwargs)))


def jsonl_records(path):
    with gzip.open(path, "rt") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.mark.parametrize("name, rows", [("elife_2012_2016", 1881), ("acl_2016_2019", 8401),
                                        ("arxiv_2025_2026", 74728)])
def test_jsonl_corpora_row_counts(shared_data, name, rows):
    stats = CorpusStats()
    table = read_all([shared_data / f"{name}.jsonl.gz"], stats=stats)
    assert table.num_rows == rows == stats.rows_read == stats.rows_kept
    assert table.schema.names[:5] == ["id", "text", "title", "year", "label"]
    assert table.column("text").null_count == 0


def test_auto_detected_columns_and_values(shared_data):
    path = shared_data / "elife_2012_2016.jsonl.gz"
    records = jsonl_records(path)
    table = read_all([path])
    first = table.slice(0, 1).to_pylist()[0]
    assert first["id"] == records[0]["doi"]
    assert first["text"] == records[0]["abstract"].strip()
    assert first["title"] == records[0]["title"]
    assert first["year"] == int(records[0]["year"])
    subjects = records[0]["subjects"]
    subjects = json.loads(subjects) if isinstance(subjects, str) else subjects
    assert first["label"] == subjects[0]
    # the other source fields are kept as strings
    assert first["article_type"] == records[0]["article_type"]
    years = table.column("year").to_pylist()
    assert min(years) == 2012 and max(years) == 2016


def _write_formats(records, folder):
    """The same records as CSV, TSV, JSON array, Parquet, each plain and gzipped."""
    import pandas as pd

    frame = pd.DataFrame(records)
    frame["subjects"] = frame["subjects"].map(lambda v: json.dumps(v) if isinstance(v, list) else v)
    paths = {}
    frame.to_csv(folder / "c.csv", index=False)
    frame.to_csv(folder / "t.tsv", sep="\t", index=False)
    (folder / "a.json").write_text(json.dumps(frame.to_dict(orient="records")))
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), folder / "p.parquet")
    for name in ("c.csv", "t.tsv", "a.json", "p.parquet"):
        paths[name] = folder / name
        data = (folder / name).read_bytes()
        gz = folder / (name + ".gz")
        gz.write_bytes(gzip.compress(data))
        paths[name + ".gz"] = gz
    return paths


def test_every_format_and_gzip_give_the_same_corpus(shared_data, tmp_path):
    source = shared_data / "elife_2012_2016.jsonl.gz"
    records = jsonl_records(source)[:300]
    reference = read_all([source]).slice(0, 300).select(["id", "text", "title", "year", "label"])
    for name, path in _write_formats(records, tmp_path).items():
        table = read_all([path], batch_rows=64).select(["id", "text", "title", "year", "label"])
        assert table.to_pylist() == reference.to_pylist(), name


def test_json_array_streams_records_across_read_blocks(tmp_path):
    records = [{"id": str(i), "abstract": f"word{i} " * (i % 50 + 1) + "x" * 70_000} for i in range(40)]
    path = tmp_path / "big.json"
    path.write_text(json.dumps(records, indent=1))
    table = read_all([path], batch_rows=7)
    assert table.column("id").to_pylist() == [r["id"] for r in records]
    assert table.column("text").to_pylist() == [r["abstract"].strip() for r in records]


def test_directory_and_glob_inputs(shared_data, tmp_path):
    source = shared_data / "elife_2012_2016.jsonl.gz"
    lines = gzip.open(source, "rt").read().splitlines()
    for part in range(3):
        (tmp_path / f"part{part}.jsonl").write_text("\n".join(lines[part * 100:(part + 1) * 100]) + "\n")
    (tmp_path / "notes.txt").write_text("not a corpus")
    assert read_all([tmp_path]).num_rows == 300
    assert read_all([str(tmp_path / "part*.jsonl")]).num_rows == 300
    assert len(resolve_inputs([tmp_path, tmp_path / "part0.jsonl"])) == 3


def test_column_flags_title_prepended_and_filters(shared_data):
    path = shared_data / "acl_2016_2019.jsonl.gz"
    records = jsonl_records(path)
    table = read_all([path], columns=ColumnMap(title="title", label="booktitle"))
    row = table.slice(0, 1).to_pylist()[0]
    title = records[0]["title"].strip()
    assert row["text"].startswith(title)
    assert row["text"].endswith(records[0]["abstract"].strip())
    assert row["label"] == records[0]["booktitle"]

    stats = CorpusStats()
    lengths = [len((r.get("abstract") or "").strip()) for r in records]
    kept = read_all([path], filters=CorpusFilters(min_chars=500, max_chars=1000), stats=stats)
    assert kept.num_rows == sum(500 <= n <= 1000 for n in lengths)
    assert stats.skipped_short == sum(n < 500 for n in lengths)
    assert stats.skipped_long == sum(n > 1000 for n in lengths)


def test_empty_texts_are_skipped_and_counted(tmp_path):
    path = tmp_path / "c.jsonl"
    rows = [{"id": "a", "abstract": "Some text here."}, {"id": "b", "abstract": "   "}, {"id": "c"},
            {"id": "d", "abstract": None}, {"id": "e", "abstract": "More text."}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    stats = CorpusStats()
    table = read_all([path], stats=stats)
    assert table.column("id").to_pylist() == ["a", "e"]
    assert stats.skipped_empty == 3 and stats.rows_read == 5


def test_english_only_uses_language_field_or_function_words(pubmed_dir):
    path = pubmed_dir / "medline16n0902_sample.xml.gz"
    stats = CorpusStats()
    table = read_all([path], filters=CorpusFilters(english_only=True), stats=stats)
    everything = read_all([path])
    langs = everything.column("language").to_pylist()
    assert table.num_rows == sum(lang == "eng" for lang in langs)
    assert stats.skipped_non_english == everything.num_rows - table.num_rows > 0
    # the function-word test agrees with the curated language field on these real abstracts
    texts = everything.column("text").to_pylist()
    agree = sum(looks_english(t) == (lang == "eng") for t, lang in zip(texts, langs))
    assert agree / len(texts) > 0.97


def test_parse_year_and_first_label():
    assert parse_year("2016") == 2016 and parse_year(2019) == 2019 and parse_year(2019.0) == 2019
    assert parse_year("2025-03-18") == 2025 and parse_year("1998 Dec-1999 Jan") == 1998
    assert parse_year("n/a") is None and parse_year(None) is None and parse_year(float("nan")) is None
    assert first_label("['Neuroscience', 'Cell biology']") == "Neuroscience"
    assert first_label('["Ecology"]') == "Ecology" and first_label(["a", "b"]) == "a"
    assert first_label("Workshop") == "Workshop" and first_label([]) is None


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.jsonl", "no such file"),
    (lambda d: _write(d / "corpus.docx", "x"), "unknown format"),
    (lambda d: _write(d / "bad.jsonl", '{"abstract": "ok"}\n{"abstract": '), "bad.jsonl:2: not valid JSON"),
    (lambda d: _write(d / "none.jsonl", '{"id": 1, "body": "x"}\n'), "no text column"),
    (lambda d: _write(d / "empty.jsonl", '{"id": 1, "abstract": ""}\n'), "no abstracts with text"),
    (lambda d: _write_bytes(d / "trunc.jsonl.gz", gzip.compress(b'{"abstract": "a"}\n' * 1000)[:60]),
     "truncated or corrupt"),
])
def test_bad_inputs_give_one_clear_error(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(CorpusmapError, match=message):
        read_all([path])


def test_missing_explicit_column_and_non_year_column(shared_data):
    path = shared_data / "elife_2012_2016.jsonl.gz"
    with pytest.raises(CorpusmapError, match="column 'journal' .*--label-col.* not in"):
        read_all([path], columns=ColumnMap(label="journal"))
    with pytest.raises(CorpusmapError, match="holds no years"):
        read_all([path], columns=ColumnMap(year="article_type"))


def _write(path, text):
    path.write_text(text)
    return path


def _write_bytes(path, data):
    path.write_bytes(data)
    return path
