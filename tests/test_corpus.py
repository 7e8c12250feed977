"""Corpus readers on real corpora (the bundled eLife example corpus; the row counts of the big corpora and the
real PubMed XML where ../shared/data exists): every format and compression, column mapping, filters."""
from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import EXAMPLE_CORPUS, read_jsonl
from corpusmap.corpus import (ColumnMap, CorpusFilters, CorpusStats, first_label, iter_corpus, looks_english,
                              parse_year, resolve_inputs)
from corpusmap.errors import CorpusmapError


def read_all(paths, **kwargs) -> pa.Table:
    stats = kwargs.pop("stats", None) or CorpusStats()
    return pa.Table.from_batches(list(iter_corpus(paths, stats=stats, **kwargs)))


jsonl_records = read_jsonl


def corpus_file(request, name):
    """The example corpus is bundled; the others are read from ../shared/data (skipped where it is absent)."""
    if name == "elife_2012_2016":
        return EXAMPLE_CORPUS
    return request.getfixturevalue("shared_data") / f"{name}.jsonl.gz"


@pytest.mark.parametrize("name, rows", [("elife_2012_2016", 1881), ("acl_2016_2019", 8401),
                                        ("arxiv_2025_2026", 74728)])
def test_jsonl_corpora_row_counts(request, name, rows):
    path = corpus_file(request, name)
    stats = CorpusStats()
    table = read_all([path], stats=stats)
    assert table.num_rows == rows == stats.rows_read == stats.rows_kept
    with gzip.open(path, "rt") as fh:  # one record a line, each with an abstract (as the data's README says)
        assert sum(1 for line in fh if line.strip()) == rows
    assert table.schema.names[:5] == ["id", "text", "title", "year", "label"]
    assert table.column("text").null_count == 0


def test_auto_detected_columns_and_values():
    path = EXAMPLE_CORPUS
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


def test_every_format_and_gzip_give_the_same_corpus(tmp_path):
    source = EXAMPLE_CORPUS
    records = jsonl_records(source)[:300]
    reference = read_all([source]).slice(0, 300).select(["id", "text", "title", "year", "label"])
    for name, path in _write_formats(records, tmp_path).items():
        table = read_all([path], batch_rows=64).select(["id", "text", "title", "year", "label"])
        assert table.to_pylist() == reference.to_pylist(), name


@pytest.mark.parametrize("as_text", [False, True])
def test_compact_dates_give_their_year(tmp_path, as_text):
    """Years written as dates YYYYMMDD (20120315, a number or a string) are read as their year, in every file
    format; a number that is no such date (month 13, day 40) is no year."""
    from corpusmap.values import parse_year

    records = jsonl_records(EXAMPLE_CORPUS)[:300]
    reference = read_all([EXAMPLE_CORPUS]).slice(0, 300).column("year").to_pylist()
    compact = [dict(r, year=(str if as_text else int)(f"{r['year']}{3 + i % 9:02d}{1 + i % 28:02d}"))
               for i, r in enumerate(records)]
    for name, path in _write_formats(compact, tmp_path).items():
        assert read_all([path], batch_rows=64).column("year").to_pylist() == reference, name
    assert [parse_year(v) for v in (20211301, "20211340", 12345678, "2021-03-04")] == [None, None, None, 2021]
    assert [parse_year(v) for v in (20210304.0, 2021.0, 10 ** 40, 1e300)] == [2021, 2021, None, None]


def test_json_array_streams_records_across_read_blocks(tmp_path):
    records = [{"id": str(i), "abstract": f"word{i} " * (i % 50 + 1) + "x" * 70_000} for i in range(40)]
    path = tmp_path / "big.json"
    path.write_text(json.dumps(records, indent=1))
    table = read_all([path], batch_rows=7)
    assert table.column("id").to_pylist() == [r["id"] for r in records]
    assert table.column("text").to_pylist() == [r["abstract"].strip() for r in records]


