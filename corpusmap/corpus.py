"""Corpus readers: many file formats in, one normalised stream of Arrow record batches out.

Every reader streams (memory does not grow with the corpus). The normalised schema is
``id, text, title, year, label`` followed by the other source columns of the first file, kept as strings.

How values are read, the same in every format:

* **Text that is not UTF-8** (and lone surrogate escapes such as ``"\\ud800"`` in JSON) is replaced by U+FFFD
  and counted; a warning names the file and the first line (CSV: row) where it happened. Nothing is refused for
  it, in JSONL, JSON, CSV and TSV alike.
* **Abstract values that are not strings**: a list or an object gives the strings it holds, joined by spaces (a
  structured abstract stored as sections); numbers and booleans are not text and are skipped as ``not-text``.
* **Odd JSON**: a year of ``Infinity``/``NaN`` or of the wrong type is no year (counted); an integer of more than
  4,000 digits is kept as its digits (a string); nesting too deep to be a record is an error naming file and line.
* **Columns of JSON records** are fixed by the first 8,192 records of the first file; a core column (id, text,
  title, year, label, language) whose key first appears later is used from where it appears, and other keys that
  appear later are reported (not kept) in a warning.
* **Duplicate ids** are kept and reported in a warning (file, line and the id). PubMed XML is different: a PMID
  seen again in a later file (an update file) replaces the earlier record, the highest ``Version`` wins within a
  file, and ``DeleteCitation`` lists remove records; the counts are in the stats.

JSONL is parsed by Arrow, 8,192 lines at a time, and normalised with Arrow compute kernels; a chunk that Arrow
cannot read exactly as Python's ``json`` module would (invalid JSON, mixed types, floats, ...) is read line by
line instead, which also gives the line number of an error. Both give the same bytes.
"""
from __future__ import annotations

import codecs
import glob
import gzip
import json
import logging
import math
import os
import re
import threading
import zlib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from corpusmap.errors import CorpusmapError, UsageProblem
from corpusmap.values import compact_date_year, parse_list_string, parse_year

log = logging.getLogger("corpusmap")

FORMATS = ("csv", "tsv", "jsonl", "json", "parquet", "pubmed")
_SUFFIX_FORMATS = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".json": "json", ".parquet": "parquet", ".pq": "parquet", ".xml": "pubmed",
}

# auto-detection candidates, in order of preference (matched case-insensitively)
ID_CANDIDATES = ("id", "pmid", "doi", "paper_id", "uid", "arxiv_id", "corpusid")
TEXT_CANDIDATES = ("abstract", "text", "abstracttext", "summary", "paperabstract")
TITLE_CANDIDATES = ("title", "articletitle", "paper_title")
YEAR_CANDIDATES = ("year", "pub_year", "publication_year", "pubyear", "date", "pub_date", "listing_date",
                   "published", "publication_date")
LABEL_CANDIDATES = ("label", "labels", "journal", "primary_category", "category", "subjects", "subject",
                    "venue", "field")
LANGUAGE_CANDIDATES = ("language", "lang")
_CANDIDATES = {"id": ID_CANDIDATES, "text": TEXT_CANDIDATES, "title": TITLE_CANDIDATES, "year": YEAR_CANDIDATES,
               "label": LABEL_CANDIDATES, "language": LANGUAGE_CANDIDATES}

CORE_COLUMNS = ("id", "text", "title", "year", "label")
TRUNCATION_MARK = "ABSTRACT TRUNCATED AT"
# what str.strip() removes (str.isspace): the Arrow kernels strip exactly these
_PY_WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
                  "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")


@dataclass(frozen=True)
class ColumnMap:
    """Which source column feeds each normalised column; ``None`` means auto-detect.

    ``title`` given explicitly also means "prepend the title to the text" (embed's ``--title-col``), unless
    ``prepend`` is false (excess names the title column apart from prepending it). ``keep``: source columns kept
    under their own name too when they feed a normalised column (excess ``--by subjects`` counts every subject,
    while ``label`` holds the first).
    """

    id: Optional[str] = None
    text: Optional[str] = None
    title: Optional[str] = None
    year: Optional[str] = None
    label: Optional[str] = None
    prepend: bool = True
    keep: tuple = ()

    @property
    def prepend_title(self) -> bool:
        return self.title is not None and self.prepend

    def record(self) -> dict:
        """The choices as ``corpus.json`` stores them (``prepend`` and ``keep`` only where not the defaults, so
        that corpora read before they existed stay current)."""
        out = {k: getattr(self, k) for k in ("id", "text", "title", "year", "label")}
        if not self.prepend:
            out["prepend"] = False
        if self.keep:
            out["keep"] = list(self.keep)
        return out


@dataclass(frozen=True)
class CorpusFilters:
    """Row filters; rows with empty text are always dropped (and counted).

    Applied in the order of the PubMed landscape paper (González-Márquez et al., 2024): empty, non-English
    (``english_only``), longer than ``max_chars``, shorter than ``min_chars`` (lengths in characters of the
    stripped text), then ``cut_truncated`` (text from "ABSTRACT TRUNCATED AT" on is cut, with the one character
    before it, as the paper's ``x[:y-1]``) and ``finished_only`` (keep a row iff one of its last two characters is
    ``.``, ``?`` or ``!``, tested after the cut). ``preset="landscape"`` is the paper's corpus: English,
    250 < length < 4000, cut, finished.
    """

    min_chars: int = 0
    max_chars: Optional[int] = None
    english_only: bool = False
    cut_truncated: bool = False
    finished_only: bool = False
    preset: Optional[str] = None

    @classmethod
    def from_preset(cls, name: Optional[str], **overrides) -> "CorpusFilters":
        """The filters of a named preset (or the defaults for ``None``), with the ``overrides`` that are not None."""
        if name is None:
            base = cls()
        elif name in PRESETS:
            base = cls(preset=name, **PRESETS[name])
        else:
            raise UsageProblem(f"unknown --preset {name!r}; choose from {', '.join(PRESETS)}")
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def record(self) -> dict:
        """The filters as stored in corpus.json; the options added later are left out at their defaults, so a run
        read before they existed is still current."""
        out = asdict(self)
        for name in ("cut_truncated", "finished_only", "preset"):
            if out[name] == _FILTER_DEFAULTS[name]:
                del out[name]
        return out


# 250 < length < 4000 in whole characters is 251 <= length <= 3999
PRESETS = {"landscape": dict(min_chars=251, max_chars=3999, english_only=True, cut_truncated=True,
                             finished_only=True)}
_FILTER_DEFAULTS = {f.name: f.default for f in fields(CorpusFilters)}


@dataclass
class CorpusStats:
    """What the reader saw: rows read, kept and skipped by reason; filled in while iterating."""

    files: int = 0
    rows_read: int = 0
    rows_kept: int = 0
    skipped_empty: int = 0
    skipped_not_text: int = 0
    skipped_short: int = 0
    skipped_long: int = 0
    skipped_non_english: int = 0
    skipped_unfinished: int = 0
    cut_truncated: int = 0
    years_unparsed: int = 0
    replaced: int = 0          # PubMed: records replaced by a later version of the same PMID
    deleted: int = 0           # PubMed: records removed by a DeleteCitation
    books: int = 0             # PubMed: PubmedBookArticle records (book chapters), not read
    duplicate_ids: int = 0     # other formats: rows whose id an earlier row has (kept)
    replaced_characters: int = 0  # bytes that are not UTF-8 and lone surrogates, replaced by U+FFFD
    columns: dict = field(default_factory=dict)
    id_columns: list = field(default_factory=list)  # where ids came from: source columns, None for row numbers
    warnings: list = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.rows_kept:,} abstracts kept of {self.rows_read:,} rows in {self.files:,} file(s)"]
        for name in ("empty", "not_text", "non_english", "long", "short", "unfinished"):
            count = getattr(self, f"skipped_{name}")
            if count:
                parts.append(f"{count:,} skipped ({name.replace('_', '-')})")
        if self.cut_truncated:
            parts.append(f"{self.cut_truncated:,} cut at 'ABSTRACT TRUNCATED AT'")
        if self.replaced:
            parts.append(f"{self.replaced:,} replaced by a later version")
        if self.deleted:
            parts.append(f"{self.deleted:,} deleted (DeleteCitation)")
        if self.books:
            parts.append(f"{self.books:,} book chapter(s) left out (PubmedBookArticle)")
        if self.duplicate_ids:
            parts.append(f"{self.duplicate_ids:,} with a duplicate id (kept)")
        return "; ".join(parts)

    def as_dict(self) -> dict:
        return asdict(self)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        log.warning("warning: %s", message)


# ---------------------------------------------------------------------------------------------- inputs

