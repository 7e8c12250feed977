"""`corpusmap map` and `corpusmap plot` end to end on real runs of the example corpus (TF-IDF vectors)."""
from __future__ import annotations

import gzip
import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import EXAMPLE_CORPUS, cli

FAST_TSNE = ["--gradient", "bh", "--early-exaggeration-iter", "100", "--n-iter", "100", "--threads", "1"]
SMALL_PNG = ["--width", "600", "--height", "500", "--dpi", "100"]


def embed(corpus, run, *extra):
    dim = [] if "--fit-from" in extra else ["--dim", "50"]  # a reused fit brings its own dimension
    cli("embed", corpus, "-o", run, "--model", "tfidf", *dim, "--quiet", *extra, ok=True)


def read_png(path):
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The example corpus embedded with TF-IDF + SVD, with its exact kNN graph (k=15)."""
    path = tmp_path_factory.mktemp("maps") / "run"
    embed(EXAMPLE_CORPUS, path)
    cli("neighbors", path, "-q", ok=True)
    return path


@pytest.fixture(scope="module")
def tsne_map(run):
    cli("map", run, *FAST_TSNE, *SMALL_PNG, "--seed", "3", "-q", ok=True)
    return run / "maps" / "tsne.parquet"


def test_tsne_map_parquet_and_png(run, tsne_map):
    table = pq.read_table(tsne_map)
    corpus = pq.read_table(run / "corpus.parquet")
    assert table.num_rows == corpus.num_rows
    assert table.column_names[:3] == ["id", "x", "y"]
    assert "text" not in table.column_names
    assert {"year", "label", "title"} <= set(table.column_names)
    assert table.schema.field("x").type == "float" and table.schema.field("y").type == "float"
    assert table.column("id").to_pylist() == corpus.column("id").to_pylist()
    meta = json.loads(table.schema.metadata[b"corpusmap"])
    assert meta["method"] == "tsne" and meta["seed"] == 3
    assert meta["parameters"]["k"] == 10 and meta["parameters"]["gradient"] == "bh"
    assert [p["n_iter"] for p in meta["schedule"]] == [100, 100]
    assert meta["knn"]["k"] == 15 and meta["knn"]["metric"] == "euclidean"
    assert {"openTSNE", "numpy", "corpusmap"} <= set(meta["stage"]["versions"])
    assert "umap-learn" not in meta["stage"]["versions"]  # the packages that made this map, not every layout's
    png = run / "maps" / "tsne.png"
    pixels = read_png(png)
    assert pixels.shape == (500, 600, 3)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20


def test_landscape_preset_records_its_schedule(tmp_path, run):
    out = cli("map", run, "--preset", "landscape", "--n-iter", "10", "--gradient", "bh", "--threads", "1",
              "--name", "landscape", "--no-plot", ok=True)
    assert "landscape.parquet" in out.output
    meta = json.loads(pq.read_schema(run / "maps" / "landscape.parquet").metadata[b"corpusmap"])
    phases = [(p["phase"], p["n_iter"]) for p in meta["schedule"]]
    assert phases == [("early_exaggeration", 125), ("annealing", 125), ("main", 10)]
    assert meta["schedule"][0]["momentum"] == 0.5 and meta["schedule"][0]["exaggeration"] == 12
    assert not (run / "maps" / "landscape.png").exists()


def test_pca_and_umap_maps(run):
    cli("map", run, "--method", "pca", "--no-plot", "-q", ok=True)
    pca = pq.read_table(run / "maps" / "pca.parquet")
    assert json.loads(pca.schema.metadata[b"corpusmap"])["method"] == "pca"
    pytest.importorskip("umap")
    cli("map", run, "--method", "umap", "--n-neighbors", "10", "--n-epochs", "50", "--name", "umap10", "--no-plot",
        "-q", ok=True)
    meta = json.loads(pq.read_schema(run / "maps" / "umap10.parquet").metadata[b"corpusmap"])
    assert meta["parameters"]["n_neighbors"] == 10 and meta["parameters"]["deterministic"] is True
    assert {"umap-learn", "numba", "pynndescent"} <= set(meta["stage"]["versions"])
    spectral = pq.read_table(run / "maps" / "umap10.parquet").select(["x", "y"]).to_pandas().to_numpy()
    cli("map", run, "--method", "umap", "--n-neighbors", "10", "--n-epochs", "50", "--umap-init", "pca",
        "--name", "umap10tsw", "--no-plot", "-q", ok=True)
    table = pq.read_table(run / "maps" / "umap10tsw.parquet")
    assert json.loads(table.schema.metadata[b"corpusmap"])["parameters"]["init"] == "pca"
    other = table.select(["x", "y"]).to_pandas().to_numpy()
    assert np.isfinite(other).all() and not np.allclose(other, spectral)  # another start, another map


def test_umap_auto_start_is_spectral_for_small_runs_and_pca_for_large(run, monkeypatch):
    """The default --umap-init auto is recorded as the start it took: spectral at this size (so the explicit
    spectral map is the same map, kept as current), PCA above layouts.UMAP_SPECTRAL_MAX_N points."""
    pytest.importorskip("umap")
    from corpusmap import layouts

    base = ["map", run, "--method", "umap", "--n-neighbors", "10", "--n-epochs", "50", "--no-plot", "-q"]
    cli(*base, "--name", "uauto", ok=True)
    path = run / "maps" / "uauto.parquet"
    assert json.loads(pq.read_schema(path).metadata[b"corpusmap"])["parameters"]["init"] == "spectral"
    before = path.read_bytes()
    cli(*base, "--name", "uauto", "--umap-init", "spectral", ok=True)  # the same parameters: nothing to do
    assert path.read_bytes() == before
    monkeypatch.setattr(layouts, "UMAP_SPECTRAL_MAX_N", 100)
    cli(*base, "--name", "uauto", ok=True)  # a spectral map (the earlier default) stays current under auto
    assert path.read_bytes() == before
    cli(*base, "--name", "uauto_big", ok=True)
    cli(*base, "--name", "upca", "--umap-init", "pca", ok=True)
    big, pca = (pq.read_table(run / "maps" / f"{m}.parquet") for m in ("uauto_big", "upca"))
    assert json.loads(big.schema.metadata[b"corpusmap"])["parameters"]["init"] == "pca"
    assert np.array_equal(big.select(["x", "y"]).to_pandas().to_numpy(), pca.select(["x", "y"]).to_pandas().to_numpy())


@pytest.mark.parametrize("damage", ["truncated", "coordinates"])
def test_a_damaged_map_is_not_current_and_the_same_command_makes_it_again(run, damage):
    cli("map", run, "--method", "pca", "--name", "pcad", "--no-plot", "-q", ok=True)
    path = run / "maps" / "pcad.parquet"
    good = pq.read_table(path)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:  # other coordinates under the recorded metadata
        pq.write_table(good.set_column(1, "x", pa.array(good.column("x").to_numpy() + 1.0)), path)
    used = cli("plot", run, "--map", "pcad", "-o", run / "d.png")
    command = "--method METHOD --name pcad" if damage == "truncated" else "--method pca --name pcad"
    assert used.exit_code == 1 and command in used.output, used.output
    again = cli("map", run, "--method", "pca", "--name", "pcad", "--no-plot")
    assert again.exit_code == 0 and "current" not in again.output, again.output
    assert pq.read_table(path).equals(good)


@pytest.mark.parametrize("colour,expect", [("year", "tsne.year.png"), ("label", "tsne.label.png"),
                                           ("words:cell,cells", "tsne.words-cell-cells.png")])
def test_plot_colourings(run, tsne_map, colour, expect):
    labels = ["--labels"] if colour == "label" else []  # only categories have names to write
    out = cli("plot", run, "--map", "tsne", "--color", colour, *SMALL_PNG, *labels, ok=True)
    png = run / "maps" / expect
    assert str(png) in out.output
    pixels = read_png(png)
    assert pixels.shape == (500, 600, 3)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10


def test_plot_to_a_chosen_file(tmp_path, run, tsne_map):
    target = tmp_path / "figure.png"
    cli("plot", run, "--map", "tsne", "-o", target, "--width", "1000", "--height", "800", "--dpi", "200",
        "--title", "eLife", "-q", ok=True)
    assert read_png(target).shape == (800, 1000, 3)


def test_unknown_colour_column(run, tsne_map):
    before = sorted(p.name for p in (run / "maps").iterdir())
    result = cli("plot", run, "--map", "tsne", "--color", "journal")
    assert result.exit_code != 0
    assert "--color 'journal': no such column" in result.output and "year" in result.output
    assert "label" in result.output
    assert sorted(p.name for p in (run / "maps").iterdir()) == before


@pytest.mark.parametrize("args,message", [
    (["--color", "year", "--max-categories", "5"], "--max-categories: --color year draws no categories to limit"),
    (["--color", "none", "--max-categories", "5"], "--max-categories: --color none draws no categories to limit"),
    (["--no-reference"], "--no-reference: the map 'tsne' has no points added with `corpusmap map --add`"),
    (["--height", "100", "--width", "400", "--dpi", "100"], "too short for the map and its legend at --dpi 100"),
])
def test_plot_options_without_effect_or_room_are_refused(run, tsne_map, tmp_path, args, message):
    result = cli("plot", run, "--map", "tsne", "-o", tmp_path / "f.png", *args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "f.png").exists()


def test_unknown_map(run):
    result = cli("plot", run, "--map", "nothere")
    assert result.exit_code != 0 and "no map 'nothere'" in result.output


def test_no_knn_graph_names_the_next_step(tmp_path):
    bare = tmp_path / "bare"
    embed(EXAMPLE_CORPUS, bare)
    result = cli("map", bare)
    assert result.exit_code != 0
    assert "corpusmap neighbors" in result.output
    assert not (bare / "maps").exists() or not list((bare / "maps").iterdir())


@pytest.mark.parametrize("args,message", [
    (["--perplexity", "30"], "needs 3 x perplexity = 90 neighbours"),
    (["-k", "20"], "needs 20 neighbours"),
    (["--method", "umap", "--n-neighbors", "30"], "--n-neighbors 30 needs 29 neighbours"),
    (["--method", "umap", "--perplexity", "5"], "--perplexity only applies to --method tsne"),
    (["--method", "umap", "--perplexity", "5", "--dof", "0.5"], "--perplexity, --dof only apply to --method tsne"),
    (["--perplexity", "5", "--symmetrize", "mean"], "perplexity affinities are always (P + P^T) / 2"),
    (["--method", "umap", "--umap-init", "laplacian"], "--umap-init"),
    (["--n-neighbors", "5", "--min-dist", "0.5"], "--n-neighbors, --min-dist only apply to --method umap"),
    (["--method", "pca", "--umap-init", "pca"], "--umap-init only applies to --method umap"),
    (["--name", "../escape"], "map name"),
    (["--learning-rate", "fast"], "--learning-rate"),
    (["--method", "pca", "--no-plot", "--width", "500"], "Error: --width: --no-plot draws no figure; drop it"),
    (["--method", "pca", "--no-plot", "--title", "t", "--labels", "--dpi", "100", "--height", "300"],
     "--height, --dpi, --labels, --title: --no-plot draws no figure; drop them"),
])
def test_bad_parameters_fail_cleanly(run, args, message):
    before = sorted(p.name for p in (run / "maps").iterdir()) if (run / "maps").exists() else []
    result = cli("map", run, *args)
    assert result.exit_code != 0
    assert message in result.output, result.output
    after = sorted(p.name for p in (run / "maps").iterdir()) if (run / "maps").exists() else []
    assert after == before  # no partial files


def test_add_points_to_a_map(tmp_path):
    with gzip.open(EXAMPLE_CORPUS, "rt") as fh:
        lines = [line for line in fh if line.strip()]
    (tmp_path / "old.jsonl").write_text("".join(lines[:1400]))
    (tmp_path / "new.jsonl").write_text("".join(lines[1400:]))
    ref, new, other = tmp_path / "ref", tmp_path / "new", tmp_path / "other"
    embed(tmp_path / "old.jsonl", ref)
    cli("neighbors", ref, "-q", ok=True)
    cli("map", ref, *FAST_TSNE, "--no-plot", "-q", ok=True)
    # the new run reuses the reference run's TF-IDF fit, so its vectors live in the same space
    embed(tmp_path / "new.jsonl", new, "--fit-from", ref)
    stored = ref / "maps" / "tsne.parquet"
    digest = sha(stored)
    out = cli("map", ref, "--add", new, "--threads", "1", *SMALL_PNG, ok=True)
    assert "placed" in out.output
    assert sha(stored) == digest  # the reference map is not touched
    added = pq.read_table(new / "maps" / "tsne.parquet")
    assert added.num_rows == len(lines) - 1400
    meta = json.loads(added.schema.metadata[b"corpusmap"])
    assert meta["method"] == "tsne-transform" and meta["reference"]["map"] == "tsne"
    xy = np.column_stack([added.column("x").to_numpy(), added.column("y").to_numpy()])
    ref_table = pq.read_table(stored)
    ref_xy = np.column_stack([ref_table.column("x").to_numpy(), ref_table.column("y").to_numpy()])
    assert np.isfinite(xy).all()
    assert (xy.min(0) >= ref_xy.min(0) - 0.2 * np.ptp(ref_xy, 0)).all()
    assert (xy.max(0) <= ref_xy.max(0) + 0.2 * np.ptp(ref_xy, 0)).all()
    assert read_png(new / "maps" / "tsne.png").shape == (500, 600, 3)
    # a run with its own TF-IDF fit is refused, and nothing is written
    embed(tmp_path / "new.jsonl", other)
    result = cli("map", ref, "--add", other)
    assert result.exit_code != 0 and "tfidf fit" in result.output
    assert not (other / "maps").exists()


def test_every_command_has_help():
    for command in ("map", "plot"):
        result = cli(command, "--help", ok=True)
        assert "Usage:" in result.output and len(result.output) > 300
        # the ranges in the help are the ones refused: a figure of at most 20,000 px a side, at most 2,400 dpi
        text = " ".join(result.output.split())
        assert "16<=x<=20000" in text and "16<=x<=2400]" in text
    assert "0<=x<=1.0]" in " ".join(cli("map", "--help").output.split())  # --min-dist: at most the spread


def test_values_beyond_the_help_ranges_are_refused(tmp_path):
    for args in (["map", tmp_path, "--min-dist", "1.5"], ["plot", tmp_path, "--dpi", "3000"],
                 ["plot", tmp_path, "--width", "20001"]):
        result = cli(*args)
        assert result.exit_code == 2 and "is not in the range" in result.output, result.output


@pytest.mark.parametrize("method", ["tsne", "pca"])
def test_the_same_map_is_the_same_bytes_whatever_the_thread_count(run, tmp_path, method):
    """Two computations of one map, at 1 and 2 threads, in two copies of the run at other paths: the same
    parquet bytes (no creation time, path, timing or thread count in the file)."""
    import shutil

    files = []
    for threads in ("1", "2"):
        copy = tmp_path / f"copy{threads}"
        shutil.copytree(run, copy, ignore=shutil.ignore_patterns("maps"))
        tsne = [*FAST_TSNE[:-1], threads, "--seed", "5"] if method == "tsne" else ["--threads", threads]
        cli("map", copy, "--method", method, "--name", "m", *tsne, "--no-plot", "-q", ok=True)
        files.append((copy / "maps" / "m.parquet").read_bytes())
    assert files[0] == files[1]


def test_a_corpus_of_three_abstracts_is_laid_out_by_pca_only(tmp_path):
    path = tmp_path / "three.jsonl"
    path.write_text("".join(json.dumps({"abstract": text}) + "\n" for text in (
        "Cells divide and grow in culture.", "Neurons fire in the cortex of mice.", "Proteins fold into shapes.")))
    run = tmp_path / "run"
    cli("embed", path, "-o", run, "--model", "tfidf", "-q", ok=True)
    cli("neighbors", run, "-k", "2", "-q", ok=True)
    for method in ("umap", "tsne"):
        result = cli("map", run, "--method", method, "--no-plot")
        assert result.exit_code == 1 and "needs at least 4 points" in result.output, result.output
        assert "--method pca" in result.output
    cli("map", run, "--method", "pca", "--no-plot", "-q", ok=True)
