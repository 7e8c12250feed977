"""Regions: nested Leiden clusters of the kNN graph, c-TF-IDF keywords against an independent computation,
labelled figures whose names never overlap, excess vocabulary per region equal to the subset's own analysis,
agreement with the labels above random, and the bad inputs. On the bundled example corpus."""
from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import EXAMPLE_CORPUS, cli, copy_run, run_commands
from corpusmap.clusters import read_clustering
from corpusmap.keywords import region_name, shared_keywords
from corpusmap.regions import effective_count
from corpusmap.run import Run


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    run = tmp_path_factory.mktemp("clusters") / "run"
    return run_commands(run, ["embed", EXAMPLE_CORPUS, "-o", run, "--model", "tfidf", "--dim", "100", "-q"],
                        ["neighbors", run, "-k", "15", "-q"],
                        ["map", run, "--method", "tsne", "--n-iter", "150", "--early-exaggeration-iter", "100",
                         "--no-plot", "-q"],
                        ["clusters", run, "-q"])


@pytest.fixture
def run(base, tmp_path):
    return copy_run(base, tmp_path)


def test_levels_are_nested_and_summarised(base):
    clustering = read_clustering(Run(base))
    levels = clustering.levels
    assert [int(level.max()) + 1 for level in levels] == [m["clusters"] for m in clustering.manifest["levels"]]
    counts = [len(np.unique(level)) for level in levels]
    assert counts == sorted(counts) and counts[0] < counts[-1]  # coarse to fine
    for above, below in zip(levels, levels[1:]):  # each fine cluster inside exactly one coarse cluster
        pairs = {(b, a) for a, b in zip(above, below)}
        assert len(pairs) == len(np.unique(below))
    summary = clustering.summary
    table = pq.read_table(base / "clusters" / "leiden.parquet")
    assert table.column_names == ["id", "cluster_0", "cluster_1", "cluster_2"]
    assert table.column("id").to_pylist() == Run(base).read_corpus(["id"]).column("id").to_pylist()
    for level, labels in enumerate(levels):
        rows = summary[summary["level"] == level].sort_values("cluster")
        assert rows["size"].tolist() == np.bincount(labels).tolist()
        assert rows["size"].is_monotonic_decreasing  # numbered by size
        if level:
            parent_of = dict(zip(labels, levels[level - 1]))
            assert rows["parent"].tolist() == [parent_of[c] for c in rows["cluster"]]
    # knn_within: the share of members' 15 neighbours in the same cluster, recomputed directly
    graph = np.load(base / "knn" / "indices.npy")
    labels = levels[1]
    same = labels[graph] == labels[:, None]
    expected = [same[labels == c].mean() for c in range(labels.max() + 1)]
    np.testing.assert_allclose(summary[summary["level"] == 1].sort_values("cluster")["knn_within"], expected)
    years = pd.Series(Run(base).read_corpus(["year"]).column("year").to_pylist(), dtype=float)
    assert summary[summary["level"] == 0]["median_year"].iloc[0] == years[levels[0] == 0].median()
    # names: the first keywords, a word's other form (singular/plural) and the level's shared keywords left out
    for level, rows in summary.groupby("level"):
        shared = shared_keywords(list(rows["keywords"]))
        for keywords, name in zip(rows["keywords"], rows["name"]):
            words = name.split(" · ")
            assert len(words) == 3 and words == [w for w in keywords if w in words]
            assert len({w.rstrip("s") for w in words}) == 3 and not shared & set(words)


def test_levels_aim_at_effective_cluster_counts_so_a_giant_cluster_is_split(acl_map, tmp_path):
    """On the ACL graph (TF-IDF, hubs and all) the coarsest level counted by clusters was one cluster of 87% of
    the papers and three crumbs; counted effectively (1 / Σ share², here checked by hand) it has about four
    regions (within the bisection's reach), and the middle level lies geometrically between it and the finest."""
    run = copy_run(acl_map, tmp_path)
    cli("clusters", run, "-q", ok=True)
    levels = read_clustering(Run(run)).levels
    shares = [np.bincount(level) / len(level) for level in levels]
    effective = [1 / np.sum(s ** 2) for s in shares]
    assert effective == pytest.approx([effective_count(level) for level in levels])
    assert 3 <= effective[0] <= 5.5 and shares[0].max() < 0.6
    fine = effective[-1]
    assert effective[1] == pytest.approx((4 * fine) ** 0.5, rel=0.2) and effective[0] < effective[1] < fine
    assert effective_count(np.repeat([0, 1, 2, 3], 5)) == 4
    assert effective_count([0, 1], sizes=[98.0, 2.0]) == pytest.approx(1 / (0.98 ** 2 + 0.02 ** 2))


