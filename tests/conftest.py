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
