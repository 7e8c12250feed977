"""Streaming reader for PubMed / MEDLINE XML (``.xml`` or ``.xml.gz``).

Layouts handled
---------------
* ``PubmedArticleSet/PubmedArticle/MedlineCitation`` (+ ``PubmedData``): annual baseline, daily
  update files and E-utilities ``efetch`` output.
* ``MedlineCitationSet/MedlineCitation``: the older (up to 2016) MEDLINE layout without the
  ``PubmedArticle`` wrapper.
* A bare ``PubmedArticle`` or ``MedlineCitation`` as the root element (one efetch record).

Every field of a record is read from its ``MedlineCitation`` element, whatever wraps it.
Not records, and never yielded:

* ``DeleteCitation`` (update files: PMIDs to drop from earlier files). Their PMIDs are counted,
  and listed, in ``stats`` when the caller passes one (see :func:`iter_pubmed`).
* ``PubmedBookArticle`` (NCBI Bookshelf chapters; no ``MedlineCitation``, no journal): skipped and
  counted in ``stats["books"]``.

Records are not de-duplicated here: update files revise records of the baseline, so the same PMID can
occur in several files (and in several versions). :func:`update_plan` works out, from a quick byte scan of
all the files (:func:`scan_pubmed`), which record of each PMID is the current one and which were deleted;
:func:`corpusmap.corpus.iter_corpus` keeps only those.

Record fields
-------------
``pmid``      str, ``MedlineCitation/PMID``.
``title``     str or None: ``Article/ArticleTitle``, the text of inline markup (``<i>``, ``<sup>``,
              ...) kept, whitespace runs collapsed to one space.
``abstract``  str or None: every ``Article/Abstract/AbstractText`` section (not ``OtherAbstract``),
              each whitespace-normalised, joined with one space. ``with_labels=True`` writes each
              section that has a ``Label`` attribute as ``"LABEL: text"`` (not NLM's ``UNLABELLED``, which
              marks a paragraph that had no heading). Everything from the
              marker ``ABSTRACT TRUNCATED AT`` on (e.g. ``"(ABSTRACT TRUNCATED AT 250 WORDS)"``) is
              removed, with the opening bracket before it (``cut_truncated=False`` keeps the text whole:
              ``corpusmap embed --cut-truncated`` then cuts it exactly as the PubMed landscape paper did,
              González-Márquez et al., 2024, after its length filters).
``year``      int or None, first found of: ``Journal/JournalIssue/PubDate/Year``; the first 4-digit
              number in ``PubDate/MedlineDate`` (e.g. ``"2015 Oct-Dec"``); ``Article/ArticleDate/Year``
              (the first ArticleDate, usually the electronic publication date);
              ``MedlineCitation/DateCompleted/Year``.
``date``      str or None, from the same source as ``year`` (so ``date`` is None exactly when
              ``year`` is): ``"YYYY-MM-DD"``, ``"YYYY-MM"`` or ``"YYYY"``, whatever that source gives.
              Month names (``"Jan"``, ``"January"``) become numbers. For ``MedlineDate`` and
              ``Season`` a month is taken only when a month name directly follows the year / starts
              the season, and a range gives its first month (``"2015 Oct-Dec"`` -> ``"2015-10"``,
              ``Season`` ``"May-Jun"`` -> ``"YYYY-05"``, ``"Spring"`` -> ``"YYYY"``).
``journal``   str or None: ``Journal/Title``, else ``MedlineJournalInfo/MedlineTA``.
``language``  str or None: the first ``Article/Language`` (``"eng"``, ``"ita"``, ...).
``doi``       str or None: the first valid ``Article/ELocationID`` of type ``doi``, else the ``doi`` of
              ``PubmedData/ArticleIdList`` (the article's own ids, not its references').

A root element that is not PubMed's (RSS, JATS, ...) and an XML declaration naming an encoding that Python
does not know are errors that name the file and what was found.

Memory stays flat whatever the file size: the file is parsed in 64 KB chunks and each finished
child of the root (a ``PubmedArticle`` or ``MedlineCitation``, with everything under it) is turned
into a record and dropped from the tree at once (see :func:`_iter_records`). Malformed XML and
truncated/corrupt gzip raise :class:`corpusmap.errors.CorpusmapError` with one line naming the file
(and, for XML, the line and column of the error).
"""
from __future__ import annotations

