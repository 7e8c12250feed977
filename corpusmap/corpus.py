"""Corpus readers: many file formats in, one normalised stream of Arrow record batches out.

Every reader streams (memory does not grow with the corpus). The normalised schema is
``id, text, title, year, label`` followed by the other source columns of the first file, kept as strings.
"""
from __future__ import annotations

import glob
import gzip
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import pyarrow as pa

from corpusmap.errors import CorpusmapError, UsageProblem
from corpusmap.values import parse_list_string, parse_year

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

CORE_COLUMNS = ("id", "text", "title", "year", "label")


@dataclass(frozen=True)
class ColumnMap:
    """Which source column feeds each normalised column; ``None`` means auto-detect.

    ``title`` given explicitly also means "prepend the title to the text" (``--title-col``).
    """

    id: Optional[str] = None
    text: Optional[str] = None
    title: Optional[str] = None
    year: Optional[str] = None
    label: Optional[str] = None

    @property
    def prepend_title(self) -> bool:
        return self.title is not None


@dataclass(frozen=True)
class CorpusFilters:
    """Row filters of the landscape paper; rows with empty text are always dropped (and counted)."""

    min_chars: int = 0
    max_chars: Optional[int] = None
    english_only: bool = False


@dataclass
class CorpusStats:
    """What the reader saw: rows read, kept and skipped by reason; filled in while iterating."""

    files: int = 0
    rows_read: int = 0
    rows_kept: int = 0
    skipped_empty: int = 0
    skipped_short: int = 0
    skipped_long: int = 0
    skipped_non_english: int = 0
    years_unparsed: int = 0
    columns: dict = field(default_factory=dict)

    def summary(self) -> str:
        parts = [f"{self.rows_kept:,} abstracts kept of {self.rows_read:,} rows in {self.files:,} file(s)"]
        for name in ("empty", "short", "long", "non_english"):
            count = getattr(self, f"skipped_{name}")
            if count:
                parts.append(f"{count:,} skipped ({name.replace('_', '-')})")
        return "; ".join(parts)

    def as_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------- inputs

