"""PubMed as it arrives: an annual baseline plus update files (issue 15, item 4).

The fixtures are built from the real MEDLINE records of ../shared/data/pubmed_xml/medline16n0902_sample.xml.gz:
two baseline files, then update files (in the PubmedArticleSet layout of the daily updates) that revise some of
the baseline's records, delete others with DeleteCitation, add new ones, and carry two versions of one PMID.
Reading the folder keeps the latest version of each PMID (the highest Version; of that version the later file, by
NLM's file numbers), drops the deleted PMIDs, counts both, and keeps a deterministic row order: each current record
where it stands in the files, read in input order (a folder or glob in name order, files named one by one as
given).
"""
from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pyarrow as pa
import pytest

from corpusmap.corpus import CorpusStats, iter_corpus
from corpusmap.pubmed import iter_pubmed, scan_pubmed, update_plan


@pytest.fixture(scope="module")
def citations(pubmed_dir) -> list[bytes]:
    """The 604 real MedlineCitation elements of the 2016 sample, as bytes."""
    raw = gzip.decompress((pubmed_dir / "medline16n0902_sample.xml.gz").read_bytes())
    return re.findall(rb"<MedlineCitation[\s>].*?</MedlineCitation>", raw, flags=re.S)


def pmid_of(citation: bytes) -> str:
    return re.search(rb"<PMID[^>]*>(\d+)</PMID>", citation).group(1).decode()


def revised(citation: bytes, note: str, version: int = 1) -> bytes:
    """The same citation with its abstract revised (``note`` added to the first AbstractText) and its Version."""
    out = re.sub(rb"(<AbstractText[^>]*>)", rb"\1" + note.encode() + b" ", citation, count=1)
    return re.sub(rb'<PMID Version="\d+">', f'<PMID Version="{version}">'.encode(), out, count=1)


def medline_set(citations: list[bytes], deletions: list[str] = ()) -> bytes:
    body = b"\n".join(citations)
    if deletions:
        body += b"\n<DeleteCitation>\n" + b"".join(f'<PMID Version="1">{p}</PMID>\n'.encode() for p in deletions) \
            + b"</DeleteCitation>"
    return b'<?xml version="1.0" encoding="UTF-8"?>\n<MedlineCitationSet>\n' + body + b"\n</MedlineCitationSet>\n"


def article_set(citations: list[bytes], deletions: list[str] = ()) -> bytes:
    """The layout of the annual baseline and the daily update files (PubmedArticle wrappers)."""
    body = b"\n".join(b"<PubmedArticle>" + c + b"<PubmedData/></PubmedArticle>" for c in citations)
    if deletions:
        body += b"\n<DeleteCitation>" + b"".join(f'<PMID Version="1">{p}</PMID>'.encode() for p in deletions) \
            + b"</DeleteCitation>"
    return b'<?xml version="1.0" encoding="UTF-8"?>\n<PubmedArticleSet>\n' + body + b"\n</PubmedArticleSet>\n"


