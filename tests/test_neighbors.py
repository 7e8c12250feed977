"""The kNN graph: FAISS against scikit-learn brute force on real vectors (TF-IDF of the bundled eLife example
corpus), approximate-index recall, saving and loading, graphs users bring, and the `corpusmap neighbors` command
with its bad inputs."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from conftest import cli, rewrite_shard
from corpusmap.errors import CorpusmapError, UsageProblem
from corpusmap.knn import KnnGraph, build_knn_graph, recall_at_k, recall_queries, remove_self, smallest_k
from corpusmap.neighbors import graph_from_arrays, load_knn_graph, write_graph
from corpusmap.run import Run, open_run
from corpusmap.vectors import ArrayVectors

K = 15


def _leading(run_dir) -> np.ndarray:
    """A run's real vectors, cut to 64 dimensions (the leading SVD components) to keep brute force quick."""
    return np.ascontiguousarray(open_run(run_dir).vectors.to_numpy()[:, :64])


def _brute(X):
    """scikit-learn brute-force neighbours, leave-one-out (self excluded), float64."""
    nn = NearestNeighbors(n_neighbors=K, algorithm="brute").fit(X.astype(np.float64))
    dist, ind = nn.kneighbors(None)
    return ind, dist


@pytest.fixture(scope="module")
def X(example_tfidf_run):
    """The 1,881 example abstracts' TF-IDF vectors (64 dimensions)."""
    return _leading(example_tfidf_run)


@pytest.fixture(scope="module")
def brute(X):
    return _brute(X)


@pytest.fixture(scope="module")
def acl_X(acl_tfidf_run):
    """The 8,401 ACL abstracts' TF-IDF vectors (64 dimensions), where ../shared/data exists."""
    return _leading(acl_tfidf_run)


@pytest.fixture(scope="module")
def acl_brute(acl_X):
    return _brute(acl_X)


# the graph against brute force on the example corpus, and at a larger n on the ACL corpus where it is present
ON_BOTH_CORPORA = pytest.mark.parametrize("corpus", ["example", "acl"])


def vectors_and_brute(request, corpus):
    prefix = "acl_" if corpus == "acl" else ""
    return request.getfixturevalue(prefix + "X"), request.getfixturevalue(prefix + "brute")


@pytest.fixture
def run(example_tfidf_run, tmp_path):
    """A private copy of the real run (vectors and corpus only)."""
    dest = tmp_path / "run"
    shutil.copytree(example_tfidf_run, dest, ignore=shutil.ignore_patterns("knn", "eval", "maps"))
    return dest


def _same_sets(a, b) -> float:
    return float(np.mean([set(x) == set(y) for x, y in zip(a, b)]))


@ON_BOTH_CORPORA
def test_exact_graph_matches_sklearn(request, corpus):
    X, brute = vectors_and_brute(request, corpus)
    g = build_knn_graph(X, k=K, index="exact", progress=False)
    ind, dist = brute
    assert g.indices.dtype == np.int64 and g.distances.dtype == np.float32 and g.indices.shape == (len(X), K)
    assert not (g.indices == np.arange(len(X))[:, None]).any()
    assert _same_sets(g.indices, ind) > 0.999  # float32 vs float64: at most a rare near-tie at the k-th place
    assert recall_at_k(g.indices, ind) > 0.9999
    np.testing.assert_allclose(np.sort(g.distances, axis=1), np.sort(dist, axis=1), atol=2e-3)
    assert (np.diff(g.distances, axis=1) >= 0).all()
    assert g.manifest["index"]["type"] == "exact" and g.manifest["recall"] == {**g.manifest["recall"], "value": 1.0}


