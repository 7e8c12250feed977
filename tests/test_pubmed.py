"""The PubMed / MEDLINE XML reader, on the real fixtures in ../shared/data/pubmed_xml.

Counts are checked twice: against numbers written here (verified by hand with zgrep) and against
an independent regex count of the raw XML, so a parser bug cannot hide behind a wrong constant.
"""
from __future__ import annotations

import gzip
import re
import tracemalloc

import pytest

import corpusmap.pubmed as pubmed
from corpusmap.errors import CorpusmapError
from corpusmap.pubmed import is_pubmed_xml, iter_pubmed

# name -> (citations, citations with an abstract)
FIXTURES = {
    "medline16n0902_sample.xml.gz": (604, 526),
    "tipplerow_pubmed20n0001.xml.gz": (10, 0),
    "tipplerow_pubmed20n0002.xml.gz": (10, 1),
    "tipplerow_pubmed20n1203.xml.gz": (10, 1),
    "tipplerow_pubmed_sample.xml": (7, 5),
    "test_current_medline.xml.gz": (4, 3),
    "pubmed-29768149.xml": (1, 1),
}


def _raw(path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def _citation_blocks(raw: bytes) -> list[bytes]:
    """Each MedlineCitation element's bytes, found by regex (no XML parser)."""
    return re.findall(rb"<MedlineCitation[\s>].*?</MedlineCitation>", raw, flags=re.S)


@pytest.fixture(scope="module")
def parsed(pubmed_dir):
    """name -> (records, records with labels, stats), parsed once per module."""
    out = {}
    for name in FIXTURES:
        stats: dict = {}
        records = list(iter_pubmed(pubmed_dir / name, stats=stats))
        labelled = list(iter_pubmed(pubmed_dir / name, with_labels=True))
        out[name] = (records, labelled, stats)
    return out


def _dois(raw: bytes) -> list:
    """Each record's DOI by regex: its Article's valid doi ELocationID, else the doi in the first ArticleIdList of
    its PubmedData (the article's own; the references' lists come later)."""
    articles = re.findall(rb"<PubmedArticle[\s>].*?</PubmedArticle>", raw, flags=re.S) or _citation_blocks(raw)
    out = []
    for block in articles:
        m = re.search(rb'<ELocationID EIdType="doi" ValidYN="Y">\s*([^<]+?)\s*<', block)
        if not m:
            ids = re.search(rb"<PubmedData>.*?<ArticleIdList>(.*?)</ArticleIdList>", block, flags=re.S)
            m = ids and re.search(rb'<ArticleId IdType="doi">\s*([^<]+?)\s*<', ids.group(1))
        out.append(m.group(1).decode() if m else None)
    return out


def _by_pmid(records):
    return {r["pmid"]: r for r in records}


def _write_xml(tmp_path, body: str, name="tiny.xml", root="PubmedArticleSet") -> str:
    path = tmp_path / name
    path.write_text(f'<?xml version="1.0" encoding="UTF-8"?>\n<{root}>{body}</{root}>\n', encoding="utf-8")
    return str(path)


def _citation(pmid="1", article="", extra="") -> str:
    return (f'<PubmedArticle><MedlineCitation Status="MEDLINE" Owner="NLM"><PMID Version="1">{pmid}</PMID>'
            f'{extra}<Article PubModel="Print">{article}</Article></MedlineCitation>'
            f'<PubmedData><ArticleIdList><ArticleId IdType="pubmed">{pmid}</ArticleId></ArticleIdList>'
            f'</PubmedData></PubmedArticle>')


# ----------------------------------------------------------------------------- fixture counts


@pytest.mark.parametrize("name", list(FIXTURES))
def test_fixture_counts(parsed, pubmed_dir, name):
    records, labelled, stats = parsed[name]
    n_records, n_abstracts = FIXTURES[name]
    blocks = _citation_blocks(_raw(pubmed_dir / name))
    # independent count of the raw XML agrees with the numbers above ...
    assert len(blocks) == n_records
    assert sum(bool(re.search(rb"<Abstract[\s>]", b)) for b in blocks) == n_abstracts
    # ... and so does the parser
    assert len(records) == n_records == stats["records"]
    assert sum(r["abstract"] is not None for r in records) == n_abstracts
    assert sum(r["abstract"] is not None for r in labelled) == n_abstracts
    assert [r["pmid"] for r in records] == [re.search(rb"<PMID[^>]*>(\d+)<", b).group(1).decode() for b in blocks]
    assert [r["doi"] for r in records] == _dois(_raw(pubmed_dir / name))
    for r in records:
        assert set(r) == {"pmid", "title", "abstract", "year", "date", "journal", "language", "doi"}
        assert r["title"] and r["journal"] and r["language"]
        assert isinstance(r["year"], int) and r["date"].startswith(str(r["year"]))
        assert re.fullmatch(r"\d{4}(-\d\d(-\d\d)?)?", r["date"])
        assert r["abstract"] is None or (r["abstract"] == r["abstract"].strip() and "  " not in r["abstract"])


def test_medline_2016_layout(parsed, pubmed_dir):
    """MedlineCitationSet/MedlineCitation: MedlineDate years, Italian records, a DeleteCitation."""
    records, _, stats = parsed["medline16n0902_sample.xml.gz"]
    by_pmid = _by_pmid(records)
    raw = _raw(pubmed_dir / "medline16n0902_sample.xml.gz")
    assert raw.count(b"<PubmedArticle") == 0 and b"<MedlineCitationSet>" in raw

    medline_dated = {}
    for block in _citation_blocks(raw):
        m = re.search(rb"<PubDate>\s*<MedlineDate>([^<]*)</MedlineDate>", block)
        if m:
            pmid = re.search(rb"<PMID[^>]*>(\d+)<", block).group(1).decode()
            medline_dated[pmid] = m.group(1).decode()
    assert len(medline_dated) == 62
    for pmid, text in medline_dated.items():
        assert by_pmid[pmid]["year"] == int(re.search(r"\d{4}", text).group())
    assert by_pmid["26432299"]["date"] == "2015-10"  # MedlineDate "2015 Oct-Dec": first month of the range

    assert sum(r["language"] == "ita" for r in records) == 18 == raw.count(b"<Language>ita</Language>")
    assert sum(r["language"] == "eng" for r in records) == 586
    # the DeleteCitation at the end is not a record
    assert "26432306" not in by_pmid
    assert stats["deleted"] == 1 and stats["deleted_pmids"] == ["26432306"] and stats["books"] == 0
    assert by_pmid["17942999"]["journal"] == "Restorative neurology and neuroscience"
    assert by_pmid["17942999"]["year"] == 2007


def test_baseline_layout(parsed):
    """Annual-baseline layout (PubmedArticleSet/PubmedArticle/MedlineCitation + PubmedData)."""
    names = ["tipplerow_pubmed20n0001.xml.gz", "tipplerow_pubmed20n0002.xml.gz", "tipplerow_pubmed20n1203.xml.gz"]
    assert sum(sum(r["abstract"] is not None for r in parsed[n][0]) for n in names) == 2
    first = parsed["tipplerow_pubmed20n0001.xml.gz"][0]
    assert sorted(int(r["pmid"]) for r in first) == list(range(1, 11))
    assert first[0] == {"pmid": "1", "title": "Formate assay in body fluids: application in methanol poisoning.",
                        "abstract": None, "year": 1975, "date": "1975-06", "journal": "Biochemical medicine",
                        "language": "eng", "doi": "10.1016/0006-2944(75)90147-7"}
    langs = [r["language"] for r in parsed["tipplerow_pubmed20n0002.xml.gz"][0]]
    assert langs.count("fre") == 5 and langs.count("pol") == 2 and langs.count("rus") == 1
    # DeleteCitation at the end of the update file: 23 PMIDs, none of them a record
    stats = parsed["tipplerow_pubmed20n1203.xml.gz"][2]
    assert stats["deleted"] == 23 and stats["records"] == 10
    assert not set(stats["deleted_pmids"]) & {r["pmid"] for r in parsed["tipplerow_pubmed20n1203.xml.gz"][0]}


def test_efetch_sample_years(parsed):
    records = parsed["tipplerow_pubmed_sample.xml"][0]
    # PubDate years as in the file (the data README says 2013-2014; the file says otherwise)
    assert [r["year"] for r in records] == [2014, 2019, 2019, 1975, 2019, 2019, 2019]
    assert sorted(r["year"] for r in records if r["abstract"]) == [2014, 2019, 2019, 2019, 2019]
    # the same PMID twice (citation versions 1 and 2): both kept, no de-duplication here
    assert [r["pmid"] for r in records].count("31383287") == 2
    assert parsed["tipplerow_pubmed_sample.xml"][2]["deleted"] == 3
    current = _by_pmid(parsed["test_current_medline.xml.gz"][0])
    assert current["36400559"]["date"] == "2023-02" and current["36400559"]["journal"] == "Neurologic clinics"
    assert current["11446611"]["abstract"] is None


# ----------------------------------------------------------------------------- abstracts and text


def test_structured_abstract(parsed):
    plain = parsed["pubmed-29768149.xml"][0][0]["abstract"]
    labelled = parsed["pubmed-29768149.xml"][1][0]["abstract"]
    assert plain.startswith("In patients with mild asthma, as-needed use of an inhaled glucocorticoid plus")
    assert "treatment strategies. We conducted a 52-week, double-blind trial" in plain  # sections joined by a space
    assert labelled.startswith("BACKGROUND: In patients with mild asthma, as-needed use")
    assert re.findall(r"\b([A-Z]{4,}): ", labelled) == ["BACKGROUND", "METHODS", "RESULTS", "CONCLUSIONS"]
    assert "treatment strategies. METHODS: We conducted a 52-week" in labelled
    assert labelled.replace("BACKGROUND: ", "").replace("METHODS: ", "").replace(
        "RESULTS: ", "").replace("CONCLUSIONS: ", "") == plain

    medline_plain = _by_pmid(parsed["medline16n0902_sample.xml.gz"][0])["17942999"]["abstract"]
    medline_labelled = _by_pmid(parsed["medline16n0902_sample.xml.gz"][1])["17942999"]["abstract"]
    assert medline_plain.startswith("An auditory electrophysiological study was conducted to explore")
    assert medline_labelled.startswith("PURPOSE: An auditory electrophysiological study")
    assert "cortical pitch processing. METHODS: Mismatch negativity (MMN)" in medline_labelled
    # sections without a Label attribute get no prefix
    unstructured = parsed["test_current_medline.xml.gz"][1][0]["abstract"]
    assert unstructured.startswith("Back pain is a common condition")


def test_unlabelled_sections_get_no_prefix(pubmed_dir, tmp_path, parsed):
    """NLM marks a structured abstract's paragraph without a heading Label="UNLABELLED" NlmCategory="UNASSIGNED":
    that is not a heading, so --section-labels writes no "UNLABELLED:" before it."""
    raw = (pubmed_dir / "pubmed-29768149.xml").read_bytes()
    edited = re.sub(rb'Label="BACKGROUND"[^>]*>', b'Label="UNLABELLED" NlmCategory="UNASSIGNED">', raw, count=1)
    assert edited != raw
    path = tmp_path / "unlabelled.xml"
    path.write_bytes(edited)
    (record,) = iter_pubmed(path, with_labels=True)
    labelled = parsed["pubmed-29768149.xml"][1][0]["abstract"]
    assert record["abstract"] == labelled.removeprefix("BACKGROUND: ")
    assert re.findall(r"\b([A-Z]{4,}): ", record["abstract"]) == ["METHODS", "RESULTS", "CONCLUSIONS"]


def test_inline_markup_in_fixtures(parsed):
    sample = _by_pmid(parsed["tipplerow_pubmed_sample.xml"][0])
    assert "lung function biomarkers (PEF, FVC,FEV1), we estimated" in sample["31687927"]["abstract"]  # FEV<sub>1</sub>
    nejm = parsed["pubmed-29768149.xml"][0][0]["abstract"]
    assert "2-agonist may be an alternative" in nejm  # &#946;<sub>2</sub>-agonist (pretty-printed)
    assert "\u03b2" in nejm and "\n" not in nejm and "\t" not in nejm


def test_inline_markup_and_truncation_marker(tmp_path):
    article = ('<Journal><JournalIssue><PubDate><Year>1990</Year></PubDate></JournalIssue><Title>J</Title></Journal>'
               '<ArticleTitle>Effect of <i>Escherichia coli</i> on Ca<sup>2+</sup>\n   channels</ArticleTitle>'
               '<Abstract><AbstractText Label="BACKGROUND" NlmCategory="BACKGROUND">We grew <i>E. coli</i> at '
               '10<sup>-3</sup> M.</AbstractText><AbstractText Label="RESULTS"></AbstractText>'
               '<AbstractText Label="CONCLUSIONS">It works. (ABSTRACT TRUNCATED AT 250 WORDS)</AbstractText>'
               '</Abstract><Language>eng</Language><Language>ger</Language>')
    path = _write_xml(tmp_path, _citation("7", article))
    (record,) = iter_pubmed(path)
    assert record["title"] == "Effect of Escherichia coli on Ca2+ channels"
    assert record["abstract"] == "We grew E. coli at 10-3 M. It works."
    assert record["language"] == "eng"
    (labelled,) = iter_pubmed(path, with_labels=True)
    assert labelled["abstract"] == "BACKGROUND: We grew E. coli at 10-3 M. CONCLUSIONS: It works."
    # the corpus reader keeps the text whole, as in every format; --cut-truncated cuts it
    from corpusmap.corpus import CorpusFilters, iter_corpus

    def text(filters):
        return next(iter(iter_corpus([path], filters=filters))).column("text").to_pylist()[0]

    assert text(CorpusFilters()).endswith("It works. (ABSTRACT TRUNCATED AT 250 WORDS)")
    assert text(CorpusFilters(cut_truncated=True)) == "We grew E. coli at 10-3 M. It works. "  # x[:y-1], as the paper


# ----------------------------------------------------------------------------- dates, journal, layouts


@pytest.mark.parametrize("pub_date, extra_article, expected", [
    ("<Year>2001</Year><Month>Jan</Month><Day>5</Day>", "", (2001, "2001-01-05")),
    ("<Year>2001</Year><Month>09</Month>", "", (2001, "2001-09")),
    ("<Year>2001</Year><Month>Sept</Month>", "", (2001, "2001-09")),
    ("<Year>2001</Year><Season>Spring</Season>", "", (2001, "2001")),
    ("<Year>2001</Year><Season>May-Jun</Season>", "", (2001, "2001-05")),
    ("<Year>2001</Year><Day>5</Day>", "", (2001, "2001")),
    ("<MedlineDate>1998 Dec-1999 Jan</MedlineDate>", "", (1998, "1998-12")),
    ("<MedlineDate>Winter 2015-2016</MedlineDate>", "", (2015, "2015")),
    ("<MedlineDate>2015 Fall</MedlineDate>", "", (2015, "2015")),
    # PubDate gives nothing: ArticleDate, then DateCompleted
    ("", '<ArticleDate DateType="Electronic"><Year>2003</Year><Month>02</Month><Day>28</Day></ArticleDate>',
     (2003, "2003-02-28")),
    ("<MedlineDate>unknown</MedlineDate>", "", (2004, "2004-07-01")),
    ("", "", (2004, "2004-07-01")),
])
def test_dates(tmp_path, pub_date, extra_article, expected):
    article = (f"<Journal><JournalIssue><PubDate>{pub_date}</PubDate></JournalIssue><Title>J</Title></Journal>"
               f"<ArticleTitle>T</ArticleTitle>{extra_article}")
    extra = "<DateCompleted><Year>2004</Year><Month>07</Month><Day>01</Day></DateCompleted>"
    (record,) = iter_pubmed(_write_xml(tmp_path, _citation("1", article, extra)))
    assert (record["year"], record["date"]) == expected


def test_missing_fields_and_fallbacks(tmp_path):
    article = "<Journal><JournalIssue><PubDate/></JournalIssue></Journal><ArticleTitle>  </ArticleTitle>"
    extra_info = "<MedlineJournalInfo><MedlineTA>Biochem Med</MedlineTA></MedlineJournalInfo>"
    body = (f'<PubmedArticle><MedlineCitation><PMID Version="1">5</PMID><Article>{article}</Article>'
            f"{extra_info}</MedlineCitation></PubmedArticle>")
    (record,) = iter_pubmed(_write_xml(tmp_path, body))
    assert record == {"pmid": "5", "title": None, "abstract": None, "year": None, "date": None,
                      "journal": "Biochem Med", "language": None, "doi": None}


def test_deletions_books_and_bare_roots(tmp_path):
    book = ('<PubmedBookArticle><BookDocument><PMID Version="1">99</PMID><ArticleTitle>Chapter</ArticleTitle>'
            '</BookDocument><PubmedBookData/></PubmedBookArticle>')
    delete = '<DeleteCitation><PMID Version="1">11</PMID><PMID Version="1">12</PMID></DeleteCitation>'
    body = _citation("1", "<ArticleTitle>A</ArticleTitle>") + book + _citation("2") + delete
    stats: dict = {}
    records = list(iter_pubmed(_write_xml(tmp_path, body), stats=stats))
    assert [r["pmid"] for r in records] == ["1", "2"]
    assert stats == {"records": 2, "books": 1, "deleted": 2, "deleted_pmids": ["11", "12"]}
    # the corpus counts the book chapters it leaves out (in its summary and corpus.json): here, where no record
    # has an abstract, in the error
    from corpusmap.corpus import CorpusStats, iter_corpus

    corpus_stats = CorpusStats()
    with pytest.raises(CorpusmapError, match=r"2 skipped \(empty\); 1 book chapter\(s\) left out \(PubmedBook"):
        list(iter_corpus([tmp_path / "tiny.xml"], stats=corpus_stats))
    assert corpus_stats.books == 1

    # one efetch record without a set element around it
    one = tmp_path / "one.xml"
    one.write_text(_citation("3", "<ArticleTitle>Single</ArticleTitle>"))
    assert [(r["pmid"], r["title"]) for r in iter_pubmed(one)] == [("3", "Single")]
    bare = tmp_path / "bare.xml"
    bare.write_text('<MedlineCitation><PMID>4</PMID><Article><ArticleTitle>Bare</ArticleTitle></Article>'
                    '</MedlineCitation>')
    assert [(r["pmid"], r["title"]) for r in iter_pubmed(bare)] == [("4", "Bare")]


def test_gzip_detected_by_content_not_name(pubmed_dir, tmp_path, parsed):
    gz_named_xml = tmp_path / "really_gzip.xml"
    gz_named_xml.write_bytes(gzip.compress((pubmed_dir / "tipplerow_pubmed_sample.xml").read_bytes()))
    plain_named_gz = tmp_path / "really_plain.xml.gz"
    plain_named_gz.write_bytes(_raw(pubmed_dir / "test_current_medline.xml.gz"))
    assert list(iter_pubmed(gz_named_xml)) == parsed["tipplerow_pubmed_sample.xml"][0]
    assert list(iter_pubmed(plain_named_gz)) == parsed["test_current_medline.xml.gz"][0]
    assert is_pubmed_xml(gz_named_xml) and is_pubmed_xml(plain_named_gz)


def test_fallback_parse_loop_gives_same_records(pubmed_dir, parsed, monkeypatch):
    """The XMLPullParser path (used where XMLParser._setevents is missing) agrees with the fast one."""
    monkeypatch.setattr(pubmed, "_USE_SETEVENTS", False)
    for name in FIXTURES:
        assert list(iter_pubmed(pubmed_dir / name)) == parsed[name][0]


# ----------------------------------------------------------------------------- errors


def test_truncated_xml_names_file_and_position(pubmed_dir, tmp_path):
    raw = _raw(pubmed_dir / "medline16n0902_sample.xml.gz")
    cut = raw[: len(raw) // 2]
    path = tmp_path / "truncated.xml"
    path.write_bytes(cut)
    with pytest.raises(CorpusmapError) as info:
        for _ in iter_pubmed(path):
            pass
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    line = cut.count(b"\n") + 1
    assert f"malformed XML at line {line}, column" in message


def test_bad_tag_names_line(pubmed_dir, tmp_path):
    raw = (pubmed_dir / "tipplerow_pubmed_sample.xml").read_bytes()
    lines = raw.split(b"\n")
    lines[40] = b"<Bad tag>" + lines[40]
    path = tmp_path / "bad.xml"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(CorpusmapError, match=r"bad\.xml: malformed XML at line 41, column 9: not well-formed"):
        list(iter_pubmed(path))


def test_truncated_gzip(pubmed_dir, tmp_path):
    path = tmp_path / "cut.xml.gz"
    path.write_bytes((pubmed_dir / "medline16n0902_sample.xml.gz").read_bytes()[:200_000])
    with pytest.raises(CorpusmapError) as info:
        list(iter_pubmed(path))
    message = str(info.value)
    assert message.startswith(str(path)) and "truncated or corrupt gzip" in message and "\n" not in message
    assert is_pubmed_xml(path)  # the first KB are still readable


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(CorpusmapError, match="nope.xml: cannot open"):
        list(iter_pubmed(tmp_path / "nope.xml"))
    empty = tmp_path / "empty.xml"
    empty.write_bytes(b"")
    with pytest.raises(CorpusmapError, match=r"empty\.xml: malformed XML at line 1, column 1: no element found"):
        list(iter_pubmed(empty))


# ----------------------------------------------------------------------------- memory


def test_memory_does_not_grow_with_file_size(pubmed_dir, tmp_path):
    """20,000 copies of a real record (trimmed to the elements the reader uses) in a 22 MB (uncompressed)
    .xml.gz. tracemalloc slows parsing about tenfold, so it watches the last 5,000 records only: memory a
    reader kept per record would be allocated, and counted, there too (several MB); clearing keeps the
    traced peak to about one 64 KB chunk of records."""
    raw = _raw(pubmed_dir / "test_current_medline.xml.gz")
    record = re.search(rb"<PubmedArticle>.*?</PubmedArticle>", raw, flags=re.S).group(0)
    for tag in (b"AuthorList", b"MeshHeadingList", b"PubmedData", b"ChemicalList", b"KeywordList",
                b"PublicationTypeList", b"DateRevised", b"Pagination", b"ELocationID", b"ISSN",
                b"CopyrightInformation", b"CitationSubset", b"CoiStatement", b"ISOAbbreviation", b"ArticleDate",
                b"MedlineJournalInfo", b"DateCompleted"):
        record = re.sub(rb"<%s[\s>].*?</%s>" % (tag, tag), b"", record, flags=re.S)
    n, traced = 20_000, 5_000
    head, tail = b'<?xml version="1.0"?>\n<PubmedArticleSet>\n', b"</PubmedArticleSet>\n"
    path = tmp_path / "big.xml.gz"
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write(head)
        fh.write((record + b"\n") * n)
        fh.write(tail)
    uncompressed = len(head) + len(tail) + (len(record) + 1) * n
    assert uncompressed > 20_000_000

    records = iter_pubmed(path)
    for _ in range(n - traced):
        next(records)
    tracemalloc.start()
    try:
        rest = 0
        for rec in records:
            rest += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rest == traced and rec["pmid"] == "36400559" and rec["year"] == 2023
    traced_bytes = (len(record) + 1) * traced  # 5.6 MB of XML went through the parser while traced
    assert peak < 1_500_000 and peak < traced_bytes / 4, (peak, traced_bytes, uncompressed)


# ----------------------------------------------------------------------------- sniffing


def test_is_pubmed_xml(pubmed_dir, tmp_path, shared_data):
    for name in FIXTURES:
        assert is_pubmed_xml(pubmed_dir / name), name

    jats = tmp_path / "article.xml"
    jats.write_text('<?xml version="1.0"?>\n<!DOCTYPE article PUBLIC "-//NLM//DTD JATS (Z39.96) Journal Archiving '
                    'and Interchange DTD v1.2 20190208//EN" "JATS-archivearticle1.dtd">\n<article><front>'
                    "<article-meta><title-group><article-title>Not PubMed</article-title></title-group>"
                    "</article-meta></front></article>\n")
    assert not is_pubmed_xml(jats)
    rss = tmp_path / "feed.xml.gz"
    rss.write_bytes(gzip.compress(b'<?xml version="1.0"?><rss version="2.0"><channel><title>PubMed</title>'
                                  b"</channel></rss>"))
    assert not is_pubmed_xml(rss)

    jsonl = tmp_path / "corpus.jsonl"
    jsonl.write_text('{"id": "1", "title": "PubmedArticleSet", "abstract": "<PubmedArticleSet>"}\n')
    assert not is_pubmed_xml(jsonl)
    elife = shared_data / "elife_2012_2016.jsonl.gz"
    if elife.exists():
        assert not is_pubmed_xml(elife)

    # a DOCTYPE naming a PubMed DTD decides when the root element lies beyond the sniffed bytes
    late_root = tmp_path / "late_root.xml"
    late_root.write_text('<?xml version="1.0"?>\n<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, '
                         '1st January 2024//EN" "https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_240101.dtd">\n'
                         f"<!-- {'x' * 20_000} -->\n<PubmedArticleSet></PubmedArticleSet>\n")
    assert is_pubmed_xml(late_root)
    # comments mentioning PubMed elements do not fool it
    commented = tmp_path / "commented.xml"
    commented.write_text("<!-- <PubmedArticleSet> --><catalog><book/></catalog>")
    assert not is_pubmed_xml(commented)

    assert not is_pubmed_xml(tmp_path / "missing.xml")
    junk = tmp_path / "junk.xml.gz"
    junk.write_bytes(b"\x1f\x8b" + bytes(range(256)) * 4)
    assert not is_pubmed_xml(junk)