def resolve_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files, directories (their corpus files, recursively) and glob patterns, sorted, de-duplicated."""
    paths: list[Path] = []
    for item in inputs:
        text = str(item)
        path = Path(text)
        if path.is_file():
            paths.append(path)
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and _known_format(p))
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


def _open_text(path: Path):
    if _is_gzip(path):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace", newline="")
    return open(path, "rt", encoding="utf-8", errors="replace", newline="")


# ---------------------------------------------------------------------------------------------- raw readers
# Each yields chunks as dict[column name -> list of values], at most ``rows`` rows per chunk.

def _chunks_from_records(records: Iterator[dict], rows: int) -> Iterator[dict[str, list]]:
    buffer: list[dict] = []
    for record in records:
        buffer.append(record)
        if len(buffer) >= rows:
            yield _records_to_columns(buffer)
            buffer = []
    if buffer:
        yield _records_to_columns(buffer)


def _records_to_columns(records: list[dict]) -> dict[str, list]:
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
    return {name: [record.get(name) for record in records] for name in names}


def _read_jsonl(path: Path, rows: int) -> Iterator[dict[str, list]]:
    def records():
        with _open_text(path) as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise CorpusmapError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
                if not isinstance(record, dict):
                    raise CorpusmapError(f"{path}:{lineno}: expected a JSON object per line")
                yield record

    yield from _chunks_from_records(records(), rows)


def _read_json_array(path: Path, rows: int) -> Iterator[dict[str, list]]:
    """A JSON array of objects, decoded incrementally so the whole file is never held in memory."""
    decoder = json.JSONDecoder()

    def records():
        with _open_text(path) as fh:
            buf, pos, started = "", 0, False
            eof = False
            while True:
                if not eof and len(buf) - pos < (1 << 16):
                    more = fh.read(1 << 20)
                    eof = not more
                    buf = buf[pos:] + more
                    pos = 0
                while pos < len(buf) and buf[pos] in " \t\r\n,":
                    pos += 1
                if not started:
                    if pos >= len(buf):
                        if eof:
                            raise CorpusmapError(f"{path}: empty JSON file")
                        continue
                    if buf[pos] == "{":  # a single object is a one-record corpus
                        started = True
                        buf = "[" + buf[pos:]
                        pos = 0
                    if buf[pos] != "[":
                        raise CorpusmapError(f"{path}: expected a JSON array of objects (or use .jsonl)")
                    started, pos = True, pos + 1
                    continue
                if pos >= len(buf):
                    if eof:
                        raise CorpusmapError(f"{path}: JSON array is not closed (file truncated?)")
                    continue
                if buf[pos] == "]":
                    return
                try:
                    record, end = decoder.raw_decode(buf, pos)
                except json.JSONDecodeError as exc:
                    if not eof:  # maybe the object continues in the next block
                        more = fh.read(1 << 20)
                        eof = not more
                        buf = buf[pos:] + more
                        pos = 0
                        continue
                    line = buf.count("\n", 0, exc.pos) + 1
                    raise CorpusmapError(f"{path}: not valid JSON near record line {line} ({exc.msg})") from None
                if not isinstance(record, dict):
                    raise CorpusmapError(f"{path}: expected a JSON array of objects")
                yield record
                pos = end

    yield from _chunks_from_records(records(), rows)


def _read_delimited(path: Path, rows: int, delimiter: str) -> Iterator[dict[str, list]]:
    import pyarrow.csv as pacsv

    import csv

    with _open_text(path) as fh:
        header = next(csv.reader(fh, delimiter=delimiter), None)
    if not header:
        raise CorpusmapError(f"{path}: empty file (no header row)")
    stream = pa.input_stream(str(path), compression="gzip" if _is_gzip(path) else None)
    try:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(block_size=1 << 22),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(column_types={name: pa.string() for name in header},
                                                 strings_can_be_null=True))
        for batch in reader:
            for start in range(0, batch.num_rows, rows):
                yield batch.slice(start, rows).to_pydict()
    except pa.ArrowInvalid as exc:
        raise CorpusmapError(f"{path}: cannot parse as {'TSV' if delimiter == chr(9) else 'CSV'} ({exc})") from None


def _read_parquet(path: Path, rows: int) -> Iterator[dict[str, list]]:
    import pyarrow.parquet as pq
    import shutil
    import tempfile

    tmpdir = None
    try:
        if _is_gzip(path):  # parquet needs random access: decompress to a temporary file first
            tmpdir = tempfile.mkdtemp(prefix="corpusmap-")
            plain = Path(tmpdir) / "corpus.parquet"
            with gzip.open(path, "rb") as src, open(plain, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            path = plain
        try:
            parquet = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise CorpusmapError(f"{path}: not a readable parquet file ({exc})") from None
        for batch in parquet.iter_batches(batch_size=rows):
            yield batch.to_pydict()
    finally:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)


def _read_pubmed(path: Path, rows: int, with_labels: bool) -> Iterator[dict[str, list]]:
    from corpusmap.pubmed import iter_pubmed

    yield from _chunks_from_records(iter_pubmed(path, with_labels=with_labels), rows)


def iter_raw_chunks(path: Path, rows: int = 8192, pubmed_labels: bool = False) -> Iterator[dict[str, list]]:
    """Source columns of one file, in chunks of at most ``rows`` rows, values as Python objects."""
    fmt = detect_format(path)
    try:
        if fmt == "jsonl":
            yield from _read_jsonl(path, rows)
        elif fmt == "json":
            yield from _read_json_array(path, rows)
        elif fmt == "csv":
            yield from _read_delimited(path, rows, ",")
        elif fmt == "tsv":
            yield from _read_delimited(path, rows, "\t")
        elif fmt == "parquet":
            yield from _read_parquet(path, rows)
        else:
            yield from _read_pubmed(path, rows, pubmed_labels)
    except (EOFError, gzip.BadGzipFile, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise CorpusmapError(f"no such file: {path}") from None
        raise CorpusmapError(f"{path}: cannot read ({exc}); is the file truncated or corrupt?") from None
    except UnicodeDecodeError as exc:
        raise CorpusmapError(f"{path}: not UTF-8 text ({exc.reason})") from None


# ---------------------------------------------------------------------------------------------- normalising

def _find(names: list[str], candidates: tuple[str, ...]) -> Optional[str]:
    lower = {name.lower(): name for name in names}
    for candidate in candidates:
        if candidate in lower:
            return lower[candidate]
    return None


def resolve_columns(names: list[str], columns: ColumnMap, path: Path) -> dict[str, Optional[str]]:
    """Source column for each normalised column (explicit flags checked, the rest auto-detected)."""
    resolved: dict[str, Optional[str]] = {}
    candidates = {"id": ID_CANDIDATES, "text": TEXT_CANDIDATES, "title": TITLE_CANDIDATES,
                  "year": YEAR_CANDIDATES, "label": LABEL_CANDIDATES}
    for target, options in candidates.items():
        explicit = getattr(columns, target)
        if explicit is not None:
            if explicit not in names:
                raise CorpusmapError(
                    f"column {explicit!r} (--{target}-col) not in {path.name}; columns: {', '.join(names)}")
            resolved[target] = explicit
        else:
            resolved[target] = _find(names, options)
    if resolved["text"] is None:
        raise CorpusmapError(
            f"no text column in {path.name} (looked for {', '.join(TEXT_CANDIDATES)}); name it with --text-col; "
            f"columns: {', '.join(names)}")
    if resolved["title"] == resolved["text"]:
        resolved["title"] = None
    return resolved


def first_label(value: Any) -> Optional[str]:
    """One label per row: the first element of a list (or of a list stored as a string), else the value."""
    if value is None:
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


class _Normaliser:
    """Maps one source chunk to the normalised schema, applying filters and counting what it drops."""

    def __init__(self, columns: ColumnMap, filters: CorpusFilters, stats: CorpusStats):
        self.columns, self.filters, self.stats = columns, filters, stats
        self.schema: Optional[pa.Schema] = None
        self.extras: list[str] = []
        self._year_raw_seen = 0

    def start(self, names: list[str], path: Path) -> dict[str, Optional[str]]:
        mapping = resolve_columns(names, self.columns, path)
        mapping["language"] = _find(names, LANGUAGE_CANDIDATES)
        if self.schema is None:  # the first file fixes the extra columns
            # a date column that feeds the year stays too (monthly periods need it)
            used = {v for k, v in mapping.items() if v is not None and k not in ("language", "year")}
            if mapping["year"] is not None and mapping["year"].lower() == "year":
                used.add(mapping["year"])
            self.extras = [n for n in names if n not in used and n.lower() not in CORE_COLUMNS]
            fields = [pa.field("id", pa.string()), pa.field("text", pa.string()),
                      pa.field("title", pa.string()), pa.field("year", pa.int32()),
                      pa.field("label", pa.string())]
            fields += [pa.field(name, pa.string()) for name in self.extras]
            self.schema = pa.schema(fields)
            self.stats.columns = {k: v for k, v in mapping.items()}
        return mapping

    def __call__(self, chunk: dict[str, list], mapping: dict, first_row: int) -> Optional[pa.RecordBatch]:
        n = len(next(iter(chunk.values()))) if chunk else 0
        self.stats.rows_read += n
        col = lambda key: chunk.get(mapping[key]) if mapping.get(key) else None  # noqa: E731
        texts, titles, years, labels = col("text"), col("title"), col("year"), col("label")
        ids, langs = col("id"), col("language")
        f = self.filters
        keep: list[int] = []
        out_text: list[str] = []
        for i in range(n):
            text = texts[i]
            text = text.strip() if isinstance(text, str) else ("" if text is None else str(text).strip())
            if not text:
                self.stats.skipped_empty += 1
                continue
            if len(text) < f.min_chars:
                self.stats.skipped_short += 1
                continue
            if f.max_chars is not None and len(text) > f.max_chars:
                self.stats.skipped_long += 1
                continue
            if f.english_only:
                english = _is_english_code(langs[i]) if langs is not None else None
                if english is None:
                    english = looks_english(text)
                if not english:
                    self.stats.skipped_non_english += 1
                    continue
            if self.columns.prepend_title and titles is not None:
                text = _join_title(_as_string(titles[i]), text)
            keep.append(i)
            out_text.append(text)
        arrays = {
            "id": [_as_string(ids[i]) if ids is not None and ids[i] is not None else str(first_row + i)
                   for i in keep],
            "text": out_text,
            "title": [_as_string(titles[i]) for i in keep] if titles is not None else [None] * len(keep),
            "year": self._years(years, keep),
            "label": [first_label(labels[i]) for i in keep] if labels is not None else [None] * len(keep),
        }
        for name in self.extras:
            values = chunk.get(name)
            arrays[name] = [_as_string(values[i]) for i in keep] if values is not None else [None] * len(keep)
        self.stats.rows_kept += len(keep)
        if not keep:
            return None
        return pa.RecordBatch.from_pydict(arrays, schema=self.schema)

    def _years(self, years: Optional[list], keep: list[int]) -> list[Optional[int]]:
        if years is None:
            return [None] * len(keep)
        out = []
        for i in keep:
            raw = years[i]
            year = parse_year(raw)
            if raw is not None and raw != "":
                self._year_raw_seen += 1
                if year is None:
                    self.stats.years_unparsed += 1
            out.append(year)
        return out

    def check_years(self) -> None:
        """A year column that holds no year at all is a user error, not silently null years."""
        if self.columns.year is not None and self._year_raw_seen and self.stats.years_unparsed == self._year_raw_seen:
            raise CorpusmapError(f"column {self.columns.year!r} (--year-col) holds no years (e.g. 2021 or 2021-05-01)")


def iter_corpus(inputs: Iterable[str | os.PathLike], columns: ColumnMap = ColumnMap(),
                filters: CorpusFilters = CorpusFilters(), batch_rows: int = 8192,
                stats: Optional[CorpusStats] = None, pubmed_labels: bool = False) -> Iterator[pa.RecordBatch]:
    """Stream the normalised corpus of all inputs as Arrow record batches (schema in the module docstring)."""
    paths = resolve_inputs(inputs)
    stats = stats if stats is not None else CorpusStats()
    normalise = _Normaliser(columns, filters, stats)
    for path in paths:
        stats.files += 1
        mapping = None
        for chunk in iter_raw_chunks(path, batch_rows, pubmed_labels=pubmed_labels):
            if not chunk:
                continue
            if mapping is None:
                mapping = normalise.start(list(chunk), path)
            batch = normalise(chunk, mapping, stats.rows_read)
            if batch is not None:
                yield batch
    normalise.check_years()
    if stats.rows_kept == 0:
        raise CorpusmapError(f"no abstracts with text in the input ({stats.summary()})")


def input_fingerprint(paths: list[Path]) -> list[dict]:
    """Path, size and modification time of each input: enough to tell that a re-run reads the same files."""
    out = []
    for path in paths:
        st = path.stat()
        out.append({"path": str(path), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out