def test_cosine_graph_is_inner_product_of_normalised_vectors(X):
    g = build_knn_graph(X, k=K, metric="cosine", index="exact", progress=False)
    rows = np.arange(0, len(X), 7)
    nn = NearestNeighbors(n_neighbors=K + 1, algorithm="brute", metric="cosine").fit(X.astype(np.float64))
    dist, ind = nn.kneighbors(X[rows])
    ind, dist = remove_self(ind, dist, rows, K)
    assert _same_sets(g.indices[rows], ind) > 0.995
    np.testing.assert_allclose(np.sort(g.distances[rows], axis=1), np.sort(dist, axis=1), atol=1e-5)
    # cosine on raw vectors = euclidean on unit vectors (same neighbours), but not euclidean on raw vectors
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    e = build_knn_graph(unit, k=K, metric="euclidean", index="exact", progress=False)
    assert _same_sets(g.indices, e.indices) > 0.995
    raw = build_knn_graph(X, k=K, metric="euclidean", index="exact", progress=False)
    assert _same_sets(g.indices, raw.indices) < 0.9


@ON_BOTH_CORPORA
@pytest.mark.parametrize("index", ["ivf", "ivfpq", "hnsw"])
def test_approximate_recall_in_manifest_matches_recomputation(request, corpus, index):
    X, brute = vectors_and_brute(request, corpus)
    g = build_knn_graph(X, k=K, index=index, seed=7, recall_sample=500, progress=False)
    rec = g.manifest["recall"]
    assert rec["measured"] and rec["queries"] == 500
    rows = recall_queries(len(X), 500, 7)
    assert rec["value"] == pytest.approx(recall_at_k(g.indices[rows], brute[0][rows]), abs=0.005)
    assert rec["value"] >= 0.95  # tuned on a separate sample to reach 0.98
    assert recall_at_k(g.indices, brute[0]) >= 0.95
    params = g.manifest["index"]["params"]
    name = "efSearch" if index == "hnsw" else "nprobe"
    chosen = {name: params[name], **({"k_factor": params["k_factor"]} if index == "ivfpq" else {})}
    tried = [t for t in g.manifest["index"]["tuning"] if all(t[key] == value for key, value in chosen.items())]
    assert len(tried) == 1 and tried[0]["recall"] >= 0.98


def test_auto_picks_exact_below_threshold_and_ivfpq_above_on_cpu(X):
    sub = X[:1600]
    assert build_knn_graph(sub, k=5, progress=False).manifest["index"]["type"] == "exact"
    g = build_knn_graph(sub, k=5, exact_threshold=1000, recall_sample=200, device="cpu", progress=False)
    params = g.manifest["index"]["params"]
    assert g.manifest["index"]["type"] == "ivfpq" and params["nlist"] == 40  # sqrt(n)
    assert params["pq_subvectors"] == 32 and params["pq_bits"] == 4  # 2-D sub-vectors of the 64 dimensions
    g = build_knn_graph(sub, k=5, index="ivf", nlist=500, recall_sample=200, progress=False)
    assert g.manifest["index"]["params"]["nlist"] == 1600 // 39  # at least 39 training points per list


@pytest.mark.parametrize("index", ["ivf", "ivfpq"])
def test_ivf_is_deterministic_given_seed(X, index):
    a = build_knn_graph(X, k=10, index=index, seed=3, recall_sample=300, progress=False)
    b = build_knn_graph(X, k=10, index=index, seed=3, recall_sample=300, progress=False)
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.distances, b.distances)
    assert a.manifest["index"]["params"] == b.manifest["index"]["params"]


@pytest.mark.parametrize("cols", [40, 5000, 5000 + 37])
def test_smallest_k_equals_a_full_sort_with_ties(X, cols):
    """The grouped selection against a full lexicographic sort (value, then column), on real squared distances
    rounded so that ties are common (the 1,881 points repeated, for more columns than points and exact ties)."""
    columns = np.vstack([X, X, X])
    assert len(columns) >= cols
    scores = np.round(((X[:50, None, :] - columns[None, :cols, :]) ** 2).sum(-1), 1).astype(np.float32)
    d, i = smallest_k(scores, 16)
    full = np.sort(scores, axis=1)[:, :16]
    assert np.array_equal(d, full)  # the same values, ascending
    assert np.array_equal(np.take_along_axis(scores, i, axis=1), d)  # at the columns returned
    assert all(len(set(row)) == 16 for row in i)
    below = scores < full[:, -1:]  # every column strictly better than the 16th value is among them
    assert all(set(np.flatnonzero(b)) <= set(row) for b, row in zip(below, i))