@pytest.fixture(scope="module")
def updates(citations, tmp_path_factory):
    """pubmed/ with baseline n0001, n0002 and updates n0003, n0004 (name order = the order NLM publishes them)."""
    c = citations
    with_abstract = [i for i, x in enumerate(c) if b"<AbstractText" in x]
    a, b, d, e, f, g, h = (with_abstract[k] for k in (3, 10, 20, 30, 40, 350, 360))
    folder = tmp_path_factory.mktemp("pubmed")
    new_record = revised(c[with_abstract[5]], "A NEW RECORD.").replace(
        f"<PMID Version=\"1\">{pmid_of(c[with_abstract[5]])}</PMID>".encode(), b'<PMID Version="1">99999901</PMID>')
    files = {
        "pubmed16n0001.xml.gz": medline_set(c[:300]),
        "pubmed16n0002.xml.gz": medline_set(c[300:]),
        # update 1: revises a, b and g; deletes d, e and h (and a PMID that no file has)
        "pubmed16n0003.xml.gz": article_set([revised(c[a], "REVISED ONCE."), revised(c[b], "REVISED ONCE."),
                                             revised(c[g], "REVISED ONCE.")],
                                            [pmid_of(c[d]), pmid_of(c[e]), pmid_of(c[h]), "1"]),
        # update 2: revises a again; version 2 of f before its version 1 (the higher version wins); d comes back;
        # a record that is new; and a record deleted later in the same file
        "pubmed16n0004.xml.gz": article_set([revised(c[a], "REVISED TWICE."), revised(c[f], "VERSION TWO.", 2),
                                             revised(c[f], "VERSION ONE.", 1), revised(c[d], "BACK AGAIN."),
                                             new_record, revised(c[b], "DELETED SOON.")],
                                            [pmid_of(c[b])]),
    }
    for name, data in files.items():
        (folder / name).write_bytes(gzip.compress(data))
    return {"folder": folder, "index": dict(a=a, b=b, d=d, e=e, f=f, g=g, h=h), "citations": c}


def read(paths) -> tuple[pa.Table, CorpusStats]:
    stats = CorpusStats()
    table = pa.Table.from_batches(list(iter_corpus(paths, stats=stats)))
    return table, stats


def expected_rows(folder: Path) -> list[tuple[str, str]]:
    """The rows the update rules give, worked out independently: (file, position, pmid, version) of every record by
    parsing each file alone, the deletions by regex, then the rules applied in plain Python."""
    events = []
    for f, path in enumerate(sorted(folder.glob("*.xml.gz"))):
        raw = gzip.decompress(path.read_bytes())
        records = list(iter_pubmed(path))
        versions = [int(v) for v in re.findall(rb'<MedlineCitation[\s>].*?<PMID Version="(\d+)"', raw, flags=re.S)]
        deleted = [p.decode() for block in re.findall(rb"<DeleteCitation>(.*?)</DeleteCitation>", raw, flags=re.S)
                   for p in re.findall(rb"<PMID[^>]*>(\d+)</PMID>", block)]
        for pos, (record, version) in enumerate(zip(records, versions)):
            events.append(("record", f, pos, record, version))
        events.extend(("delete", f, len(records), pmid, None) for pmid in deleted)  # at the end of each file
    current: dict = {}
    for kind, f, pos, value, version in events:
        if kind == "delete":
            current.pop(value, None)
            continue
        pmid = value["pmid"]
        old = current.get(pmid)
        if old is None or old[0] < f or (old[0] == f and (old[1] < version or (old[1] == version and old[2] < pos))):
            current[pmid] = (f, version, pos, value)
    ordered = sorted(current.values(), key=lambda t: (t[0], t[2]))
    return [(v["pmid"], v["abstract"]) for f, version, pos, v in ordered if v["abstract"]]


def test_updates_keep_the_latest_version_and_drop_deleted_pmids(updates):
    c, i = updates["citations"], updates["index"]
    table, stats = read([updates["folder"]])
    ids = table.column("id").to_pylist()
    texts = dict(zip(ids, table.column("text").to_pylist()))
    assert len(ids) == len(set(ids))  # one row per PMID
    assert texts[pmid_of(c[i["a"]])].startswith("REVISED TWICE.")
    assert texts[pmid_of(c[i["g"]])].startswith("REVISED ONCE.")
    assert texts[pmid_of(c[i["f"]])].startswith("VERSION TWO.")  # the higher version of the same file wins
    assert texts[pmid_of(c[i["d"]])].startswith("BACK AGAIN.")  # deleted by update 1, back in update 2
    assert texts["99999901"].startswith("A NEW RECORD.")
    for gone in ("b", "e", "h"):  # deleted (b by a DeleteCitation after its revision in the same file)
        assert pmid_of(c[i[gone]]) not in texts
    assert [(r, t) for r, t in zip(ids, table.column("text").to_pylist())] == expected_rows(updates["folder"])


