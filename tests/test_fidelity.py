"""Faithful to the landscape paper: its chance levels and train/test split for kNN accuracy and year RMSE, the
landscape presets, PCA that leaves its input alone, and maps, vectors and graphs that are the same bytes whatever
the thread count. Checked against independent computations (scikit-learn, numpy)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import EXAMPLE_CORPUS, cli
from corpusmap import layouts
from corpusmap import metrics as M


@pytest.fixture(scope="module")
def data():
    """Real vectors, labels and years: TF-IDF of the bundled eLife abstracts."""
    import gzip
    import json

    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    from corpusmap.corpus import first_label

    records = [json.loads(line) for line in gzip.open(EXAMPLE_CORPUS, "rt")]
    X = TruncatedSVD(40, random_state=0).fit_transform(
        TfidfVectorizer(sublinear_tf=True, min_df=2).fit_transform([r["abstract"] for r in records]))
    labels = [first_label(r.get("subjects")) for r in records]
    years = np.array([float(r["year"]) for r in records])
    return X.astype(np.float32), labels, years


def test_knn_accuracy_trains_on_the_other_points_and_has_the_papers_chance(data):
    from sklearn.dummy import DummyClassifier
    from sklearn.neighbors import KNeighborsClassifier

    X, labels, _ = data
    result = M.knn_accuracy(X, labels, k=10, queries=500, seed=3)
    codes, _ = M.label_codes(labels)
    test, train = M.split(codes >= 0, 500, 3)
    assert result.n_test == 500 and result.n_train == int(train.sum()) == int((codes >= 0).sum()) - 500
    clf = KNeighborsClassifier(10, algorithm="brute").fit(X[train].astype(np.float64), codes[train])
    assert result.accuracy == pytest.approx(np.mean(clf.predict(X[test].astype(np.float64)) == codes[test]),
                                            abs=1e-12)
    # chance: scikit-learn's stratified dummy classifier, averaged over many draws
    draws = [DummyClassifier(strategy="stratified", random_state=s).fit(X[train], codes[train])
             .score(X[test], codes[test]) for s in range(300)]
    assert result.chance == pytest.approx(np.mean(draws), abs=0.004)
    freq = np.bincount(codes[codes >= 0]) / (codes >= 0).sum()
    assert result.chance == pytest.approx(np.sum(freq ** 2), abs=0.01) and result.chance < result.chance_majority
    # asking for every point still leaves a training pool: at most half are tested
    everything = M.knn_accuracy(X, labels, k=10, queries=None, seed=3)
    assert everything.n_test == (codes >= 0).sum() // 2


def test_year_rmse_and_its_chance_of_k_random_papers(data):
    from sklearn.neighbors import KNeighborsRegressor

    X, _, years = data
    result = M.year_rmse(X, years, k=10, queries=400, seed=5)
    test, train = M.split(np.isfinite(years), 400, 5)
    reg = KNeighborsRegressor(10, algorithm="brute").fit(X[train].astype(np.float64), years[train])
    rmse = np.sqrt(np.mean((reg.predict(X[test].astype(np.float64)) - years[test]) ** 2))
    assert result.rmse == pytest.approx(rmse, abs=1e-9)
    # the expected squared error of the mean of k random training years (without replacement)
    pool = years[train]
    n = pool.size
    var_of_mean = pool.var() / 10 * (n - 10) / (n - 1)
    expected = np.sqrt(np.mean(var_of_mean + (pool.mean() - years[test]) ** 2))
    assert result.chance == pytest.approx(expected, rel=0.05)
    assert result.chance_mean == pytest.approx(np.sqrt(np.mean((pool.mean() - years[test]) ** 2)))
    with pytest.raises(Exception, match="has the year 2015: year RMSE says nothing"):
        M.year_rmse(X, np.full(len(years), 2015.0), k=10, queries=100)


def test_evaluate_says_so_when_the_years_say_nothing(tmp_path):
    import json

    import gzip

    records = [json.loads(line) for line in gzip.open(EXAMPLE_CORPUS, "rt")]
    one_year = tmp_path / "one_year.jsonl"
    one_year.write_text("".join(json.dumps(dict(r, year="2015")) + "\n" for r in records))
    run = tmp_path / "run"
    assert cli("embed", one_year, "-o", run, "--model", "tfidf", "--dim", "20", "-q").exit_code == 0
    result = cli("evaluate", run, "--queries", "200", "--no-pca")
    assert result.exit_code == 0, result.output
    assert "holds one year only (2015); year RMSE skipped" in result.output and "0.00" not in result.output
    assert json.loads((run / "eval" / "metrics.json").read_text())["year_col"] is None


def test_pca_leaves_its_input_alone_and_equals_scikit_learn():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 30)) * np.linspace(1, 4, 30) + 1e4  # a mean far from zero
    before = X.copy()
    coords, _ = layouts.pca_2d(X, block_rows=500)
    assert np.array_equal(X, before)
    reference = PCA(2, svd_solver="full").fit_transform(X)
    np.testing.assert_allclose(np.abs(coords), np.abs(reference), atol=1e-8)
    np.testing.assert_allclose(coords.mean(axis=0), 0, atol=1e-8)  # centred, not shifted by -mean.W


def test_landscape_presets():
    tsne = layouts.TsneParams.preset_params("landscape")
    assert tsne.symmetrize == "mean" and tsne.k == 10 and tsne.early_exaggeration_iter == 125
    assert layouts.UmapParams.preset_params("landscape").n_neighbors == 10
    # mean symmetrisation: P = (A + A^T) / 2, normalised (openTSNE <= 1.0.2's default, the 2024 map's)
    rng = np.random.default_rng(1)
    n, k = 60, 10
    indices = np.array([rng.choice(np.delete(np.arange(n), i), k, replace=False) for i in range(n)])
    distances = np.sort(rng.random((n, k)), axis=1).astype(np.float32)
    P = layouts.tsne_affinities(indices, distances, tsne).P.toarray()
    A = np.zeros((n, n))
    A[np.repeat(np.arange(n), k), indices.ravel()] = 1
    np.testing.assert_allclose(P, (A + A.T) / 2 / ((A + A.T) / 2).sum())


def _in_subprocess(threads: str, *args) -> None:
    env = dict(os.environ, OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads,
               NUMBA_NUM_THREADS=threads, POLARS_MAX_THREADS=threads)
    done = subprocess.run([sys.executable, "-m", "corpusmap", "-q", *map(str, args)], env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr


def test_the_same_bytes_whatever_the_thread_count(tmp_path):
    """OMP_NUM_THREADS and the rest at 1 and 2: the same vectors, graphs (exact and ivfpq) and maps."""
    runs, exact = {}, {}
    for threads in ("1", "2"):
        run = tmp_path / f"t{threads}"
        _in_subprocess(threads, "embed", EXAMPLE_CORPUS, "-o", run, "--model", "tfidf", "--dim", "60")
        _in_subprocess(threads, "neighbors", run, "-k", "15", "--threads", threads)
        exact[threads] = [(run / "knn" / name).read_bytes() for name in ("indices.npy", "distances.npy")]
        _in_subprocess(threads, "neighbors", run, "-k", "15", "--index", "ivfpq", "--threads", threads,
                       "--overwrite")
        for method in ("tsne", "pca", "umap"):
            _in_subprocess(threads, "map", run, "--method", method, "--threads", threads, "--no-plot",
                           *(["--n-iter", "100", "--early-exaggeration-iter", "50"] if method == "tsne" else []),
                           *(["--n-epochs", "50"] if method == "umap" else []))
        runs[threads] = run
    import pyarrow.parquet as pq

    assert exact["1"] == exact["2"]  # the dense kernel's products on one BLAS thread each
    for path in ("embeddings/shard-00000.npy", "knn/indices.npy", "knn/distances.npy"):
        assert (runs["1"] / path).read_bytes() == (runs["2"] / path).read_bytes(), path
    for name in ("tsne", "pca", "umap"):  # the coordinates (the metadata holds timings and the thread count)
        one, two = (pq.read_table(runs[t] / "maps" / f"{name}.parquet", columns=["x", "y"]) for t in ("1", "2"))
        assert one.equals(two), name
    shutil.rmtree(tmp_path)