def test_directory_and_glob_inputs(tmp_path):
    source = EXAMPLE_CORPUS
    lines = gzip.open(source, "rt").read().splitlines()
    for part in range(3):
        (tmp_path / f"part{part}.jsonl").write_text("\n".join(lines[part * 100:(part + 1) * 100]) + "\n")
    (tmp_path / "notes.txt").write_text("not a corpus")
    assert read_all([tmp_path]).num_rows == 300
    assert read_all([str(tmp_path / "part*.jsonl")]).num_rows == 300
    assert len(resolve_inputs([tmp_path, tmp_path / "part0.jsonl"])) == 3
    # hidden files (macOS's ._ copies) and a corpusmap run folder inside the input folder are not inputs
    (tmp_path / "._part0.jsonl").write_bytes(b"\x00\x05\x16\x07 binary resource fork")
    run = tmp_path / "run"
    run.mkdir()
    pq.write_table(read_all([tmp_path / "part0.jsonl"]), run / "corpus.parquet")
    (run / "corpus.json").write_text("{}")
    assert read_all([tmp_path]).num_rows == 300
    with pytest.raises(CorpusmapError, match="is a corpusmap run directory, not a folder of inputs; give the inputs"):
        resolve_inputs([run])


def test_a_spreadsheets_semicolon_csv_reads_as_the_comma_one(tmp_path):
    """Excel's export in many locales: ; between values, a BOM, CRLF line ends."""
    import pandas as pd

    records = [json.loads(line) for line in gzip.open(EXAMPLE_CORPUS, "rt").read().splitlines()[:120]]
    frame = pd.DataFrame(records)[["doi", "title", "abstract", "year", "subjects"]]
    frame.to_csv(tmp_path / "comma.csv", index=False)
    frame.to_csv(tmp_path / "semicolon.csv", index=False, sep=";", encoding="utf-8-sig", lineterminator="\r\n")
    assert read_all([tmp_path / "semicolon.csv"]).equals(read_all([tmp_path / "comma.csv"]))


def test_csv_headers_with_repeated_or_empty_names(tmp_path, caplog):
    """A spreadsheet's trailing unnamed columns and a repeated name read as pandas reads them (Unnamed: i,
    name.1), with a warning for the repeat, instead of failing."""
    import pandas as pd

    path = tmp_path / "sheet.csv"
    path.write_text('id,abstract,note,note,,\n1,"Cells divide, and this abstract says so at length.",a,b,,\n'
                    '2,"Proteins fold into shapes that this abstract describes.",c,d,,\n')
    table = read_all([path])
    assert table.column_names == ["id", "text", "title", "year", "label", "note", "note.1", "Unnamed: 4",
                                  "Unnamed: 5"]
    assert list(pd.read_csv(path).columns)[2:] == ["note", "note.1", "Unnamed: 4", "Unnamed: 5"]
    assert table.column("note.1").to_pylist() == ["b", "d"]
    assert "repeats the column name(s) 'note'; the repeats are read as 'note.1'" in caplog.text


def test_ids_are_checked_across_files_generated_and_whole_float_ids(tmp_path, caplog):
    """A row without an id gets its row number, which may be a real id of another file: warned like any
    duplicate. Ids a pandas float column stored as 2.0 read "2", as the same ids in other files."""
    import pandas as pd

    (tmp_path / "a.csv").write_text("text\nalpha text one\nbeta text two\n")     # ids 0, 1 (row numbers)
    pd.DataFrame({"id": [7.0, None, 1.0], "text": ["c text", "d text", "e text"]}).to_parquet(tmp_path / "b.parquet")
    stats = CorpusStats()
    table = read_all([tmp_path], stats=stats)
    assert table.column("id").to_pylist() == ["0", "1", "7", "3", "1"]
    # value by value, whatever the batch: a fractional id elsewhere in the column changes no other id
    pd.DataFrame({"id": [1.0, 2, 3, 4, 5, 6.5, 7, None], "text": [f"text {i}" for i in range(8)]}).to_parquet(
        tmp_path / "c.parquet")
    assert read_all([tmp_path / "c.parquet"], batch_rows=4).column("id").to_pylist() == \
        ["1", "2", "3", "4", "5", "6.5", "7", "7"]
    assert stats.duplicate_ids == 1
    assert "the first '1' at" in caplog.text and "have their row number as id" in caplog.text