def test_replaced_and_deleted_are_counted_and_reported(updates):
    table, stats = read([updates["folder"]])
    # replaced (a later version kept): a twice (baseline, update 1), g once (baseline), f twice (baseline, its
    # version 1 in update 2); deleted (a DeleteCitation after them): d (baseline), e, h (baseline), and b three
    # times (baseline, update 1, update 2: the deletion comes last in update 2)
    assert stats.replaced == 2 + 1 + 2 and stats.deleted == 1 + 1 + 1 + 3
    assert stats.rows_read == 604 + 3 + 6 == stats.rows_kept + stats.replaced + stats.deleted + stats.skipped_empty
    summary = stats.summary()
    assert "5 replaced by a later version" in summary and "6 deleted (DeleteCitation)" in summary
    assert table.num_rows == stats.rows_kept


def test_embed_records_the_counts_in_corpus_json(updates, tmp_path):
    from conftest import cli

    run = tmp_path / "run"
    cli("-q", "embed", updates["folder"], "-o", run, "--model", "tfidf", "--prepare-only", ok=True)
    stats = json.loads((run / "corpus.json").read_text())["stats"]
    assert stats["replaced"] == 5 and stats["deleted"] == 6 and stats["duplicate_ids"] == 0


def test_row_order_is_deterministic_and_independent_of_how_inputs_are_named(updates):
    folder = updates["folder"]
    by_folder, _ = read([folder])
    by_glob, _ = read([str(folder / "pubmed16n*.xml.gz")])
    listed, _ = read(sorted(folder.glob("*.xml.gz")))
    assert by_folder.equals(by_glob) and by_folder.equals(listed) and by_folder.equals(read([folder])[0])
    # NLM's files apply in the order of their numbers, however they are given: the update still wins (and rows
    # stand in the order given)
    backwards, stats = read(sorted(folder.glob("*.xml.gz"), reverse=True))
    texts = dict(zip(backwards.column("id").to_pylist(), backwards.column("text").to_pylist()))
    a = pmid_of(updates["citations"][updates["index"]["a"]])
    assert texts[a].startswith("REVISED TWICE.")
    assert sorted(backwards.column("id").to_pylist()) == sorted(by_folder.column("id").to_pylist())
    assert backwards.column("id").to_pylist() != by_folder.column("id").to_pylist()
    # files not named by NLM's scheme apply in the order given: the later one wins
    renamed = {}
    for p in sorted(folder.glob("*.xml.gz")):
        renamed[p.name] = folder.parent / f"{folder.name}-renamed" / p.name.replace("pubmed16n", "part-")
        renamed[p.name].parent.mkdir(exist_ok=True)
        renamed[p.name].write_bytes(p.read_bytes())
    given, _ = read(sorted(renamed.values(), reverse=True))
    texts = dict(zip(given.column("id").to_pylist(), given.column("text").to_pylist()))
    assert not texts[a].startswith("REVISED")  # the baseline file, given last, wins
    in_order, _ = read([renamed[p.name].parent])
    assert in_order.equals(by_folder)


def test_without_updates_nothing_changes(pubmed_dir):
    """A baseline file on its own (no PMID twice, no deletion of its records) reads exactly as each record."""
    path = pubmed_dir / "medline16n0902_sample.xml.gz"
    table, stats = read([path])
    assert stats.replaced == 0 and stats.deleted == 0
    assert table.column("id").to_pylist() == [r["pmid"] for r in iter_pubmed(path) if r["abstract"]]


def test_two_versions_in_one_real_file(pubmed_dir):
    """tipplerow_pubmed_sample.xml holds PMID 31383287 twice, as Version 1 and Version 2: Version 2 is kept."""
    path = pubmed_dir / "tipplerow_pubmed_sample.xml"
    records = [r for r in iter_pubmed(path) if r["pmid"] == "31383287"]
    assert len(records) == 2
    table, stats = read([path])
    ids = table.column("id").to_pylist()
    assert ids.count("31383287") == 1 and stats.replaced == 1
    kept = table.column("text")[ids.index("31383287")].as_py()
    raw = path.read_bytes()
    second = re.search(rb'<PMID Version="2">31383287</PMID>.*?<AbstractText[^>]*>(.{40})', raw, flags=re.S)
    assert kept.startswith(" ".join(second.group(1).decode().split())[:30])