def resolve_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files, directories (their corpus files, recursively) and glob patterns, sorted by name,
    de-duplicated; hidden files (``.name``, e.g. macOS's ``._name``) and corpusmap run folders inside a folder are
    left out."""
    paths: list[Path] = []
    for item in inputs:
        text = str(item)
        path = Path(text)
        if path.is_file():
            paths.append(path)
        elif path.is_dir():
            if _is_run(path):
                raise CorpusmapError(f"{path} is a corpusmap run directory, not a folder of inputs; give the inputs it "
                                     f"was read from, or its corpus: {path / 'corpus.parquet'}")
            found = sorted(_corpus_files(path))
            if not found:
                raise CorpusmapError(f"no corpus files (csv, tsv, jsonl, json, parquet, xml, .gz) in {path}")
            paths.extend(found)
        elif glob.has_magic(text):
            found = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not found:
                raise CorpusmapError(f"no files match {text}")
            paths.extend(found)
        else:
            raise CorpusmapError(f"no such file or directory: {text}")
    if not paths:
        raise UsageProblem("no input given")
    unique = list(dict.fromkeys(p.resolve() for p in paths))
    return unique


def _is_run(folder: Path) -> bool:
    """A corpusmap run directory (its corpus.parquet beside corpus.json)."""
    return (folder / "corpus.json").is_file() and (folder / "corpus.parquet").is_file()


def _corpus_files(folder: Path) -> Iterator[Path]:
    """The files of known formats below ``folder``, without hidden entries and corpusmap run folders (outputs,
    not inputs)."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".") and not _is_run(Path(root, d))]
        for name in files:
            p = Path(root, name)
            if not name.startswith(".") and _known_format(p) and p.is_file():
                yield p


def _known_format(path: Path) -> bool:
    try:
        detect_format(path)
        return True
    except CorpusmapError:
        return False


def detect_format(path: Path) -> str:
    """Format by file suffix (``.gz`` stripped); XML must be PubMed/MEDLINE."""
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    fmt = _SUFFIX_FORMATS.get(Path(name).suffix)
    if fmt is None:
        raise CorpusmapError(
            f"unknown format for {path.name}; expected .csv, .tsv, .jsonl/.ndjson, .json, .parquet or PubMed "
            ".xml (each optionally .gz)")
    return fmt


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _open_binary(path: Path):
    """The file's bytes (decompressed when it is gzip), as a file object with ``read(n)``."""
    if _is_gzip(path):
        return gzip.open(path, "rb")
    return open(path, "rb")


# ---------------------------------------------------------------------------------------------- text rules

class _Repairs:
    """Characters replaced by U+FFFD in one file: bytes that are not UTF-8 and lone surrogates."""

    def __init__(self):
        self.count = 0
        self.first: Optional[str] = None

    def note(self, count: int, where: str) -> None:
        if count:
            self.count += count
            if self.first is None:
                self.first = where


_DECODE_ERRORS = threading.local()


def _count_and_replace(exc: UnicodeDecodeError):
    _DECODE_ERRORS.count = getattr(_DECODE_ERRORS, "count", 0) + 1
    return "\ufffd", exc.end


codecs.register_error("corpusmap-replace", _count_and_replace)


def _decode(data: bytes) -> tuple[str, int]:
    """``data`` as UTF-8, invalid bytes replaced by U+FFFD; returns the text and how many were replaced."""
    try:
        return data.decode("utf-8"), 0
    except UnicodeDecodeError:
        _DECODE_ERRORS.count = 0
        text = data.decode("utf-8", "corpusmap-replace")
        return text, _DECODE_ERRORS.count


_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def _clean_surrogates(value: Any) -> tuple[Any, int]:
    """``value`` (a JSON value) with lone surrogates in its strings replaced by U+FFFD, and how many there were."""
    if isinstance(value, str):
        if _SURROGATE_RE.search(value) is None:
            return value, 0
        return _SURROGATE_RE.subn("\ufffd", value)
    if isinstance(value, list):
        total, out = 0, []
        for item in value:
            item, count = _clean_surrogates(item)
            out.append(item)
            total += count
        return out, total
    if isinstance(value, dict):
        total, out = 0, {}
        for key, item in value.items():
            key, c1 = _clean_surrogates(key)
            item, c2 = _clean_surrogates(item)
            out[key] = item
            total += c1 + c2
        return out, total
    return value, 0


def _safe_int(text: str):
    """``parse_int`` for json.loads: an integer too long for Python's int() conversion stays its digits."""
    try:
        return int(text)
    except ValueError:
        return text


def _excerpt(text: str, limit: int = 60) -> str:
    """A short quotation of ``text`` for a one-line message: at most ``limit`` characters once escaped (control and
    non-ASCII characters as JSON escapes), in double quotes, with "..." when cut."""
    out, size = [], 0
    for char in text:
        escaped = json.dumps(char, ensure_ascii=True)[1:-1]
        if size + len(escaped) > limit:
            return '"' + "".join(out) + '..."'
        out.append(escaped)
        size += len(escaped)
    return '"' + "".join(out) + '"'


def _loads(line: str, where: Callable[[], str]) -> Any:
    """One JSON value, with the errors a user can cause as one line naming ``where()`` (file:line)."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        # (some of json's messages end in "at": "Unterminated string starting at")
        raise CorpusmapError(f"{where()}: not valid JSON ({exc.msg.removesuffix(' at')} at column {exc.colno})") \
            from None
    except RecursionError:
        raise CorpusmapError(f"{where()}: JSON nested too deeply (over ~1,000 levels) to be a corpus record") \
            from None
    except ValueError:  # an integer literal over Python's limit of digits
        try:
            return json.loads(line, parse_int=_safe_int)
        except (ValueError, RecursionError) as exc:
            raise CorpusmapError(f"{where()}: not valid JSON ({str(exc)[:80]})") from None


# ---------------------------------------------------------------------------------------------- raw chunks

@dataclass
class _Chunk:
    """Some rows of one source file: ``data`` is a ``pa.Table`` or a dict of column name -> list of values.

    ``exact``: an Arrow table whose values are those the Python path would see (``to_pylist`` may be used for
    columns of types the Arrow kernels do not handle). ``lines``: the source line (CSV: row, XML: record) of each
    row, or ``first_line`` + i when None. ``dropped``: rows of the source left out before (PubMed: replaced or
    deleted records), counted as read.
    """

    data: Any
    n: int
    first_line: int = 1
    lines: Optional[list] = None
    unit: str = "line"
    exact: bool = True
    dropped: int = 0

    @property
    def names(self) -> list[str]:
        return list(self.data.column_names) if isinstance(self.data, pa.Table) else list(self.data)

    def column(self, name: Optional[str]):
        if name is None:
            return None
        if isinstance(self.data, pa.Table):
            if name not in self.data.column_names:
                return None
            column = self.data.column(name)
            return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
        return self.data.get(name)

    def line(self, i: int) -> int:
        return self.lines[i] if self.lines is not None else self.first_line + i


def _chunks_from_records(records: Iterator[tuple[int, dict]], rows: int, unit: str = "line") -> Iterator[_Chunk]:
    buffer: list[dict] = []
    lines: list[int] = []
    for line, record in records:
        buffer.append(record)
        lines.append(line)
        if len(buffer) >= rows:
            yield _Chunk(_records_to_columns(buffer), len(buffer), lines=lines, unit=unit)
            buffer, lines = [], []
    if buffer:
        yield _Chunk(_records_to_columns(buffer), len(buffer), lines=lines, unit=unit)


def _records_to_columns(records: list[dict]) -> dict[str, list]:
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
    return {name: [record.get(name) for record in records] for name in names}


# ---------------------------------------------------------------------------------------------- JSONL

_JSONL_BLOCK = 1 << 24
_MAX_BRACKETS = 4000  # Arrow's JSON parser recurses per nesting level: 20,000 levels crash the process
_LBRACE, _RBRACE, _CR = 0x7B, 0x7D, 0x0D
_TEMPORAL = (pa.types.is_timestamp, pa.types.is_date, pa.types.is_time, pa.types.is_duration)


def _json_exact(dtype: pa.DataType) -> bool:
    """Arrow's JSON reader gives the same values as json.loads for these types (not floats: 1.0 vs 1, 1e20 vs
    100000000000000000000; not structs: a missing key becomes null)."""
    if pa.types.is_string(dtype) or pa.types.is_int64(dtype) or pa.types.is_boolean(dtype) or pa.types.is_null(dtype):
        return True
    if pa.types.is_list(dtype):
        return _json_exact(dtype.value_type)
    return False


class _JsonlReader:
    """JSONL in chunks of ``rows`` records: Arrow's parser where it reads exactly what json.loads would, else the
    Python line reader (which also names the line of an error)."""

    def __init__(self, path: Path, rows: int, repairs: _Repairs):
        self.path, self.rows, self.repairs = path, rows, repairs
        self.as_string: set[str] = set()  # keys Arrow would read as timestamps: read them as strings

    def __iter__(self) -> Iterator[_Chunk]:
        path, rows = self.path, self.rows
        blocks = prefetch(_blocks(path, _JSONL_BLOCK), depth=2)  # decompression runs ahead, in its own thread
        try:
            buf = b""
            eof, first = False, True
            start = pos = 0           # the pending chunk starts at start; lines before pos are scanned
            line = start_line = 1     # line number at pos / at start
            records, plain = 0, True  # records in the pending chunk; every line '{...}' or blank
            while True:
                if not eof:
                    block = next(blocks, b"")
                    eof = not block
                    if first:
                        if block.startswith(codecs.BOM_UTF8):
                            block = block[3:]
                        first = False
                    buf = buf[start:] + block if start < len(buf) else block
                    pos -= start
                    start = 0
                    if eof and buf and not buf.endswith(b"\n"):
                        buf += b"\n"
                end = len(buf)
                find = buf.find
                while records < rows:
                    nl = find(b"\n", pos, end)
                    if nl < 0:
                        break
                    if nl > pos and buf[pos] == _LBRACE and (buf[nl - 1] == _RBRACE or (
                            nl - 1 > pos and buf[nl - 1] == _CR and buf[nl - 2] == _RBRACE)):  # '{...}', CRLF too
                        records += 1
                        if nl - pos > _MAX_BRACKETS and \
                                buf.count(b"[", pos, nl) + buf.count(b"{", pos, nl) > _MAX_BRACKETS:
                            plain = False  # possibly nested deeper than Arrow's parser survives (it crashes)
                    else:
                        text, _ = _decode(buf[pos:nl])
                        if text.strip():
                            records += 1
                            plain = False
                        elif text.strip(" \t\r"):  # blank for Python, not for Arrow
                            plain = False
                    pos = nl + 1
                    line += 1
                if records >= rows or (eof and records):
                    yield self._chunk(buf[start:pos], start_line, records, plain)
                    start, start_line, records, plain = pos, line, 0, True
                    continue
                if eof:
                    return
        finally:
            blocks.close()

    def _chunk(self, data: bytes, first_line: int, records: int, plain: bool) -> _Chunk:
        if plain:
            table = self._arrow(data, records)
            if table is not None:
                return _Chunk(table, records, first_line=first_line, exact=True)
        return self._python(data, first_line)

    def _arrow(self, data: bytes, records: int) -> Optional[pa.Table]:
        import pyarrow.json as pj

        try:
            # Arrow's JSON parser does not check that strings are UTF-8: check the chunk (a vectorised check)
            pa.array([data], type=pa.binary()).cast(pa.string())
            options = pj.ParseOptions(newlines_in_values=False)
            if self.as_string:
                options = pj.ParseOptions(explicit_schema=pa.schema([(n, pa.string()) for n in sorted(self.as_string)]),
                                          unexpected_field_behavior="infer", newlines_in_values=False)
            table = pj.read_json(pa.py_buffer(data), read_options=pj.ReadOptions(block_size=1 << 21),
                                 parse_options=options)
            temporal = [f.name for f in table.schema if any(test(f.type) for test in _TEMPORAL)]
            if temporal or self.as_string:
                names = [n for n in table.column_names]
                if temporal:  # Arrow infers timestamps from ISO dates; json.loads gives strings
                    self.as_string.update(temporal)
                    options = pj.ParseOptions(
                        explicit_schema=pa.schema([(n, pa.string()) for n in sorted(self.as_string)]),
                        unexpected_field_behavior="infer", newlines_in_values=False)
                    table = pj.read_json(pa.py_buffer(data), read_options=pj.ReadOptions(block_size=1 << 21),
                                         parse_options=options)
                    names = [n for n in names if n in table.column_names] + \
                            [n for n in table.column_names if n not in names]
                table = table.select(names)  # the keys in order of appearance, as json.loads gives them
            if table.num_rows != records or not all(_json_exact(f.type) for f in table.schema):
                return None
            for column, f in zip(table.columns, table.schema):
                if pa.types.is_list(f.type):  # lists whose first values are null come out corrupt (pyarrow 26)
                    column.validate(full=True)
            return table
        except Exception:  # noqa: BLE001 - anything Arrow cannot read exactly is read line by line
            return None

    def _python(self, data: bytes, first_line: int) -> _Chunk:
        path, repairs = self.path, self.repairs
        records, lines = [], []
        for offset, raw in enumerate(data.split(b"\n")):
            lineno = first_line + offset
            text, bad = _decode(raw)
            if not text.strip():
                continue
            record = _loads(text, lambda: f"{path}:{lineno}")
            if not isinstance(record, dict):
                raise CorpusmapError(f"{path}:{lineno}: expected a JSON object per line, found "
                                     f"{type(record).__name__ if record is not None else 'null'}")
            if "\\u" in text and ("\\ud" in text or "\\uD" in text):
                record, lone = _clean_surrogates(record)
                bad += lone
            repairs.note(bad, f"line {lineno}")
            records.append(record)
            lines.append(lineno)
        return _Chunk(_records_to_columns(records), len(records), first_line=first_line, lines=lines, exact=True)


def _blocks(path: Path, size: int) -> Iterator[bytes]:
    """The (decompressed) bytes of ``path`` in blocks of ``size``."""
    with pa.input_stream(str(path), compression="gzip" if _is_gzip(path) else None) as stream:
        while True:
            block = stream.read(size)
            if not block:
                return
            yield block


def _read_jsonl(path: Path, rows: int, repairs: _Repairs) -> Iterator[_Chunk]:
    yield from _JsonlReader(path, rows, repairs)


# ---------------------------------------------------------------------------------------------- JSON arrays

def _read_json_array(path: Path, rows: int, repairs: _Repairs) -> Iterator[_Chunk]:
    """A JSON array of objects, decoded incrementally so the whole file is never held in memory."""
    decoder = json.JSONDecoder()
    big_ints = json.JSONDecoder(parse_int=_safe_int)

    def records():
        with _open_binary(path) as fh:
            incremental = codecs.getincrementaldecoder("utf-8")("corpusmap-replace")
            state = {"buf": "", "lines": 1, "mark": 0, "eof": False, "first": True}  # lines: line of buf[mark]

            def line_at(at: int) -> int:  # the line of buf[at], at >= mark, counted incrementally
                state["lines"] += state["buf"].count("\n", state["mark"], at)
                state["mark"] = at
                return state["lines"]

            def refill(pos: int) -> int:
                """Drop buf[:pos], append the next block; returns the new position of pos (0)."""
                raw = fh.read(1 << 20)
                state["eof"] = not raw
                _DECODE_ERRORS.count = 0
                text = incremental.decode(raw, final=state["eof"])
                if state["first"]:
                    text, state["first"] = text.lstrip("\ufeff"), False
                line_at(pos)
                state["buf"] = state["buf"][pos:] + text
                state["mark"] = 0
                if _DECODE_ERRORS.count:
                    repairs.note(_DECODE_ERRORS.count, f"line {state['lines'] + state['buf'].count(chr(10))}")
                return 0

            pos, started, bare, read = 0, False, False, 0  # bare: the file starts with an object, not [
            while True:
                buf = state["buf"]
                if not state["eof"] and len(buf) - pos < (1 << 16):
                    pos = refill(pos)
                    buf = state["buf"]
                while pos < len(buf) and buf[pos] in " \t\r\n,":
                    pos += 1
                if not started:
                    if pos >= len(buf):
                        if state["eof"]:
                            raise CorpusmapError(f"{path}: empty JSON file")
                        continue
                    if buf[pos] == "{":  # a single object is a one-record corpus
                        state["buf"] = buf = buf[:pos] + "[" + buf[pos:]
                        bare = True
                    if buf[pos] != "[":
                        raise CorpusmapError(f"{path}: expected a JSON array of objects (or use .jsonl)")
                    started, pos = True, pos + 1
                    continue
                if pos >= len(buf):
                    if state["eof"] and bare and read == 1:  # the one object of the file
                        return
                    if state["eof"] and bare:  # {...} {...}: one object per line
                        raise CorpusmapError(f"{path}: holds one JSON object after another, which is JSON Lines, not "
                                             f"one JSON document: rename it to {path.stem}.jsonl")
                    if state["eof"]:
                        raise CorpusmapError(f"{path}: JSON array is not closed (file truncated?)")
                    continue
                if buf[pos] == "]":
                    return
                try:
                    try:
                        record, end = decoder.raw_decode(buf, pos)
                    except json.JSONDecodeError:
                        raise
                    except ValueError:  # an integer over Python's limit of digits
                        record, end = big_ints.raw_decode(buf, pos)
                except json.JSONDecodeError as exc:
                    if not state["eof"]:  # maybe the object continues in the next block
                        pos = refill(pos)
                        continue
                    raise CorpusmapError(f"{path}:{line_at(max(exc.pos, pos))}: not valid JSON ({exc.msg})") \
                        from None
                except RecursionError:
                    raise CorpusmapError(f"{path}:{line_at(pos)}: JSON nested too deeply (over ~1,000 levels) to "
                                         "be a corpus record") from None
                line = line_at(pos)
                if not isinstance(record, dict):
                    raise CorpusmapError(f"{path}:{line}: expected a JSON array of objects")
                if buf.find("\\ud", pos, end) >= 0 or buf.find("\\uD", pos, end) >= 0:
                    record, lone = _clean_surrogates(record)
                    repairs.note(lone, f"line {line}")
                yield line, record
                pos = end
                read += 1

    yield from _chunks_from_records(records(), rows)


# ---------------------------------------------------------------------------------------------- CSV / TSV

class _CountingStream:
    """A read-only binary stream that counts the quote characters going through it (for Arrow's CSV reader)."""

    def __init__(self, raw):
        self.raw, self.quotes, self.closed = raw, 0, False

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.quotes += data.count(b'"')
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True
        self.raw.close()


def _unclosed_quote(path: Path, delimiter: str) -> Optional[int]:
    """The line where a quoted value starts that is never closed (it runs to the end of the file), else None."""
    import csv

    with _open_binary(path) as fh:
        text = codecs.getreader("utf-8")(fh, errors="replace")
        reader = csv.reader(_lines_keeping_ends(text), delimiter=delimiter, strict=True)
        start = 1
        try:
            for _ in reader:
                start = reader.line_num + 1
        except csv.Error as exc:
            if "end of data" in str(exc) or "unexpected end" in str(exc):
                return start
            return None
    return None


def _lines_keeping_ends(text) -> Iterator[str]:
    while True:
        line = text.readline()
        if not line:
            return
        yield line


def _read_delimited(path: Path, rows: int, delimiter: str, repairs: _Repairs) -> Iterator[_Chunk]:
    import csv

    import pyarrow.csv as pacsv

    def read_header(delimiter: str):
        with _open_binary(path) as fh:
            head = codecs.getreader("utf-8")(fh, errors="replace")
            return next(csv.reader(_lines_keeping_ends(head), delimiter=delimiter), None)

    header = read_header(delimiter)
    if delimiter == "," and header and len(header) == 1:  # a spreadsheet's export may separate by ; (or tabs)
        for other in (";", "\t"):
            if other in header[0] and len(read_header(other) or ()) > 1:
                delimiter, header = other, read_header(other)
                logging.getLogger("corpusmap").info("%s: its header is separated by %r: read so", path, other)
                break
    kind = "TSV" if delimiter == "\t" else "CSV"
    if not header:
        raise CorpusmapError(f"{path}: empty file (no header row)")
    if header[0].startswith("\ufeff"):
        header[0] = header[0][1:]
    header = _unique_names(header, path)
    raw = pa.input_stream(str(path), compression="gzip" if _is_gzip(path) else None)
    stream = _CountingStream(raw)
    row_number = 0
    try:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(block_size=1 << 22, column_names=header, skip_rows=1),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(column_types={name: pa.string() for name in header},
                                                 strings_can_be_null=True, check_utf8=False))
        for batch in reader:
            batch = _repair_utf8(batch, row_number, repairs)
            for start in range(0, batch.num_rows, rows):
                piece = batch.slice(start, rows)
                yield _Chunk(pa.Table.from_batches([piece]), piece.num_rows, first_line=row_number + start + 1,
                             unit="row", exact=True)
            row_number += batch.num_rows
    except pa.ArrowInvalid as exc:
        message = str(exc)
        columns = _CSV_COLUMNS_RE.search(message)
        if columns:  # Arrow quotes the whole row, raw: quote a short, escaped start of it instead
            _raise_unclosed_quote(path, delimiter)  # a quote that is never closed merges rows: say so instead
            expected, found, row = columns.groups()
            raise CorpusmapError(
                f"{path}: a row{f' after data row {row_number:,}' if row_number else ''} has {found} {kind} "
                f"columns where the header has "
                f"{expected} (the row starts {_excerpt(row or '')}); check its quotes and delimiters") from None
        raise CorpusmapError(f"{path}: cannot parse as {kind} ({_excerpt(message, 160)[1:-1]})") from None
    finally:
        stream.close()
    if stream.quotes % 2:  # an odd number of quotes: perhaps a quoted value that is never closed
        _raise_unclosed_quote(path, delimiter)


