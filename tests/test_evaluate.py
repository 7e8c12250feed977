"""`corpusmap evaluate` / evaluate_run on a real run (TF-IDF of the bundled eLife example corpus): high-D, stored
maps and the PCA baseline, the files it writes, and its bad inputs (clear message, non-zero exit, nothing
written)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.decomposition import PCA
from sklearn.neighbors import KNeighborsClassifier

from conftest import cli, rewrite_corpus, rewrite_shard
from corpusmap import metrics as M
from corpusmap.errors import CorpusmapError, UsageProblem
from corpusmap.evaluate import EvaluateParams, EvaluateStage, format_table, read_results
from corpusmap.run import Run, open_run

Q = 800  # query sample: at most half of the 1,840 labelled abstracts (the others are the kNN training pool)


@pytest.fixture
def run(example_tfidf_run, tmp_path):
    dest = tmp_path / "run"
    shutil.copytree(example_tfidf_run, dest, ignore=shutil.ignore_patterns("knn", "eval", "maps"))
    return dest


def high_d(run) -> str:
    """The name evaluate gives the vectors' own space, with their dimension as stored."""
    return f"high-D ({open_run(run).vectors.shape[1]} dims)"


@pytest.fixture(scope="module")
def data(example_tfidf_run):
    r = open_run(example_tfidf_run)
    X = r.vectors.to_numpy()
    corpus = r.read_corpus(["id", "label", "year"]).to_pydict()
    Y = PCA(2, random_state=0).fit_transform(X.astype(np.float64))
    return X, Y, corpus


def write_map(run, name, ids, coords):
    (run / "maps").mkdir(exist_ok=True)
    pq.write_table(pa.table({"id": list(ids), "x": coords[:, 0], "y": coords[:, 1]}), run / "maps" / f"{name}.parquet")


def evaluate_run(run, **params):
    """The metrics of a run with these parameters, recomputed."""
    EvaluateStage().run(Run(run), EvaluateParams(**params), overwrite=True)
    return read_results(Run(run))


def test_evaluate_without_maps(run):
    r = cli("evaluate", run, "--queries", Q)
    assert r.exit_code == 0, r.output
    header = "| space | kNN recall | kNN accuracy | chance (stratified) | majority class | year RMSE"
    assert "No maps found" in r.output and header in r.output
    result = json.loads((run / "eval" / "metrics.json").read_text())
    assert [s["space"] for s in result["spaces"]] == [high_d(run), "PCA-2D baseline"]
    assert high_d(run) == "high-D (300 dims)"  # the documented default --dim
    assert result["maps_found"] == [] and result["label_col"] == "label" and result["year_col"] == "year"
    high, pca = result["spaces"]
    assert high["knn_recall"] is None and 0 < pca["knn_recall"] < 0.1
    assert high["knn_accuracy"]["accuracy"] > pca["knn_accuracy"]["accuracy"]
    assert high["knn_accuracy"]["chance"] == pca["knn_accuracy"]["chance"]
    md = (run / "eval" / "metrics.md").read_text()
    assert format_table(result) in md and "No maps found" in md


def test_an_evaluation_of_earlier_definitions_is_recomputed(run):
    assert cli("evaluate", run, "--queries", Q, "-q").exit_code == 0
    manifest_path = run / "eval" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["stage"]["definitions"] == EvaluateStage.definitions == 2
    assert "current" in cli("evaluate", run, "--queries", Q).output
    del manifest["stage"]["definitions"]  # as an evaluation made before the chance levels were corrected
    manifest_path.write_text(json.dumps(manifest))
    assert not EvaluateStage().status(Run(run), EvaluateParams(queries=Q)).current
    dry = cli("evaluate", run, "--queries", Q)  # recomputed without --overwrite: same parameters, new definitions
    assert dry.exit_code == 0 and "current" not in dry.output.splitlines()[0], dry.output
    assert json.loads(manifest_path.read_text())["stage"]["definitions"] == 2
    # the metrics do not depend on the thread count
    before = json.loads((run / "eval" / "metrics.json").read_text())["spaces"]
    shutil.rmtree(run / "eval")
    assert cli("evaluate", run, "--queries", Q, "--threads", "1", "-q").exit_code == 0
    assert json.loads((run / "eval" / "metrics.json").read_text())["spaces"] == before