import gzip
import os
import re
import zlib
from dataclasses import dataclass
from typing import IO, Iterator, Optional
from xml.etree import ElementTree as ET

from corpusmap.errors import CorpusmapError

__all__ = ["iter_pubmed", "is_pubmed_xml", "scan_pubmed", "update_plan", "UpdatePlan", "PUBMED_ROOTS"]

GZIP_MAGIC = b"\x1f\x8b"
# Root elements of the PubMed / MEDLINE DTDs (set files, and a single efetch record).
PUBMED_ROOTS = frozenset({
    "PubmedArticleSet", "MedlineCitationSet", "PubmedBookArticleSet",
    "PubmedArticle", "MedlineCitation", "PubmedBookArticle",
})
_SNIFF_BYTES = 8192
_TRUNCATION_MARK = "ABSTRACT TRUNCATED AT"

_MONTHS = {name: i for i, name in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1)}
_YEAR_RE = re.compile(r"(?<!\d)(\d{4})(?!\d)")
_YEAR_MONTH_RE = re.compile(r"(?<!\d)(\d{4})(?!\d)\s*([A-Za-z]+)?")
_LEADING_WORD_RE = re.compile(r"\s*([A-Za-z]+)")
_ET_POSITION_RE = re.compile(r":\s*line \d+, column \d+\s*$")


# --------------------------------------------------------------------------- opening files


def _is_gzip(path: str | os.PathLike) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def _open_binary(path: str | os.PathLike) -> IO[bytes]:
    """The file's bytes, decompressed if it starts with the gzip magic (the name does not matter)."""
    if _is_gzip(path):
        return gzip.open(path, "rb")
    return open(path, "rb")


# --------------------------------------------------------------------------- small helpers


def _norm(text: str) -> str:
    return " ".join(text.split())


def _all_text(elem: Optional[ET.Element]) -> Optional[str]:
    """Text of ``elem`` including its inline markup, whitespace-normalised; None when empty."""
    if elem is None:
        return None
    text = _norm("".join(elem.itertext()))
    return text or None


_FULL_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
                "september", "october", "november", "december")


def _month_number(token: Optional[str]) -> Optional[int]:
    """1-12 for ``"01"``, ``"1"``, ``"Jan"``, ``"Sept"``, ``"january"``; None otherwise."""
    if not token:
        return None
    token = token.strip().rstrip(".").lower()
    if token.isdigit():
        month = int(token)
        return month if 1 <= month <= 12 else None
    if len(token) >= 3:
        month = _MONTHS.get(token[:3])
        if month and _FULL_MONTHS[month - 1].startswith(token):
            return month
    return None


def _day_number(token: Optional[str]) -> Optional[int]:
    if token and token.strip().isdigit():
        day = int(token)
        return day if 1 <= day <= 31 else None
    return None


def _int_year(text: Optional[str]) -> Optional[int]:
    if text:
        match = _YEAR_RE.search(text)
        if match:
            return int(match.group(1))
    return None


def _format_date(year: int, month: Optional[int], day: Optional[int]) -> str:
    if month is None:
        return f"{year:04d}"
    if day is None:
        return f"{year:04d}-{month:02d}"
    return f"{year:04d}-{month:02d}-{day:02d}"


