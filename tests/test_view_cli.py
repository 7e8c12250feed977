"""`corpusmap view` and `corpusmap export` on a run of the bundled corpus: what the page is built from, that it
opens offline in the real browser with the run's regions and neighbours, the export for embedding-atlas, and the
bad inputs."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import EXAMPLE_CORPUS, cli, copy_run, run_commands
from corpusmap.clusters import read_clustering
from corpusmap.run import Run
from browsing import Opened


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    run = tmp_path_factory.mktemp("view") / "run"
    return run_commands(run, ["embed", EXAMPLE_CORPUS, "-o", run, "--model", "tfidf", "--dim", "50", "-q"],
                        ["neighbors", run, "-k", "10", "-q"],
                        ["map", run, "--method", "tsne", "--n-iter", "100", "--early-exaggeration-iter", "50",
                         "--no-plot", "-q"],
                        ["clusters", run, "-q"], ["evaluate", run, "--queries", "200", "-q"],
                        ["excess", run, "--target", "2015", "--no-figures", "-q"])


@pytest.fixture
def run(base, tmp_path):
    return copy_run(base, tmp_path)


def test_a_pages_data_folder_is_part_of_the_page(run):
    """A page of more than inline_max_points points keeps its data in NAME_files/<version>/: a file of it lost or
    cut short makes the page not current (drawn again, whole), and a map made again removes the folder with the
    page."""
    from corpusmap.maps import MapParams, MapStage
    from corpusmap.view.stage import ViewParams, ViewStage

    params = ViewParams(map="tsne", inline_max_points=100)
    r = Run(run)
    ViewStage().run(r, params)
    folder = run / "maps" / "tsne_files"
    (version,) = list(folder.iterdir())
    files = sorted(p.relative_to(version) for p in version.rglob("*.js"))
    assert len(files) >= 5 and ViewStage().status(Run(run), params).current
    for damage in (lambda: (version / "points.js").unlink(), lambda: (version / files[-1]).write_text("cut"),
                   lambda: shutil.rmtree(folder)):
        damage()
        status = ViewStage().status(Run(run), params)
        assert not status.current and "the page's data" in status.reason, status.reason
        ViewStage().run(Run(run), params)
        (version,) = list(folder.iterdir())
        assert sorted(p.relative_to(version) for p in version.rglob("*.js")) == files
        assert ViewStage().status(Run(run), params).current
    MapStage().run(Run(run), MapParams(method="pca", name="tsne"), overwrite=True)
    assert not (run / "maps" / "tsne.html").exists() and not folder.exists()


def test_view_writes_a_page_of_the_run_and_keeps_it_current(run):
    result = cli("view", run)
    assert result.exit_code == 0, result.output
    page = run / "maps" / "tsne.html"
    html = page.read_text()
    assert "corpusmap-view" in html and "<script src=\"http" not in html and "https://" not in html.split("<body")[0]
    receipt = json.loads((run / "maps" / "tsne.renders.json").read_text())["renders"]["maps/tsne.html"]
    assert receipt["points"] == 1881 and receipt["search"]
    assert set(receipt["inputs"]) == {"corpus", "maps/tsne", "knn", "clusters/leiden", "eval", "excess"}
    again = cli("view", run)
    assert "current; nothing to do" in again.output
    # a page drawn by another corpusmap (other page code) is drawn again
    renders = run / "maps" / "tsne.renders.json"
    record = json.loads(renders.read_text())
    assert set(record["renders"]["maps/tsne.html"]["sources"]) == {"corpusmap drawing code"}
    record["renders"]["maps/tsne.html"]["sources"]["corpusmap drawing code"] = "0" * 16
    renders.write_text(json.dumps(record))
    upgraded = cli("view", run)
    assert upgraded.exit_code == 0 and "nothing to do" not in upgraded.output, upgraded.output
    assert page.read_text() == html  # drawn again from the same inputs: the same bytes (the search index too)
    assert "current; nothing to do" in cli("view", run).output
    # the same evaluation again (its report lost) gives the same numbers: the page made from them stays current
    (run / "eval" / "metrics.md").unlink()
    assert cli("evaluate", run, "--queries", "200", "-q").exit_code == 0
    assert page.is_file() and "current; nothing to do" in cli("view", run).output
    # drawn with an evaluation the run no longer holds: drawn again
    shutil.rmtree(run / "eval")
    assert "nothing to do" not in cli("view", run).output
    # a new graph removes the page with the map made from the old one
    assert cli("neighbors", run, "-k", "12", "--overwrite", "-q").exit_code == 0
    assert not page.exists()


def test_the_page_opens_offline_with_the_runs_regions_and_neighbours(run, browser):
    from corpusmap.clusters import read_clustering

    assert cli("view", run, "-q").exit_code == 0
    page = Opened(browser, run / "maps" / "tsne.html")
    try:
        assert page.errors == [] and page.blocked == [] and page.js("window.corpusmap.error") is None
        assert page.js("window.corpusmap.n") == 1881
        shown = page.js("""Array.from(document.querySelectorAll('.cm-label'))
            .filter(n => n.style.display !== 'none').map(n => n.textContent)""")
        level = page.js("window.corpusmap.labelLevel()")
        assert shown and set(shown) <= set(read_clustering(Run(run)).names(level))  # the names of the run's regions
        graph = np.load(run / "knn" / "indices.npy")
        row = 17
        page.js("i => window.corpusmap.pick(i)", row)
        page.page.wait_for_function("i => document.getElementById('cm-details').dataset.row === String(i)",
                                    arg=row, timeout=10_000)
        listed = page.js("Array.from(document.querySelectorAll('#cm-neighbours li')).map(li => +li.dataset.row)")
        assert listed == graph[row].tolist()  # the stored high-D neighbours
        title = Run(run).read_corpus(["title"]).column("title")[row].as_py()
        assert page.page.text_content(".cm-details-title") == title
        # the panel of the map's evaluation: eval/metrics.json's values, at its k; the run by name, not by path
        about = dict(page.js("Array.from(document.querySelectorAll('#cm-info tr'))"
                             ".map(r => [r.cells[0].textContent, r.cells[1].textContent])"))
        metrics = json.loads((run / "eval" / "metrics.json").read_text())
        tsne = next(s for s in metrics["spaces"] if s["space"] == "tsne")
        assert about[f"tsne: kNN recall@{metrics['k']}"] == f"{100 * tsne['knn_recall']:.1f}%"
        acc = tsne["knn_accuracy"]
        assert about[f"tsne: kNN accuracy@{metrics['k']}"] == (
            f"{100 * acc['accuracy']:.1f}% (chance {100 * acc['chance']:.1f}% stratified, "
            f"{100 * acc['chance_majority']:.1f}% majority class)")
        assert about["kNN accuracy of"] == f"column label (subjects), {acc['n_classes']} classes, " \
            f"{acc['n_test']:,} test points"
        assert about["run"] == run.name
        graph_k = json.loads((run / "knn" / "manifest.json").read_text())["k"]
        assert about["neighbours stored in the graph (k of corpusmap neighbors)"] == str(graph_k)
        # the label is named as the input named it (eLife's subjects), in the colour menu and the legend
        assert page.js("document.querySelector('#cm-color option[value=label]').textContent") == "subjects"
    finally:
        page.close()


def test_a_map_made_after_the_evaluation_says_so_in_its_panel(run):
    """The panel shows the vectors' evaluation beside a map made since, and says the map itself was not
    evaluated (naming the command), rather than leaving its rows out silently."""
    from corpusmap.view.info import info_sections
    from corpusmap.view.stage import ViewParams, page_data

    assert cli("map", run, "--method", "pca", "--name", "late", "--no-plot", "-q").exit_code == 0
    late = page_data(Run(run), ViewParams(map="late"), None).info["evaluation"]
    assert late["this map"] == f"not evaluated yet: run `corpusmap evaluate {run}`"
    assert [s["kind"] for s in late["spaces"]] == ["vectors"]
    rows = [row for section in info_sections({"evaluation": late}, []) for row in section["rows"]]
    assert ["this map", late["this map"]] in rows
    assert "this map" not in page_data(Run(run), ViewParams(map="tsne"), None).info["evaluation"]


def test_export_for_embedding_atlas(run):
    result = cli("export", run, "--map", "tsne")
    assert result.exit_code == 0, result.output
    table = pq.read_table(run / "exports" / "tsne.atlas.parquet")
    assert {"id", "x", "y", "text", "title", "year", "label", "cluster_0", "neighbors"} <= set(table.column_names)
    graph = np.load(run / "knn" / "indices.npy")
    distances = np.load(run / "knn" / "distances.npy")
    neighbors = table.column("neighbors").to_pylist()
    assert [n["ids"] for n in neighbors[:50]] == graph[:50].tolist()
    np.testing.assert_allclose([n["distances"] for n in neighbors[:50]], distances[:50], rtol=1e-6)
    stored = pq.read_table(run / "maps" / "tsne.parquet", columns=["x", "y"])
    assert table.column("x").to_pylist() == stored.column("x").to_pylist()
    corpus = Run(run).read_corpus(["title", "text"])
    assert table.column("text")[3].as_py() == f"{corpus.column('title')[3]}\n\n{corpus.column('text')[3]}"
    others = [c for c in Run(run).corpus_columns() if c not in ("id", "text", "title", "year", "label")]
    assert others and table.column_names[-len(others):] == others  # the corpus's other columns, as they are
    assert table.select(others).equals(Run(run).read_corpus(others))
    # a second clustering: leiden stays the default, --clusters chooses, none leaves the columns out
    cli("clusters", run, "--on", "tsne", "-q", ok=True)
    leiden = read_clustering(Run(run), "leiden")
    names = np.array([None] + leiden.names(1), dtype=object)[leiden.levels[1] + 1]
    for args, expected in (([], names), (["--clusters", "leiden"], names), (["--clusters", "none"], None)):
        cli("export", run, "--map", "tsne", "-o", run / "x.parquet", *args, "-q", ok=True)
        table = pq.read_table(run / "x.parquet")
        assert (expected is None) == ("cluster_1" not in table.column_names)
        if expected is not None:
            assert table.column("cluster_1").to_pylist() == expected.tolist()
            assert sum(c.startswith("cluster_") for c in table.column_names) == len(leiden.levels)
    hdbscan = read_clustering(Run(run), "hdbscan")
    cli("export", run, "--map", "tsne", "-o", run / "h.parquet", "--clusters", "hdbscan", "-q", ok=True)
    table = pq.read_table(run / "h.parquet")
    assert sum(c.startswith("cluster_") for c in table.column_names) == len(hdbscan.levels)
    res = cli("export", run, "--map", "tsne", "--clusters", "nosuch")
    assert res.exit_code == 1 and "no clustering 'nosuch'" in res.output and "corpusmap clusters" in res.output


def test_bad_inputs(run, tmp_path):
    cases = [
        (["view", run, "--map", "umap"], 1, "no map 'umap'", "corpusmap map"),
        (["view", run, "--label-col", "nosuch"], 2, "--label-col 'nosuch': no such column", None),
        (["view", run, "--clusters", "nosuch"], 1, "no clustering 'nosuch'", "--name nosuch` (with --on MAP"),
        (["view", run, "-o", tmp_path / "page.htm"], 2, "must end in .html", None),
        (["export", run, "--format", "csv"], 2, "Invalid value for '--format'", "corpusmap export --help"),
        (["view", tmp_path / "nowhere"], 1, "no run directory", "corpusmap embed"),
        # -o onto a file of the run's own stages would replace (and then invalidate) it
        (["export", run, "-o", run / "maps" / "tsne.parquet"], 2, "a file of the run's own stages", "exports"),
        (["export", run, "-o", run / "corpus.parquet"], 2, "a file of the run's own stages", None),
        (["plot", run, "--map", "tsne", "-o", run / "eval" / "fig.png"], 2, "a file of the run's own stages", None),
        (["view", run, "-o", run / "knn" / "page.html"], 2, "a file of the run's own stages", None),
        # a render named after another map would stand for that map's
        (["plot", run, "--map", "pca", "-o", run / "maps" / "tsne.png"], 2, "named after map 'tsne'", None),
        (["view", run, "--map", "pca", "-o", run / "maps" / "tsne.html"], 2, "named after map 'tsne'", None),
        (["plot", run, "--map", "pca", "-o", run / "maps" / "pca.v2.year.png"], 2, "named after map 'pca.v2'", None),
    ]
    assert cli("map", run, "--method", "pca", "--no-plot", "-q").exit_code == 0
    assert cli("map", run, "--method", "pca", "--name", "pca.v2", "--no-plot", "-q").exit_code == 0
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and ".corpusmap" not in p.parts}
    for args, code, message, command in cases:
        result = cli(*args)
        assert result.exit_code == code and message in result.output, (args, result.output)
        assert len(result.output.strip().splitlines()) == 1
        if command:
            assert command in result.output
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and ".corpusmap" not in p.parts} == before
    assert cli("plot", run, "--map", "pca.v2", "-o", run / "maps" / "pca.v2.png", "-q").exit_code == 0  # its own
    # a map made from another run's corpus is refused
    other = tmp_path / "other"
    assert cli("embed", EXAMPLE_CORPUS, "-o", other, "--model", "tfidf", "--dim", "20", "--max-chars", "1200",
               "-q").exit_code == 0
    (other / "maps").mkdir()
    shutil.copy(run / "maps" / "tsne.parquet", other / "maps" / "tsne.parquet")
    result = cli("view", other)
    assert result.exit_code == 1 and "made from another corpus" in result.output
    # an output folder that cannot be written
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o500)
    try:
        result = cli("view", run, "-o", locked / "page.html")
        if os.geteuid() != 0:  # root writes anyway
            assert result.exit_code == 1 and "cannot write" in result.output and str(locked) in result.output
    finally:
        os.chmod(locked, 0o700)


def test_bare_numeric_ids_are_linked_to_pubmed_only_when_they_are_pmids(pubmed_dir, tmp_path):
    """PubMed XML gives PMIDs; a CSV whose rows have no id gets row numbers, which must not become PubMed
    links (row 5 is not PMID 5)."""
    from corpusmap.view.stage import ids_are_pmids

    cli("embed", pubmed_dir / "medline16n0902_sample.xml.gz", "-o", tmp_path / "xml", "--model", "tfidf",
        "--prepare-only", "-q", ok=True)
    assert ids_are_pmids(Run(tmp_path / "xml"))
    (tmp_path / "pmids.csv").write_text("PMID,abstract\n31452104,A text about cells.\n,A text about genes.\n")
    cli("embed", tmp_path / "pmids.csv", "-o", tmp_path / "csv", "--model", "tfidf", "--prepare-only", "-q",
        ok=True)
    assert json.loads((tmp_path / "csv" / "corpus.json").read_text())["stats"]["id_columns"] == ["PMID", None]
    assert not ids_are_pmids(Run(tmp_path / "csv"))  # one row's id is its row number
    cli("embed", EXAMPLE_CORPUS, "-o", tmp_path / "doi", "--model", "tfidf", "--prepare-only", "-q", ok=True)
    assert not ids_are_pmids(Run(tmp_path / "doi"))


def test_export_does_not_repeat_a_title_the_text_already_starts_with(tmp_path):
    """embed --title-col puts the title at the head of the text; the export's text is then that text as is."""
    run = tmp_path / "titled"
    run_commands(run, ["embed", EXAMPLE_CORPUS, "-o", run, "--model", "tfidf", "--dim", "20", "--title-col", "title"],
                 ["neighbors", run, "-k", "5"], ["map", run, "--method", "pca", "--no-plot"],
                 ["export", run, "--map", "pca"])
    corpus = Run(run).read_corpus(["title", "text"])
    exported = pq.read_table(run / "exports" / "pca.atlas.parquet", columns=["text"]).column("text")
    assert exported.to_pylist() == corpus.column("text").to_pylist()
    assert corpus.column("text")[0].as_py().startswith(corpus.column("title")[0].as_py())


def test_the_page_offers_the_excess_words_of_real_periods_only(shared_data):
    """ACL's stray early years (1977: 8 papers, against 3,123 in 2018) are no period to read excess words of."""
    import pandas as pd

    from corpusmap.view.stage import offered_targets

    years = pd.read_json(shared_data / "acl_2016_2019.jsonl.gz", lines=True)["year"].value_counts()
    totals = {str(y): int(n) for y, n in years.items()}
    assert offered_targets(["1977", "2015", "2016", "2019"], totals) == ["2016", "2019"]
    assert offered_targets(["1977", "2099"], totals) == ["1977", "2099"]  # alone, or of unknown size: kept