def test_the_scan_finds_what_the_parser_finds(pubmed_dir):
    for path in sorted(pubmed_dir.iterdir()):
        pmids, versions, deletions = scan_pubmed(path)
        stats: dict = {}
        assert pmids == [r["pmid"] for r in iter_pubmed(path, stats=stats)], path.name
        assert sum(len(listed) for _, listed in deletions) == stats["deleted"]
        assert [p for _, listed in deletions for p in listed] == stats["deleted_pmids"]


def test_the_scan_skips_comments_and_cdata(tmp_path, citations):
    body = (citations[0] + b"\n<!-- <MedlineCitation><PMID>1</PMID></MedlineCitation> -->\n"
            + b"<![CDATA[ <DeleteCitation><PMID>2</PMID></DeleteCitation> ]]>\n" + citations[1])
    path = tmp_path / "odd.xml"
    path.write_bytes(medline_set([body]))
    pmids, _, deletions = scan_pubmed(path)
    assert pmids == [pmid_of(citations[0]), pmid_of(citations[1])] == [r["pmid"] for r in iter_pubmed(path)]
    assert deletions == []


def test_the_plan_needs_a_few_bytes_per_record(updates):
    paths = sorted(updates["folder"].glob("*.xml.gz"))
    plan = update_plan(paths)
    n = 604 + 3 + 6
    assert len(plan.keep) == n and plan.keep.nbytes + plan.pmids.nbytes == 9 * n


def test_duplicate_ids_of_other_formats_are_warned_about_not_dropped(updates, tmp_path):
    """A JSONL file that repeats a PMID of the PubMed files: both kept, one warning."""
    c = updates["citations"]
    pmid = pmid_of(c[0])
    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps({"pmid": pmid, "abstract": "The same PMID from another source."}) + "\n")
    table, stats = read([updates["folder"], extra])
    assert table.column("id").to_pylist().count(pmid) == 2 and stats.duplicate_ids == 1
    assert any(repr(pmid) in w and "extra.jsonl:1" in w for w in stats.warnings)


def test_a_higher_version_beats_a_later_revision_of_a_lower_one(citations, tmp_path):
    """Version 2 of a PMID stays current when a later file revises its version 1."""
    first = citations[0]
    pmid = pmid_of(first)
    (tmp_path / "n0001.xml").write_bytes(article_set([revised(first, "V1", 1), revised(first, "V2", 2)]))
    (tmp_path / "n0002.xml").write_bytes(article_set([revised(first, "V1 revised", 1)]))
    rows = pa.Table.from_batches(list(iter_corpus([tmp_path]))).to_pylist()
    assert [r["id"] for r in rows] == [pmid] and rows[0]["text"].split()[0] == "V2"


def test_a_record_without_its_own_pmid_does_not_take_a_cited_one(citations, tmp_path):
    """A MedlineCitation with no PMID of its own that cites PMID p must not replace p's record."""
    first, second = citations[0], citations[1]
    cited = pmid_of(first)
    orphan = re.sub(rb"<PMID[^>]*>\d+</PMID>", b"", second, count=1).replace(
        b"</MedlineCitation>", f'<CommentsCorrectionsList><CommentsCorrections><PMID Version="1">{cited}</PMID>'
        f"</CommentsCorrections></CommentsCorrectionsList></MedlineCitation>".encode())
    (tmp_path / "n0001.xml").write_bytes(article_set([first]))
    (tmp_path / "n0002.xml").write_bytes(article_set([orphan]))
    ids = [r["id"] for r in pa.Table.from_batches(list(iter_corpus([tmp_path]))).to_pylist()]
    assert cited in ids and len(ids) == 2