def _unique_names(header: list[str], path: Path) -> list[str]:
    """Header names made unique as pandas does: an empty one becomes ``Unnamed: i`` (spreadsheets' trailing
    columns), a repeated one ``name.1``, ``name.2``… (with a warning: a flag naming it reads the first)."""
    seen: set = set()
    out, repeated = [], []
    for i, name in enumerate(header):
        new = name if name.strip() else f"Unnamed: {i}"
        if new in seen:
            repeated.append(name)
            k = 1
            while f"{name}.{k}" in seen or f"{name}.{k}" in header:
                k += 1
            new = f"{name}.{k}"
        seen.add(new)
        out.append(new)
    if repeated:
        log.warning("warning: %s: the header repeats the column name(s) %s; the repeats are read as %s",
                    path, ", ".join(repr(n) for n in dict.fromkeys(repeated)),
                    ", ".join(repr(n) for n in out if n not in header))
    return out


def _raise_unclosed_quote(path: Path, delimiter: str) -> None:
    line = _unclosed_quote(path, delimiter)
    if line is not None:
        raise CorpusmapError(
            f"{path}:{line}: a quoted value starts here and is never closed, so it swallows the rest of the file; "
            "close the quote (or double a quote inside a value: \"\")")


_CSV_COLUMNS_RE = re.compile(r"Expected (\d+) columns, got (\d+)(?:: (.*))?", re.DOTALL)


