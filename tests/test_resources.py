"""A stage that will not fit in memory says so before it starts, and names an option that fits."""
from __future__ import annotations

import pytest

from conftest import EXAMPLE_CORPUS, cli
from corpusmap import resources


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = tmp_path_factory.mktemp("mem") / "run"
    for args in (["embed", EXAMPLE_CORPUS, "-o", run, "--model", "tfidf", "--dim", "20"], ["neighbors", run]):
        assert cli(*args, "-q").exit_code == 0
    return run


def test_a_map_that_will_not_fit_is_refused_at_once(run, monkeypatch):
    assert resources.available_memory() > 0
    monkeypatch.setattr(resources, "available_memory", lambda: 300 << 20)  # 300 MiB left
    result = cli("map", run, "--method", "umap", "--no-plot")
    assert result.exit_code == 1 and "UMAP of 1,881 points of 20 dims needs about" in result.output
    assert "use --method tsne" in result.output and not (run / "maps" / "umap.parquet").exists()
    result = cli("map", run, "--method", "tsne", "--no-plot")
    assert result.exit_code == 1 and "--device cuda" in result.output
    monkeypatch.setattr(resources, "available_memory", lambda: 64 << 30)
    assert cli("map", run, "--method", "pca", "-q").exit_code == 0  # PCA streams: no such check