def test_evaluate_maps_against_direct_computation(run, data):
    X, Y, corpus = data
    ids = corpus["id"]
    write_map(run, "skpca", ids, Y)
    perm = np.random.default_rng(0).permutation(len(ids))  # rows in another order: put back in corpus order
    write_map(run, "shuffled", np.asarray(ids, dtype=object)[perm], Y[perm])
    result = evaluate_run(run, k=10, queries=Q, seed=5)
    names = [s["space"] for s in result["spaces"]]
    assert result["maps_found"] == ["shuffled", "skpca"] and names[1:] == ["shuffled", "skpca", "PCA-2D baseline"]
    high, shuffled, skpca, baseline = result["spaces"]
    assert skpca["knn_recall"] == M.knn_recall(X, Y, k=10, queries=Q, seed=5)
    assert skpca["knn_accuracy"] == M.knn_accuracy(Y, corpus["label"], k=10, queries=Q, seed=5).as_dict()
    assert skpca["year_rmse"] == M.year_rmse(Y, corpus["year"], k=10, queries=Q, seed=5).as_dict()
    for key in ("knn_recall", "knn_accuracy", "year_rmse"):
        assert shuffled[key] == skpca[key]
        # the baseline is the same PCA computed block by block: same neighbours up to float rounding
        got, want = baseline[key], skpca[key]
        if isinstance(want, dict):
            got, want = got[next(iter(want))], want[next(iter(want))]
        assert got == pytest.approx(want, abs=0.01)
    # high-D accuracy through the store equals scikit-learn's classifier on the same test points, trained on every
    # other labelled point
    codes, classes = M.label_codes(corpus["label"])
    assert Q <= (codes >= 0).sum() // 2
    test = M.sample_queries(codes >= 0, Q, 5)
    train = np.flatnonzero((codes >= 0) & ~np.isin(np.arange(len(codes)), test))
    clf = KNeighborsClassifier(n_neighbors=10, algorithm="brute").fit(X[train].astype(np.float64), codes[train])
    expected = np.mean(clf.predict(X[test].astype(np.float64)) == codes[test])
    assert high["knn_accuracy"]["accuracy"] == pytest.approx(expected, abs=1e-12)
    # --map selects; the CLI prints which maps it found
    r = cli("evaluate", run, "--map", "skpca", "--queries", 300, "--no-pca", "--overwrite")
    assert r.exit_code == 0, r.output
    assert "Maps found: shuffled, skpca" in r.output
    assert [s["space"] for s in json.loads((run / "eval" / "metrics.json").read_text())["spaces"]] == [
        high_d(run), "skpca"]


def test_maps_made_from_an_earlier_graph_are_removed_with_it(run, data, caplog, tmp_path):
    """A map records the fingerprint of the graph it was laid out from; `neighbors --overwrite` removes the maps
    (and the evaluation) made from the old graph, and keeps maps that used no graph (PCA, maps made elsewhere)."""
    X, Y, corpus = data
    assert cli("neighbors", run, "-k", 10, "--quiet").exit_code == 0
    assert cli("map", run, "--method", "tsne", "--n-iter", 10, "--early-exaggeration-iter", 10, "--no-plot",
               "--quiet").exit_code == 0
    assert cli("map", run, "--method", "pca", "--quiet").exit_code == 0
    write_map(run, "mine", corpus["id"], Y)
    assert cli("evaluate", run, "--queries", 100, "--quiet").exit_code == 0
    outside = tmp_path / "figure.png"  # a figure of the t-SNE map outside the run: not the run's to delete
    assert cli("plot", run, "--map", "tsne", "-o", outside, "--quiet").exit_code == 0
    r = cli("neighbors", run, "-k", 12, "--overwrite")
    assert r.exit_code == 0, r.output
    removal = next(line for line in caplog.text.splitlines() if "neighbors: removed " in line)
    assert "maps/tsne" in removal and removal.endswith("(computed from the knn it replaced)"), removal
    assert f"the record of {outside.resolve()} (a file outside the run: kept, out of date)" in caplog.text
    assert outside.is_file()
    assert sorted(p.name for p in (run / "maps").iterdir()) == ["mine.parquet", "pca.parquet", "pca.png",
                                                                 "pca.renders.json"]
    assert not (run / "eval").exists()  # it evaluated the removed map