def _repair_utf8(batch: pa.RecordBatch, first_row: int, repairs: _Repairs) -> pa.RecordBatch:
    """Columns of ``batch`` that hold bytes that are not UTF-8, with those replaced by U+FFFD (and counted)."""
    columns = list(batch.columns)
    changed = False
    for i, column in enumerate(columns):
        try:
            column.validate(full=True)
            continue
        except pa.ArrowInvalid as exc:
            if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
                raise CorpusmapError(f"damaged data in column {batch.schema.names[i]!r} ({exc})") from None
        values = column.cast(pa.binary() if pa.types.is_string(column.type) else pa.large_binary()).to_pylist()
        fixed = []
        for row, value in enumerate(values):
            if value is None:
                fixed.append(None)
                continue
            text, bad = _decode(value)
            repairs.note(bad, f"row {first_row + row + 1:,}")
            fixed.append(text)
        columns[i] = pa.array(fixed, type=pa.string())
        changed = True
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema) if changed else batch


# ---------------------------------------------------------------------------------------------- parquet, XML

def _read_parquet(path: Path, rows: int, repairs: _Repairs) -> Iterator[_Chunk]:
    import shutil
    import tempfile

    import pyarrow.parquet as pq

    tmpdir = None
    try:
        if _is_gzip(path):  # parquet needs random access: decompress to a temporary file first
            tmpdir = tempfile.mkdtemp(prefix="corpusmap-")
            plain = Path(tmpdir) / "corpus.parquet"
            with gzip.open(path, "rb") as src, open(plain, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            source = plain
        else:
            source = path
        try:
            parquet = pq.ParquetFile(source)
        except (pa.ArrowInvalid, OSError) as exc:
            raise CorpusmapError(f"{path}: not a readable parquet file ({exc})") from None
        row = 0
        try:
            for batch in parquet.iter_batches(batch_size=rows):
                batch = _repair_utf8(batch, row, repairs)  # parquet readers do not check that strings are UTF-8
                yield _Chunk(pa.Table.from_batches([batch]), batch.num_rows, first_line=row + 1, unit="row")
                row += batch.num_rows
        except CorpusmapError as exc:
            raise CorpusmapError(f"{path}: {exc} after row {row:,}") from None
        except (pa.ArrowException, OSError) as exc:
            raise CorpusmapError(f"{path}: damaged parquet data after row {row:,} ({exc})") from None
    finally:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)


def _read_pubmed(path: Path, rows: int, with_labels: bool, cut: bool, plan=None,
                 counts: Optional[dict] = None) -> Iterator[_Chunk]:
    """Chunks of ``rows`` records; with an update ``plan`` (keep, pmid keys of this file's records), the records
    that are not current are left out (and counted as ``dropped``). ``counts``: see ``iter_pubmed``'s stats."""
    from corpusmap.pubmed import iter_pubmed, pmid_key

    keep, keys = plan if plan is not None else (None, None)
    buffer: list[dict] = []
    lines: list[int] = []
    seen = dropped = 0
    for index, record in enumerate(iter_pubmed(path, with_labels=with_labels, cut_truncated=cut, stats=counts)):
        seen += 1
        if keep is not None:
            if index >= len(keys) or (record["pmid"] and pmid_key(record["pmid"]) != keys[index]):
                raise CorpusmapError(
                    f"{path}: record {index + 1:,} (PMID {record['pmid'] or '?'}) is not the one the PMID scan "
                    "found there; the file has XML the scan does not understand (please report it)")
            if not keep[index]:
                dropped += 1
        if keep is None or keep[index]:
            buffer.append(record)
            lines.append(index + 1)
        if seen >= rows:
            yield _Chunk(_records_to_columns(buffer), len(buffer), lines=lines, unit="record", dropped=dropped)
            buffer, lines, seen, dropped = [], [], 0, 0
    if seen:
        yield _Chunk(_records_to_columns(buffer), len(buffer), lines=lines, unit="record", dropped=dropped)


# ---------------------------------------------------------------------------------------------- one file

def _gzip_damage(path: Path) -> Optional[str]:
    """Where the gzip data of ``path`` is broken ('corrupt gzip data at about byte X of Y, near line N ...'), or
    None if it decompresses cleanly (all members, each checked against its CRC)."""
    size = path.stat().st_size
    magic = b"\x1f\x8b"
    decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
    in_member = False
    offset = lines = 0
    with open(path, "rb") as fh:
        pending = b""
        while True:
            if not pending:
                pending = fh.read(1 << 16)
                if not pending:
                    break
                at = offset
                offset += len(pending)
            try:
                out = decomp.decompress(pending)
            except zlib.error as exc:
                return (f"truncated or corrupt gzip data: damaged at about byte {at:,} of {size:,}, near line "
                        f"{lines + 1:,} of the text ({exc}); copy or download the file again")
            in_member = True
            lines += out.count(b"\n")
            if decomp.eof:
                pending, in_member = decomp.unused_data, False
                if pending and not pending.startswith(magic):
                    if pending.strip(b"\x00"):
                        return (f"truncated or corrupt gzip data: bytes that are not gzip after the compressed "
                                f"stream (at byte {offset - len(pending):,} of {size:,}); copy or download the file "
                                "again")
                    pending = b""
                decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
            else:
                pending = b""
    if in_member:
        return (f"truncated or corrupt gzip data: it ends early (cut at byte {size:,}, near line {lines + 1:,} of "
                "the text); copy or download the file again")
    return None


