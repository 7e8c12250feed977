"""Layouts on real vectors: TF-IDF + SVD of the eLife abstracts (the example corpus), labelled by subject.

Map quality is measured here independently of corpusmap.metrics, with scikit-learn: kNN recall (the share of
each point's 10 nearest high-D neighbours that are among its 10 nearest 2D neighbours) and kNN accuracy
(majority vote of the 10 nearest 2D neighbours' labels).
"""
from __future__ import annotations

import ast
import gzip
import json

import numpy as np
import pytest

from corpusmap import layouts
from corpusmap.errors import CorpusmapError, UsageProblem
from conftest import EXAMPLE_CORPUS

K = 15  # stored graph
THREADS = 1  # OpenMP threads fight over a busy 2-core CI machine: one thread is fastest there


def _first_subject(value) -> str:
    if isinstance(value, list):
        return value[0] if value else ""
    try:
        parsed = ast.literal_eval(value)
        return parsed[0] if parsed else ""
    except (ValueError, SyntaxError):
        return str(value or "")


@pytest.fixture(scope="module")
def elife():
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    with gzip.open(EXAMPLE_CORPUS, "rt") as fh:
        records = [json.loads(line) for line in fh]
    records = [r for r in records if r.get("abstract")]
    texts = [r["abstract"] for r in records]
    labels = np.array([_first_subject(r.get("subjects")) for r in records])
    tfidf = TfidfVectorizer(sublinear_tf=True, min_df=2).fit_transform(texts)
    vectors = TruncatedSVD(100, random_state=0).fit_transform(tfidf).astype(np.float32)
    indices, distances = exact_graph(vectors, K)
    return vectors, labels, indices, distances


def exact_graph(vectors: np.ndarray, k: int, metric: str = "euclidean"):
    """The stored-graph format: self excluded, nearest first, true L2 (or 1 - cosine similarity)."""
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        index = faiss.IndexFlatIP(x.shape[1])
    else:
        index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    d, i = index.search(x, k + 1)
    rows = np.arange(len(x))[:, None]
    keep = i != rows
    i = np.array([row[m][:k] for row, m in zip(i, keep)], dtype=np.int64)
    d = np.array([row[m][:k] for row, m in zip(d, keep)], dtype=np.float32)
    d = 1 - d if metric == "cosine" else np.sqrt(np.maximum(d, 0))
    return i, d.astype(np.float32)


def quality(coords, vectors, labels, k: int = 10) -> tuple[float, float]:
    from sklearn.neighbors import NearestNeighbors

    high = NearestNeighbors(n_neighbors=k + 1).fit(vectors).kneighbors(vectors, return_distance=False)[:, 1:]
    low = NearestNeighbors(n_neighbors=k + 1).fit(coords).kneighbors(coords, return_distance=False)[:, 1:]
    recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(high, low)]))
    codes, inverse = np.unique(labels, return_inverse=True)
    votes = np.apply_along_axis(lambda v: np.bincount(v, minlength=len(codes)).argmax(), 1, inverse[low])
    return recall, float(np.mean(votes == inverse))


def test_tsne_from_stored_graph_beats_pca(elife):
    vectors, labels, indices, distances = elife
    pca = layouts.pca_layout(vectors)
    # the documented defaults (uniform k=10 affinities, FFT gradients, PCA init), a shortened schedule
    tsne = layouts.tsne_layout(indices, distances, vectors, threads=THREADS,
                               params=layouts.TsneParams(early_exaggeration_iter=100, n_iter=150))
    assert tsne.coords.shape == (len(vectors), 2) and tsne.coords.dtype == np.float32
    r_pca, a_pca = quality(pca.coords, vectors, labels)
    r_tsne, a_tsne = quality(tsne.coords, vectors, labels)
    assert r_tsne > 0.25 and r_tsne > 5 * r_pca, (r_tsne, r_pca)
    assert a_tsne > a_pca + 0.08, (a_tsne, a_pca)
    assert tsne.info["parameters"]["gradient"] == "fft"
    assert tsne.info["parameters"]["neighbours_used"] == 10


def test_tsne_same_seed_same_map_other_seed_other_map(elife):
    vectors, _, indices, distances = elife
    params = layouts.TsneParams(early_exaggeration_iter=50, n_iter=50, gradient="bh")
    a = layouts.tsne_layout(indices, distances, vectors, params=params, seed=7, threads=THREADS)
    b = layouts.tsne_layout(indices, distances, vectors, params=params, seed=7, threads=THREADS)
    c = layouts.tsne_layout(indices, distances, vectors, params=params, seed=8, threads=THREADS)
    assert np.array_equal(a.coords, b.coords)
    assert not np.array_equal(a.coords, c.coords)