def _ymd_date(elem: Optional[ET.Element]) -> tuple[Optional[int], Optional[str]]:
    """(year, date) from an element with Year / Month / Day children (ArticleDate, DateCompleted)."""
    if elem is None:
        return None, None
    year = _int_year(elem.findtext("Year"))
    if year is None:
        return None, None
    month = _month_number(elem.findtext("Month"))
    day = _day_number(elem.findtext("Day")) if month else None
    return year, _format_date(year, month, day)


def _pub_date(pub_date: Optional[ET.Element]) -> tuple[Optional[int], Optional[str]]:
    """(year, date) from ``PubDate``: Year (+ Month / Season, Day), else MedlineDate."""
    if pub_date is None:
        return None, None
    year = _int_year(pub_date.findtext("Year"))
    if year is not None:
        month = _month_number(pub_date.findtext("Month"))
        day = _day_number(pub_date.findtext("Day")) if month else None
        if month is None:  # "May-Jun" gives May; "Spring", "Winter" give no month
            season = pub_date.findtext("Season")
            if season:
                word = _LEADING_WORD_RE.match(season)
                month = _month_number(word.group(1)) if word else None
        return year, _format_date(year, month, day)
    medline_date = pub_date.findtext("MedlineDate")
    if medline_date:
        match = _YEAR_MONTH_RE.search(medline_date)
        if match:
            year = int(match.group(1))
            return year, _format_date(year, _month_number(match.group(2)), None)
    return None, None


# Labels NLM gives the paragraphs of a structured abstract that had no heading (NlmCategory "UNASSIGNED")
_NO_LABEL = frozenset({"UNLABELLED", "UNLABELED"})


def _abstract(article: ET.Element, with_labels: bool, cut: bool = True) -> Optional[str]:
    parts = []
    for section in article.iterfind("Abstract/AbstractText"):
        text = _norm("".join(section.itertext()))
        if not text:
            continue
        if with_labels:
            label = (section.get("Label") or "").strip()
            if label and label.upper() not in _NO_LABEL:
                text = f"{label}: {text}"
        parts.append(text)
    if not parts:
        return None
    abstract = " ".join(parts)
    at = abstract.find(_TRUNCATION_MARK) if cut else -1
    if at >= 0:
        abstract = abstract[:at].rstrip(" ([{-").rstrip()
    return abstract or None


def _doi(article: Optional[ET.Element], pubmed_data: Optional[ET.Element]) -> Optional[str]:
    if article is not None:
        for loc in article.iterfind("ELocationID"):
            if loc.get("EIdType") == "doi" and loc.get("ValidYN", "Y") == "Y" and (loc.text or "").strip():
                return loc.text.strip()
    if pubmed_data is not None:
        for aid in pubmed_data.iterfind("ArticleIdList/ArticleId"):
            if aid.get("IdType") == "doi" and (aid.text or "").strip():
                return aid.text.strip()
    return None


def _record(citation: ET.Element, with_labels: bool, cut: bool = True,
            pubmed_data: Optional[ET.Element] = None) -> dict:
    """The record dict of one ``MedlineCitation`` element (``pubmed_data``: its ``PubmedData`` sibling)."""
    pmid = (citation.findtext("PMID") or "").strip()
    article = citation.find("Article")
    title = abstract = journal = language = None
    year = date = None
    if article is not None:
        title = _all_text(article.find("ArticleTitle"))
        abstract = _abstract(article, with_labels, cut)
        journal = _all_text(article.find("Journal/Title"))
        language = (article.findtext("Language") or "").strip() or None
        year, date = _pub_date(article.find("Journal/JournalIssue/PubDate"))
        if year is None:
            year, date = _ymd_date(article.find("ArticleDate"))
    if year is None:
        year, date = _ymd_date(citation.find("DateCompleted"))
    if journal is None:
        journal = _all_text(citation.find("MedlineJournalInfo/MedlineTA"))
    return {"pmid": pmid, "title": title, "abstract": abstract, "year": year, "date": date,
            "journal": journal, "language": language, "doi": _doi(article, pubmed_data)}


