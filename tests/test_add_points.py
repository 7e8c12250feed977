"""Growing a map: next year's abstracts placed on this year's t-SNE or UMAP map without moving it, as well as the
libraries' own placement (openTSNE's transform, umap-learn's transform on a model that holds its data)."""
from __future__ import annotations

import gzip
import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import EXAMPLE_CORPUS, cli
from corpusmap import layouts
from corpusmap.run import Run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("grow")
    lines = gzip.open(EXAMPLE_CORPUS, "rt").read().splitlines()
    (folder / "old.jsonl").write_text("\n".join(lines[:1500]) + "\n")
    (folder / "new.jsonl").write_text("\n".join(lines[1500:]) + "\n")
    ref, new = folder / "ref", folder / "new"
    for args in (["embed", folder / "old.jsonl", "-o", ref, "--model", "tfidf", "--dim", "50"],
                 ["embed", folder / "new.jsonl", "-o", new, "--model", "tfidf", "--fit-from", ref],
                 ["neighbors", ref], ["map", ref, "--method", "umap", "--no-plot"],
                 ["map", ref, "--method", "tsne", "--n-iter", "200", "--no-plot"]):
        result = cli(*args, "-q")
        assert result.exit_code == 0, result.output
    return ref, new


@pytest.mark.parametrize("method", ["umap", "tsne"])
def test_added_points_leave_the_map_alone_and_sit_near_their_high_d_neighbours(runs, method):
    ref, new = runs
    before = (ref / "maps" / f"{method}.parquet").read_bytes()
    result = cli("map", ref, "--add", new, "--name", method, "--no-plot")
    assert result.exit_code == 0, result.output
    assert "kNN recall of the placed points" in result.output
    assert (ref / "maps" / f"{method}.parquet").read_bytes() == before
    table = pq.read_table(new / "maps" / f"{method}.parquet")
    meta = json.loads(table.schema.metadata[b"corpusmap"])
    assert meta["method"] == f"{method}-transform" and table.num_rows == 381
    # openTSNE's transform parameters are recorded where they were used, and only there
    assert ("transform" in meta["stage"]["params"]) == (method == "tsne")
    recall = meta["placement"]["knn_recall"]
    assert recall > 10 * (10 / 1500)  # ten times placing them at random
    # the same definition recomputed here
    ref_coords = np.column_stack([pq.read_table(ref / "maps" / f"{method}.parquet").column(c).to_numpy()
                                  for c in "xy"])
    new_coords = np.column_stack([table.column(c).to_numpy() for c in "xy"])
    again = layouts.placement_recall(ref_coords, Run(ref).vectors, new_coords, Run(new).vectors.to_numpy(), 10)
    assert again == pytest.approx(recall)


def test_umap_placement_is_as_good_as_umap_learns_own_transform(runs):
    import umap

    ref, new = runs
    X, Y = Run(ref).vectors.to_numpy(), Run(new).vectors.to_numpy()
    model = umap.UMAP(n_neighbors=15, random_state=42).fit(X)  # umap-learn's own index and transform
    theirs = model.transform(Y)
    ours = pq.read_table(new / "maps" / "umap.parquet") if (new / "maps" / "umap.parquet").exists() else None
    if ours is None:
        assert cli("map", ref, "--add", new, "--name", "umap", "--no-plot", "-q").exit_code == 0
        ours = pq.read_table(new / "maps" / "umap.parquet")
    ref_ours = np.column_stack([pq.read_table(ref / "maps" / "umap.parquet").column(c).to_numpy() for c in "xy"])
    ours_xy = np.column_stack([ours.column(c).to_numpy() for c in "xy"])
    recall_ours = layouts.placement_recall(ref_ours, X, ours_xy, Y, 10)
    recall_theirs = layouts.placement_recall(model.embedding_, X, theirs, Y, 10)
    assert recall_ours >= 0.75 * recall_theirs, (recall_ours, recall_theirs)


def test_adding_to_a_pca_map_is_refused(runs):
    ref, new = runs
    assert cli("map", ref, "--method", "pca", "-q").exit_code == 0
    result = cli("map", ref, "--add", new, "--name", "pca")
    assert result.exit_code == 2 and "t-SNE or UMAP map" in result.output