def test_landscape_preset_runs_the_documented_schedule(elife):
    vectors, _, _, _ = elife
    sub = vectors[:500]
    indices, distances = exact_graph(sub, K)
    params = layouts.TsneParams.preset_params("landscape", n_iter=20, gradient="bh")
    layout = layouts.tsne_layout(indices, distances, sub, params=params, threads=THREADS)
    phases = layout.info["schedule"]
    assert [p["phase"] for p in phases] == ["early_exaggeration", "annealing", "main"]
    early, anneal, main = phases
    n = len(sub)
    assert (early["n_iter"], early["exaggeration"], early["momentum"]) == (125, 12.0, 0.5)
    assert early["learning_rate"] == pytest.approx(n / 12)
    assert anneal["n_iter"] == 125 and anneal["momentum"] == 0.8
    assert anneal["exaggerations"] == pytest.approx(list(np.linspace(12, 1, 125)))
    assert anneal["learning_rate"] == pytest.approx([n / 12, n / 1])
    assert (main["n_iter"], main["exaggeration"], main["momentum"]) == (20, 1.0, 0.8)
    assert main["learning_rate"] == pytest.approx(n)
    assert layout.info["total_iterations"] == 270
    # without an override the final phase is the paper's 2000 iterations
    assert layouts.TsneParams.preset_params("landscape").n_iter == 2000


def test_perplexity_affinities_and_their_limit(elife):
    vectors, labels, indices, distances = elife
    params = layouts.TsneParams(perplexity=5, early_exaggeration_iter=50, n_iter=50, gradient="bh")
    layout = layouts.tsne_layout(indices, distances, vectors, params=params, threads=THREADS)
    assert layout.info["parameters"]["affinities"] == "perplexity"
    assert layout.info["parameters"]["neighbours_used"] == 15
    with pytest.raises(UsageProblem, match=r"3 x perplexity = 30 neighbours.*k=15"):
        layouts.tsne_layout(indices, distances, vectors, params=layouts.TsneParams(perplexity=10))
    with pytest.raises(UsageProblem, match="k=15"):
        layouts.tsne_layout(indices, distances, vectors, params=layouts.TsneParams(k=20))


def test_cosine_graph(elife):
    vectors, labels, _, _ = elife
    indices, distances = exact_graph(vectors, K, metric="cosine")
    params = layouts.TsneParams(perplexity=5, early_exaggeration_iter=100, n_iter=100, gradient="bh")
    layout = layouts.tsne_layout(indices, distances, vectors, params=params, metric="cosine", threads=THREADS)
    recall, _ = quality(layout.coords, vectors / np.linalg.norm(vectors, axis=1, keepdims=True), labels)
    assert recall > 0.2


def test_umap_from_stored_graph_matches_plain_umap(elife):
    umap = pytest.importorskip("umap")
    vectors, labels, _, _ = elife
    vectors, labels = vectors[:1000], labels[:1000]
    indices, distances = exact_graph(vectors, K)
    params = layouts.UmapParams(n_neighbors=15, n_epochs=150)
    ours = layouts.umap_layout(indices, distances, vectors, params=params, seed=3)
    plain = umap.UMAP(n_neighbors=15, n_epochs=150, random_state=3).fit_transform(vectors)
    r_ours, a_ours = quality(ours.coords, vectors, labels)
    r_plain, a_plain = quality(plain, vectors, labels)
    assert r_ours > r_plain - 0.03 and a_ours > a_plain - 0.04, (r_ours, r_plain, a_ours, a_plain)
    with pytest.raises(UsageProblem, match="--n-neighbors 17.*k=15"):
        layouts.umap_layout(indices, distances, vectors, params=layouts.UmapParams(n_neighbors=17))


def test_umap_records_the_epochs_umap_learn_ran(elife):
    """Without --n-epochs the map records the epochs umap-learn chose: those that give its very coordinates."""
    umap = pytest.importorskip("umap")
    vectors = elife[0][:300]
    indices, distances = exact_graph(vectors, K)
    used = layouts.umap_layout(indices, distances, vectors, params=layouts.UmapParams(n_neighbors=10),
                               seed=3).info["parameters"]["n_epochs_used"]
    assert isinstance(used, int)
    chosen = umap.UMAP(n_neighbors=10, random_state=3).fit_transform(vectors)
    assert np.array_equal(umap.UMAP(n_neighbors=10, n_epochs=used, random_state=3).fit_transform(vectors), chosen)


def test_knn_with_self_puts_the_point_first():
    indices = np.array([[1, 2, 3], [0, 2, 3], [3, 1, 0], [2, 1, 0]])
    distances = np.arange(12, dtype=np.float32).reshape(4, 3) + 1
    idx, dist = layouts.knn_with_self(indices, distances, 3)
    assert idx.tolist() == [[0, 1, 2], [1, 0, 2], [2, 3, 1], [3, 2, 1]]
    assert dist[:, 0].tolist() == [0, 0, 0, 0] and dist[0, 1:].tolist() == [1, 2]


