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
    # openTSNE's transform parameters are recorded where they were used, and only there; a UMAP placement
    # recorded with them (by an earlier corpusmap) is still current
    params = meta["stage"]["params"]
    assert ("transform" in params) == (method == "tsne")
    from corpusmap.maps import AddStage

    older = {**params, "transform": {"n_iter": 250}}
    assert (AddStage().comparable(Run(new), older) == AddStage().comparable(Run(new), params)) == (method == "umap")
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


def test_the_page_of_a_grown_map_draws_its_reference_map_in_grey_underneath(runs, browser):
    """The added points are the page's points; the reference map's lie under them as a grey density image that
    the page's frame holds whole, listed in the legend with its size."""
    from browsing import Opened
    from scipy.spatial import cKDTree

    from corpusmap.view.points import normalise

    ref, new = runs
    if not (new / "maps" / "tsne.parquet").exists():
        assert cli("map", ref, "--add", new, "--name", "tsne", "--no-plot", "-q").exit_code == 0
    for run in (ref, new):
        assert cli("view", run, "--map", "tsne", "-q").exit_code == 0
    xy = {run: np.column_stack([pq.read_table(run / "maps" / "tsne.parquet").column(c).to_numpy() for c in "xy"])
          for run in (ref, new)}
    xn, yn, transform = normalise(xy[new][:, 0], xy[new][:, 1], (xy[ref][:, 0], xy[ref][:, 1]))
    page = Opened(browser, new / "maps" / "tsne.html")
    try:
        assert page.errors == [] and page.js("window.corpusmap.error") is None
        assert page.js("window.corpusmap.n") == 381
        assert np.allclose(page.js("window.corpusmap.dataPosition(5)"), [xn[5], yn[5]], atol=1e-6)
        legend = page.js("Array.from(document.querySelectorAll('#cm-legend .cm-legend-item')).map(e => e.textContent)")
        assert legend[-1] == "reference map (ref · tsne)1,500"
        # reference points at least 12 px from every added point show grey; places 40 px from all points, white
        ref_n = ((xy[ref] - transform["center"]) * transform["scale"]).tolist()
        screen_ref = np.array([page.js("([x, y]) => window.corpusmap.screenOf(x, y)", p) for p in ref_n])
        screen_new = np.asarray(page.js("window.corpusmap.screenPositions()")).reshape(-1, 2)
        box = page.page.locator("#cm-canvas").bounding_box()
        inside = ((screen_ref[:, 0] > box["x"]) & (screen_ref[:, 0] < box["x"] + box["width"])
                  & (screen_ref[:, 1] > box["y"]) & (screen_ref[:, 1] < box["y"] + box["height"]))
        assert inside.all()  # the frame holds the reference map whole
        page.page.wait_for_function("""() => { const c = document.querySelector('.cm-density');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            for (let i = 3; i < d.length; i += 4) if (d[i]) return true; return false; }""")  # (images load async)
        pixels = page.canvas_pixels()
        alone = screen_ref[cKDTree(screen_new).query(screen_ref)[0] > 12][:200]
        assert len(alone) > 20
        at = [pixels[int(y - box["y"]), int(x - box["x"])] for x, y in alone]
        grey = [p for p in at if p.max() - p.min() < 12 and p.mean() < 245]
        assert len(grey) > 0.8 * len(at)
        everything = cKDTree(np.vstack([screen_ref, screen_new]))
        gx, gy = np.meshgrid(np.linspace(box["x"] + 5, box["x"] + box["width"] - 5, 40),
                             np.linspace(box["y"] + 5, box["y"] + box["height"] - 5, 40))
        empty = np.column_stack([gx.ravel(), gy.ravel()])
        empty = empty[everything.query(empty)[0] > 40]
        hit = [page.js("([x, y]) => document.elementFromPoint(x, y).id", p.tolist()) for p in empty]
        empty = empty[np.array(hit) == "cm-canvas"]
        assert len(empty) > 5
        assert all(pixels[int(y - box["y"]), int(x - box["x"])].min() > 245 for x, y in empty)
    finally:
        page.close()
    plain = Opened(browser, ref / "maps" / "tsne.html")
    try:
        assert "reference map" not in plain.js("document.getElementById('cm-legend').textContent")
        assert plain.js("window.corpusmap.n") == 1500
    finally:
        plain.close()
