"""Issue 14: every bad input gets one clear line that names the file or flag and the fix.

One row per case class (and the concrete cases of the issue), on files the test makes from the bundled eLife
example corpus (the real PubMed XML of ../shared/data where it exists). For an error it asserts: exit code 1 or 2,
no traceback, one line that names the file or flag (and no bare exception name), and that the run directory's
earlier outputs are byte-identical afterwards. Inputs that are accepted with a repair (a count, a warning) are
checked for the count and for the warning naming the file and the line.

Permissions are tested as root by dropping the override capabilities (``setpriv``), file-size limits with
``RLIMIT_FSIZE`` in a child process; a full disk by an ENOSPC from the parquet writer.
"""
from __future__ import annotations

import errno
import gzip
import json
import os
import resource
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "elife_2012_2016.jsonl.gz"
SHARED = Path(os.environ.get("CORPUSMAP_SHARED_DATA", ROOT.parent / "shared" / "data"))
PUBMED = SHARED / "pubmed_xml"
GENERIC = "set CORPUSMAP_DEBUG=1"  # the catch-all line, never wanted for a case of the issue
TFIDF = ["--model", "tfidf", "--dim", "16"]


def invoke(*args, env: Optional[dict] = None):
    """The command line in this process: (exit code, output)."""
    from click.testing import CliRunner

    from corpusmap.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args], env=env)
    return result.exit_code, result.output


