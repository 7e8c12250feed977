"""The Ray engine against a local Ray instance on CPU: byte-identical shards to the local engine (TF-IDF and the
default transformer), resuming only what is missing, a complete manifest, and no Ray processes left behind."""
from __future__ import annotations

import gzip
import itertools
import logging
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

import corpusmap
from conftest import EXAMPLE_CORPUS, cli
from corpusmap.embed import EmbedOptions, EmbedParams, embed, prepare_corpus
from corpusmap.run import Run
from corpusmap.errors import CorpusmapError, UsageProblem

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")  # Ray's own deprecations
ROWS = 120
TFIDF = EmbedOptions(model="tfidf", dim=20, shard_rows=30)
MINILM = EmbedOptions(max_length=64, batch_size=8, shard_rows=30)


def _shards(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((run / "embeddings").glob("shard-*.npy"))}


def _assert_gone(pids) -> None:
    """These Ray processes must have exited (any still running after a grace period is killed, by id)."""
    from corpusmap.ray_engine import wait_gone

    left = wait_gone(pids, 10)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"Ray processes still running after shutdown: {left}"


@pytest.fixture(scope="module")
def subset(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ray-corpus") / "elife_120.jsonl"
    with gzip.open(EXAMPLE_CORPUS, "rt", encoding="utf-8") as lines, open(path, "w", encoding="utf-8") as out:
        out.writelines(itertools.islice(lines, ROWS))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ray-runs")


@pytest.fixture(scope="class")
def local_ray():
    """One local Ray instance (2 CPUs) for the comparisons; embed_with_ray attaches to it."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    from corpusmap.ray_engine import ray_processes

    if ray.is_initialized():
        pytest.skip("Ray is already initialised in this process")
    from corpusmap.ray_engine import _shutdown

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray
    pids = ray_processes()
    _shutdown(ray)
    _assert_gone(pids)


def local_embed(run_dir, inputs, options):
    return embed(EmbedParams(inputs=tuple(inputs), options=options), run_dir)


def ray_embed(run_dir, inputs, options, **engine):
    """The corpus read as the stage reads it, then the shards encoded by the Ray engine."""
    from corpusmap.ray_engine import embed_with_ray

    run = Run(run_dir)
    prepare_corpus(run, EmbedParams(inputs=tuple(inputs), options=options))
    return embed_with_ray(run, options, **engine)


def test_missing_ray_names_the_extra(monkeypatch, tmp_path, subset):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(CorpusmapError, match=r"pip install 'corpusmap\[ray\]'"):
        embed(EmbedParams(inputs=(str(subset),), options=TFIDF), tmp_path / "run", engine="ray")
    assert not (tmp_path / "run" / "embeddings").exists()


def test_pool_size_from_cluster_resources():
    from corpusmap.ray_engine import _pool_size

    class FakeRay:
        def __init__(self, **resources):
            self.resources = resources

        def cluster_resources(self):
            return self.resources

    gpus = FakeRay(CPU=64.0, GPU=8.0)
    assert _pool_size(gpus, 100, None, None) == (8, 1.0, 1.0)  # one actor per GPU
    assert _pool_size(gpus, 3, None, None) == (3, 1.0, 1.0)  # never more actors than shards
    assert _pool_size(gpus, 100, None, 0.5) == (16, 0.5, 1.0)  # two actors share a GPU
    assert _pool_size(gpus, 100, 2, None) == (2, 1.0, 1.0)
    assert _pool_size(FakeRay(CPU=8.0), 100, None, None) == (8, 0.0, 1.0)  # CPU actors, one CPU each
    assert _pool_size(FakeRay(CPU=8.0), 100, 2, None) == (2, 0.0, 4.0)  # fewer actors, more threads each
    with pytest.raises(CorpusmapError, match="gpus-per-worker"):
        _pool_size(FakeRay(CPU=8.0, GPU=1.0), 10, None, 2)
    with pytest.raises(UsageProblem):
        _pool_size(gpus, 10, 0, None)


@pytest.mark.usefixtures("local_ray")
class TestSameVectorsAsLocal:
    def test_tfidf(self, subset, runs):
        local_embed(runs / "local-tfidf", [str(subset)], TFIDF)
        manifest = ray_embed(runs / "ray-tfidf", [str(subset)], TFIDF)
        assert manifest["complete"] and manifest["n"] == ROWS and manifest["n_shards"] == 4
        local = _shards(runs / "local-tfidf")
        assert len(local) == 4 and _shards(runs / "ray-tfidf") == local
        assert {r["device"] for r in map(_receipt, (runs / "ray-tfidf" / "embeddings").glob("shard-*.json"))} \
            == {"cpu"}

    def test_transformer_with_overlapped_calls(self, subset, runs):
        # _overlap: two calls per actor with the model behind a lock (the GPU actors' mode), here on one CPU actor
        local_embed(runs / "local-minilm", [str(subset)], MINILM)
        manifest = ray_embed(runs / "ray-minilm", [str(subset)], MINILM, num_workers=1, _overlap=True)
        local = _shards(runs / "local-minilm")
        assert len(local) == 4 and _shards(runs / "ray-minilm") == local
        expected = corpusmap.load_run(runs / "local-minilm").embeddings_manifest
        assert manifest["complete"] and manifest["params"] == expected["params"]
        assert manifest["request"] == expected["request"] and manifest["shards"] == expected["shards"]


def _receipt(path: Path) -> dict:
    import json

    return json.loads(path.read_text())


def test_resume_reencodes_only_the_missing_shard(subset, runs):
    """Runs after the class above (its Ray is shut down): embed_with_ray starts and stops a Ray of its own."""
    ray = pytest.importorskip("ray")
    from corpusmap.ray_engine import ray_processes

    run = runs / "ray-tfidf"
    if not (run / "embeddings" / "manifest.json").is_file():
        pytest.skip("needs the run of test_tfidf")
    assert not ray.is_initialized()
    folder = run / "embeddings"
    (folder / "shard-00002.npy").unlink()
    (folder / "shard-00002.json").unlink()
    kept = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.glob("shard-*")}
    assert not ray_processes()

    manifest = ray_embed(run, [str(subset)], TFIDF)

    assert not ray.is_initialized()  # it shut down the Ray it started, and its processes are gone
    _assert_gone(ray_processes())
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.glob("shard-*")
            if p.name in kept} == kept
    assert _shards(run) == _shards(runs / "local-tfidf")
    assert manifest["complete"] and [s["index"] for s in manifest["shards"]] == [0, 1, 2, 3]
    loaded = corpusmap.load_run(run)
    np.testing.assert_array_equal(loaded.vectors.to_numpy(),
                                  corpusmap.load_run(runs / "local-tfidf").vectors.to_numpy())


def test_engine_ray_flag_conflicts_are_usage_errors(tmp_path):
    for extra in (["--engine", "ray", "--shard", "0/2"], ["--address", "127.0.0.1:6379"]):
        result = cli("embed", tmp_path / "x.jsonl", "-o", tmp_path / "r", *extra)
        assert result.exit_code == 2 and ("--engine ray" in result.output), result.output