def test_pca_is_blockwise_exact_and_deterministic(elife):
    from sklearn.decomposition import PCA

    vectors = elife[0]
    coords, info = layouts.pca_2d(vectors, block_rows=300)
    again, _ = layouts.pca_2d(vectors, block_rows=10_000)
    reference = PCA(2, svd_solver="full").fit_transform(vectors.astype(np.float64))
    assert np.allclose(np.abs(coords), np.abs(reference), atol=1e-5)
    assert np.allclose(coords, again, atol=1e-8)
    assert info["explained_variance_ratio"][0] >= info["explained_variance_ratio"][1] > 0


def test_adding_points_leaves_the_map_alone_and_places_them_well(elife):
    vectors, labels, _, _ = elife
    n_ref = 1500
    ref, new = vectors[:n_ref], vectors[n_ref:]
    indices, distances = exact_graph(ref, K)
    params = layouts.TsneParams(early_exaggeration_iter=125, n_iter=150, gradient="bh")
    base = layouts.tsne_layout(indices, distances, ref, params=params, threads=THREADS)
    stored = base.coords.copy()
    added = layouts.tsne_add_layout(base.coords, indices, distances, ref, new, map_params=params,
                                    threads=THREADS)
    assert np.array_equal(base.coords, stored)  # reference untouched
    assert added.coords.shape == (len(new), 2) and np.isfinite(added.coords).all()
    # each new point's 2D neighbours among the reference points carry its label about as often as its
    # high-D neighbours do, and far more often than chance
    from sklearn.neighbors import NearestNeighbors

    def vote(neigh):
        votes = labels[:n_ref][neigh]
        return np.array([max(set(v), key=list(v).count) for v in votes])

    high = NearestNeighbors(n_neighbors=10).fit(ref).kneighbors(new, return_distance=False)
    low = NearestNeighbors(n_neighbors=10).fit(stored).kneighbors(added.coords, return_distance=False)
    acc_high = np.mean(vote(high) == labels[n_ref:])
    acc_low = np.mean(vote(low) == labels[n_ref:])
    chance = max(np.mean(labels[:n_ref] == lab) for lab in set(labels))
    assert acc_low > chance + 0.1 and acc_low > acc_high - 0.15, (acc_low, acc_high, chance)
    # and land next to their high-D neighbours: median distance to them well below the map's typical spacing
    near = np.median(np.linalg.norm(stored[high] - added.coords[:, None, :], axis=2))
    spread = np.median(np.linalg.norm(stored[np.random.RandomState(0).permutation(n_ref)] - stored, axis=1))
    assert near < 0.25 * spread, (near, spread)


def test_exact_search_matches_brute_force(elife):
    vectors = elife[0]
    base, queries = vectors[:800], vectors[800:850]
    for metric in ("euclidean", "cosine"):
        idx, dist = layouts.nearest_in(base, queries, 5, metric=metric, block_rows=300)
        if metric == "cosine":
            b = base / np.linalg.norm(base, axis=1, keepdims=True)
            q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
            full = 1 - q @ b.T
        else:
            full = np.linalg.norm(queries[:, None, :] - base[None, :, :], axis=2)
        expected = np.argsort(full, axis=1)[:, :5]
        assert (idx == expected).mean() > 0.99
        assert np.allclose(dist, np.take_along_axis(full, idx, axis=1), atol=1e-4)


def test_bad_graphs_and_parameters_are_clear():
    indices = np.array([[1, 2], [0, -1], [0, 1]])
    with pytest.raises(CorpusmapError, match="missing"):
        layouts.check_graph(indices, np.ones((3, 2)))
    with pytest.raises(UsageProblem, match="preset"):
        layouts.TsneParams.preset_params("nonsense")
    with pytest.raises(UsageProblem, match="learning-rate"):
        layouts._parse_learning_rate("fast")
    assert layouts._parse_learning_rate("auto") == "auto" and layouts._parse_learning_rate("200") == 200.0


def test_too_few_neighbours_name_a_way_out_that_can_work():
    """A bigger graph is suggested only where the run has enough points for one."""
    with pytest.raises(UsageProblem, match="use -k 3 or less, or recompute the graph with `corpusmap neighbors R "
                                           "-k 10 --overwrite`"):
        layouts.check_k_for_tsne(layouts.TsneParams(k=10), 3, "R", n=500)
    with pytest.raises(UsageProblem, match="use -k 3 or less; a run of 5 points has at most 4 neighbours per point$"):
        layouts.check_k_for_tsne(layouts.TsneParams(k=10), 3, "R", n=5)
    with pytest.raises(UsageProblem, match="use --n-neighbors 4 or less; a run of 5 points has at most 4"):
        layouts.check_k_for_umap(layouts.UmapParams(n_neighbors=15), 3, "R", n=5)