def _parse_error_message(path, exc: ET.ParseError) -> str:
    line, column = getattr(exc, "position", (None, None))
    reason = _ET_POSITION_RE.sub("", str(exc)).strip() or "parse error"
    # expat counts columns from 0; editors (and this message) from 1
    where = f" at line {line}, column {column + 1}" if line is not None else ""
    return f"{os.fspath(path)}: malformed XML{where}: {reason}"


# --------------------------------------------------------------------------- public API


def iter_pubmed(path: str | os.PathLike, *, with_labels: bool = False,
                stats: Optional[dict] = None, cut_truncated: bool = True) -> Iterator[dict]:
    """Yield one dict per ``MedlineCitation`` of a PubMed / MEDLINE XML file (gzipped or not).

    Keys: ``pmid``, ``title``, ``abstract``, ``year``, ``date``, ``journal``, ``language`` (see the
    module docstring for where each comes from). ``with_labels=True`` prefixes each structured
    abstract section with its label (``"BACKGROUND: ..."``). ``cut_truncated=False`` keeps the text from
    ``ABSTRACT TRUNCATED AT`` on.

    ``stats``, if given, is updated in place as the file is read: ``records`` (yielded),
    ``books`` (``PubmedBookArticle`` skipped), ``deleted`` (PMIDs in ``DeleteCitation``) and
    ``deleted_pmids`` (their list).

    Raises :class:`CorpusmapError` (one line: the file and what is wrong) for a missing or unreadable
    file, malformed or truncated XML, XML that is not PubMed's (another root element), an unknown encoding in
    the XML declaration, and truncated or corrupt gzip data.
    """
    if stats is not None:
        for key in ("records", "books", "deleted"):
            stats.setdefault(key, 0)
        stats.setdefault("deleted_pmids", [])
    try:
        fh = _open_binary(path)
    except OSError as exc:
        raise CorpusmapError(f"{os.fspath(path)}: cannot open ({exc.strerror or exc})") from None
    with fh:
        try:
            yield from _iter_records(fh, with_labels, stats, cut_truncated)
        except ET.ParseError as exc:
            raise CorpusmapError(_parse_error_message(path, exc)) from None
        except _NotPubmed as exc:
            raise CorpusmapError(
                f"{os.fspath(path)}: not PubMed/MEDLINE XML: no PubmedArticle or MedlineCitation records, the root "
                f"element is <{exc.args[0]}> (PubMed files have <PubmedArticleSet> or <MedlineCitationSet>); "
                "convert other XML to JSONL, CSV or Parquet") from None
        except (LookupError, ValueError) as exc:  # expat: an encoding it cannot decode
            if isinstance(exc, KeyError) or (isinstance(exc, ValueError) and "encoding" not in str(exc)):
                raise
            declared = _declared_encoding(path)
            raise CorpusmapError(
                f"{os.fspath(path)}: the XML declaration names an encoding that cannot be read "
                f"({declared or exc}); save the file as UTF-8 (e.g. `iconv -t utf-8`) and declare "
                'encoding="UTF-8"') from None
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise CorpusmapError(f"{os.fspath(path)}: truncated or corrupt gzip data ({exc})") from None


class _NotPubmed(Exception):
    """The document's root element is not one of PubMed's."""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else str(tag)


def _declared_encoding(path) -> Optional[str]:
    try:
        with _open_binary(path) as fh:
            head = fh.read(512)
    except (OSError, EOFError, zlib.error):
        return None
    match = re.search(rb"""encoding\s*=\s*["']([^"']{1,60})["']""", head)
    return match.group(1).decode("ascii", "replace") if match else None


_READ_SIZE = 1 << 16
# Whether the C parser's event hook can be switched off after the root element (CPython >= 3.4,
# and the pure-Python ElementTree too). Tests flip it to exercise the fallback.
_USE_SETEVENTS = hasattr(ET.XMLParser, "_setevents")


