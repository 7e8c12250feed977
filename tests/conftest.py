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


@pytest.fixture(scope="session")
def acl_tfidf_run(shared_data, tmp_path_factory) -> Path:
    """A real run, `corpusmap embed acl_2016_2019.jsonl.gz --model tfidf`, built once per test session."""
    from click.testing import CliRunner

    from corpusmap.cli import main

    path = tmp_path_factory.getbasetemp() / "acl_tfidf_run"
    result = CliRunner().invoke(main, ["embed", str(shared_data / "acl_2016_2019.jsonl.gz"), "-o", str(path),
                                       "--model", "tfidf", "--quiet"])
    assert result.exit_code == 0, result.output
    return path
