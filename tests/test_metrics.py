"""Map-quality metrics against independent brute-force computations with scikit-learn, on real TF-IDF vectors (of
the bundled eLife example corpus).

scikit-learn's ``kneighbors(None)`` / ``predict(None)`` give leave-one-out neighbours (a point is not its own
neighbour), which is exactly "train = every other labelled point"; the same query rows are used on both sides, so
the numbers must agree exactly, not just within sampling error.
"""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor, NearestNeighbors

from conftest import EXAMPLE_CORPUS, read_jsonl
from corpusmap import metrics as M
from corpusmap.errors import CorpusmapError, UsageProblem
from corpusmap.vectors import ArrayVectors

K = 10
QUERIES = 600  # of 1,881 points; at most half of the labelled ones left when 30% lose their label below


@pytest.fixture(scope="module")
def elife(example_tfidf_run):
    """Real data: the first 64 TF-IDF+SVD dimensions of the 1,881 eLife abstracts (from a real run), the first
    subject as the label (None for the papers without one) and the year as the source gives it, here ints, every
    other one turned into a string as other sources write it; a PCA map of them."""
    from corpusmap.run import open_run

    run = open_run(example_tfidf_run)
    X = np.ascontiguousarray(run.vectors.to_numpy()[:, :64])
    ids = run.read_corpus(["id"]).column("id").to_pylist()
    by_id = {str(r["doi"]): r for r in read_jsonl(EXAMPLE_CORPUS)}
    labels = np.array([(by_id[i].get("subjects") or [None])[0] for i in ids], dtype=object)
    years = np.array([by_id[i].get("year") for i in ids], dtype=object)
    years[1::2] = [str(y) for y in years[1::2]]
    assert {type(y) for y in years} == {int, str}
    Y = PCA(2, random_state=0).fit_transform(X.astype(np.float64))
    return X, Y, labels, years


def _loo_neighbors(X, k, metric="euclidean"):
    return NearestNeighbors(n_neighbors=k, algorithm="brute", metric=metric).fit(X).kneighbors(
        None, return_distance=False)


def test_knn_recall_matches_sklearn(elife):
    X, Y, _, _ = elife
    rows = M.sample_queries(len(X), QUERIES, seed=3)
    high = _loo_neighbors(X.astype(np.float64), K)[rows]
    low = _loo_neighbors(Y, K)[rows]
    expected = np.mean([len(set(h) & set(lo)) for h, lo in zip(high, low)]) / K
    assert M.knn_recall(X, Y, k=K, queries=QUERIES, seed=3) == pytest.approx(expected, abs=1e-12)
    # the same through a stored neighbour array, and through the store interface
    graph = _loo_neighbors(X.astype(np.float64), 15)
    assert M.knn_recall(graph, Y, k=K, queries=QUERIES, seed=3) == pytest.approx(expected, abs=1e-12)
    assert M.knn_recall(ArrayVectors(X), Y, k=K, queries=rows) == pytest.approx(expected, abs=1e-12)
    # a map is perfect against itself, and a PCA map of text vectors keeps few neighbours
    assert M.knn_recall(Y, Y, k=K, queries=500) == 1.0
    assert 0 < expected < 0.2


def test_exact_neighbors_cosine_matches_sklearn(elife):
    X = elife[0]
    rows = M.sample_queries(len(X), 400, seed=5)
    nn = NearestNeighbors(n_neighbors=K + 1, algorithm="brute", metric="cosine").fit(X.astype(np.float64))
    expected = [[j for j in row if j != i][:K] for i, row in zip(rows, nn.kneighbors(X[rows], return_distance=False))]
    got = M.exact_neighbors(X, rows, K, metric="cosine")
    same = [set(a) == set(b) for a, b in zip(got, expected)]
    assert np.mean(same) == 1.0
    assert not np.array_equal(got, M.exact_neighbors(X, rows, K, metric="euclidean"))


def train_pool(eligible, test) -> np.ndarray:
    """The training points of a test sample: every other eligible point (the test points are not in the pool)."""
    eligible = np.asarray(eligible, dtype=bool)
    return np.flatnonzero(eligible & ~np.isin(np.arange(len(eligible)), test))


def test_knn_accuracy_matches_sklearn_classifier(elife):
    X, Y, labels, _ = elife
    labels = labels.copy()
    rng = np.random.default_rng(0)
    labels[rng.random(len(labels)) < 0.3] = None  # unlabelled points take no part
    labels[:20] = ""  # empty strings count as unlabelled too
    codes, classes = M.label_codes(labels)
    labelled = codes >= 0
    assert QUERIES <= labelled.sum() // 2
    test = M.sample_queries(labelled, QUERIES, seed=11)
    train = train_pool(labelled, test)
    for space in (X.astype(np.float64), Y):
        clf = KNeighborsClassifier(n_neighbors=K, algorithm="brute").fit(space[train], classes[codes[train]])
        expected = np.mean(clf.predict(space[test]) == classes[codes[test]])
        got = M.knn_accuracy(space, labels, k=K, queries=QUERIES, seed=11)
        assert got.accuracy == pytest.approx(expected, abs=1e-12)
        assert got.n_test == QUERIES and got.n_train == len(train) == labelled.sum() - QUERIES
    # chance: the expected accuracy of guessing by the training class frequencies; beside it the majority class
    p_train = np.bincount(codes[train], minlength=len(classes)) / len(train)
    p_test = np.bincount(codes[test], minlength=len(classes)) / len(test)
    assert got.chance == pytest.approx((p_train * p_test).sum())
    assert got.chance_majority == pytest.approx(p_test[p_train.argmax()])
    assert got.n_classes == len(classes)
    # asked for every point, the test sample is half of them: a training pool remains
    assert M.knn_accuracy(Y, labels, k=K, queries=None).n_test == labelled.sum() // 2
    high = M.knn_accuracy(X, labels, k=K, queries=QUERIES, seed=11)
    # the subject is predictable from the text, far beyond the majority class (no subject holds 20% of the papers)
    assert high.accuracy > 2 * high.chance_majority > 0.2