def _iter_records(fh: IO[bytes], with_labels: bool, stats: Optional[dict], cut: bool = True) -> Iterator[dict]:
    """The parse loop: feed 64 KB at a time; after each feed, the root's finished children are
    turned into records and removed from the tree, so memory holds only about one chunk.

    No Python code runs per XML element: the parser reports one "start" event (the root element,
    needed to reach its children) and is then switched to report nothing, through
    ``XMLParser._setevents``, the hook ``XMLPullParser``/``iterparse`` use. That is 1.3-1.6x as
    fast as an ``iterparse`` loop over start/end events that clears each record (measured on
    medline16n0902_sample and a 39 MB replica of it). Only the root's last child can still
    be open, so all others are complete. Where ``_setevents`` is missing, an ``XMLPullParser``
    with start events gives the same records, more slowly.
    """
    if _USE_SETEVENTS:
        parser = ET.XMLParser(target=ET.TreeBuilder())
        events: list = []
        parser._setevents(events, ("start",))

        def new_events():
            return events
    else:
        parser = ET.XMLPullParser(events=("start",))

        def new_events():
            return list(parser.read_events())  # also raises any queued ParseError

    root = None
    read = fh.read
    while True:
        data = read(_READ_SIZE)
        if data:
            parser.feed(data)
        else:
            parser.close()  # raises ParseError on a truncated document
        if root is None:
            started = new_events()
            if started:
                root = started[0][1]
                if _local(root.tag) not in PUBMED_ROOTS:
                    raise _NotPubmed(_local(root.tag))
                if _USE_SETEVENTS:
                    parser._setevents(events, ())
                    events.clear()
        elif not _USE_SETEVENTS:
            new_events()  # drain the queue (and raise a pending ParseError)
        if root is not None and root.tag != "MedlineCitation":
            done = len(root) if not data else len(root) - 1
            if done > 0:
                finished = root[:done]
                del root[:done]
                for child in finished:
                    record = _child_record(child, with_labels, stats, cut)
                    if record is not None:
                        yield record
        if not data:
            break
    if root is not None and root.tag == "MedlineCitation":  # a single citation as the document
        record = _child_record(root, with_labels, stats, cut)
        if record is not None:
            yield record


def _child_record(elem: ET.Element, with_labels: bool, stats: Optional[dict], cut: bool = True) -> Optional[dict]:
    """The record of one child of the root (None for deletions, books and anything else)."""
    tag = elem.tag
    pubmed_data = None
    if tag == "PubmedArticle":
        pubmed_data = elem.find("PubmedData")
        elem = elem.find("MedlineCitation")
        if elem is None:
            return None
        tag = "MedlineCitation"
    if tag == "MedlineCitation":
        if stats is not None:
            stats["records"] += 1
        return _record(elem, with_labels, cut, pubmed_data)
    if stats is not None:
        if tag == "DeleteCitation":
            pmids = [(p.text or "").strip() for p in elem.iterfind("PMID")]
            stats["deleted"] += len(pmids)
            stats["deleted_pmids"].extend(pmids)
        elif tag == "PubmedBookArticle":
            stats["books"] += 1
    return None


# --------------------------------------------------------------------------- baseline + update files