def _refuse_utf16(path: Path) -> None:
    """Text files are read as UTF-8: a UTF-16 or UTF-32 file (by its byte-order mark, or the zero bytes of ASCII
    text in it) is refused with the conversion to run, instead of being read as rows of garbage."""
    try:
        with _open_binary(path) as fh:
            head = fh.read(64)
    except (OSError, EOFError, zlib.error):
        return  # unreadable: the reader names the damage
    boms = {codecs.BOM_UTF32_LE: "UTF-32", codecs.BOM_UTF32_BE: "UTF-32", codecs.BOM_UTF16_LE: "UTF-16",
            codecs.BOM_UTF16_BE: "UTF-16"}
    kind = next((name for bom, name in boms.items() if head.startswith(bom)), None)
    if kind is None and len(head) >= 8:  # no mark: ASCII in UTF-16 has a zero byte in every other place
        even, odd = head[0::2], head[1::2]
        if odd.count(0) >= 0.8 * len(odd) and even.count(0) <= 0.2 * len(even):
            kind = "UTF-16LE"
        elif even.count(0) >= 0.8 * len(even) and odd.count(0) <= 0.2 * len(odd):
            kind = "UTF-16BE"
    if kind:
        raise CorpusmapError(f"{path} is {kind} text; corpusmap reads UTF-8: convert it first, e.g. "
                             f"`iconv -f {kind.lower()} -t utf-8 {path.name} > utf8-{path.name}`")


def iter_raw_chunks(path: Path, rows: int = 8192, pubmed_labels: bool = False, *, cut_truncated: bool = True,
                    repairs: Optional[_Repairs] = None, pubmed_plan=None,
                    pubmed_counts: Optional[dict] = None) -> Iterator[_Chunk]:
    """Source columns of one file, in chunks of at most ``rows`` rows (see :class:`_Chunk`); ``pubmed_counts``
    receives what a PubMed file held besides its records (``books``, ``deleted``)."""
    fmt = detect_format(path)
    repairs = repairs if repairs is not None else _Repairs()
    if fmt in ("jsonl", "json", "csv", "tsv"):
        _refuse_utf16(path)
    try:
        if fmt == "jsonl":
            yield from _read_jsonl(path, rows, repairs)
        elif fmt == "json":
            yield from _read_json_array(path, rows, repairs)
        elif fmt == "csv":
            yield from _read_delimited(path, rows, ",", repairs)
        elif fmt == "tsv":
            yield from _read_delimited(path, rows, "\t", repairs)
        elif fmt == "parquet":
            yield from _read_parquet(path, rows, repairs)
        else:
            yield from _read_pubmed(path, rows, pubmed_labels, cut_truncated, pubmed_plan, pubmed_counts)
    except CorpusmapError as exc:
        damage = _damaged_gzip(path)
        if damage:
            raise CorpusmapError(f"{path}: {damage}") from None
        raise exc from None
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise CorpusmapError(f"no such file: {path}") from None
        if isinstance(exc, PermissionError):
            raise CorpusmapError(f"{path}: cannot read it (permission denied)") from None
        damage = _damaged_gzip(path)
        if damage:
            raise CorpusmapError(f"{path}: {damage}") from None
        raise CorpusmapError(f"{path}: cannot read ({exc}); is the file truncated or corrupt?") from None
    except UnicodeDecodeError as exc:
        raise CorpusmapError(f"{path}: not UTF-8 text ({exc.reason})") from None


def gzip_damage(path) -> Optional[str]:
    """Where the gzip data of ``path`` is broken (see :func:`_gzip_damage`); None for intact or plain files."""
    try:
        return _gzip_damage(Path(path)) if _is_gzip(Path(path)) else None
    except OSError:
        return None


_damaged_gzip = gzip_damage


# ---------------------------------------------------------------------------------------------- values

def _find(names: list[str], candidates: tuple[str, ...]) -> Optional[str]:
    lower = {name.lower(): name for name in names}
    for candidate in candidates:
        if candidate in lower:
            return lower[candidate]
    return None


def resolve_columns(names: list[str], columns: ColumnMap, path: Path) -> dict[str, Optional[str]]:
    """Source column for each normalised column (explicit flags checked, the rest auto-detected)."""
    resolved: dict[str, Optional[str]] = {}
    for target in ("id", "text", "title", "year", "label"):
        explicit = getattr(columns, target)
        if explicit is not None:
            if explicit not in names:
                raise UsageProblem(
                    f"column {explicit!r} (--{target}-col) not in {path.name}; columns: {', '.join(names)}")
            resolved[target] = explicit
        else:
            resolved[target] = _find(names, _CANDIDATES[target])
    if resolved["text"] is None:
        raise CorpusmapError(
            f"no text column in {path.name} (looked for {', '.join(TEXT_CANDIDATES)}); name it with --text-col; "
            f"columns: {', '.join(names)}")
    if resolved["title"] == resolved["text"]:
        resolved["title"] = None
    return resolved


def first_label(value: Any) -> Optional[str]:
    """One label per row: the first element of a list (or of a list stored as a string), else the value; a
    missing number (NaN, as JSON's ``NaN`` or an empty numeric cell reads) is no label."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    if isinstance(value, str):
        items = parse_list_string(value)
        if items is None:
            return value.strip() or None
        value = items
    if isinstance(value, (list, tuple)):
        for item in value:
            label = first_label(item)
            if label:
                return label
        return None
    return str(value)


_TO_JSON = json.JSONEncoder(ensure_ascii=False, default=str).encode  # one encoder, not one per value


def _as_string(value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, dict)):
        return _TO_JSON(value)
    return str(value)


_NOT_TEXT = object()


def text_value(value: Any):
    """The abstract text of a source value: a string stripped; a list or an object the strings it holds, each
    stripped, joined by spaces (a structured abstract); ``""`` for None; ``_NOT_TEXT`` for numbers and booleans."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (list, tuple, dict)):
        parts: list[str] = []
        _strings_in(value, parts)
        return " ".join(parts) if parts else ("" if not _has_scalar(value) else _NOT_TEXT)
    return _NOT_TEXT


def _strings_in(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        value = value.strip()
        if value:
            out.append(value)
    elif isinstance(value, dict):
        for item in value.values():
            _strings_in(item, out)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _strings_in(item, out)


def _has_scalar(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_has_scalar(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_scalar(v) for v in value)
    return value is not None and not isinstance(value, str)


_ENGLISH_WORDS = frozenset(
    "the of and in to a is with for that by we this are was were on as from be an at which these our "
    "or not have has been their can also between than using its it".split())
_WORD_RE = re.compile(r"[a-z]+")


def looks_english(text: str, threshold: float = 0.12) -> bool:
    """Share of common English function words among the words; about 0.3 for English abstracts."""
    words = _WORD_RE.findall(text[:2000].lower())
    if len(words) < 5:
        return True
    return sum(word in _ENGLISH_WORDS for word in words) / len(words) >= threshold


def _is_english_code(value: Any) -> Optional[bool]:
    if value is None:
        return None
    code = str(value).strip().lower()
    if not code:
        return None
    return code.startswith("en")


def _join_title(title: Optional[str], text: str) -> str:
    title = (title or "").strip()
    if not title:
        return text
    return f"{title}{'' if title[-1] in '.?!' else '.'} {text}"


def cut_at_truncation(text: str) -> str:
    """The landscape paper's cut: ``text[:y-1]`` where "ABSTRACT TRUNCATED AT" starts at y (so the character
    before the marker goes too; at y = 0 the last character goes), else the text."""
    at = text.find(TRUNCATION_MARK)
    return text[:at - 1] if at != -1 else text


def is_finished(text: str) -> bool:
    """The landscape paper's test: one of the last two characters is '.', '?' or '!'."""
    end = text[-2:]
    return "." in end or "?" in end or "!" in end


# Arrow column kernels: each takes a pa.Array (any type) or a Python list and returns what the per-value Python
# function would, as Arrow arrays.

def _stringlike(array) -> bool:
    return isinstance(array, pa.Array) and (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)
                                            or pa.types.is_string_view(array.type))


def _plain(array):
    """Dictionary-encoded arrays decoded; large/view strings as plain strings."""
    if isinstance(array, pa.Array):
        if pa.types.is_dictionary(array.type):
            array = array.dictionary_decode()
        if pa.types.is_large_string(array.type) or pa.types.is_string_view(array.type):
            array = array.cast(pa.string())
    return array


def _pylist(column) -> list:
    return column if isinstance(column, list) else column.to_pylist()


def _by_unique(array: pa.Array, func: Callable, out_type: pa.DataType) -> pa.Array:
    """``func`` of each value of a string array, computed once per distinct value."""
    encoded = array.dictionary_encode()
    mapped = pa.array([func(v) for v in encoded.dictionary.to_pylist()], type=out_type)
    return mapped.take(encoded.indices)


def _ids_column(column, n: int) -> pa.Array:
    """Ids as strings; whole numbers stored as floats (a pandas column with a missing value: 2.0) read as the
    integers they are, value by value, so that id 2.0 is "2" as in every other file and every batch."""
    strings = _strings_column(column, n)
    column = None if column is None else _plain(column)
    if isinstance(column, pa.Array) and pa.types.is_floating(column.type):
        values = column.to_numpy(zero_copy_only=False)  # NaN for nulls
        with np.errstate(invalid="ignore"):
            whole = np.isfinite(values) & (values == np.floor(values)) & (np.abs(values) < 2 ** 53)
        if whole.any():
            ints = pa.array(values[whole].astype(np.int64)).cast(pa.string())
            strings = pc.replace_with_mask(strings, pa.array(whole), ints)
    return strings


def _strings_column(column, n: int) -> pa.Array:
    """:func:`_as_string` of each value."""
    if column is None:
        return pa.nulls(n, pa.string())
    column = _plain(column)
    if isinstance(column, pa.Array):
        dtype = column.type
        if pa.types.is_string(dtype):
            return column
        if pa.types.is_integer(dtype):
            return column.cast(pa.string())
        if pa.types.is_boolean(dtype):
            return pc.if_else(column, "True", "False")
        if pa.types.is_null(dtype):
            return pa.nulls(n, pa.string())
        if (pa.types.is_list(dtype) or pa.types.is_large_list(dtype)) and (
                pa.types.is_string(dtype.value_type) or pa.types.is_large_string(dtype.value_type)):
            return _json_string_lists(column)
    return pa.array([_as_string(v) for v in _pylist(column)], type=pa.string())


def _json_escapes(values: pa.Array) -> np.ndarray:
    """Which strings of ``values`` json.dumps would escape (a control character, '"' or a backslash): a test of
    their bytes with numpy, much cheaper than a regex kernel."""
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)[values.offset:values.offset + len(values) + 1]
    data = values.buffers()[2]
    if data is None or offsets[-1] == offsets[0]:
        return np.zeros(len(values), dtype=bool)
    raw = np.frombuffer(data, dtype=np.uint8)[offsets[0]:offsets[-1]]
    special = (raw < 0x20) | (raw == 0x22) | (raw == 0x5C)
    if not special.any():
        return np.zeros(len(values), dtype=bool)
    counts = np.concatenate([[0], np.cumsum(special, dtype=np.int64)])
    return counts[offsets[1:] - offsets[0]] > counts[offsets[:-1] - offsets[0]]


