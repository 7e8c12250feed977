"""Shared fixtures: paths to the real corpora in ../shared/data and the bundled example corpus."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CORPUSMAP_SHARED_DATA", ROOT.parent / "shared" / "data"))
PUBMED_XML = SHARED_DATA / "pubmed_xml"
EXAMPLE_CORPUS = ROOT / "examples" / "elife_2012_2016.jsonl.gz"

# Keep BLAS/torch from oversubscribing the 2-core CI machine.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# No network here or in CI: unknown hub models must fail at once instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def pubmed_dir(shared_data) -> Path:
    return shared_data / "pubmed_xml"


def cli(*args, ok: bool = False):
    """Run the corpusmap command line in-process; returns click's Result (exit_code, output).

    The output is checked for a Python traceback (errors a user can cause are one line, and so is anything
    unexpected unless CORPUSMAP_DEBUG is set); ``ok=True`` also asserts exit code 0, showing the output and the
    traceback of any exception that escaped the command.
    """
    from click.testing import CliRunner

    from corpusmap.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    if ok:
        detail = result.output
        if result.exc_info and not isinstance(result.exception, SystemExit):
            import traceback

            detail += "".join(traceback.format_exception(*result.exc_info))
        assert result.exit_code == 0, detail
    return result


def run_commands(run: Path, *commands) -> Path:
    """Run each command line of ``commands`` (lists of arguments) in turn, each one to succeed; returns ``run``."""
    for args in commands:
        cli(*args, ok=True)
    return run


def copy_run(base: Path, tmp_path: Path) -> Path:
    """A copy of the run directory ``base`` under ``tmp_path``, for a test that changes it."""
    import shutil

    return Path(shutil.copytree(base, tmp_path / "run"))


@pytest.fixture(scope="session")
def example_tfidf_run(tmp_path_factory) -> Path:
    """A real run of the bundled example corpus, `corpusmap embed elife_2012_2016.jsonl.gz --model tfidf` (the
    default 300 dimensions), built once per test session; tests that change it work on a copy."""
    path = tmp_path_factory.getbasetemp() / "example_tfidf_run"
    cli("embed", EXAMPLE_CORPUS, "-o", path, "--model", "tfidf", "--quiet", ok=True)
    return path


@pytest.fixture(scope="session")
def acl_tfidf_run(shared_data, tmp_path_factory) -> Path:
    """A real run, `corpusmap embed acl_2016_2019.jsonl.gz --model tfidf`, built once per test session."""
    path = tmp_path_factory.getbasetemp() / "acl_tfidf_run"
    cli("embed", shared_data / "acl_2016_2019.jsonl.gz", "-o", path, "--model", "tfidf", "--quiet", ok=True)
    return path


@pytest.fixture(scope="session")
def acl_map(acl_tfidf_run, tmp_path_factory) -> Path:
    """That run with `corpusmap neighbors` and a short t-SNE `map` (a copy: the run above stays as it is)."""
    run = copy_run(acl_tfidf_run, tmp_path_factory.mktemp("acl_map"))
    cli("neighbors", run, "-q", ok=True)
    cli("map", run, "--method", "tsne", "--n-iter", "100", "--early-exaggeration-iter", "50", "--no-plot", "-q",
        ok=True)
    return run


def read_jsonl(path, every: int = 1) -> list[dict]:
    """The raw records of a (gzipped) JSONL file as the source gives them (every ``every``-th line)."""
    import gzip
    import json

    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for i, line in enumerate(fh) if i % every == 0 and line.strip()]


def rewrite_corpus(run_dir, table) -> None:
    """Replace RUN/corpus.parquet by ``table`` as if it had been read so (its recorded checksum updated), to test
    what later stages do with such a corpus."""
    import json

    import pyarrow.parquet as pq

    from corpusmap.atomic import sha256_file

    path = Path(run_dir) / "corpus.parquet"
    pq.write_table(table, path)
    manifest_path = Path(run_dir) / "corpus.json"
    manifest = json.loads(manifest_path.read_text())
    manifest.update(sha256=sha256_file(path), bytes=path.stat().st_size)
    manifest_path.write_text(json.dumps(manifest))
    (Path(run_dir) / ".corpusmap" / "verified.json").unlink(missing_ok=True)


def rewrite_shard(run_dir, index: int, array) -> None:
    """Replace vector shard ``index`` by ``array`` with its checksum updated (vectors made elsewhere)."""
    import json

    import numpy as np

    from corpusmap.atomic import sha256_file

    folder = Path(run_dir) / "embeddings"
    path = folder / f"shard-{index:05d}.npy"
    np.save(path, array)
    sha = sha256_file(path)
    receipt = json.loads((folder / f"shard-{index:05d}.json").read_text())
    receipt["sha256"] = sha
    (folder / f"shard-{index:05d}.json").write_text(json.dumps(receipt))
    manifest = json.loads((folder / "manifest.json").read_text())
    for shard in manifest["shards"]:
        if shard["index"] == index:
            shard["sha256"] = sha
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (Path(run_dir) / ".corpusmap" / "verified.json").unlink(missing_ok=True)


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium, headless (one for the whole session: playwright's sync API allows one at a time)."""
    from browsing import CHROMIUM, CHROMIUM_ARGS

    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    if not CHROMIUM.exists():
        pytest.skip(f"no chromium at {CHROMIUM} (make browser installs it)")
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()