def scan_pubmed(path: str | os.PathLike) -> tuple[list[str], list[int], list[tuple[int, list[str]]]]:
    """``(pmids, versions, deletions)`` of one PubMed / MEDLINE XML file, from a scan of its bytes (no XML parser:
    about 1/50 of the time of :func:`iter_pubmed`): the ``PMID`` and its ``Version`` attribute (1 when absent) of
    each ``MedlineCitation`` in document order, which are the records :func:`iter_pubmed` yields, and each
    ``DeleteCitation`` as ``(number of records before it, its PMIDs)``. Comments and CDATA sections are skipped.
    A record without a PMID gets ``""``.
    """
    pmids: list[str] = []
    versions: list[int] = []
    deletions: list[tuple[int, list[str]]] = []
    try:
        fh = _open_binary(path)
    except OSError as exc:
        raise CorpusmapError(f"{os.fspath(path)}: cannot open ({exc.strerror or exc})") from None
    with fh:
        try:
            data, eof, first = b"", False, True
            while True:
                if not eof:
                    block = fh.read(1 << 24)
                    eof = not block
                    if first and block[:2] in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16: scan its UTF-8 form
                        block = (block + fh.read()).decode("utf-16").encode("utf-8")
                        eof = True
                    first = False
                    data = data + block if data else block
                pos = _scan_block(data, eof, pmids, versions, deletions)
                data = data[pos:]
                if eof:
                    break
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            from corpusmap.corpus import gzip_damage

            where = gzip_damage(path)
            raise CorpusmapError(f"{os.fspath(path)}: {where or f'truncated or corrupt gzip data ({exc})'}") from None
        except UnicodeDecodeError:
            raise CorpusmapError(f"{os.fspath(path)}: not valid UTF-16 text") from None
    return pmids, versions, deletions


_SCAN_TOKENS = (b"<MedlineCitation", b"<DeleteCitation", b"<!--", b"<![CDATA[")
_SCAN_ENDS = {b"<!--": b"-->", b"<![CDATA[": b"]]>"}
_PMID_RE = re.compile(rb"<PMID\b([^>]*)>([^<]*)</PMID>")
_VERSION_RE = re.compile(rb"""Version\s*=\s*["']\s*(\d+)""")


def _scan_block(data: bytes, eof: bool, pmids: list, versions: list, deletions: list) -> int:
    """Scan ``data`` for records and deletions; returns where the next block must continue (an element that may
    continue in the next block starts there)."""
    pos, find, n = 0, data.find, len(data)
    nxt = {token: find(token) for token in _SCAN_TOKENS}  # next occurrence of each token (-1: none left)
    while True:
        for token, at in nxt.items():
            if 0 <= at < pos:
                nxt[token] = find(token, pos)
        hits = [(at, token) for token, at in nxt.items() if at >= 0]
        if not hits:
            return n if eof else max(pos, n - 32)  # a token may be cut at the block's end
        at, token = min(hits)
        after = at + len(token)
        if after >= n and not eof:
            return at
        if token in _SCAN_ENDS:
            end = find(_SCAN_ENDS[token], after)
            if end < 0:
                return n if eof else at
            pos = end + len(_SCAN_ENDS[token])
            continue
        if data[after:after + 1] not in (b" ", b">", b"\t", b"\n", b"\r", b"/"):  # MedlineCitationSet, ...
            pos = after
            continue
        if token == b"<MedlineCitation":
            pmid_at = find(b"<PMID", after)
            close = find(b"</MedlineCitation", after, pmid_at if pmid_at >= 0 else n)
            tag_end = find(b">", after, pmid_at) if pmid_at >= 0 else -1
            if pmid_at >= 0 and close < 0 and (tag_end < 0 or data[tag_end + 1:pmid_at].strip()):
                close = pmid_at  # the record's own PMID is its first child; a later one is a citation's
            if pmid_at < 0 or close >= 0:  # no PMID in this record
                if close < 0 and not eof:
                    return at
                pmids.append("")
                versions.append(1)
                pos = close if close >= 0 else n
                continue
            match = _PMID_RE.match(data, pmid_at)
            if match is None:
                if not eof and find(b"</PMID>", pmid_at) < 0:
                    return at
                pmids.append("")
                versions.append(1)
                pos = pmid_at + 5
                continue
            version = _VERSION_RE.search(match.group(1))
            pmids.append(match.group(2).strip().decode("utf-8", "replace"))
            versions.append(int(version.group(1)) if version else 1)
            pos = match.end()
        else:
            end = find(b"</DeleteCitation>", after)
            if end < 0:
                if not eof:
                    return at
                end = n
            found = [m.group(2).strip().decode("utf-8", "replace") for m in _PMID_RE.finditer(data, after, end)]
            deletions.append((len(pmids), found))
            pos = end


