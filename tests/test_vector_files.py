"""Bring your own vectors: an .npy matrix or a parquet column of fixed-size lists stored as the run's embeddings,
with their checksum and origin, so that every later stage works on them."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import EXAMPLE_CORPUS, cli
from corpusmap.embed import EmbedOptions, EmbedParams, EmbedStage
from corpusmap.errors import CorpusmapError, UsageProblem
from corpusmap.run import Run

INPUTS = (str(EXAMPLE_CORPUS),)


@pytest.fixture(scope="module")
def matrix():
    return np.random.default_rng(0).normal(size=(1881, 24)).astype(np.float32)


def embed(run, spec, **options):
    return EmbedStage().run(Run(run), EmbedParams(inputs=INPUTS, options=EmbedOptions(vectors=spec, **options)))


def test_npy_vectors_become_the_runs_embeddings(tmp_path, matrix):
    np.save(tmp_path / "v.npy", matrix)
    result = embed(tmp_path / "run", str(tmp_path / "v.npy"), shard_rows=500)
    manifest = result.manifest
    assert manifest["complete"] and manifest["dim"] == 24 and manifest["model"] == "file:v.npy"
    assert manifest["request"]["encoder"] == "file" and len(manifest["request"]["vectors_sha256"]) == 64
    assert np.array_equal(Run(tmp_path / "run").vectors.to_numpy(), matrix)
    assert not embed(tmp_path / "run", str(tmp_path / "v.npy"), shard_rows=500).computed  # current
    # every later stage works on them
    for args in (["neighbors", tmp_path / "run", "-k", "10"], ["map", tmp_path / "run", "--method", "pca"]):
        assert cli(*args, "-q").exit_code == 0
    # other vectors in the same file name are other vectors: refused without --overwrite
    np.save(tmp_path / "v.npy", matrix[::-1].copy())
    with pytest.raises(CorpusmapError, match="other parameters"):
        embed(tmp_path / "run", str(tmp_path / "v.npy"), shard_rows=500)


def test_a_parquet_column_of_vectors(tmp_path, matrix):
    half = matrix.astype(np.float16)
    table = pa.table({"id": np.arange(1881), "emb": pa.FixedSizeListArray.from_arrays(pa.array(half.ravel()), 24)})
    pq.write_table(table, tmp_path / "v.parquet", row_group_size=400)
    result = embed(tmp_path / "run", f"{tmp_path / 'v.parquet'}:emb", shard_rows=700)
    assert result.manifest["store_dtype"] == "float16"  # kept as given
    assert np.array_equal(Run(tmp_path / "run").vectors.to_numpy(), half.astype(np.float32))


@pytest.mark.parametrize("make, spec, error, message", [
    (lambda d, m: np.save(d / "v.npy", m[:100]), "v.npy", CorpusmapError, "100 rows, but the corpus has 1,881"),
    (lambda d, m: np.save(d / "v.npy", m[:, 0]), "v.npy", CorpusmapError, "need a 2-D float matrix"),
    (lambda d, m: (d / "v.npy").write_bytes(b"not numpy"), "v.npy", CorpusmapError, "not a readable .npy"),
    (lambda d, m: None, "nothing.npy", UsageProblem, "no such file"),
    (lambda d, m: pq.write_table(pa.table({"a": [1] * 1881}), d / "v.parquet"), "v.parquet:emb", UsageProblem,
     "no column 'emb'"),
    (lambda d, m: pq.write_table(pa.table({"a": [1] * 1881}), d / "v.parquet"), "v.parquet", UsageProblem,
     "name the column"),
])
def test_bad_vector_files(tmp_path, matrix, make, spec, error, message):
    make(tmp_path, matrix)
    with pytest.raises(error, match=message):
        embed(tmp_path / "run", str(tmp_path / spec))
    assert not (tmp_path / "run").exists()  # refused before anything is stored: not even the corpus


def test_embed_vectors_on_the_command_line(tmp_path, matrix):
    np.save(tmp_path / "v.npy", matrix)
    result = cli("embed", EXAMPLE_CORPUS, "-o", tmp_path / "run", "--vectors", tmp_path / "v.npy", "-q")
    assert result.exit_code == 0, result.output
    assert np.array_equal(Run(tmp_path / "run").vectors.to_numpy(), matrix)
    bad = cli("embed", EXAMPLE_CORPUS, "-o", tmp_path / "run2", "--vectors", tmp_path / "v.npy",
              "--tokenizer-workers", "many")
    assert bad.exit_code == 2 and "--tokenizer-workers" in bad.output and "auto" in bad.output
    unused = cli("embed", EXAMPLE_CORPUS, "-o", tmp_path / "run2", "--vectors", tmp_path / "v.npy", "--model",
                 "tfidf", "--dim", "5")
    assert unused.exit_code == 2 and "--model, --dim: --vectors stores the given vectors as they are" in unused.output
    # --normalize on float32 vectors, which are read as a read-only memory map of the file
    unit = cli("embed", EXAMPLE_CORPUS, "-o", tmp_path / "run3", "--vectors", tmp_path / "v.npy", "--normalize", "-q")
    assert unit.exit_code == 0, unit.output
    expected = matrix.astype(np.float32) / np.linalg.norm(matrix.astype(np.float32), axis=1, keepdims=True)
    np.testing.assert_allclose(Run(tmp_path / "run3").vectors.to_numpy(), expected, rtol=1e-6, atol=1e-7)


def test_vectors_that_are_not_finite_or_too_large_for_float16_are_named(tmp_path, matrix):
    """An error raised while a shard is stored is the error itself (never a lock problem in disguise)."""
    broken = matrix.astype(np.float32).copy()
    broken[700, 3] = np.nan
    np.save(tmp_path / "nan.npy", broken)
    res = cli("embed", EXAMPLE_CORPUS, "-o", tmp_path / "a", "--vectors", tmp_path / "nan.npy")
    assert res.exit_code == 1 and "Error: --vectors: row 700 of the vectors holds NaN or infinite values" in res.output
    assert "RuntimeError" not in res.output
    huge = matrix.astype(np.float32) * 1e6
    np.save(tmp_path / "huge.npy", huge)
    res = cli("embed", EXAMPLE_CORPUS, "-o", tmp_path / "b", "--vectors", tmp_path / "huge.npy", "--store-dtype",
              "float16")
    assert res.exit_code == 1 and "exceeds the range of float16 storage; use --store-dtype float32" in res.output
    res = cli("embed", EXAMPLE_CORPUS, "-o", tmp_path / "b", "--vectors", tmp_path / "huge.npy", "--store-dtype",
              "float32", "-q")
    assert res.exit_code == 0, res.output


def test_tokenizer_workers_auto():
    from corpusmap.embed import auto_tokenizer_workers

    assert auto_tokenizer_workers("cpu") == 0
    assert 1 <= auto_tokenizer_workers("cuda:0") <= 8