def test_duplicates_never_list_self():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(50, 8)).astype(np.float32)
    X = np.vstack([base, base[:10], base[:10]])  # points 0..9 appear three times
    g = build_knn_graph(X, k=4, index="exact", progress=False)
    assert not (g.indices == np.arange(len(X))[:, None]).any()
    for i in range(10):  # both copies are at distance 0, whatever order FAISS returned them in
        assert set(g.indices[i, :2]) == {50 + i, 60 + i}
        np.testing.assert_allclose(g.distances[i, :2], 0, atol=1e-3)
    # remove_self: self anywhere, or absent (then the last result goes)
    ids = np.array([[5, 0, 6], [7, 8, 9]])
    out, _ = remove_self(ids, ids.astype(float), np.array([0, 1]), 2)
    assert out.tolist() == [[5, 6], [7, 8]]


def test_save_and_load_roundtrip(X, tmp_path):
    g = build_knn_graph(X[:500], k=5, progress=False)
    run = Run(tmp_path)
    run.knn_dir.mkdir()
    write_graph(run.knn_dir, g, {"name": "neighbors", "versions": {"faiss-cpu": "x"}})
    files = sorted(p.name for p in run.knn_dir.iterdir())
    assert files == ["distances.npy", "indices.npy", "manifest.json"]
    back = load_knn_graph(Run(run))
    assert isinstance(back, KnnGraph) and isinstance(back.indices, np.memmap)
    assert back.indices.dtype == np.int64 and back.distances.dtype == np.float32
    assert np.array_equal(back.indices, g.indices) and back.k == 5 and back.metric == "euclidean"
    m = json.loads((run.knn_dir / "manifest.json").read_text())
    for key in ("k", "metric", "index", "recall", "n", "dim", "seconds", "files", "source", "stage"):
        assert key in m
    assert m["source"] == "faiss" and m["files"]["indices.npy"]["bytes"] == (run.knn_dir / "indices.npy").stat().st_size
    # a changed graph file is noticed where it is used
    indices = np.load(run.knn_dir / "indices.npy")
    indices[0, [0, 1]] = indices[0, [1, 0]]
    np.save(run.knn_dir / "indices.npy", indices)
    with pytest.raises(CorpusmapError, match="fails its checksum.*corpusmap neighbors"):
        load_knn_graph(Run(tmp_path))
    with pytest.raises(CorpusmapError, match=r"no kNN graph in .*run `corpusmap neighbors"):
        load_knn_graph(Run(tmp_path / "elsewhere"))


def test_user_graph_checked_and_distances_computed(X, brute):
    ind, dist = brute
    g = graph_from_arrays(X, ind[:, ::-1].astype(np.int32))  # any order, any integer type
    assert g.manifest["source"] == "user" and g.indices.dtype == np.int64
    np.testing.assert_allclose(g.distances, dist, rtol=1e-5, atol=1e-6)  # computed exactly, sorted
    assert _same_sets(g.indices, ind) == 1.0
    differ = g.indices[:, 0] != ind[:, 0]  # only where the two nearest are tied (duplicate abstracts)
    np.testing.assert_allclose(dist[differ, 0], dist[differ, 1], atol=1e-6)
    bad = ind.copy()
    bad[3, 2] = 3
    for arr, match in [(bad, "own neighbour"), (ind + len(X), r"\[0, "), (ind.astype(float), "integers"),
                       (ind[:-1], "rows"), (np.repeat(ind[:, :1], 2, axis=1), "repeat")]:
        with pytest.raises(CorpusmapError, match=match):
            graph_from_arrays(X, arr)
    with pytest.raises(CorpusmapError, match="shape"):
        graph_from_arrays(X, ind, dist[:, :3])