@dataclass
class UpdatePlan:
    """Which records of a list of PubMed files are current: for each PMID the record of its highest ``Version``,
    and of that version the latest (the last file in :func:`update_order`, then the last in the file), unless a
    ``DeleteCitation`` after it in that stream deleted it. ``keep[i]`` is about the i-th record of the files read in order; ``offsets[f]``
    is where file f's records start. Memory: about 13 bytes per record while the plan is made, 1 byte per record afterwards."""

    keep: "np.ndarray"
    offsets: list
    pmids: "np.ndarray"
    replaced: int = 0
    deleted: int = 0
    deletions: int = 0  # PMIDs listed in DeleteCitation elements

    def for_file(self, index: int) -> tuple["np.ndarray", "np.ndarray"]:
        """``(keep, pmid keys)`` of file ``index``'s records."""
        start, stop = self.offsets[index], self.offsets[index + 1]
        return self.keep[start:stop], self.pmids[start:stop]


def pmid_key(pmid: str) -> int:
    """A PMID as an int64 key: the number itself, or a hash (negative) for anything that is not digits."""
    if pmid.isascii() and pmid.isdigit() and len(pmid) < 18:
        return int(pmid)
    import hashlib

    return -1 - (int.from_bytes(hashlib.blake2b(pmid.encode("utf-8", "surrogatepass"), digest_size=7).digest(),
                                "big"))


_SEQUENCE_RE = re.compile(r"(?:pubmed|medline)(\d{2})n(\d{4})", re.IGNORECASE)


def update_order(paths: list) -> list[int]:
    """``rank[i]``: the place of file ``i`` in the order its updates apply. NLM's files (``pubmed25n0001`` …,
    ``medline16n0902``) apply in the order of their year and sequence number, however they are given; when a
    file is not named so, in the order given."""
    found = [_SEQUENCE_RE.search(os.path.basename(str(p))) for p in paths]
    if not all(found):
        return list(range(len(paths)))
    order = sorted(range(len(paths)), key=lambda i: (int(found[i].group(1)), int(found[i].group(2)), i))
    rank = [0] * len(paths)
    for place, i in enumerate(order):
        rank[i] = place
    return rank