def _json_string_lists(column: pa.Array) -> pa.Array:
    """Each list of strings as json.dumps(ensure_ascii=False) writes it: ``["a", "b"]``, ``[]``, null for null."""
    values = column.flatten().cast(pa.string())
    escape = _json_escapes(values)
    if values.null_count == 0:  # the common case: join the raw strings, quote the ends
        joined = pc.binary_join(column.cast(pa.list_(pa.string())), '", "')
        out = pc.binary_join_element_wise('["', joined, '"]', "")
        out = pc.if_else(pc.equal(column.value_lengths(), 0), "[]", out)
        if escape.any():  # rows with a string json.dumps escapes: those rows the slow way
            parents = pc.list_parent_indices(column).to_numpy(zero_copy_only=False)
            rows = np.unique(parents[escape])
            mask = np.zeros(len(column), dtype=bool)
            mask[rows] = True
            fixed = [_TO_JSON(v) for v in column.take(pa.array(rows)).to_pylist()]
            out = pc.replace_with_mask(out, pa.array(mask), pa.array(fixed, pa.string()))
        return out
    quoted = pc.binary_join_element_wise('"', values, '"', "")
    if escape.any():
        rows = np.flatnonzero(escape)
        texts = values.take(pa.array(rows)).to_pylist()
        quoted = pc.replace_with_mask(quoted, pa.array(escape),
                                      pa.array([json.dumps(t, ensure_ascii=False) for t in texts], pa.string()))
    quoted = quoted.fill_null("null")
    lengths = column.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(column) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    lists = pa.ListArray.from_arrays(pa.array(offsets), quoted, mask=column.is_null())
    joined = pc.binary_join(lists, ", ")
    return pc.binary_join_element_wise("[", joined, "]", "")


def _texts_column(column, n: int) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """(:func:`text_value` of each value as strings, null for empty; mask of the values that are not text; mask
    of the lists and objects whose strings were joined)."""
    not_text, joined = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    if column is None:
        return pa.nulls(n, pa.string()), not_text, joined
    column = _plain(column)
    if isinstance(column, pa.Array):
        dtype = column.type
        if pa.types.is_string(dtype):
            return pc.utf8_trim(column, characters=_PY_WHITESPACE), not_text, joined
        if pa.types.is_null(dtype):
            return pa.nulls(n, pa.string()), not_text, joined
        if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_boolean(dtype) \
                or pa.types.is_decimal(dtype):
            return pa.nulls(n, pa.string()), column.is_valid().to_numpy(zero_copy_only=False), joined
    out = []
    for i, value in enumerate(_pylist(column)):
        text = text_value(value)
        if text is _NOT_TEXT:
            not_text[i] = True
            out.append(None)
        else:
            joined[i] = isinstance(value, (list, tuple, dict))
            out.append(text)
    return pa.array(out, type=pa.string()), not_text, joined


def _years_column(column, n: int) -> tuple[pa.Array, np.ndarray]:
    """(:func:`parse_year` of each value, int32; mask of the values that are there, not None and not '')."""
    if column is None:
        return pa.nulls(n, pa.int32()), np.zeros(n, dtype=bool)
    column = _plain(column)
    if isinstance(column, pa.Array):
        dtype = column.type
        if pa.types.is_integer(dtype):
            values = column.cast(pa.int64())
            compact = compact_date_year(values.fill_null(0).to_numpy(zero_copy_only=False))
            values = pc.if_else(pa.array(compact > 0), pa.array(compact), values)  # 20210304: 2021
            ok = pc.and_(pc.greater_equal(values, 1000), pc.less_equal(values, 2999))
            years = pc.if_else(ok, values, pa.scalar(None, pa.int64())).cast(pa.int32())
            return years, column.is_valid().to_numpy(zero_copy_only=False)
        if pa.types.is_string(dtype):
            years = _by_unique(column, parse_year, pa.int32())
            present = pc.and_(column.is_valid(), pc.not_equal(column, "")).fill_null(False)
            return years, present.to_numpy(zero_copy_only=False)
        if pa.types.is_null(dtype):
            return pa.nulls(n, pa.int32()), np.zeros(n, dtype=bool)
    values = _pylist(column)
    years = pa.array([parse_year(v) for v in values], type=pa.int32())
    present = np.fromiter((v is not None and v != "" for v in values), dtype=bool, count=len(values))
    return years, present


def _labels_column(column, n: int) -> pa.Array:
    """:func:`first_label` of each value."""
    if column is None:
        return pa.nulls(n, pa.string())
    column = _plain(column)
    if isinstance(column, pa.Array):
        dtype = column.type
        if pa.types.is_string(dtype):
            return _by_unique(column, first_label, pa.string())
        if pa.types.is_null(dtype):
            return pa.nulls(n, pa.string())
        if pa.types.is_list(dtype) and pa.types.is_string(dtype.value_type):
            values = column.flatten()
            labels = _by_unique(values, first_label, pa.string()) if len(values) else values
            parents = pc.list_parent_indices(column).to_numpy(zero_copy_only=False)
            valid = labels.is_valid().to_numpy(zero_copy_only=False)
            rows, first = np.unique(parents[valid], return_index=True)
            out = [None] * n
            picked = labels.filter(pa.array(valid)).take(pa.array(first)).to_pylist() if len(rows) else []
            for row, label in zip(rows.tolist(), picked):
                out[row] = label
            return pa.array(out, type=pa.string())
    return pa.array([first_label(v) for v in _pylist(column)], type=pa.string())


def _english_column(column, n: int) -> np.ndarray:
    """:func:`_is_english_code` of each value: 1 English, 0 not, -1 unknown."""
    codes = np.full(n, -1, dtype=np.int8)
    if column is None:
        return codes
    column = _plain(column)
    if isinstance(column, pa.Array) and pa.types.is_string(column.type):
        mapped = _by_unique(column, lambda v: None if _is_english_code(v) is None else int(_is_english_code(v)),
                            pa.int8())
        return mapped.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int8)
    for i, value in enumerate(_pylist(column)):
        english = _is_english_code(value)
        if english is not None:
            codes[i] = int(english)
    return codes


def _take(column, rows: np.ndarray, everything: bool = False):
    """The values of ``column`` at ``rows`` (``everything``: rows is 0..n-1, so the column as it is)."""
    if column is None or everything:
        return column
    if isinstance(column, list):
        return [column[i] for i in rows]
    return column.take(pa.array(rows, type=pa.int64()))


# ---------------------------------------------------------------------------------------------- normalising