def test_bad_inputs_in_the_library(X):
    with pytest.raises(UsageProblem, match="k must be"):
        build_knn_graph(X[:10], k=10, progress=False)
    bad = X[:100].copy()
    bad[42, 3] = np.inf
    with pytest.raises(CorpusmapError, match="NaN or infinite.*row 42"):
        build_knn_graph(bad, k=5, progress=False)
    import faiss

    if faiss.get_num_gpus() == 0:
        with pytest.raises(CorpusmapError, match="no GPU"):
            build_knn_graph(X[:100], k=5, device="cuda", progress=False)
    assert build_knn_graph(ArrayVectors(X[:100]), k=5, device="cpu", threads=1, progress=False).k == 5


# ---------------------------------------------------------------------------------------------- the command


def test_cli_neighbors_on_a_real_run(run):
    r = cli("neighbors", run, "-k", 12)
    assert r.exit_code == 0, r.output
    assert "k=12" in r.output and "exact" in r.output
    g = load_knn_graph(Run(run))
    vectors = open_run(run).vectors
    assert g.indices.shape == (len(vectors), 12) == (1881, 12) and g.manifest["dim"] == vectors.shape[1] == 300
    brute = NearestNeighbors(n_neighbors=12).fit(vectors.to_numpy()).kneighbors(None, return_distance=False)
    assert _same_sets(g.indices, brute) > 0.995  # the graph of the full 300-dimensional vectors
    # the same command again has nothing to do; other settings need --overwrite
    again = cli("neighbors", run, "-k", 12)
    assert again.exit_code == 0 and "nothing to do" in again.output
    other = cli("neighbors", run, "-k", 10, "--quiet")
    assert other.exit_code == 1 and "--overwrite" in other.output
    r = cli("neighbors", run, "-k", 10, "--metric", "cosine", "--index", "hnsw", "--recall-queries", 300,
            "--threads", 1, "--overwrite", "--quiet")
    assert r.exit_code == 0, r.output
    m = load_knn_graph(Run(run)).manifest
    assert m["metric"] == "cosine" and m["index"]["type"] == "hnsw" and m["recall"]["queries"] == 300


def test_cli_neighbors_from_user_graph(run, tmp_path):
    r = cli("neighbors", run, "-k", 5, "--quiet")
    assert r.exit_code == 0, r.output
    ours = load_knn_graph(Run(run))
    np.save(tmp_path / "idx.npy", np.asarray(ours.indices))
    r = cli("neighbors", run, "--from", tmp_path / "idx.npy", "--overwrite", "--quiet")
    assert r.exit_code == 0, r.output
    theirs = load_knn_graph(Run(run))
    assert theirs.manifest["source"] == "user" and theirs.manifest["distances_computed"]
    assert np.array_equal(theirs.indices, ours.indices)
    np.testing.assert_allclose(theirs.distances, ours.distances, rtol=1e-3, atol=1e-3)
    np.save(tmp_path / "bad.npy", np.asarray(ours.indices)[:100])
    r = cli("neighbors", run, "--from", tmp_path / "bad.npy", "--overwrite", "--quiet")
    assert r.exit_code == 1 and f"--from {tmp_path / 'bad.npy'}: neighbour indices have 100 rows" in r.output
    assert load_knn_graph(Run(run)).manifest["source"] == "user"  # the good graph is still there
    np.save(tmp_path / "negative.npy", -np.asarray(ours.distances) - 1)
    r = cli("neighbors", run, "--from", tmp_path / "idx.npy", "--from-distances", tmp_path / "negative.npy",
            "--overwrite")
    assert r.exit_code == 1 and f"--from-distances {tmp_path / 'negative.npy'}: distances must be finite" in r.output
    r = cli("neighbors", run, "--from-distances", tmp_path / "idx.npy")
    assert r.exit_code == 2 and "--from" in r.output
    # the options of a search do not apply to a graph given as it is
    r = cli("neighbors", run, "--from", tmp_path / "idx.npy", "-k", "3", "--index", "hnsw", "--overwrite")
    assert r.exit_code == 2 and "-k, --index: --from stores the given graph as it is" in r.output, r.output
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    r = cli("neighbors", run, "--from", tmp_path / "objects.npy", "--overwrite")
    assert r.exit_code == 1 and "holds Python objects (pickled), not numbers" in r.output, r.output