@pytest.mark.parametrize("name, label", [("elife_2012_2016", "article_type"), ("acl_2016_2019", "booktitle")])
def test_column_flags_title_prepended_and_filters(request, name, label):
    path = corpus_file(request, name)
    records = jsonl_records(path)
    table = read_all([path], columns=ColumnMap(title="title", label=label))
    assert table.num_rows == len(records)
    for row, record in zip(table.slice(0, 50).to_pylist(), records):
        assert row["text"].startswith((record.get("title") or "").strip())
        assert row["text"].endswith(record["abstract"].strip())
        assert row["label"] == record[label]

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


def test_english_only_uses_the_language_field_when_present(tmp_path):
    """The example corpus with a language field added: exactly the rows marked English are kept, whatever the
    text says (these abstracts are all English)."""
    records = jsonl_records(EXAMPLE_CORPUS)[:200]
    for i, record in enumerate(records):
        record["language"] = ["eng", "ita", "ger", "eng"][i % 4]
    path = tmp_path / "languages.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    stats = CorpusStats()
    table = read_all([path], filters=CorpusFilters(english_only=True), stats=stats)
    assert table.column("id").to_pylist() == [r["doi"] for r in records if r["language"] == "eng"]
    assert stats.skipped_non_english == sum(r["language"] != "eng" for r in records) == 100


def test_english_only_without_a_language_field_uses_function_words(tmp_path):
    """No language field: the function-word test keeps every (English) eLife abstract and drops abstracts in
    other languages (here Italian, German and French paraphrases of the first eLife abstract)."""
    records = jsonl_records(EXAMPLE_CORPUS)
    # all English: only a very short one-sentence abstract can fall below the threshold
    assert sum(looks_english(r["abstract"]) for r in records) >= len(records) - 3
    foreign = [
        "Questo studio descrive il ruolo delle goccioline lipidiche nella risposta antibatterica: gli istoni "
        "legati alle goccioline vengono rilasciati e uccidono i batteri, e gli embrioni con istoni sopravvivono di "
        "più quando sono infettati con quattro specie diverse di batteri.",
        "Wir beschreiben die Rolle der Lipidtröpfchen in der antibakteriellen Abwehr: die an die Tröpfchen "
        "gebundenen Histone werden freigesetzt und töten die Bakterien, und die Embryonen mit diesen Histonen "
        "überleben eine Infektion mit vier verschiedenen Bakterienarten besser als die anderen.",
        "Nous décrivons le rôle des gouttelettes lipidiques dans la défense antibactérienne : les histones liées "
        "aux gouttelettes sont libérées et tuent les bactéries, et les embryons qui les portent survivent mieux à "
        "une infection par quatre espèces de bactéries que les autres.",
    ]
    rows = [{"id": r["doi"], "abstract": r["abstract"]} for r in records[:30]]
    rows += [{"id": f"foreign{i}", "abstract": text} for i, text in enumerate(foreign)]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    stats = CorpusStats()
    table = read_all([path], filters=CorpusFilters(english_only=True), stats=stats)
    assert table.column("id").to_pylist() == [r["doi"] for r in records[:30]]
    assert stats.skipped_non_english == len(foreign)


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
    assert first_label(float("nan")) is None and first_label(3) == "3"