class _FileColumns:
    """Which source column feeds each normalised column in one file. JSON records have no header: a column whose
    key first appears after the first chunk is taken from there on, and an explicit column is only missing if no
    record of the file has it."""

    def __init__(self, path: Path, fmt: str, columns: ColumnMap):
        self.path, self.fmt, self.columns = path, fmt, columns
        self.keyed = fmt in ("jsonl", "json")
        self.mapping: dict[str, Optional[str]] = {}
        self.seen: dict[str, None] = {}
        self.started = False
        self.notes: list[str] = []

    def update(self, names: list[str], where: Callable[[str], str]) -> list[str]:
        """Take the names of the next chunk; returns those not seen before in this file."""
        new = [n for n in names if n not in self.seen]
        self.seen.update(dict.fromkeys(new))
        if not self.started:
            self.started = True
            if self.keyed:
                self.mapping = self._resolve(list(self.seen))
            else:
                self.mapping = resolve_columns(list(self.seen), self.columns, self.path)
                self.mapping["language"] = _find(list(self.seen), LANGUAGE_CANDIDATES)
        elif new and self.keyed:
            self._late(new, where)
        return new

    def _resolve(self, names: list[str]) -> dict:
        mapping = {}
        for target in ("id", "text", "title", "year", "label"):
            explicit = getattr(self.columns, target)
            mapping[target] = (explicit if explicit in names else None) if explicit is not None \
                else _find(names, _CANDIDATES[target])
        if mapping["title"] is not None and mapping["title"] == mapping["text"]:
            mapping["title"] = None
        mapping["language"] = _find(names, LANGUAGE_CANDIDATES)
        return mapping

    def _late(self, new: list[str], where: Callable[[str], str]) -> None:
        taken = {v for v in self.mapping.values() if v}
        for target in ("id", "text", "title", "year", "label", "language"):
            explicit = getattr(self.columns, target) if target != "language" else None
            current = self.mapping.get(target)
            if explicit is not None:
                if current is None and explicit in new:
                    self.mapping[target] = explicit
                continue
            found = _find([n for n in new if n not in taken], _CANDIDATES[target])
            if found is None:
                continue
            if current is None:
                self.mapping[target] = found
                taken.add(found)
            elif _CANDIDATES[target].index(found.lower()) < _CANDIDATES[target].index(current.lower()):
                flag = f"; name the one to use with --{target}-col" if target != "language" else ""
                self.notes.append(f"key {found!r} first appears at {where(found)}, after {current!r} was chosen as "
                                  f"the {target} column from the first records{flag}")
        if self.mapping.get("title") is not None and self.mapping["title"] == self.mapping.get("text"):
            self.mapping["title"] = None

    def finish(self) -> None:
        """At the end of the file: an explicit column no record had, or no text column at all, is an error."""
        if not self.keyed or not self.started:
            return
        names = list(self.seen)
        for target in ("id", "text", "title", "year", "label"):
            explicit = getattr(self.columns, target)
            if explicit is not None and explicit not in self.seen:
                raise UsageProblem(
                    f"column {explicit!r} (--{target}-col) not in {self.path.name}; columns: {', '.join(names)}")
        if self.mapping.get("text") is None:
            raise CorpusmapError(
                f"no text column in {self.path.name} (looked for {', '.join(TEXT_CANDIDATES)}); name it with "
                f"--text-col; columns: {', '.join(names)}")


class _Normaliser:
    """Maps source chunks to the normalised schema, applying the filters and counting what it drops."""

    def __init__(self, columns: ColumnMap, filters: CorpusFilters, stats: CorpusStats):
        self.columns, self.filters, self.stats = columns, filters, stats
        self.schema: Optional[pa.Schema] = None
        self.extras: list[str] = []
        self._year_raw_seen = 0
        self.file: Optional[_FileColumns] = None
        self._dropped_keys: dict[str, str] = {}
        self._odd_texts: dict[str, tuple[int, Optional[str]]] = {}  # joined / not_text -> (count, first place)
        self.rows = np.zeros(0, dtype=np.int64)  # the source rows of the last batch
        self.generated_ids = 0  # rows without an id, given their row number as id

    def begin_file(self, path: Path, fmt: str) -> None:
        self.file = _FileColumns(path, fmt, self.columns)
        self._dropped_keys, self._odd_texts = {}, {}

    def end_file(self) -> None:
        self.file.finish()
        path = self.file.path
        for note in self.file.notes:
            self.stats.warn(f"{path}: {note}")
        for kind, what in (("joined", "lists or objects, their strings joined by spaces"),
                           ("not_text", "numbers or booleans, not text: skipped")):
            if kind in self._odd_texts:
                count, first = self._odd_texts[kind]
                self.stats.warn(f"{path}: {count:,} abstract(s) given as {what} (first at {first})")
        if self._dropped_keys:
            keys = list(self._dropped_keys.items())
            shown = ", ".join(f"{k!r} (first at {w})" for k, w in keys[:3]) + \
                (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
            origin = "the first file read" if self.stats.files > 1 else "the first 8,192 records"
            self.stats.warn(f"{path}: key(s) {shown} not kept: the extra columns of the corpus are those of "
                            f"{origin}")

    def _start_schema(self, names: list[str], mapping: dict) -> None:
        # a date column that feeds the year stays too (monthly periods need it)
        used = {v for k, v in mapping.items() if v is not None and k not in ("language", "year")}
        if mapping["year"] is not None and mapping["year"].lower() == "year":
            used.add(mapping["year"])
        used -= set(self.columns.keep)
        self.extras = [n for n in names if n not in used and n.lower() not in CORE_COLUMNS]
        schema_fields = [pa.field("id", pa.string()), pa.field("text", pa.string()),
                         pa.field("title", pa.string()), pa.field("year", pa.int32()),
                         pa.field("label", pa.string())]
        schema_fields += [pa.field(name, pa.string()) for name in self.extras]
        self.schema = pa.schema(schema_fields)

    def __call__(self, chunk: _Chunk, first_row: int) -> Optional[pa.RecordBatch]:
        n = chunk.n
        self.stats.rows_read += n + chunk.dropped
        if n == 0:
            return None
        file = self.file

        def where(name: str) -> str:  # the first row of this chunk that has ``name``
            column = chunk.column(name)
            i = 0
            if isinstance(column, list):
                i = next((k for k, v in enumerate(column) if v is not None), 0)
            elif column is not None and column.null_count:
                valid = np.flatnonzero(column.is_valid().to_numpy(zero_copy_only=False))
                i = int(valid[0]) if len(valid) else 0
            return f"{chunk.unit} {chunk.line(i):,}"

        new = file.update(chunk.names, where)
        if self.schema is None:
            self._start_schema(chunk.names, file.mapping)
        if self.stats.files == 1:
            self.stats.columns = dict(file.mapping)
        mapping = file.mapping
        if new:
            used = {v for v in mapping.values() if v}
            for name in new:
                if name not in used and name not in self.extras and name.lower() not in CORE_COLUMNS \
                        and name not in self._dropped_keys:
                    self._dropped_keys[name] = where(name)
        col = lambda key: chunk.column(mapping.get(key))  # noqa: E731
        f = self.filters
        texts, not_text, joined = _texts_column(col("text"), n)
        for mask, kind in ((joined, "joined"), (not_text, "not_text")):
            if mask.any():
                count, first = self._odd_texts.get(kind, (0, None))
                self._odd_texts[kind] = (count + int(mask.sum()),
                                         first or f"{chunk.unit} {chunk.line(int(np.argmax(mask))):,}")
        lengths = pc.utf8_length(texts).fill_null(0).to_numpy(zero_copy_only=False)
        keep = (lengths > 0) & ~not_text
        self.stats.skipped_not_text += int(not_text.sum())
        self.stats.skipped_empty += int(n - keep.sum() - not_text.sum())
        if f.english_only and keep.any():
            codes = _english_column(col("language"), n)
            unknown = np.flatnonzero(keep & (codes < 0))
            if len(unknown):
                candidates = texts.take(pa.array(unknown)).to_pylist()
                codes[unknown] = [int(looks_english(t)) for t in candidates]
            english = codes == 1
            self.stats.skipped_non_english += int((keep & ~english).sum())
            keep &= english
        if f.max_chars is not None:
            long = keep & (lengths > f.max_chars)
            self.stats.skipped_long += int(long.sum())
            keep &= ~long
        if f.min_chars:
            short = keep & (lengths < f.min_chars)
            self.stats.skipped_short += int(short.sum())
            keep &= ~short
        rows = np.flatnonzero(keep)
        kept_texts = texts if len(rows) == n else texts.take(pa.array(rows, type=pa.int64()))
        if f.cut_truncated and len(rows):
            marked = np.flatnonzero(pc.match_substring(kept_texts, TRUNCATION_MARK).fill_null(False)
                                    .to_numpy(zero_copy_only=False))
            if len(marked):
                values = kept_texts.to_pylist()
                for i in marked:
                    values[i] = cut_at_truncation(values[i])
                kept_texts = pa.array(values, type=pa.string())
                self.stats.cut_truncated += len(marked)
        if f.finished_only and len(rows):
            finished = pc.match_substring_regex(kept_texts, r"(?s)[.?!].?\z").fill_null(False) \
                .to_numpy(zero_copy_only=False)
            self.stats.skipped_unfinished += int((~finished).sum())
            rows, kept_texts = rows[finished], kept_texts.filter(pa.array(finished))
        self.rows = rows
        if not len(rows):
            return None
        m = len(rows)
        every = m == n
        titles = _strings_column(_take(col("title"), rows, every), m)
        if self.columns.prepend_title and mapping.get("title") is not None:
            kept_texts = _prepend_titles(titles, kept_texts)
        ids = _ids_column(_take(col("id"), rows, every), m)
        sources = self.stats.id_columns
        if ids.null_count < m and mapping.get("id") not in sources:
            sources.append(mapping.get("id"))
        if ids.null_count:
            missing = ids.is_null()
            positions = np.flatnonzero(missing.to_numpy(zero_copy_only=False))
            self.generated_ids += len(positions)
            if None not in sources:
                sources.append(None)
            ids = pc.replace_with_mask(ids, missing,
                                       pa.array([str(first_row + int(rows[i])) for i in positions], pa.string()))
        years, present = _years_column(_take(col("year"), rows, every), m)
        seen = int(present.sum())
        if seen:
            self._year_raw_seen += seen
            self.stats.years_unparsed += int((present & years.is_null().to_numpy(zero_copy_only=False)).sum())
        arrays = [ids, kept_texts, titles, years, _labels_column(_take(col("label"), rows, every), m)]
        for name in self.extras:
            arrays.append(_strings_column(_take(chunk.column(name), rows, every), m))
        self.stats.rows_kept += m
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)

    def check_years(self) -> None:
        """A year column that holds no year at all is a user error, not silently null years."""
        if self.columns.year is not None and self._year_raw_seen and self.stats.years_unparsed == self._year_raw_seen:
            raise CorpusmapError(f"column {self.columns.year!r} (--year-col) holds no years (e.g. 2021 or 2021-05-01)")