def test_a_region_name_leaves_out_another_form_of_a_word_it_has():
    assert region_name(["cells", "protein", "cell", "proteins", "membrane"]) == "cells · protein · membrane"
    assert region_name(["studies", "study", "viruses", "virus", "analysis", "analyses"], words=4) == \
        "studies · viruses · analysis · analyses"  # (an irregular plural is kept apart)
    assert region_name(["process", "processes", "focus", "gas"], words=4) == "process · focus · gas"
    # a word among the keywords of most of the level's regions names none of them, while others remain
    lists = [["paper", "translation", "machine", "neural"], ["paper", "parsing", "parser", "tree"],
             ["sentiment", "paper", "task", "semeval"], ["speech", "corpus", "speakers", "audio"]]
    assert shared_keywords(lists) == {"paper"} and shared_keywords(lists[:2]) == frozenset()
    assert [region_name(k, shared=shared_keywords(lists)) for k in lists] == [
        "translation · machine · neural", "parsing · parser · tree", "sentiment · task · semeval",
        "speech · corpus · speakers"]
    assert region_name(["paper", "model"], shared=frozenset({"paper"})) == "paper · model"  # too few others
    # the words of writing up research name no region either ("we propose a novel approach ... results show")
    assert region_name(["problem", "paper", "results", "parsing", "novel", "syntax", "tree"]) == \
        "parsing · syntax · tree"
    assert region_name(["results", "parsing", "methods"]) == "results · parsing · methods"  # nothing else to say