def test_options_that_adding_does_not_use_are_refused(runs):
    ref, new = runs
    for args, flags in ((["--method", "pca"], "--method"), (["--device", "cuda", "-k", "5"], "-k, --device"),
                        (["--preset", "landscape"], "--preset")):
        result = cli("map", ref, "--add", new, "--name", "tsne", *args)
        assert result.exit_code == 2 and f"own settings; drop {flags}" in result.output, result.output


def test_runs_of_other_vectors_are_refused_naming_each_runs_value(runs, tmp_path):
    """The error names the new run's value first, as the sentence names the new run first; imported vectors
    cannot be told apart by their file names, but are never mixed with a model's."""
    ref, new = runs
    other = tmp_path / "normalized"
    cli("embed", EXAMPLE_CORPUS, "-o", other, "--model", "tfidf", "--fit-from", ref, "--normalize", "-q", ok=True)
    result = cli("map", ref, "--add", other, "--name", "tsne")
    assert result.exit_code == 1 and "was embedded differently" in result.output
    assert "(normalize: True vs False)" in result.output
    rng = np.random.default_rng(0)
    n_ref = Run(ref).n_rows
    np.save(tmp_path / "a.npy", rng.normal(size=(n_ref, 8)).astype(np.float32))
    imported = tmp_path / "imported"
    cli("embed", ref / "corpus.parquet", "-o", imported, "--vectors", tmp_path / "a.npy", "-q", ok=True)
    result = cli("map", ref, "--add", imported, "--name", "tsne")
    assert result.exit_code == 1 and "imported with --vectors" in result.output and "do not live in one space" \
        in result.output


def test_a_umap_map_of_very_few_epochs_can_be_grown(runs):
    ref, new = runs
    cli("map", ref, "--method", "umap", "--name", "u2", "--n-epochs", "2", "--no-plot", "-q", ok=True)
    result = cli("map", ref, "--add", new, "--name", "u2", "--no-plot", "-q")
    assert result.exit_code == 0, result.output
    assert np.isfinite(pq.read_table(Run(new).map_path("u2")).to_pandas()[["x", "y"]].to_numpy()).all()


def test_points_placed_on_a_map_that_changed_are_placed_again_before_use(runs, tmp_path):
    """plot/view/evaluate of an added map refuse once the reference map has changed, naming the command that
    places the points again; that command then runs (the stored placement is not current) without --overwrite."""
    ref, new = runs
    tsne = ["--method", "tsne", "--name", "t5", "--n-iter", "30", "--early-exaggeration-iter", "20", "--no-plot"]
    cli("map", ref, *tsne, "-q", ok=True)
    cli("map", ref, "--add", new, "--name", "t5", "--no-plot", "-q", ok=True)
    cli("plot", new, "--map", "t5", "-q", ok=True)
    cli("map", ref, *tsne, "--seed", "8", "--overwrite", "-q", ok=True)
    for args in (["plot", new, "--map", "t5"], ["view", new, "--map", "t5"], ["evaluate", new, "--map", "t5"]):
        result = cli(*args)
        assert result.exit_code == 1, result.output
        assert f"holds points placed on map 't5' of {ref}, which has changed since; place them again with " \
               f"`corpusmap map {ref} --add {new} --name t5`" in result.output
    cli("map", ref, "--add", new, "--name", "t5", "--no-plot", "-q", ok=True)
    cli("plot", new, "--map", "t5", "-q", ok=True)
    # the reference map removed from its run (e.g. by a new graph there): refused as well, naming both commands
    kept = tmp_path / "t5.parquet"
    shutil.copy(Run(ref).map_path("t5"), kept)
    Run(ref).map_path("t5").unlink()
    result = cli("plot", new, "--map", "t5")
    assert result.exit_code == 1 and "which that run no longer holds" in result.output, result.output
    assert f"`corpusmap map {ref} --add {new} --name t5`" in result.output
    shutil.copy(kept, Run(ref).map_path("t5"))
    # both runs moved together: the reference is not where it was, and the placed map is still of use
    moved = tmp_path / "moved"
    shutil.copytree(new, moved / "new")
    cli("plot", moved / "new", "--map", "t5", "-o", tmp_path / "moved.png", "-q", ok=True)