def test_evaluate_bad_maps(run, data):
    X, Y, corpus = data
    ids = list(corpus["id"])
    ids[10] = "not-a-paper"
    write_map(run, "wrong", ids, Y)
    r = cli("evaluate", run, "--map", "wrong", "--quiet")
    assert r.exit_code == 1 and "does not match the corpus" in r.output
    r = cli("evaluate", run, "--map", "nope", "--quiet")
    assert r.exit_code == 1 and "--map nope: no such map" in r.output and "wrong" in r.output
    write_map(run, "short", corpus["id"][:100], Y[:100])
    with pytest.raises(CorpusmapError, match="100 rows"):
        evaluate_run(run, maps=("short",), queries=50)
    assert not (run / "eval").exists()


def test_columns_that_are_not_years_or_topics_are_named(run, caplog):
    """A year column that mostly does not read as years (DOIs, with a year-like number in a few of them), or a
    label column of about one paper per label, is evaluated with a warning and a note in the report."""
    table = pq.read_table(run / "corpus.parquet")
    n = table.num_rows
    doi_like = [f"10.18653/v1/P18-{2000 + i % 20}" if i % 10 == 0 else f"10.18653/v1/W{i:05d}" for i in range(n)]
    rewrite_corpus(run, table.append_column("doi", pa.array(doi_like)))
    r = cli("evaluate", run, "--year-col", "doi", "--label-col", "id", "--queries", 200)
    assert r.exit_code == 0, r.output
    assert f"year column 'doi': only {len(range(0, n, 10)):,} of its {n:,} values read as years" in caplog.text
    assert f"label column 'id' has {n:,} classes for {n:,} labelled rows" in caplog.text
    notes = read_results(Run(run))["notes"]
    assert any("read as years" in note for note in notes) and any("classes for" in note for note in notes)


def test_evaluate_bad_inputs(run, tmp_path):
    r = cli("evaluate", run, "--label-col", "no_such_column", "--quiet")
    assert r.exit_code == 2 and "no_such_column" in r.output and "columns:" in r.output
    n = pq.read_metadata(run / "corpus.parquet").num_rows
    r = cli("evaluate", run, "-k", n, "--quiet")  # no point has n other points
    assert r.exit_code == 2 and "k must be" in r.output
    # an explicitly named label column without a single label
    table = pq.read_table(run / "corpus.parquet")
    rewrite_corpus(run, table.append_column("empty", pa.array([None] * table.num_rows, pa.string())))
    r = cli("evaluate", run, "--label-col", "empty", "--quiet")
    assert r.exit_code == 2 and "no labelled rows" in r.output and "choose another --label-col" in r.output
    with pytest.raises(UsageProblem):
        evaluate_run(run, year_col="nope")
    assert not (run / "eval").exists()
    # NaN in the vectors
    shard = sorted((run / "embeddings").glob("shard-*.npy"))[0]
    arr = np.load(shard)
    arr[5, 0] = np.inf
    rewrite_shard(run, 0, arr)
    r = cli("evaluate", run, "--queries", 100, "--quiet")
    assert r.exit_code == 1 and "NaN or infinite" in r.output
    assert not (run / "eval").exists()
    # no vectors at all
    shutil.rmtree(run / "embeddings")
    r = cli("evaluate", run, "--quiet")
    assert r.exit_code == 1 and "corpusmap embed" in r.output


def test_a_graph_of_the_other_distance_is_noted(run):
    """The TF-IDF vectors are not of unit length: a cosine graph's neighbours are not the euclidean ones that
    evaluate counts by default, and the report says so (and not when --metric follows the graph)."""
    assert cli("neighbors", run, "-k", "10", "--metric", "cosine").exit_code == 0
    noted = [n for n in evaluate_run(run, queries=200, pca=False)["notes"] if "used cosine distance" in n]
    assert noted and "--metric cosine" in noted[0]
    assert not [n for n in evaluate_run(run, queries=200, pca=False, metric="cosine")["notes"] if "used" in n]


def test_the_baseline_is_the_pca_map_whatever_its_name(run, data):
    """A map made by --method pca under another name is the PCA baseline (no second one is computed); a map named
    pca that another method made is not."""
    X, Y, corpus = data
    write_map(run, "pca", corpus["id"], Y[:, ::-1])  # made elsewhere: not known to be a PCA
    assert cli("map", run, "--method", "pca", "--name", "lin", "--no-plot", "-q").exit_code == 0
    result = evaluate_run(run, k=10, queries=Q, seed=5)
    kinds = {s["space"]: s["kind"] for s in result["spaces"]}
    assert kinds == {high_d(run): "vectors", "lin": "baseline", "pca": "map"}, kinds