def test_same_seed_same_clusters_whatever_the_thread_count(base, tmp_path):
    out = {}
    for threads in ("1", "2"):
        dest = tmp_path / f"t{threads}"
        shutil.copytree(base, dest, ignore=shutil.ignore_patterns("clusters"))
        env = dict(os.environ, OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, POLARS_MAX_THREADS=threads)
        done = subprocess.run([sys.executable, "-m", "corpusmap", "clusters", str(dest), "-q"], env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        out[threads] = ((dest / "clusters" / "leiden.parquet").read_bytes(),
                        (dest / "clusters" / "leiden.summary.parquet").read_bytes())
    assert out["1"] == out["2"]
    assert out["1"][0] == (base / "clusters" / "leiden.parquet").read_bytes()
    dest = tmp_path / "t1"
    other = cli("clusters", dest, "--seed", "7", "--name", "seed7", "-q")
    assert other.exit_code == 0
    assert not np.array_equal(read_clustering(Run(dest), "seed7").levels[-1], read_clustering(Run(dest)).levels[-1])


def test_keywords_are_the_class_based_tf_idf_of_an_independent_computation(base):
    _check_keywords(Run(base), read_clustering(Run(base)))


def _check_keywords(run: Run, clustering) -> None:
    """BERTopic's c-TF-IDF (abstracts counted once per word), recomputed with scikit-learn's CountVectorizer on
    the corpus texts; f(x) and --min-df over every abstract, those in no cluster (HDBSCAN's noise) included."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

    texts = run.read_corpus(["text"]).column("text").to_pylist()
    stop = sorted(ENGLISH_STOP_WORDS | {"et", "al"})  # and the "et al." of citations
    vectorizer = CountVectorizer(binary=True, stop_words=stop, min_df=5)  # document frequency
    X = vectorizer.fit_transform(texts)
    words = vectorizer.get_feature_names_out()
    keep = np.array([not w.isdigit() for w in words])
    X, words = X[:, keep], words[keep]
    f = np.asarray(X.sum(axis=0)).ravel()
    for level, labels in enumerate(clustering.levels):
        n_clusters = labels.max() + 1
        per_cluster = np.vstack([np.asarray(X[labels == c].sum(axis=0)).ravel() for c in range(n_clusters)])
        tf = per_cluster / per_cluster.sum(axis=1, keepdims=True)
        avg = int(per_cluster.sum(axis=1).mean())
        weights = tf * np.log(1 + avg / f)
        rows = clustering.summary[clustering.summary["level"] == level].sort_values("cluster")
        for c, keywords in zip(range(n_clusters), rows["keywords"]):
            order = [i for i in np.lexsort((words, -weights[c])) if weights[c, i] > 0][:10]  # words it holds
            assert list(keywords) == [str(words[i]) for i in order], (level, c)


def test_coarse_clusters_agree_with_the_labels_far_above_random(run):
    result = cli("evaluate", run, "--queries", "300", "--no-pca")
    assert result.exit_code == 0, result.output
    rows = json.loads((run / "eval" / "metrics.json").read_text())["clusters"]
    assert [r["level"] for r in rows] == [0, 1, 2] and all(r["clustering"] == "leiden" for r in rows)
    for row in rows:
        assert row["nmi"] > 3 * row["random_nmi"] and row["ari"] > row["random_ari"] + 0.02
    from sklearn.metrics import normalized_mutual_info_score

    from corpusmap.metrics import label_codes

    codes, _ = label_codes(Run(run).read_corpus(["label"]).column("label").to_pylist())
    labels = read_clustering(Run(run)).levels[0]
    assert rows[0]["nmi"] == pytest.approx(normalized_mutual_info_score(codes[codes >= 0], labels[codes >= 0]))
    # equal partitions get equal baselines, whatever their place
    from corpusmap.evaluate import cluster_agreement

    twice = cluster_agreement([labels, labels], Run(run).read_corpus(["label"]).column("label").to_pylist())
    assert twice[0]["random_nmi"] == twice[1]["random_nmi"] == pytest.approx(rows[0]["random_nmi"])
    report = (run / "eval" / "metrics.md").read_text()
    assert f"| leiden | 0 | {rows[0]['clusters']:,} | {rows[0]['points']:,} |" in report
    assert "a training pool of the other" in report


@pytest.mark.parametrize("suffix", ["png", "svg", "pdf"])
def test_labelled_figures_have_no_overlapping_names(run, suffix):
    out = run / f"regions.{suffix}"
    result = cli("plot", run, "--map", "tsne", "--color", "cluster:1", "--labels", "keywords", "-o", out,
                 "--width", "1200", "--height", "900", "--dpi", "150", "-q")
    assert result.exit_code == 0, result.output
    receipt = json.loads((run / "maps" / "tsne.renders.json").read_text())["renders"][f"regions.{suffix}"]
    boxes = [label["box"] for label in receipt["labels"]]
    names = read_clustering(Run(run)).names(1)
    assert len(boxes) >= 8
    assert all(any(n.startswith(label["text"].rstrip("…")) for n in names) for label in receipt["labels"])
    for i, a in enumerate(boxes):
        assert a[0] >= 0 and a[1] >= 0 and a[2] <= 1200 and a[3] <= 900
        for b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
    data = out.read_bytes()
    again = run / f"again.{suffix}"
    assert cli("plot", run, "--map", "tsne", "--color", "cluster:1", "--labels", "keywords", "-o", again,
               "--width", "1200", "--height", "900", "--dpi", "150", "-q").exit_code == 0
    assert again.read_bytes() == data  # same figure, same bytes (no dates, no random element ids)
    if suffix == "svg":  # the names as text, the points as one embedded image
        text = data.decode()
        assert text.count("<image") >= 1 and all(f">{label['text'][:12]}" in text.replace("&amp;", "&")
                                                   for label in receipt["labels"][:3])
    elif suffix == "pdf":
        assert data.startswith(b"%PDF") and b"/Image" in data and b"/Font" in data
    else:
        from PIL import Image

        assert Image.open(out).size == (1200, 900)


def test_regions_named_on_the_map_each_get_a_colour_and_no_legend(run):
    """With the names on the map, a legend would repeat them and take the map's room, and grey 'other' would hide
    the regions that are named: every region gets a colour (the palette repeats where regions do not touch),
    unless --max-categories asks for a legend."""
    from corpusmap.maps import read_map
    from corpusmap.palette import region_colours
    from corpusmap.plot import PlotParams, colouring
    from corpusmap.render import CATEGORICAL, OTHER_NAME

    n_regions = len(read_clustering(Run(run)).names(2))
    assert n_regions > 18
    x, y = read_map(Run(run), "tsne").coords.T
    named = colouring(Run(run), PlotParams(map="tsne", color="cluster:2", labels="keywords"), x, y)
    assert not named.legend and OTHER_NAME not in named.categories.names
    codes = np.where(named.categories.codes < n_regions, named.categories.codes, -1)  # categories: largest first
    assert named.categories.colors[:n_regions] == \
        [CATEGORICAL[c] for c in region_colours(codes, x, y, n_regions, 18)]  # touching regions differ
    assert len(set(named.categories.colors[:18])) == 18
    legend = colouring(Run(run), PlotParams(map="tsne", color="cluster:2", labels="keywords", max_categories=10),
                       x, y)
    assert legend.legend and legend.categories.names[-1] == OTHER_NAME

    def legend_drawn(*args) -> bool:  # (an SVG keeps its text as text: the legend's title is there or not)
        out = run / "colours.svg"
        cli("plot", run, "--map", "tsne", "--color", "cluster:2", "--labels", "keywords", "-o", out, *args, "-q",
            ok=True)
        return "leiden, level 2" in out.read_text()

    assert legend_drawn("--max-categories", "10") and not legend_drawn()


def test_names_without_room_are_left_out_with_a_warning(run, caplog):
    out = run / "small.png"
    cli("plot", run, "--map", "tsne", "--color", "cluster:2", "--labels", "keywords", "-o", out, "--width", "800",
        "--height", "400", ok=True)
    receipt = json.loads((run / "maps" / "tsne.renders.json").read_text())["renders"]["small.png"]
    assert receipt["labels_left_out"] and receipt["labels"]
    warning = next(r.getMessage() for r in caplog.records if "left out" in r.getMessage())
    assert f"{len(receipt['labels_left_out'])} region name(s)" in warning and "--width" in warning
    # regions too small for a name (under 0.2% of the points, or 3) are counted and said
    sizes = np.bincount(read_clustering(Run(run)).levels[2])
    small = int((sizes < max(3, 0.002 * sizes.sum())).sum())
    named = min(len(sizes) - small, 40)
    assert receipt["regions_not_named"] == len(sizes) - named
    assert len(receipt["labels"]) + len(receipt["labels_left_out"]) == named
    if receipt["regions_not_named"]:
        assert any(f"{len(sizes) - named} region(s) not named" in r.getMessage() for r in caplog.records)


def test_excess_per_region_equals_the_analysis_of_that_region_alone(run, tmp_path):
    words = "style=reveal,demonstrate,novel,suggest,findings"
    result = cli("excess", run, "--target", "2015", "--by", "cluster:1", "--group-words", words,
                 "--min-group-size", "5", "--no-figures", "-q")
    assert result.exit_code == 0, result.output
    regions = pd.read_parquet(run / "excess" / "subgroups.parquet")
    regions = regions[regions["group"] == "style"]
    assert len(regions) >= 3
    labels = read_clustering(Run(run)).levels[1]
    records = [json.loads(line) for line in gzip.open(EXAMPLE_CORPUS, "rt")]
    corpus_ids = Run(run).read_corpus(["id"]).column("id").to_pylist()
    by_doi = {r["doi"]: r for r in records}
    for value, delta, n_with in zip(regions["subgroup"][:3], regions["delta"][:3], regions["n_with"][:3]):
        c = int(value.split(":")[0])
        subset = tmp_path / f"region{c}.jsonl"
        subset.write_text("".join(json.dumps(by_doi[i]) + "\n" for i, lab in zip(corpus_ids, labels) if lab == c))
        alone = cli("excess", subset, "-o", tmp_path / f"out{c}", "--target", "2015", "--group-words", words,
                    "--no-figures", "-q")
        assert alone.exit_code == 0, alone.output
        group = pd.read_parquet(tmp_path / f"out{c}" / "groups.parquet").iloc[0]
        assert group["delta"] == delta and group["n_with"] == n_with
    # and the map coloured by each region's delta
    figure = cli("plot", run, "--color", "excess:style:2015", "--labels", "keywords", "--width", "600",
                 "--height", "500", "--dpi", "100", "-q")
    assert figure.exit_code == 0, figure.output
    assert (run / "maps" / "tsne.excess-style-2015.png").is_file()


def test_a_report_by_region_outside_the_run_follows_the_clustering(run, tmp_path):
    """``excess RUN -o ELSEWHERE --by cluster``: the clustering is a source of the report, so new clusters make
    it stale (computed again), as they remove RUN/excess."""
    args = ["excess", run, "-o", tmp_path / "out", "--by", "cluster:1", "--target", "2015", "--group-words",
            "cells,protein", "--min-group-size", "3", "--no-figures", "-q"]
    assert cli(*args).exit_code == 0
    before = pd.read_parquet(tmp_path / "out" / "subgroups.parquet")["subgroup"].tolist()
    assert cli("clusters", run, "--resolution", "0.3,4", "--overwrite", "-q").exit_code == 0
    again = cli(*args[:-1])
    assert again.exit_code == 0 and "nothing to do" not in again.output, again.output
    assert pd.read_parquet(tmp_path / "out" / "subgroups.parquet")["subgroup"].tolist() != before


def test_hdbscan_of_the_map_is_named_and_nested(run):
    result = cli("clusters", run, "--on", "tsne", "--min-cluster-size", "60,15", "-q")
    assert result.exit_code == 0, result.output
    clustering = read_clustering(Run(run), "hdbscan")
    assert clustering.manifest["method"] == "hdbscan"
    coarse, fine = clustering.levels
    inside = fine >= 0
    assert len({(f, c) for f, c in zip(fine[inside], coarse[inside])}) == len(np.unique(fine[inside]))
    assert (coarse[inside] >= 0).all()
    # each level keeps its minimum size (a fine cluster in coarse noise joins the nearest coarse cluster)
    for labels, level in zip(clustering.levels, clustering.manifest["levels"]):
        assert np.bincount(labels[labels >= 0]).min() >= level["min_cluster_size"] == (60, 15)[level["level"]]
        assert level["clusters"] == labels.max() + 1
    assert cli("clusters", run, "--on", "tsne", "--name", "fine", "-q").exit_code == 0  # n/50, n/500
    finer = read_clustering(Run(run), "fine")
    assert (finer.levels[1] < 0).any()  # noise: its abstracts count in f(x) all the same
    _check_keywords(Run(run), finer)
    # two clusterings and no leiden: no default, and every command that would take one says how to name it
    for path in (run / "clusters").glob("leiden.*"):
        path.unlink()
    for args, flag in ((["view", run], "--clusters NAME"),
                       (["plot", run, "--color", "cluster"], "--color cluster:NAME"),
                       (["excess", run, "--by", "cluster", "--target", "2015"], "--by cluster:NAME")):
        refused = cli(*args)
        assert refused.exit_code == 2 and "holds the clusterings fine, hdbscan" in refused.output, refused.output
        assert flag in refused.output and "Traceback" not in refused.output
    assert cli("view", run, "--clusters", "fine", "-q").exit_code == 0
    # and the way the message names works: cluster:NAME (its default level), as cluster:NAME:LEVEL
    for color in ("cluster:fine", "cluster:fine:1"):
        drawn = cli("plot", run, "--color", color, "-o", run / f"{color.replace(':', '-')}.png", "-q")
        assert drawn.exit_code == 0, (color, drawn.output)
    deltas = cli("excess", run, "-o", run / "by-fine", "--by", "cluster:fine", "--target", "2015", "--group-words",
                 "cells,protein", "--min-group-size", "3", "--no-figures", "-q")
    assert deltas.exit_code == 0, deltas.output


def test_hdbscan_min_samples_is_scikit_learns(run):
    from sklearn.cluster import HDBSCAN
    from sklearn.metrics import adjusted_rand_score

    from corpusmap.maps import read_map

    assert cli("clusters", run, "--on", "tsne", "--name", "dense", "--min-cluster-size", "40",
               "--min-samples", "5", "-q").exit_code == 0
    clustering = read_clustering(Run(run), "dense")
    assert clustering.manifest["levels"][0]["min_samples"] == 5
    ours = clustering.levels[0]
    theirs = HDBSCAN(min_cluster_size=40, min_samples=5, copy=True).fit(
        read_map(Run(run), "tsne").coords.astype(np.float64)).labels_
    assert ((ours < 0) == (theirs < 0)).all() and adjusted_rand_score(ours[ours >= 0], theirs[theirs >= 0]) == 1.0
    default = HDBSCAN(min_cluster_size=40, copy=True).fit(read_map(Run(run), "tsne").coords.astype(np.float64))
    assert adjusted_rand_score(default.labels_, theirs) < 1.0  # the option changes the regions


def test_bad_inputs_give_one_line_and_write_nothing(run, tmp_path):
    shutil.rmtree(run / "clusters")
    before = sorted(p.name for p in run.rglob("*") if ".corpusmap" not in p.parts)
    cases = [
        (["plot", run, "--color", "cluster"], 1, "no clustering 'leiden'", "corpusmap clusters"),
        (["clusters", run, "--resolution", "1,x"], 2, "--resolution takes", None),
        (["clusters", run, "--resolution", "0,1"], 2, "--resolution takes distinct positive", None),
        (["clusters", run, "-k", "30"], 2, "stored kNN graph has k=15", None),
        (["clusters", run, "--min-cluster-size", "50"], 2, "--min-cluster-size goes with --on", None),
        (["clusters", run, "--min-samples", "5"], 2, "--min-samples goes with --on", None),
        (["clusters", run, "--on", "tsne", "--min-samples", "0"], 2, "--min-samples must be at least 1", None),
        (["clusters", run, "--on", "tsne", "--weights", "distance"], 2, "-k, --weights and --resolution are "
                                                                          "Leiden's", None),
        (["clusters", run, "--on", "tsne", "-k", "5"], 2, "leave them out or drop --on", None),
        (["plot", run, "-o", tmp_path / "x.jpg"], 2, "must end in .png, .svg or .pdf", None),
        (["plot", run, "--width", "100000", "-o", tmp_path / "w.png"], 2, "16<=x<=20000",
         None),
        (["clusters", run, "--resolution", ""], 2, "'--resolution': an empty value", None),
        (["plot", run, "--color", "year", "--labels", "-o", tmp_path / "y.png"], 2,
         "--labels alone names the colour's categories, and --color year has none", None),
        (["excess", run, "--by", "cluster"], 1, "no clustering", "corpusmap clusters"),
    ]
    for args, code, message, command in cases:
        result = cli(*args)
        assert result.exit_code == code and message in result.output, (args, result.output)
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
        if command:
            assert command in result.output
    assert cli("clusters", run, "-q").exit_code == 0
    for args, message in ((["plot", run, "--color", "cluster:3"], "levels 0 to 2"),
                          (["plot", run, "--color", "cluster:x:1"], "no clustering 'x'"),
                          (["excess", run, "--by", "cluster:9"], "levels 0 to 2"),
                          (["excess", run, "--by", "nosuch"], "--by 'nosuch': no such column")):
        result = cli(*args)
        assert result.exit_code in (1, 2) and message in result.output, (args, result.output)
    damaged = tmp_path / "damaged"  # a damaged manifest is said to be damaged, by every command that reads it
    shutil.copytree(run, damaged)
    (damaged / "clusters" / "leiden.json").write_text('{"stage": ')
    for command in (["evaluate", damaged, "--overwrite"], ["plot", damaged, "--color", "cluster"]):
        result = cli(*command)
        assert result.exit_code == 1 and "leiden.json is damaged" in result.output, (command, result.output)
    no_graph = tmp_path / "nograph"
    shutil.copytree(run, no_graph, ignore=shutil.ignore_patterns("knn", "clusters", "maps"))
    result = cli("clusters", no_graph)
    assert result.exit_code == 1 and f"run `corpusmap neighbors {no_graph}` first" in result.output
    after = sorted(p.name for p in run.rglob("*") if ".corpusmap" not in p.parts and "clusters" not in p.parts)
    assert [p for p in after if p != "clusters"] == [p for p in before if p != "clusters"]