def test_knn_accuracy_tie_break_and_exclusions():
    # point 0 has one neighbour of class "b" and one of class "a" (k=2): the tie goes to "a", which sorts first
    X = np.array([[0.0], [1.0], [-1.1], [50.0], [51.0], [100.0]])
    labels = ["a", "b", "a", "c", "c", None]
    r = M.knn_accuracy(X, labels, k=2, queries=[0])
    assert r.accuracy == 1.0
    r = M.knn_accuracy(X, ["z", "b", "y", "c", "c", None], k=2, queries=[0])
    assert r.accuracy == 0.0  # tie between b and y: b sorts first, truth is z
    # the unlabelled point 5 is no one's neighbour, and cannot be a test point
    with pytest.raises(CorpusmapError):
        M.knn_accuracy(X, labels, k=2, queries=[5])
    with pytest.raises(CorpusmapError, match="no labelled"):
        M.knn_accuracy(X, [None, "", None, None, None, None], k=2)


def test_year_rmse_matches_sklearn_regressor(elife):
    X, Y, _, years = elife
    years = years.copy()
    years[::7] = None
    y = M.year_values(years)
    dated = np.isfinite(y)
    test = M.sample_queries(dated, QUERIES, seed=2)
    train = train_pool(dated, test)
    for space in (X.astype(np.float64), Y):
        reg = KNeighborsRegressor(n_neighbors=K, algorithm="brute").fit(space[train], y[train])
        expected = np.sqrt(np.mean((reg.predict(space[test]) - y[test]) ** 2))
        got = M.year_rmse(space, years, k=K, queries=QUERIES, seed=2)
        assert got.rmse == pytest.approx(expected, rel=1e-12)
        assert got.n_test == QUERIES and got.n_train == len(train)
    assert got.mean_year == pytest.approx(y[train].mean())
    assert got.chance_mean == pytest.approx(np.sqrt(np.mean((y[test] - y[train].mean()) ** 2)))
    # chance: predicting the mean year of k random training papers, whose squared error is on average that of the
    # mean year plus the variance of a k-paper mean
    assert got.chance ** 2 == pytest.approx(got.chance_mean ** 2 + y[train].var() / K, abs=0.05)
    assert got.chance_mean < got.chance


def test_samples_are_seeded_and_shared_between_spaces():
    a = M.sample_queries(1000, 100, seed=1)
    assert np.array_equal(a, M.sample_queries(1000, 100, seed=1))
    assert not np.array_equal(a, M.sample_queries(1000, 100, seed=2))
    assert np.array_equal(M.sample_queries(10, 100), np.arange(10))  # more queries than points: all of them
    mask = np.arange(1000) % 3 == 0
    assert mask[M.sample_queries(mask, 50, seed=4)].all()


def test_bad_inputs():
    X = np.random.default_rng(0).normal(size=(30, 5))
    with pytest.raises(UsageProblem):
        M.knn_recall(X, X[:, :2], k=30)
    with pytest.raises(CorpusmapError):
        M.knn_recall(X[:20], X[:, :2], k=3)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(CorpusmapError, match="NaN"):
        M.knn_recall(bad, X[:, :2], k=3)
    with pytest.raises(CorpusmapError, match="NaN"):
        M.knn_recall(X, bad[:, :2], k=3)


def test_recall_from_neighbors_is_the_mean_share_of_shared_neighbours():
    """Against Python sets, row by row: real neighbour lists (20-D Gaussian data and its PCA-2D), and random rows
    with k = n - 1 (where a k x k comparison per row would need gigabytes at scale)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 20))
    Y = PCA(2).fit_transform(X)
    high = NearestNeighbors(n_neighbors=31).fit(X).kneighbors(X, return_distance=False)[:, 1:]
    low = NearestNeighbors(n_neighbors=31).fit(Y).kneighbors(Y, return_distance=False)[:, 1:]
    wide = rng.integers(0, 600, size=(600, 599)), rng.permuted(np.tile(np.arange(599), (600, 1)), axis=1)
    for h, lo in ((high, low), wide):
        expected = np.mean([sum(v in b for v in a) / h.shape[1] for a, b in zip(h.tolist(), map(set, lo.tolist()))])
        assert M.recall_from_neighbors(h, lo) == pytest.approx(expected, abs=1e-12)