def test_cli_neighbors_bad_inputs(run, tmp_path):
    n = len(open_run(run).vectors)
    r = cli("neighbors", run, "-k", n, "--quiet")
    assert r.exit_code == 2 and f"at most {n - 1}" in r.output
    assert not (run / "knn").exists()
    # a run without vectors names the command that makes them
    shutil.rmtree(run / "embeddings")
    r = cli("neighbors", run, "--quiet")
    assert r.exit_code == 1 and "corpusmap embed" in r.output
    r = cli("neighbors", tmp_path / "nowhere", "--quiet")
    assert r.exit_code == 1 and "corpusmap embed" in r.output


def test_cli_neighbors_refuses_nan_vectors(run):
    shard = sorted((run / "embeddings").glob("shard-*.npy"))[0]
    arr = np.load(shard)
    arr[123, 4] = np.nan
    rewrite_shard(run, 0, arr)
    r = cli("neighbors", run, "--quiet")
    assert r.exit_code == 1 and "NaN" in r.output and "Traceback" not in r.output
    assert not (run / "knn" / "manifest.json").exists()


def test_hubs_are_counted_and_named_with_the_fix(tmp_path, caplog):
    """Points on a sphere around one point at its centre (the one-line text of unnormalised TF-IDF/SVD vectors):
    the centre is everyone's nearest neighbour. The manifest counts such hubs (in-degrees as numpy counts them),
    a warning names it and the fix, and the cosine graph has none."""
    from conftest import EXAMPLE_CORPUS
    from corpusmap.neighbors import graph_hubs

    rng = np.random.default_rng(0)
    x = rng.normal(size=(1881, 100)).astype(np.float32)  # in 100-D the others are ~1.3 apart, the centre 1
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x[100] = 0.0
    x[100, 0] = 1e-3  # not exactly zero, so that cosine has a direction for it
    np.save(tmp_path / "v.npy", x)
    run = tmp_path / "run"
    cli("embed", EXAMPLE_CORPUS, "-o", run, "--vectors", tmp_path / "v.npy", "-q", ok=True)
    cli("neighbors", run, "-k", "10", ok=True)
    hubs = json.loads((run / "knn" / "manifest.json").read_text())["hubs"]
    indices = np.load(run / "knn" / "indices.npy")
    degree = np.bincount(indices.ravel(), minlength=len(x))
    assert hubs["rows"][0] == 100 and hubs["in_degrees"][0] == degree[100] == len(x) - 1
    assert hubs["max_in_degree"] == degree.max() and hubs["count"] == int((degree > max(200, 0.05 * 1881)).sum())
    warning = next(r.getMessage() for r in caplog.records if "hub" in r.getMessage())
    assert "in 1,880 (100%)" in warning and "--metric cosine --overwrite" in warning
    cli("neighbors", run, "-k", "10", "--metric", "cosine", "--overwrite", "-q", ok=True)
    assert json.loads((run / "knn" / "manifest.json").read_text())["hubs"]["count"] == 0
    assert graph_hubs(np.load(run / "knn" / "indices.npy"))["count"] == 0


def test_ivfpq_on_too_few_vectors_is_one_clear_line():
    vectors = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    with pytest.raises(UsageProblem, match="--index ivfpq needs at least 16 vectors.*use --index exact"):
        build_knn_graph(vectors, 3, index="ivfpq")
    assert build_knn_graph(vectors, 3, index="exact").indices.shape == (5, 3)
