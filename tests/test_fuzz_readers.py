"""A short, seeded fuzz run of the corpus readers: a few hundred mutated real inputs (the bundled eLife corpus as
JSONL, JSON, CSV, TSV, Parquet and PubMed XML, plain and gzipped; the real PubMed XML of ../shared/data where it
exists). Every input must either read or fail with corpusmap's own error class (one line, naming the file); any
other exception, or a crash of the process, fails the test. For JSONL the Arrow reader and the line reader must
also agree: the same rows, or the same error.

The inputs are read in a child process, so that a crash (a parser that overflows its stack) is a failure here,
not the end of the test session.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED = 20_261_201
COUNT = 300

HARNESS = r'''
import gzip, io, json, random, sys, traceback
from pathlib import Path
import pyarrow as pa, pyarrow.parquet as pq
from corpusmap import corpus
from corpusmap.corpus import CorpusFilters, ColumnMap, iter_corpus
from corpusmap.errors import CorpusmapError

seed, count, folder = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
example, pubmed_dir = sys.argv[4], sys.argv[5]
rng = random.Random(seed)
with gzip.open(example, "rt", encoding="utf-8") as fh:
    records = [json.loads(line) for _, line in zip(range(40), fh)]

def csv_text(rows, sep):
    import csv
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=["doi", "title", "abstract", "year", "subjects"], delimiter=sep,
                       extrasaction="ignore")
    w.writeheader(); w.writerows(rows)
    return out.getvalue().encode()

def xml_text(rows):
    from xml.sax.saxutils import escape
    body = "".join(
        f'<PubmedArticle><MedlineCitation><PMID Version="1">{100 + i}</PMID><Article><Journal><JournalIssue>'
        f"<PubDate><Year>{r['year']}</Year></PubDate></JournalIssue><Title>eLife</Title></Journal>"
        f"<ArticleTitle>{escape(r['title'])}</ArticleTitle><Abstract><AbstractText>{escape(r['abstract'])}"
        "</AbstractText></Abstract><Language>eng</Language></Article></MedlineCitation></PubmedArticle>\n"
        for i, r in enumerate(rows))
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<PubmedArticleSet>\n{body}</PubmedArticleSet>\n'.encode()

def parquet_bytes(rows):
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in ("doi", "title", "abstract", "year")} for r in rows]),
                   sink)
    return sink.getvalue()

sources = {
    "jsonl": "".join(json.dumps(r) + "\n" for r in records).encode(),
    "json": json.dumps(records, indent=1).encode(),
    "csv": csv_text(records, ","),
    "tsv": csv_text(records, "\t"),
    "xml": xml_text(records),
    "parquet": parquet_bytes(records),
}
if pubmed_dir and Path(pubmed_dir).is_dir():
    sources["medline.xml"] = gzip.decompress(Path(pubmed_dir, "medline16n0902_sample.xml.gz").read_bytes())[:300_000]
    sources["efetch.xml"] = Path(pubmed_dir, "tipplerow_pubmed_sample.xml").read_bytes()

TOKENS = [b'"', b"\\", b"{", b"}", b"[", b"]", b",", b":", b"\n", b"\r\n", b"\x00", b"\xff", b"\xe9", b"\xc3",
          b"\\ud800", b"\\udc00x", b"NaN", b"Infinity", b"-Infinity", b"1e999", b"9" * 40, b"\xef\xbb\xbf", b"<",
          b">", b"&amp;", b"&bogus;", b"<!--", b"-->", b"<![CDATA[", b"]]>", b'"year": "n/a"', b'"abstract": 7',
          b'"abstract": ["a", {"b": "c"}]', b"[" * 3000, b"{" * 1500, b"\t", b'""', b"</Abstract>",
          b"ABSTRACT TRUNCATED AT 250 WORDS", b"\x1f\x8b", b"null", b"true", b" " * 5, b"\xe2\x80\xa8"]

def mutate(data: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        kind = rng.random()
        at = rng.randrange(len(data) + 1) if data else 0
        if kind < 0.25 and data:
            data[min(at, len(data) - 1)] ^= rng.randrange(1, 256)
        elif kind < 0.55:
            data[at:at] = rng.choice(TOKENS)
        elif kind < 0.7 and data:
            data[at:at + rng.randint(1, 200)] = b""
        elif kind < 0.8 and data:
            end = min(len(data), at + rng.randint(1, 300))
            data[at:at] = data[at:end]
        elif kind < 0.9:
            del data[at:]
        else:
            lines = bytes(data).split(b"\n")
            if len(lines) > 2:
                i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
                lines[i], lines[j] = lines[j], lines[i]
            data = bytearray(b"\n".join(lines))
    return bytes(data)

def read(path, line_reader=False, **options):
    saved = corpus._JsonlReader._arrow
    if line_reader:
        corpus._JsonlReader._arrow = lambda self, data, records: None
    try:
        table = pa.Table.from_batches(list(iter_corpus([path], **options)))
        return ("rows", table.to_pylist())
    except CorpusmapError as exc:
        message = str(exc)
        assert "\n" not in message and str(path) in message or path.name in message, ("message", message)
        return ("error", message)
    finally:
        corpus._JsonlReader._arrow = saved

failures, outcomes = [], {"rows": 0, "error": 0}
options = [dict(), dict(filters=CorpusFilters(english_only=True, min_chars=20, cut_truncated=True,
                                             finished_only=True)),
           dict(columns=ColumnMap(title="title", label="doi"))]
for i in range(count):
    name = rng.choice(sorted(sources))
    fmt = name.split(".")[-1]
    data = mutate(sources[name])
    zipped = rng.random() < 0.25
    if zipped:
        data = gzip.compress(data)
        if rng.random() < 0.4:
            data = mutate(data)
    path = folder / f"case{i:04d}.{fmt}{'.gz' if zipped else ''}"
    path.write_bytes(data)
    option = rng.choice(options)
    try:
        kind, value = read(path, **option)
        outcomes[kind] += 1
        if fmt == "jsonl":
            other = read(path, line_reader=True, **option)
            if (kind, value) != other:
                failures.append({"case": path.name, "what": "the Arrow reader and the line reader disagree",
                                 "arrow": str(value)[:300], "lines": str(other[1])[:300]})
    except Exception as exc:
        failures.append({"case": path.name, "what": f"{type(exc).__name__}: {str(exc)[:300]}",
                         "traceback": traceback.format_exc()[-1500:]})
print(json.dumps({"failures": failures, "outcomes": outcomes}))
'''


def test_mutated_inputs_read_or_fail_with_one_clear_error(tmp_path):
    example = ROOT / "examples" / "elife_2012_2016.jsonl.gz"
    shared = Path(os.environ.get("CORPUSMAP_SHARED_DATA", ROOT.parent / "shared" / "data")) / "pubmed_xml"
    proc = subprocess.run([sys.executable, "-c", HARNESS, str(SEED), str(COUNT), str(tmp_path), str(example),
                           str(shared)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, f"the reader process died (exit {proc.returncode}): {proc.stderr[-3000:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not report["failures"], json.dumps(report["failures"][:5], indent=1)
    # the mutations are mild enough that many inputs still read, and hostile enough that many do not
    assert report["outcomes"]["rows"] > COUNT // 5 and report["outcomes"]["error"] > COUNT // 5, report["outcomes"]