def _prepend_titles(titles: pa.Array, texts: pa.Array) -> pa.Array:
    """:func:`_join_title` of each (title, text)."""
    stripped = pc.utf8_trim(titles, characters=_PY_WHITESPACE)
    has = pc.greater(pc.utf8_length(stripped), 0).fill_null(False)
    ends = pc.match_substring_regex(stripped, r"(?s)[.?!]\z").fill_null(False)
    sep = pc.if_else(ends, " ", ". ")
    joined = pc.binary_join_element_wise(stripped, sep, texts, "")
    return pc.if_else(has, joined, texts)


# ---------------------------------------------------------------------------------------------- duplicates

_HASH_WEIGHTS = np.random.default_rng(0x5EED).integers(1, 2 ** 63, size=1 << 12, dtype=np.uint64) | np.uint64(1)


def _string_hashes(strings: pa.Array) -> np.ndarray:
    """A 64-bit hash of each string, vectorised over the bytes: sum of byte x odd random weight of its position
    (mod 2**64), plus the length; strings longer than 4,096 bytes wrap around the weights."""
    strings = strings.cast(pa.string())
    n = len(strings)
    offsets = np.frombuffer(strings.buffers()[1], dtype=np.int32)[strings.offset:strings.offset + n + 1].astype(
        np.int64)
    data = strings.buffers()[2]
    lengths = np.diff(offsets)
    out = lengths.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    if data is None or offsets[-1] == offsets[0]:
        return out
    raw = np.frombuffer(data, dtype=np.uint8)[offsets[0]:offsets[-1]].astype(np.uint64)
    starts = offsets[:-1] - offsets[0]
    position = np.arange(len(raw), dtype=np.int64) - np.repeat(starts, lengths)
    weighted = raw * _HASH_WEIGHTS[position & (len(_HASH_WEIGHTS) - 1)]
    nonempty = lengths > 0
    with np.errstate(over="ignore"):
        out[nonempty] += np.add.reduceat(weighted, starts[nonempty])
    return out


class _DuplicateIds:
    """Counts rows whose id an earlier row has: 64-bit hashes of the ids (8 bytes per row) kept in sorted runs that
    are merged as they grow, so each batch is checked in O(batch · log n). A hash collision (about n²/2⁶⁵) could
    count a row as a duplicate; nothing is dropped for it."""

    def __init__(self):
        self.runs: list[np.ndarray] = []
        self.count = 0
        self.first: Optional[tuple[str, str]] = None

    def add(self, ids: pa.Array, where: Callable[[int], str]) -> None:
        hashes = _string_hashes(ids)
        order = np.argsort(hashes, kind="stable")
        ordered = hashes[order]
        dup = np.zeros(len(hashes), dtype=bool)
        if len(ordered) > 1:
            same = ordered[1:] == ordered[:-1]
            dup[order[1:][same]] = True  # a repeat within the batch (the later row, by the stable order)
        for run in self.runs:
            at = np.searchsorted(run, hashes)
            dup |= (at < len(run)) & (run[np.minimum(at, len(run) - 1)] == hashes)
        found = int(dup.sum())
        if found:
            self.count += found
            if self.first is None:
                i = int(np.flatnonzero(dup)[0])
                self.first = (ids[i].as_py(), where(i))
        self.runs.append(np.unique(ordered))
        while len(self.runs) > 1 and len(self.runs[-2]) <= 2 * len(self.runs[-1]):
            last = self.runs.pop()
            self.runs[-1] = np.union1d(self.runs[-1], last)


# ---------------------------------------------------------------------------------------------- the stream

def iter_corpus(inputs: Iterable[str | os.PathLike], columns: ColumnMap = ColumnMap(),
                filters: CorpusFilters = CorpusFilters(), batch_rows: int = 8192,
                stats: Optional[CorpusStats] = None, pubmed_labels: bool = False) -> Iterator[pa.RecordBatch]:
    """Stream the normalised corpus of all inputs as Arrow record batches (schema in the module docstring).

    The files are read and normalised in a background thread, one batch ahead of the caller (so writing a batch
    overlaps with reading the next); PubMed XML is first scanned for the PMIDs of all its files (update files
    replace and delete records of earlier ones, see :func:`corpusmap.pubmed.update_plan`).
    """
    paths = resolve_inputs(inputs)
    stats = stats if stats is not None else CorpusStats()
    return prefetch(_iter_corpus(paths, columns, filters, batch_rows, stats, pubmed_labels))


def _iter_corpus(paths: list[Path], columns: ColumnMap, filters: CorpusFilters, batch_rows: int,
                 stats: CorpusStats, pubmed_labels: bool) -> Iterator[pa.RecordBatch]:
    normalise = _Normaliser(columns, filters, stats)
    formats = [detect_format(p) for p in paths]
    pubmed_paths = [p for p, fmt in zip(paths, formats) if fmt == "pubmed"]
    plan = None
    if pubmed_paths:
        from corpusmap.pubmed import update_plan

        plan = update_plan(pubmed_paths)
        stats.replaced, stats.deleted = plan.replaced, plan.deleted
    duplicates = _DuplicateIds()
    pubmed_index = 0
    for path, fmt in zip(paths, formats):
        stats.files += 1
        repairs = _Repairs()
        normalise.begin_file(path, fmt)
        file_plan, counts = None, {}
        if fmt == "pubmed":
            file_plan = plan.for_file(pubmed_index)
            pubmed_index += 1
        # PubMed text is read whole, as every format: only --cut-truncated cuts (after the length filters)
        for chunk in iter_raw_chunks(path, batch_rows, pubmed_labels=pubmed_labels, cut_truncated=False,
                                     repairs=repairs, pubmed_plan=file_plan, pubmed_counts=counts):
            batch = normalise(chunk, stats.rows_read)
            if batch is not None:  # generated ids too: a row number may be another row's real id
                rows = normalise.rows
                duplicates.add(batch.column(0), lambda i, c=chunk, r=rows, p=path: _where(p, c, int(r[i])))
                yield batch
        normalise.end_file()
        stats.books += counts.get("books", 0)
        stats.replaced_characters += repairs.count
        if repairs.count:
            stats.warn(f"{path}: {repairs.count:,} character(s) that are not valid UTF-8 text (or lone surrogate "
                       f"escapes) were replaced by U+FFFD, the first at {repairs.first}; if the file is in another "
                       "encoding, convert it to UTF-8 first (e.g. `iconv -f latin1 -t utf-8`)")
    normalise.check_years()
    if duplicates.count:
        stats.duplicate_ids = duplicates.count
        example, where = duplicates.first
        generated = f" (the {normalise.generated_ids:,} row(s) without an id have their row number as id)" \
            if normalise.generated_ids else ""
        stats.warn(f"{duplicates.count:,} row(s) have an id that an earlier row has, the first {example!r} at "
                   f"{where}{generated}; all are kept (remove the duplicates from the input, or name a unique id "
                   "column with --id-col)")
    if stats.rows_kept == 0:
        hint = ""
        if stats.skipped_not_text:
            hint = "; the text column holds numbers, not text: name the text column with --text-col"
        named = ", ".join(str(p) for p in paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
        raise CorpusmapError(f"no abstracts with text in {named} ({stats.summary()}){hint}")


def _where(path: Path, chunk: _Chunk, row: int) -> str:
    """``FILE:LINE`` (or ``FILE, row N``) of row ``row`` of ``chunk``."""
    if chunk.unit == "line":
        return f"{path}:{chunk.line(row)}"
    return f"{path}, {chunk.unit} {chunk.line(row):,}"


_DONE = object()


def prefetch(source: Iterator, depth: int = 2) -> Iterator:
    """Run ``source`` in a background thread, ``depth`` items ahead; its exceptions are raised here, and
    closing the result stops the thread."""
    import queue

    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce():
        try:
            for item in source:
                while not stop.is_set():
                    try:
                        items.put((True, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put((True, _DONE))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            items.put((False, exc))

    def consume():
        worker = threading.Thread(target=produce, name="corpusmap-reader", daemon=True)
        worker.start()
        try:
            while True:
                ok, item = items.get()
                if not ok:
                    raise item
                if item is _DONE:
                    return
                yield item
        finally:
            stop.set()
            while worker.is_alive():
                try:
                    items.get(timeout=0.05)
                except queue.Empty:
                    pass
            worker.join()

    return consume()


def input_fingerprint(paths: list[Path]) -> list[dict]:
    """Path, size and modification time of each input: enough to tell that a re-run reads the same files."""
    out = []
    for path in paths:
        st = path.stat()
        out.append({"path": str(path), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out