def test_a_json_nan_label_is_no_label(tmp_path):
    path = tmp_path / "nan.jsonl"
    path.write_text('{"abstract": "an abstract", "label": NaN}\n{"abstract": "another one", "label": "Bio"}\n')
    batch = next(iter_corpus([path], columns=ColumnMap()))
    assert batch.column("label").to_pylist() == [None, "Bio"]


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.jsonl", "no such file"),
    (lambda d: _write(d / "corpus.docx", "x"), "unknown format"),
    (lambda d: _write(d / "bad.jsonl", '{"abstract": "ok"}\n{"abstract": '), "bad.jsonl:2: not valid JSON"),
    (lambda d: _write(d / "open.jsonl", '{"abstract": "ok"}\n{"abstract": "never closed}\n'),
     r"open.jsonl:2: not valid JSON \(Unterminated string starting at column 14\)"),
    (lambda d: _write(d / "none.jsonl", '{"id": 1, "body": "x"}\n'), "no text column"),
    (lambda d: _write(d / "empty.jsonl", '{"id": 1, "abstract": ""}\n'), "no abstracts with text"),
    (lambda d: _write_bytes(d / "trunc.jsonl.gz", gzip.compress(b'{"abstract": "a"}\n' * 1000)[:60]),
     "truncated or corrupt"),
    (lambda d: _write_bytes(d / "u16.csv", "id,abstract\n1,some text\n".encode("utf-16")),
     r"u16.csv is UTF-16 text; corpusmap reads UTF-8: convert it first, e.g. `iconv -f utf-16 -t utf-8"),
    (lambda d: _write_bytes(d / "u16.jsonl.gz", gzip.compress('{"abstract": "some text"}\n'.encode("utf-16-le"))),
     "u16.jsonl.gz is UTF-16LE text"),
    (lambda d: _write(d / "lines.json", '{"abstract": "one text"}\n{"abstract": "two text"}\n'),
     "lines.json: holds one JSON object after another, which is JSON Lines, not one JSON document: rename it to "
     "lines.jsonl"),
])
def test_bad_inputs_give_one_clear_error(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(CorpusmapError, match=message):
        read_all([path])


def test_a_json_file_of_one_object_is_a_corpus_of_one(tmp_path):
    path = _write(tmp_path / "one.json", '{"abstract": "the one abstract", "year": 2020}\n')
    table = read_all([path])
    assert table.column("text").to_pylist() == ["the one abstract"] and table.column("year").to_pylist() == [2020]


def test_missing_explicit_column_and_non_year_column():
    path = EXAMPLE_CORPUS
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


def test_long_crlf_lines_take_the_arrow_path(tmp_path, monkeypatch, shared_data):
    """Real arXiv records with CRLF line ends, one abstract padded past 4 KB: read by Arrow (the line reader
    switched off), the same rows as the LF file."""
    from corpusmap import corpus

    records = read_jsonl(shared_data / "arxiv_2025_2026.jsonl.gz")[:50]
    records[3]["abstract"] = " ".join([records[3]["abstract"]] * 8)
    assert len(records[3]["abstract"]) > 4096
    lines = [json.dumps(r) for r in records]
    lf, crlf = _write(tmp_path / "lf.jsonl", "\n".join(lines) + "\n"), \
        _write_bytes(tmp_path / "crlf.jsonl", ("\r\n".join(lines) + "\r\n").encode())
    expected = pa.Table.from_batches(list(iter_corpus([lf]))).to_pylist()

    def no_line_reader(self, data, first_line):
        raise AssertionError("the chunk went to the line reader")

    monkeypatch.setattr(corpus._JsonlReader, "_python", no_line_reader)
    assert pa.Table.from_batches(list(iter_corpus([crlf]))).to_pylist() == expected


@pytest.mark.parametrize("values", [
    [[None, "q"], ["a"], ["b", None]],          # a list whose first value is null
    [[], [None, "z"], ["y"]],                   # an empty list, then one starting with null
    [[None, 7, 8], [1], [None]],                # numbers after a null
], ids=["null-first", "empty-then-null", "numbers"])
def test_arrow_and_line_readers_agree_on_lists_starting_with_null(tmp_path, monkeypatch, values):
    """pyarrow's JSON parser builds invalid list arrays for such lists; the reader must notice and read the chunk
    line by line (same rows as with the Arrow path switched off)."""
    from corpusmap import corpus

    path = tmp_path / "lists.jsonl"
    path.write_text("".join(json.dumps({"id": str(i), "abstract": f"text {i}.", "label": v, "kw": v}) + "\n"
                            for i, v in enumerate(values)))

    def read():
        return pa.Table.from_batches(list(iter_corpus([path]))).to_pylist()

    arrow = read()
    monkeypatch.setattr(corpus._JsonlReader, "_arrow", lambda self, data, records: None)
    assert arrow == read()
