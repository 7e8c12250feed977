"""The GPU paths, where this machine has no GPU: each says in one line what it needs (cuML, a CUDA device), and the
CPU run is untouched. On a GPU machine the same commands run (bench/bench_gpu.py measures them)."""
from __future__ import annotations

import shutil

import pytest

from conftest import EXAMPLE_CORPUS, cli


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = tmp_path_factory.mktemp("gpu") / "run"
    for args in (["embed", EXAMPLE_CORPUS, "-o", run, "--model", "tfidf", "--dim", "20"], ["neighbors", run]):
        assert cli(*args, "-q").exit_code == 0
    return run


def _no_cuda() -> bool:
    try:
        import torch

        return not torch.cuda.is_available()
    except ImportError:
        return True


@pytest.mark.skipif(not _no_cuda(), reason="a GPU is present: the GPU benchmark covers these paths")
@pytest.mark.parametrize("args, message", [
    (["map", "{run}", "--device", "cuda", "--no-plot"], "pip install 'corpusmap[gpu]'"),
    (["map", "{run}", "--method", "umap", "--device", "cuda", "--no-plot"], "pip install 'corpusmap[gpu]'"),
    (["map", "{run}", "--method", "pca", "--device", "cuda"], "the PCA baseline runs on the CPU"),
    (["neighbors", "{run}", "-k", "12", "--device", "cuda", "--overwrite"], "FAISS sees no GPU"),
    (["embed", str(EXAMPLE_CORPUS), "-o", "{run}", "--devices", "0,1"],
     "--devices 0,1: PyTorch sees no CUDA GPU(s), so not cuda:0, cuda:1"),
    (["embed", str(EXAMPLE_CORPUS), "-o", "{run}", "--devices", "cuda"], "PyTorch sees no CUDA GPU(s), so not cuda;"),
])
def test_gpu_paths_say_what_they_need(run, args, message):
    if shutil.which("nvidia-smi") and "cuml" in message:
        pytest.skip("nvidia-smi present")
    before = sorted(p.name for p in (run).rglob("*") if ".corpusmap" not in p.parts)
    result = cli(*[a.format(run=run) for a in args])
    assert result.exit_code in (1, 2) and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert sorted(p.name for p in (run).rglob("*") if ".corpusmap" not in p.parts) == before