def update_plan(paths: list) -> UpdatePlan:
    """Scan ``paths`` (an annual baseline and its update files, applied in :func:`update_order`) and decide which
    records to keep; see :class:`UpdatePlan`."""
    import numpy as np

    keys, vers, offsets, scanned = [], [], [0], []
    for path in paths:
        pmids, versions, deletions = scan_pubmed(path)
        start = offsets[-1]
        keys.append(np.fromiter((pmid_key(p) if p else -(1 << 62) - start - i for i, p in enumerate(pmids)),
                                dtype=np.int64, count=len(pmids)))
        vers.append(np.asarray(versions, dtype=np.int32))
        scanned.append(deletions)
        offsets.append(start + len(pmids))
    # each record's place in the stream of updates (files in update order, records in file order)
    rank = update_order(paths)
    sizes = np.diff(offsets).astype(np.int64)
    by_rank = np.argsort(rank, kind="stable")
    ranked_start = np.zeros(len(paths), np.int64)
    ranked_start[by_rank] = np.r_[0, np.cumsum(sizes[by_rank])[:-1]] if len(paths) else []
    del_keys, del_at = [], []
    for index, deletions in enumerate(scanned):
        for before, listed in deletions:
            del_keys.extend(pmid_key(p) for p in listed if p)
            del_at.extend([int(ranked_start[index]) + before] * sum(1 for p in listed if p))
    key = np.concatenate(keys) if keys else np.zeros(0, np.int64)
    n = len(key)
    seq = np.concatenate([ranked_start[i] + np.arange(sizes[i], dtype=np.int64) for i in range(len(paths))]) \
        if n else np.zeros(0, np.int64)
    survive = np.ones(n, dtype=bool)
    if del_keys:  # a DeleteCitation removes the records of its PMIDs that came before it
        dk, da = np.asarray(del_keys, np.int64), np.asarray(del_at, np.int64)
        order = np.lexsort((da, dk))
        dk, da = dk[order], da[order]
        last = np.r_[dk[1:] != dk[:-1], True]  # the last deletion of each PMID
        dk, da = dk[last], da[last]
        where = np.searchsorted(dk, key)
        found = (where < len(dk)) & (dk[np.minimum(where, len(dk) - 1)] == key)
        survive[found] = seq[found] >= da[where[found]]
    keep = np.zeros(n, dtype=bool)
    if n:
        version = np.concatenate(vers)
        alive = np.flatnonzero(survive)
        order = alive[np.lexsort((seq[alive], version[alive], key[alive]))]
        sorted_keys = key[order]
        winner = np.r_[sorted_keys[1:] != sorted_keys[:-1], True] if len(order) else np.zeros(0, bool)
        keep[order[winner]] = True
    return UpdatePlan(keep=keep, offsets=offsets, pmids=key, replaced=int(survive.sum() - keep.sum()),
                      deleted=int(n - survive.sum()), deletions=len(del_keys))


def is_pubmed_xml(path: str | os.PathLike) -> bool:
    """Whether ``path`` (gzipped or not) looks like PubMed / MEDLINE XML, from its first 8 KB.

    True when the root element is one of :data:`PUBMED_ROOTS` (``PubmedArticleSet``,
    ``MedlineCitationSet``, ``PubmedBookArticleSet``, or a single ``PubmedArticle`` /
    ``MedlineCitation`` / ``PubmedBookArticle``). When no root element is within the first 8 KB,
    a ``DOCTYPE`` naming such a root or pointing at a PubMed / MEDLINE DTD decides. Never raises
    for unreadable or odd files; it returns False.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)
        if head[:2] == GZIP_MAGIC:
            decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
            head = decomp.decompress(head, _SNIFF_BYTES)
    except (OSError, zlib.error, ValueError):
        return False
    return _sniff_text(_decode_head(head))


def _decode_head(head: bytes) -> str:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return head.decode("utf-16", errors="replace")
    return head.decode("utf-8", errors="replace").lstrip("\ufeff")


_DOCTYPE_RE = re.compile(r"<!DOCTYPE\s+([\w.:-]+)([^>\[]*)", re.IGNORECASE)
_FIRST_TAG_RE = re.compile(r"<([A-Za-z_][\w.:-]*)")


def _sniff_text(text: str) -> bool:
    stripped = text.lstrip()
    if not stripped.startswith("<"):
        return False
    # drop the XML declaration, processing instructions, comments and the DOCTYPE, then the first tag
    # (a comment or PI cut off at the end of the sniffed bytes is dropped too)
    body = re.sub(r"<\?.*?(\?>|\Z)", "", text, flags=re.DOTALL)
    body = re.sub(r"<!--.*?(-->|\Z)", "", body, flags=re.DOTALL)
    doctype = _DOCTYPE_RE.search(body)
    body = re.sub(r"<!DOCTYPE[^>\[]*(\[.*?\]\s*)?>", "", body, flags=re.DOTALL | re.IGNORECASE)
    first = _FIRST_TAG_RE.search(body)
    if first:
        return first.group(1).split(":")[-1] in PUBMED_ROOTS
    if doctype:
        name, ids = doctype.group(1), doctype.group(2).lower()
        return name in PUBMED_ROOTS or "pubmed" in ids or "medline" in ids
    return False