def child(*args, preexec=None, wrap=(), env=None, timeout=300):
    """The command line in a child process (for permissions and limits): (exit code, stdout + stderr)."""
    environment = dict(os.environ, HF_HUB_OFFLINE="1", **(env or {}))
    proc = subprocess.run([*wrap, sys.executable, "-m", "corpusmap", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=environment, preexec_fn=preexec, cwd=ROOT)
    return proc.returncode, proc.stdout + proc.stderr


def tree(folder: Path) -> dict:
    """Every file under ``folder`` (bookkeeping in .corpusmap aside) with its bytes."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and ".corpusmap" not in p.parts}


def records(n: int) -> list[dict]:
    with gzip.open(EXAMPLE, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for _, line in zip(range(n), fh)]


def jsonl(rows: list) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A real run of the first 300 eLife abstracts: TF-IDF vectors, a kNN graph, a PCA map."""
    folder = tmp_path_factory.mktemp("bad_inputs")
    corpus = folder / "elife300.jsonl"
    corpus.write_text(jsonl(records(300)))
    run = folder / "run"
    for args in (["embed", corpus, "-o", run, *TFIDF], ["neighbors", run, "-k", "5"],
                 ["map", run, "--method", "pca", "--no-plot"]):
        code, output = invoke("-q", *args)
        assert code == 0, output
    return {"corpus": corpus, "run": run}


@dataclass
class Work:
    """What a case builds on: a fresh copy of the base run, its corpus, a scratch folder."""

    tmp: Path
    run: Path
    corpus: Path
    restore: list = field(default_factory=list)  # callables run after the case (e.g. chmod back)

    def write(self, name: str, data) -> Path:
        path = self.tmp / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
        return path

    def damage_half(self, rel: str) -> Path:
        path = self.run / rel
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return path

    def read_only(self, folder: Path) -> None:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
        for p in modes:
            p.chmod(modes[p] & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        self.restore.append(lambda: [p.chmod(m) for p, m in modes.items()])


@dataclass
class Case:
    """A command and what its one line must say. ``how``: inprocess, noprivilege (root without the override
    capabilities) or a file-size limit (``fsize`` bytes)."""

    args: list
    code: int
    names: tuple
    how: str = "inprocess"
    fsize: int = 0
    env: Optional[dict] = None
    max_seconds: Optional[float] = None


def gz_damaged(data: bytes) -> bytes:
    packed = bytearray(gzip.compress(data))
    middle = len(packed) // 2
    for i in range(middle, middle + 40):
        packed[i] ^= 0x55
    return bytes(packed)


def csv_of(rows: list[dict]) -> bytes:
    import csv
    import io

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["doi", "title", "abstract", "year"], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def pubmed_xml(rows: list[dict], pmid0: int = 1000) -> bytes:
    """Records as a PubmedArticleSet (the annual baseline layout)."""
    from xml.sax.saxutils import escape

    body = "".join(
        f"<PubmedArticle><MedlineCitation><PMID Version=\"1\">{pmid0 + i}</PMID><Article><Journal><JournalIssue>"
        f"<PubDate><Year>{r['year']}</Year></PubDate></JournalIssue><Title>eLife</Title></Journal>"
        f"<ArticleTitle>{escape(r['title'])}</ArticleTitle><Abstract><AbstractText>{escape(r['abstract'])}"
        "</AbstractText></Abstract><Language>eng</Language></Article></MedlineCitation></PubmedArticle>\n"
        for i, r in enumerate(rows))
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<PubmedArticleSet>\n{body}</PubmedArticleSet>\n'.encode()


def _embed_over(w: Work, path: Path, *names, code=1) -> Case:
    """``embed BAD -o RUN --overwrite``: the bad input must be refused before anything of RUN is replaced."""
    return Case(["embed", path, "-o", w.run, *TFIDF, "--overwrite"], code, (path.name, *names))


# ----------------------------------------------------------------------------------------------- the matrix
# (class, case) -> builder(Work) -> Case

def _c1_embeddings_manifest(w):
    w.damage_half("embeddings/manifest.json")
    return Case(["neighbors", w.run, "-k", "6", "--overwrite"], 1,
                ("embeddings/manifest.json", "damaged", "corpusmap embed"))


def _c1_corpus_json(w):
    (w.run / "corpus.json").write_text('{"inputs": [')
    return Case(["neighbors", w.run, "-k", "6", "--overwrite"], 1, ("corpus.json", "damaged", "corpusmap embed"))


def _c1_knn_manifest(w):
    w.damage_half("knn/manifest.json")
    return Case(["clusters", w.run], 1, ("knn/manifest.json", "damaged", "corpusmap neighbors"))


def _c1_corpus_parquet(w):
    w.damage_half("corpus.parquet")
    return Case(["map", w.run, "--method", "pca", "--name", "pca2", "--no-plot"], 1,
                ("corpus.parquet", "corpusmap embed", str(w.corpus)))


def _c1_map_parquet(w):
    w.damage_half("maps/pca.parquet")
    return Case(["plot", w.run, "--map", "pca"], 1, ("maps/pca.parquet", "damaged", "corpusmap map"))


def _c1_shard(w):
    w.damage_half("embeddings/shard-00000.npy")
    return Case(["neighbors", w.run, "-k", "6", "--overwrite"], 1, ("shard-00000.npy", "corpusmap embed"))


def _c2_read_only_run(w):
    w.read_only(w.run)
    return Case(["neighbors", w.run, "-k", "6", "--overwrite"], 1, (str(w.run), "permission denied"),
                how="noprivilege")


def _c2_read_only_output_folder(w):
    parent = w.tmp / "locked"
    parent.mkdir()
    w.read_only(parent)
    return Case(["embed", w.corpus, "-o", parent / "new", *TFIDF], 1, ("locked/new", "permission denied"),
                how="noprivilege")


def _c2_read_only_figure_folder(w):
    parent = w.tmp / "figures"
    parent.mkdir()
    w.read_only(parent)
    return Case(["plot", w.run, "--map", "pca", "-o", parent / "map.png"], 1, ("figures/map.png",
                                                                              "permission denied"),
                how="noprivilege")


def _c2_fsize_corpus(w):
    return Case(["embed", w.corpus, "-o", w.run, *TFIDF, "--min-chars", "10", "--overwrite"], 1,
                (str(w.run), "corpus", "file too large", "ulimit -f"), how="fsize", fsize=20_000)


def _c2_fsize_graph(w):
    return Case(["neighbors", w.run, "-k", "12", "--overwrite"], 1, (str(w.run), "knn", "file too large"),
                how="fsize", fsize=5_000)


def _c2_fsize_tfidf_fit(w):
    new = w.tmp / "new"
    return Case(["embed", w.corpus, "-o", new, "--model", "tfidf", "--dim", "100"], 1,
                ("new/embeddings/tfidf", "file too large"), how="fsize", fsize=150_000)


def _c2_full_disk(w):
    return Case(["embed", w.corpus, "-o", w.run, *TFIDF, "--min-chars", "10", "--overwrite"], 1,
                (str(w.run), "corpus", "no space left on the device"), how="enospc")


def _c3_jsonl_gz_deflate(w):
    return _embed_over(w, w.write("bad.jsonl.gz", gz_damaged(w.corpus.read_bytes())), "corrupt gzip", "byte",
                       "line")


def _c3_csv_gz_deflate(w):
    return _embed_over(w, w.write("bad.csv.gz", gz_damaged(csv_of(records(300)))), "corrupt gzip", "byte")


def _c3_jsonl_gz_truncated(w):
    packed = gzip.compress(w.corpus.read_bytes())
    return _embed_over(w, w.write("cut.jsonl.gz", packed[: len(packed) * 2 // 3]), "ends early")


def _c3_xml_gz_deflate(w):
    return _embed_over(w, w.write("bad.xml.gz", gz_damaged(pubmed_xml(records(200)))), "gzip")


def _c4_deep_nesting(w):
    rows = records(20) + ['{"doi": "x", "abstract": "ok", "n": ' + "[" * 100_000 + "]" * 100_000 + "}"]
    return _embed_over(w, w.write("deep.jsonl", jsonl(rows)), "deep.jsonl:21", "nested too deeply")


def _c4_deep_nesting_array(w):
    body = ",\n".join([json.dumps(r) for r in records(5)] + ['{"abstract": ' + "[" * 100_000 + "]" * 100_000 + "}"])
    return _embed_over(w, w.write("deep.json", "[" + body + "]"), "deep.json:6", "nested too deeply")


def _c5_unknown_encoding(w):
    data = pubmed_xml(records(5)).replace(b'encoding="UTF-8"', b'encoding="x-nosuch-8"')
    return _embed_over(w, w.write("enc.xml", data), "x-nosuch-8", "UTF-8")


def _c5_rss(w):
    data = ('<?xml version="1.0"?>\n<rss version="2.0"><channel><item><title>A title</title><description>'
            + records(1)[0]["abstract"] + "</description></item></channel></rss>\n")
    return _embed_over(w, w.write("feed.xml", data), "<rss>", "PubmedArticle")


def _c5_jats(w):
    data = ('<?xml version="1.0"?>\n<article xmlns:xlink="http://www.w3.org/1999/xlink"><front><article-meta>'
            f"<abstract><p>{records(1)[0]['abstract']}</p></abstract></article-meta></front></article>\n")
    return _embed_over(w, w.write("jats.xml", data), "<article>", "PubmedArticle")


def _c6_late_column_explicit(w):
    rows = [{"doi": f"d{i}", "abstract": r["abstract"]} for i, r in enumerate(records(50))]
    return Case(["embed", w.write("c.jsonl", jsonl(rows)), "-o", w.run, *TFIDF, "--label-col", "journal",
                 "--overwrite"], 2, ("--label-col", "journal", "c.jsonl"))


def _c7_binary_csv_row(w):
    data = b"doi,abstract\n1,a good abstract text\n2,\"" + bytes(range(256)) * 3 + b"\n"
    return _embed_over(w, w.write("binary.csv", data), "columns", "the row starts")


def _c7_unclosed_quote(w):
    lines = ["doi,abstract,year"] + [f"{r['doi']},{r['abstract'][:200].replace(',', ' ').replace(chr(34), ' ')},"
                                     f"{r['year']}" for r in records(40)]
    lines[38] = lines[38].replace(",", ',"', 1)  # row 38 (line 39) opens a quote that is never closed
    return _embed_over(w, w.write("quote.csv", "\n".join(lines) + "\n"), "quote.csv:39", "never closed")


def _c7_changed_input(w):
    changed = w.write("elife300.jsonl", w.corpus.read_text() + jsonl(records(301)[300:]))
    return Case(["embed", changed, "-o", w.run, *TFIDF], 1,
                ("elife300.jsonl", "--overwrite", f"corpusmap embed {w.corpus} -o {w.run}"))


def _c7_half_finished_embed(w):
    manifest = json.loads((w.run / "embeddings" / "manifest.json").read_text())
    manifest.update(complete=False, shards=[])
    (w.run / "embeddings" / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(w.run / "knn")
    # the shard itself is finished (its receipt is there): only merging it into the manifest is left
    return Case(["neighbors", w.run], 1, ("1 of 1 shards present", "corpusmap embed", "corpusmap merge"))


def _c7_excess_no_such_column(w):
    return Case(["excess", w.run, "--by", "nosuch"], 2, ("--by", "nosuch", "article_type"))


def _c7_source_column_name(w):
    """The eLife `subjects` field was read as `label`: the message says so and names the flag to use."""
    return Case(["plot", w.run, "--map", "pca", "--color", "subjects"], 2,
                ("--color", "subjects", "was read as 'label'", "use --color label"))


def _corpus_columns(w) -> str:
    import pyarrow.parquet as pq

    return ", ".join(pq.read_schema(w.run / "corpus.parquet").names)


def _c7_excess_column(flag, *extra):
    """``excess RUN FLAG nosuch``: the line lists every column of corpus.parquet, not only those it would read."""
    def case(w):
        return Case(["excess", w.run, *extra, flag, "nosuch"], 2,
                    (flag, "'nosuch'", "corpus.parquet", _corpus_columns(w)))
    return case


def _c7_excess_month_without_dates(w):
    return Case(["excess", w.run, "--period", "month"], 2,
                ("--period month", "--date-col", "corpus.parquet", _corpus_columns(w)))


def _c8_excess_flag(args, code, *parts):
    def case(w):
        return Case(["excess", w.run, *args], code, parts)
    return case


def _c8_run_flag(command, args, *parts):
    """``corpusmap COMMAND RUN ARGS`` refused as a usage error (exit 2) naming ``parts``."""
    def case(w):
        return Case([command, w.run, *args], 2, parts)
    return case


def _c8_excess_long_word_list(w):
    """A long --group-words list is words, not a file name too long for the file system."""
    words = ",".join(f"notaword{i}" for i in range(60))
    return Case(["excess", w.run, "--group-words", f"x={words}", "--by", ""], 2, ("'--by': an empty value",))


def _study_counts(rows: list[str], totals: Optional[str]) -> str:
    return "word,2020,2021,2022,2023\n" + "".join(r + "\n" for r in rows) + (totals + "\n" if totals else "")


def _c7_counts_non_numeric(w):
    """The audit's table: a cell that is not a number (and no totals row), once reported as 'no totals row'."""
    path = w.write("counts.csv", _study_counts(["delves,10,11,12,30", "these,9000,9100,n/a,9300"], None))
    return Case(["excess", "--counts", path, "-o", w.run / "excess"], 1,
                ("counts.csv", "line 3", "word 'these'", "column '2022'", "'n/a', not a number"))


def _c7_counts_non_numeric_total(w):
    data = _study_counts(["delves,10,11,12,30"], ",10000,10000,ten thousand,10000")
    path = w.write("yearly-counts.csv.gz", gzip.compress(data.encode()))
    return Case(["excess", "--counts", path, "-o", w.run / "excess"], 1,
                ("yearly-counts.csv.gz", "line 3 (the totals row)", "column '2022'", "not a number"))


def _c7_hub_model_offline(w):
    return Case(["embed", w.corpus, "-o", w.tmp / "new", "--model", "nosuchorg/no-such-model-xyz"], 1,
                ("cannot load model", "nosuchorg/no-such-model-xyz", "--model", "cache"),
                env={"HF_HUB_OFFLINE": "1"}, max_seconds=20)


def _c7_hub_model_no_network(w):
    return Case(["embed", w.corpus, "-o", w.tmp / "new", "--model", "nosuchorg/no-such-model-xyz"], 1,
                ("cannot load model", "no connection", "--model"),
                env={"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}, max_seconds=20)


def _c8_flag(w):
    return Case(["embed", w.corpus, "-o", w.run, "--preset", "nosuch"], 2, ("--preset", "landscape"))


def _c8_section_labels_not_xml(w):
    return Case(["embed", w.corpus, "-o", w.run, *TFIDF, "--section-labels", "--overwrite"], 2,
                ("--section-labels", "no INPUT is .xml"))


ERRORS: dict[tuple[str, str], Callable[[Work], Case]] = {
    ("1 damaged run files", "truncated embeddings/manifest.json"): _c1_embeddings_manifest,
    ("1 damaged run files", "invalid JSON in corpus.json"): _c1_corpus_json,
    ("1 damaged run files", "truncated knn/manifest.json"): _c1_knn_manifest,
    ("1 damaged run files", "truncated corpus.parquet"): _c1_corpus_parquet,
    ("1 damaged run files", "truncated map parquet"): _c1_map_parquet,
    ("1 damaged run files", "truncated vector shard"): _c1_shard,
    ("2 permissions and space", "read-only RUN"): _c2_read_only_run,
    ("2 permissions and space", "read-only folder for -o"): _c2_read_only_output_folder,
    ("2 permissions and space", "read-only folder for a figure"): _c2_read_only_figure_folder,
    ("2 permissions and space", "file-size limit: corpus"): _c2_fsize_corpus,
    ("2 permissions and space", "file-size limit: kNN graph"): _c2_fsize_graph,
    ("2 permissions and space", "file-size limit: TF-IDF fit"): _c2_fsize_tfidf_fit,
    ("2 permissions and space", "full disk"): _c2_full_disk,
    ("3 corrupt compression", "damaged deflate in .jsonl.gz"): _c3_jsonl_gz_deflate,
    ("3 corrupt compression", "damaged deflate in .csv.gz"): _c3_csv_gz_deflate,
    ("3 corrupt compression", "truncated .jsonl.gz"): _c3_jsonl_gz_truncated,
    ("3 corrupt compression", "damaged deflate in .xml.gz"): _c3_xml_gz_deflate,
    ("4 hostile JSON", "nesting 100,000 deep (JSONL)"): _c4_deep_nesting,
    ("4 hostile JSON", "nesting 100,000 deep (JSON array)"): _c4_deep_nesting_array,
    ("5 XML", "unknown encoding in the declaration"): _c5_unknown_encoding,
    ("5 XML", "RSS, not PubMed"): _c5_rss,
    ("5 XML", "JATS, not PubMed"): _c5_jats,
    ("6 silent acceptance", "explicit column absent from every record"): _c6_late_column_explicit,
    ("7 misleading messages", "binary CSV row"): _c7_binary_csv_row,
    ("7 misleading messages", "trailing unclosed CSV quote"): _c7_unclosed_quote,
    ("7 misleading messages", "resume after the input changed"): _c7_changed_input,
    ("7 misleading messages", "neighbors on a half-finished embed"): _c7_half_finished_embed,
    ("7 misleading messages", "excess --by with no such column"): _c7_excess_no_such_column,
    ("7 misleading messages", "plot --color with a source column's name"): _c7_source_column_name,
    ("7 misleading messages", "excess --year-col with no such column"): _c7_excess_column("--year-col"),
    ("7 misleading messages", "excess --text-col with no such column"): _c7_excess_column("--text-col"),
    ("7 misleading messages", "excess --date-col with no such column"): _c7_excess_column("--date-col", "--period",
                                                                                           "month"),
    ("7 misleading messages", "excess --title-col with no such column"): _c7_excess_column("--title-col",
                                                                                            "--with-titles"),
    ("7 misleading messages", "excess --period month, no date column"): _c7_excess_month_without_dates,
    ("7 misleading messages", "--counts cell not a number"): _c7_counts_non_numeric,
    ("7 misleading messages", "--counts totals cell not a number"): _c7_counts_non_numeric_total,
    ("7 misleading messages", "unknown hub model, HF_HUB_OFFLINE"): _c7_hub_model_offline,
    ("7 misleading messages", "unknown hub model, no network"): _c7_hub_model_no_network,
    ("flags", "unknown --preset"): _c8_flag,
    ("flags", "--section-labels without PubMed XML"): _c8_section_labels_not_xml,
    ("flags", "excess --group twice"): _c8_excess_flag(["--group", "style", "--group", "excess"], 2,
                                                       "--group takes one kind", "style and excess"),
    ("flags", "excess --by ''"): _c8_excess_flag(["--by", ""], 2, "'--by': an empty value"),
    ("flags", "map --add ''"): _c8_run_flag("map", ["--add", ""], "'--add': an empty value"),
    ("flags", "view --clusters ''"): _c8_run_flag("view", ["--clusters", ""], "'--clusters': an empty value"),
    ("flags", "excess --group-words FOLDER"): _c8_excess_flag(["--group-words", "/tmp"], 2, "/tmp is a folder"),
    ("flags", "excess --group-words, a long list"): _c8_excess_long_word_list,
    # NaN, infinity and absurd sizes once crashed openTSNE (a segfault), overflowed OpenMP or hung a pool
    ("flags", "map --exaggeration nan"): _c8_run_flag("map", ["--exaggeration", "nan"], "--exaggeration", "finite"),
    ("flags", "map --dof inf"): _c8_run_flag("map", ["--dof", "inf"], "--dof", "finite"),
    ("flags", "map --learning-rate 1e308"): _c8_run_flag("map", ["--learning-rate", "1e308"], "--learning-rate"),
    ("flags", "map --perplexity 1e-300"): _c8_run_flag("map", ["--perplexity", "1e-300"], "--perplexity"),
    ("flags", "map --n-epochs 2**63"): _c8_run_flag("map", ["--method", "umap", "--n-epochs", str(2 ** 63)],
                                                     "--n-epochs"),
    ("flags", "neighbors --threads 10**12"): _c8_run_flag("neighbors", ["--threads", str(10 ** 12)], "--threads"),
    ("flags", "clusters --resolution nan"): _c8_run_flag("clusters", ["--resolution", "nan"], "--resolution"),
}


def _run_case(case: Case, monkeypatch) -> tuple[int, str, float]:
    began = time.monotonic()
    if case.how == "inprocess":
        code, output = invoke("-q", *case.args, env=case.env)
    elif case.how == "enospc":
        import pyarrow.parquet as pq

        def full(self, *args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(pq.ParquetWriter, "write_batch", full)
        code, output = invoke("-q", *case.args)
    elif case.how == "noprivilege":
        wrap = ()
        if os.geteuid() == 0:
            if shutil.which("setpriv") is None:
                pytest.skip("running as root without setpriv: cannot drop the override capabilities")
            wrap = ("setpriv", "--bounding-set=-dac_override,-dac_read_search")
        code, output = child("-q", *case.args, wrap=wrap)
    else:
        limit = case.fsize
        code, output = child("-q", *case.args,
                             preexec=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    return code, output, time.monotonic() - began


@pytest.mark.parametrize("key", list(ERRORS), ids=[f"{c}: {n}" for c, n in ERRORS])
def test_bad_input_gives_one_line_and_keeps_the_run(key, base, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(base["run"], run)
    work = Work(tmp_path, run, base["corpus"])
    case = ERRORS[key](work)
    before = tree(run)
    try:
        code, output, seconds = _run_case(case, monkeypatch)
    finally:
        for undo in work.restore:
            undo()
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == case.code and code in (1, 2), output
    assert "Traceback" not in output and GENERIC not in output, output
    assert len(lines) == 1 and lines[0].startswith("Error: "), output
    for name in case.names:
        assert name in lines[0], (name, lines[0])
    assert tree(run) == before, "the run's earlier outputs changed"
    assert not list((run / ".corpusmap" / "tmp").glob("*")) if (run / ".corpusmap" / "tmp").is_dir() else True
    if case.max_seconds is not None:
        assert seconds < case.max_seconds, f"took {seconds:.1f} s"


# ----------------------------------------------------------------------------------------------- repaired inputs

def _embed_ok(path: Path, out: Path, *extra) -> dict:
    code, output = invoke("-q", "embed", path, "-o", out, *TFIDF, "--prepare-only", *extra)
    assert code == 0, output
    assert "Traceback" not in output
    return json.loads((out / "corpus.json").read_text())["stats"]


def _corpus(out: Path):
    import pyarrow.parquet as pq

    return pq.read_table(out / "corpus.parquet")


def test_lone_surrogate_is_replaced_and_counted(tmp_path):
    rows = records(20) + ['{"doi": "x", "abstract": "an abstract with \\ud800 a lone surrogate in it"}']
    path = tmp_path / "surrogate.jsonl"
    path.write_text(jsonl(rows))
    stats = _embed_ok(path, tmp_path / "out")
    assert stats["replaced_characters"] == 1 and stats["rows_kept"] == 21
    assert any("surrogate.jsonl" in w and "line 21" in w for w in stats["warnings"])
    assert _corpus(tmp_path / "out").column("text")[-1].as_py() == "an abstract with \ufffd a lone surrogate in it"


def test_infinite_and_nan_years_are_no_year_and_counted(tmp_path):
    rows = records(20) + ['{"doi": "x", "abstract": "an abstract", "year": Infinity}',
                          '{"doi": "y", "abstract": "another abstract", "year": NaN}']
    path = tmp_path / "years.jsonl"
    path.write_text(jsonl(rows))
    stats = _embed_ok(path, tmp_path / "out")
    assert stats["rows_kept"] == 22 and stats["years_unparsed"] == 2
    years = _corpus(tmp_path / "out").column("year").to_pylist()
    assert years[-2:] == [None, None] and all(years[:20])


def test_an_integer_of_5000_digits_is_kept_as_its_digits(tmp_path):
    rows = records(20) + ['{"doi": "x", "abstract": "an abstract", "n": ' + "9" * 5000 + "}"]
    path = tmp_path / "big.jsonl"
    path.write_text(jsonl(rows))
    _embed_ok(path, tmp_path / "out")
    assert _corpus(tmp_path / "out").column("n")[-1].as_py() == "9" * 5000


def test_a_year_key_that_first_appears_after_8192_records_is_used(tmp_path):
    source = records(290)
    rows = []
    for i in range(9000):
        row = {"doi": f"d{i}", "abstract": source[i % 290]["abstract"]}
        if i >= 8500:
            row["year"] = 2016
            row["venue"] = "eLife"
        rows.append(row)
    path = tmp_path / "late.jsonl"
    path.write_text(jsonl(rows))
    stats = _embed_ok(path, tmp_path / "out")
    table = _corpus(tmp_path / "out")
    assert table.column("year").to_pylist() == [None] * 8500 + [2016] * 500
    assert table.column("label").to_pylist()[8500:] == ["eLife"] * 500  # venue: a label column, late too
    assert stats["columns"]["year"] == "year"


def test_a_key_that_first_appears_late_is_named_in_a_warning(tmp_path):
    source = records(100)
    rows = [{"doi": f"d{i}", "abstract": source[i % 100]["abstract"], **({"extra": "x"} if i >= 8200 else {})}
            for i in range(8300)]
    path = tmp_path / "late.jsonl"
    path.write_text(jsonl(rows))
    stats = _embed_ok(path, tmp_path / "out")
    assert any("'extra'" in w and "late.jsonl" in w and "line 8,201" in w for w in stats["warnings"]), stats


def test_duplicate_ids_are_kept_and_named_in_a_warning(tmp_path):
    rows = records(50) + records(5)
    path = tmp_path / "dups.jsonl"
    path.write_text(jsonl(rows))
    stats = _embed_ok(path, tmp_path / "out")
    assert stats["rows_kept"] == 55 and stats["duplicate_ids"] == 5
    first = records(1)[0]["doi"]
    assert any(repr(first) in w and "dups.jsonl:51" in w for w in stats["warnings"]), stats["warnings"]


def test_duplicate_ids_warning_is_printed(tmp_path):
    path = tmp_path / "dups.jsonl"
    path.write_text(jsonl(records(30) + records(2)))
    code, output = child("embed", path, "-o", tmp_path / "out", *TFIDF, "--prepare-only")
    assert code == 0, output
    assert "warning: 2 row(s) have an id that an earlier row has" in output and "dups.jsonl:31" in output


def test_non_string_abstracts_are_stored_as_text_or_skipped(tmp_path):
    rows = [{"doi": "a", "abstract": 12345}, {"doi": "b", "abstract": ["Background text.", "Results text."]},
            {"doi": "c", "abstract": {"BACKGROUND": "Why.", "METHODS": "How."}}, {"doi": "d", "abstract": True},
            {"doi": "e", "abstract": "A plain abstract."}]
    path = tmp_path / "types.jsonl"
    path.write_text(jsonl(rows))
    stats = _embed_ok(path, tmp_path / "out")
    table = _corpus(tmp_path / "out")
    assert table.column("id").to_pylist() == ["b", "c", "e"]
    assert table.column("text").to_pylist() == ["Background text. Results text.", "Why. How.", "A plain abstract."]
    assert stats["skipped_not_text"] == 2
    assert f"{path}: 2 abstract(s) given as lists or objects, their strings joined by spaces (first at line 2)" \
        in stats["warnings"]
    assert f"{path}: 2 abstract(s) given as numbers or booleans, not text: skipped (first at line 1)" \
        in stats["warnings"]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "json"])
def test_invalid_utf8_is_replaced_and_counted_the_same_in_every_format(tmp_path, fmt):
    rows = records(20)
    good = {"jsonl": jsonl(rows).encode(), "csv": csv_of(rows),
            "json": json.dumps(rows).encode()}[fmt]
    bad_row = {"doi": "x", "title": "t", "abstract": "caf\udce9 au lait, an abstract", "year": "2016"}
    if fmt == "jsonl":
        data = good + json.dumps(bad_row, ensure_ascii=False).encode("utf-8", "surrogateescape") + b"\n"
    elif fmt == "csv":
        data = good + b"x,t,caf\xe9 au lait,2016\n"
    else:
        data = good[:-1] + b', {"doi": "x", "abstract": "caf\xe9 au lait"}]'
    path = tmp_path / f"latin.{fmt}"
    path.write_bytes(data)
    stats = _embed_ok(path, tmp_path / "out")
    assert stats["rows_kept"] == 21 and stats["replaced_characters"] == 1
    assert any(f"latin.{fmt}" in w and "U+FFFD" in w for w in stats["warnings"])
    where = {"jsonl": "line 21", "csv": "row 21", "json": "line 1"}[fmt]
    assert any(where in w for w in stats["warnings"]), stats["warnings"]
    expected = "caf\ufffd au lait, an abstract" if fmt == "jsonl" else "caf\ufffd au lait"
    assert _corpus(tmp_path / "out").column("text")[-1].as_py() == expected


def test_touched_and_moved_inputs_keep_the_vectors(base, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(base["run"], run)
    shards = {p.name: p.read_bytes() for p in (run / "embeddings").glob("shard-*")}
    moved = tmp_path / "elsewhere" / base["corpus"].name
    moved.parent.mkdir()
    shutil.copy(base["corpus"], moved)  # same bytes, another path and mtime
    os.utime(moved, (time.time() + 100, time.time() + 100))
    code, output = invoke("-q", "embed", moved, "-o", run, *TFIDF)
    assert code == 0, output
    assert {p.name: p.read_bytes() for p in (run / "embeddings").glob("shard-*")} == shards
    assert (run / "knn" / "indices.npy").is_file()


def test_an_interrupted_write_leaves_no_staging_folder(base, tmp_path):
    """After a file-size limit stopped the corpus step, the run has no half-written corpus anywhere."""
    out = tmp_path / "new"
    code, output = child("-q", "embed", base["corpus"], "-o", out, *TFIDF,
                         preexec=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000)))
    assert code == 1 and "file too large" in output
    assert not (out / "corpus.parquet").exists() and not (out / "corpus.json").exists()
    assert not list((out / ".corpusmap" / "tmp").glob("*"))


# ----------------------------------------------------------------------------------------------- consistency

THREADS_COMMANDS = {  # every command with a --threads option, and a command line of it on the base run
    "neighbors": lambda run: ["neighbors", run, "-k", "6", "--overwrite"],
    "map": lambda run: ["map", run, "--method", "pca", "--name", "pca2", "--no-plot"],
    "evaluate": lambda run: ["evaluate", run, "--queries", "50"],
    "excess": lambda run: ["excess", run],
}


def test_every_command_with_threads_is_in_the_matrix():
    import click

    from corpusmap.cli import COMMANDS, main

    ctx = click.Context(main)
    having = {name for name in COMMANDS
              if any("--threads" in p.opts for p in main.get_command(ctx, name).params)}
    assert having == set(THREADS_COMMANDS)


@pytest.mark.parametrize("value", ["0", "-1"])
@pytest.mark.parametrize("command", [*THREADS_COMMANDS, "run"])
def test_threads_means_the_same_in_every_command(command, value, base, tmp_path):
    """0 and below are refused by every command (and by a config file's table) with exit 2 and one line naming
    --threads; leaving it out means all cores."""
    run = tmp_path / "run"
    shutil.copytree(base["run"], run)
    before = tree(run)
    if command == "run":
        config = tmp_path / "config.toml"
        config.write_text(f'run = "{run}"\n[neighbors]\nk = 6\nthreads = {value}\n')
        args = ["run", config]
    else:
        args = [*THREADS_COMMANDS[command](run), "--threads", value]
    code, output = invoke("-q", *args)
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in output and len(lines) == 1, output
    assert "'--threads'" in lines[0] and f"{value} is not a number of threads" in lines[0], lines[0]
    assert "leave the option out to use all cores" in lines[0]
    assert tree(run) == before


def test_threads_in_the_library_zero_is_all_cores_negative_refused():
    from corpusmap import layouts
    from corpusmap.errors import UsageProblem
    from corpusmap.excess.scan import scan_corpus
    from corpusmap.knn import faiss_threads

    assert layouts._threads(0) == layouts._threads(None) == layouts.default_threads()
    for refuse in (lambda: layouts._threads(-1), lambda: faiss_threads(-1).__enter__(),
                   lambda: scan_corpus(iter([]), workers=-1, progress=False)):
        with pytest.raises(UsageProblem, match="--threads must be at least 1"):
            refuse()


def test_hnsw_below_target_recall_warns_and_says_so_in_the_manifest(tmp_path):
    """``neighbors --index hnsw`` whose tuning cannot reach --target-recall (efSearch capped at 16 here): one
    warning line naming the flag, the summary line and the manifest say the target was not reached."""
    run = tmp_path / "run"
    code, output = invoke("-q", "embed", EXAMPLE, "-o", run, "--model", "tfidf", "--dim", "32")
    assert code == 0, output
    script = ("import sys; import corpusmap.knn as knn; knn.HNSW_MAX_EF_SEARCH = 16; "
              "from corpusmap.cli import main; main(sys.argv[1:], prog_name='corpusmap')")
    proc = subprocess.run([sys.executable, "-c", script, "neighbors", str(run), "-k", "15", "--index", "hnsw",
                           "--target-recall", "0.9999", "--recall-queries", "300", "--threads", "1"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Traceback" not in output, output
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, output
    assert "hnsw" in warnings[0] and "--target-recall 0.9999" in warnings[0] and "efSearch=16" in warnings[0]
    assert "--index exact" in warnings[0]
    assert "below --target-recall 0.9999" in proc.stdout
    manifest = json.loads((run / "knn" / "manifest.json").read_text())
    assert manifest["recall"]["reached_target"] is False and manifest["recall"]["value"] < 0.9999
    assert manifest["index"]["params"]["tuning_reached_target"] is False
    assert manifest["index"]["params"]["efSearch"] == 16


def test_a_value_holding_a_newline_keeps_the_error_on_one_line(tmp_path):
    """A path (or any value) with a line break in it is shown escaped: the error stays one line."""
    for brk, shown in (("\n", "\\n"), ("\x0b", "\\x0b"), ("\u2028", "\\u2028")):
        folder = tmp_path / f"no{brk}run"
        code, output = invoke("neighbors", folder)
        assert code == 1 and len(output.splitlines()) == 1, output
        assert f"no run directory at {tmp_path}/no{shown}run" in output
