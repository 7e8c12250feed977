"""Evaluate a run: kNN recall, kNN accuracy and year RMSE in high-D, in each stored map and in a PCA-2D baseline.

The definitions are those of :mod:`corpusmap.metrics`. Every space uses the same seeded query samples, so rows of
the table are comparable. Results go to ``RUN/eval/metrics.json`` and a readable ``RUN/eval/metrics.md``; nothing
is written until every number is computed.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from corpusmap.atomic import read_json
from corpusmap.errors import CorpusmapError, UsageProblem
from corpusmap.progress import info

MAPS_DIR = "maps"
EVAL_DIR = "eval"
PCA_NAME = "pca"


def find_maps(run_path) -> list[str]:
    """Names of the maps in ``RUN/maps/*.parquet``, sorted."""
    folder = Path(getattr(run_path, "path", run_path)) / MAPS_DIR
    return sorted(p.stem for p in folder.glob("*.parquet")) if folder.is_dir() else []


def read_map(run_path, name: str, corpus_ids: Optional[np.ndarray] = None) -> np.ndarray:
    """The (n, 2) float64 coordinates of map ``name``, in corpus order.

    The parquet must have columns ``id``, ``x``, ``y``. Rows are expected in corpus order; a map whose ids are
    the corpus ids in another order is put back in corpus order; any other difference is an error.
    """
    import pyarrow.parquet as pq

    path = Path(getattr(run_path, "path", run_path)) / MAPS_DIR / f"{name}.parquet"
    if not path.is_file():
        raise CorpusmapError(f"no map {name!r} in {path.parent}")
    names = pq.read_schema(path).names
    missing = [c for c in ("x", "y") + (("id",) if corpus_ids is not None else ()) if c not in names]
    if missing:
        raise CorpusmapError(f"map {path} lacks column(s) {', '.join(missing)} (needs id, x, y)")
    table = pq.read_table(path, columns=[c for c in ("id", "x", "y") if c in names])
    coords = np.column_stack([table.column("x").to_numpy(zero_copy_only=False),
                              table.column("y").to_numpy(zero_copy_only=False)]).astype(np.float64)
    if not np.isfinite(coords).all():
        raise CorpusmapError(f"map {name!r} has NaN or infinite coordinates; recompute it with `corpusmap map`")
    if corpus_ids is not None:
        ids = np.asarray(table.column("id").to_pylist(), dtype=object)
        if len(ids) != len(corpus_ids):
            raise CorpusmapError(f"map {name!r} has {len(ids):,} rows but the corpus has {len(corpus_ids):,}; "
                                 f"it was made from another corpus: recompute it with `corpusmap map`")
        if not np.array_equal(ids, corpus_ids):
            corpus_ids_s = corpus_ids.astype(str)
            ids_s = ids.astype(str)
            if len(set(corpus_ids_s)) == len(corpus_ids_s) and set(ids_s) == set(corpus_ids_s):
                position = {v: i for i, v in enumerate(ids_s)}
                coords = coords[[position[v] for v in corpus_ids_s]]
            else:
                bad = int(np.flatnonzero(ids_s != corpus_ids_s)[0])
                raise CorpusmapError(f"map {name!r} does not match the corpus: row {bad} has id {ids[bad]!r}, the "
                                     f"corpus {corpus_ids[bad]!r}; recompute it with `corpusmap map`")
    return coords


def stale_maps(run_path, names: Sequence[str]) -> list[str]:
    """The maps among ``names`` whose layout used a kNN graph other than the one now in ``RUN/knn`` (compared by
    the sha256 of ``indices.npy`` recorded in both); maps without a graph (PCA, user maps) are never stale."""
    from corpusmap.maps import read_map_metadata
    from corpusmap.neighbors import MANIFEST, knn_dir

    folder = Path(getattr(run_path, "path", run_path))
    manifest_path = knn_dir(folder) / MANIFEST
    current = read_json(manifest_path).get("indices_sha256") if manifest_path.is_file() else None
    stale = []
    for name in names:
        used = (read_map_metadata(folder / MAPS_DIR / f"{name}.parquet").get("knn") or {}).get("indices_sha256")
        if used and used != current:
            stale.append(name)
    return stale


def _column(run, name: Optional[str], flag: str):
    """A corpus column as a numpy object array, or ``None`` when ``name`` is None."""
    if name is None:
        return None
    columns = run.corpus_columns()
    if name not in columns:
        raise UsageProblem(f"{flag} {name!r}: no such column in {run.corpus_path}; columns: {', '.join(columns)}")
    return np.asarray(run.read_corpus([name]).column(name).to_pylist(), dtype=object)


def evaluate_run(run_path, maps: Optional[Sequence[str]] = None, k: int = 10, queries: int = 10_000,
                 label_col: Optional[str] = "label", year_col: Optional[str] = "year", seed: int = 42,
                 metric: str = "euclidean", pca: bool = True, require_labels: bool = False,
                 require_years: bool = False, write: bool = True) -> dict:
    """Compute the metrics for a run and write ``RUN/eval/metrics.json`` and ``metrics.md``.

    Parameters
    ----------
    maps
        Map names (``RUN/maps/NAME.parquet``) to evaluate; default: every map found. None found is fine.
    k, queries, seed
        Neighbours per point; size of each query sample (all eligible points if fewer); sampling seed.
    label_col, year_col
        Corpus columns for kNN accuracy and year RMSE (``None`` skips the metric). An empty label (year)
        column skips kNN accuracy (year RMSE) with a note, unless ``require_labels`` (``require_years``), when it
        is an error (the CLI sets them when the column is named explicitly).
    metric
        High-D distance (``euclidean`` as in the landscape paper, or ``cosine``); maps are always Euclidean.
    pca
        Add the PCA-2D baseline (exact PCA of the vectors; a stored map named ``pca`` is used instead if found).

    Returns
    -------
    dict
        ``spaces``: one entry per space (``high-D``, each map, the baseline) with ``knn_recall`` (``None`` in
        high-D, where it is 1 by definition), ``knn_accuracy`` and ``year_rmse`` dicts; plus the settings, the
        maps found and notes.
    """
    from corpusmap import metrics as M
    from corpusmap.store import open_run

    t0 = time.monotonic()
    run = open_run(run_path)
    if not run.has_vectors():
        raise CorpusmapError(f"no vectors in {run.path}; run `corpusmap embed INPUT -o {run.path}` first")
    vectors = run.vectors
    n, dim = (int(s) for s in vectors.shape)
    if run.n_rows != n:
        raise CorpusmapError(f"{run.path}: the corpus has {run.n_rows:,} rows but the vectors {n:,}; "
                             f"re-run `corpusmap embed`")
    if not 1 <= k < n:
        raise UsageProblem(f"k must be between 1 and n - 1 = {n - 1}, got {k}")
    if queries < 1:
        raise UsageProblem(f"--queries must be at least 1, got {queries}")

    notes: list[str] = []
    labels = _column(run, label_col, "--label-col")
    if labels is not None:
        codes, classes = M.label_codes(labels)
        n_lab = int((codes >= 0).sum())
        if n_lab <= k:
            msg = (f"label column {label_col!r} has {'no' if n_lab == 0 else f'only {n_lab}'} labelled rows"
                   + ("" if n_lab == 0 else f" (kNN accuracy needs more than k = {k})"))
            if require_labels:
                raise CorpusmapError(msg + "; choose another --label-col")
            notes.append(msg + "; kNN accuracy skipped")
            labels = None
    years = _column(run, year_col, "--year-col")
    if years is not None:
        y = M.year_values(years)
        n_dated = int(np.isfinite(y).sum())
        if n_dated <= k:
            msg = f"year column {year_col!r} has {'no' if n_dated == 0 else f'only {n_dated}'} years"
            if require_years:
                raise CorpusmapError(msg + "; choose another --year-col")
            notes.append(msg + "; year RMSE skipped")
            years = None

    found = find_maps(run)
    if maps:
        unknown = [m for m in maps if m not in found]
        if unknown:
            raise UsageProblem(f"no map named {', '.join(map(repr, unknown))} in {run.path / MAPS_DIR}; found: "
                               f"{', '.join(found) if found else 'none (run `corpusmap map RUN` first)'}")
        selected = list(dict.fromkeys(maps))
    else:
        selected = found
    info(f"evaluate: maps found in {run.path / MAPS_DIR}: {', '.join(found) if found else 'none'}")

    corpus_ids = np.asarray(run.read_corpus(["id"]).column("id").to_pylist(), dtype=object) \
        if "id" in run.corpus_columns() else None
    spaces_in: list[tuple[str, str, object]] = []
    for name in selected:  # read every map before the (slow) metrics, so a bad map fails fast
        spaces_in.append((name, "map", read_map(run, name, corpus_ids)))
    for name in stale_maps(run, selected):
        notes.append(f"map {name} was made from an earlier kNN graph than RUN/knn holds; "
                     f"`corpusmap map RUN --name {name}` with its method remakes it")
        info(f"evaluate: {notes[-1]}")
    rows_all = M.sample_queries(n, queries, seed)
    info(f"evaluate: exact high-D neighbours of {len(rows_all):,} queries ({dim} dims, {metric})")
    high_nb = M.exact_neighbors(vectors, rows_all, k, metric)
    if pca and PCA_NAME not in selected:
        from corpusmap.layouts import pca_2d

        info("evaluate: PCA-2D baseline")
        coords, _ = pca_2d(vectors)
        spaces_in.append(("PCA-2D baseline", "baseline", np.asarray(coords, dtype=np.float64)))

    def score(X, space_metric):
        out = {}
        if labels is not None:
            out["knn_accuracy"] = M.knn_accuracy(X, labels, k, queries, seed, space_metric).as_dict()
        if years is not None:
            out["year_rmse"] = M.year_rmse(X, years, k, queries, seed, space_metric).as_dict()
        return out

    spaces = []
    info("evaluate: high-D")
    spaces.append({"space": f"high-D ({dim} dims)", "kind": "vectors", "knn_recall": None,
                   **score(vectors, metric)})
    for name, kind, coords in spaces_in:
        info(f"evaluate: {name}")
        low_nb = M.exact_neighbors(coords, rows_all, k, "euclidean")
        spaces.append({"space": name, "kind": "baseline" if name == PCA_NAME else kind,
                       "knn_recall": M.recall_from_neighbors(high_nb, low_nb), **score(coords, "euclidean")})

    from corpusmap import __version__

    result = {
        "run": str(run.path), "n": n, "dim": dim, "k": int(k), "queries": int(queries), "seed": int(seed),
        "metric": metric, "label_col": label_col if labels is not None else None,
        "year_col": year_col if years is not None else None, "maps_found": found, "maps_evaluated": selected,
        "definitions": {
            "knn_recall": "fraction of each query's k exact high-D neighbours (self excluded) among its k "
                          "nearest neighbours in the map, averaged over the query sample",
            "knn_accuracy": "majority vote of the k nearest labelled neighbours (train = every other labelled "
                            "point; ties go to the class that sorts first); chance = frequency of the most "
                            "common class",
            "year_rmse": "RMSE of the mean year of the k nearest dated neighbours; chance = RMSE of "
                         "predicting the mean year",
        },
        "spaces": spaces, "notes": notes,
        "seconds": round(time.monotonic() - t0, 3), "corpusmap_version": __version__,
    }
    if write:
        write_results(run.path, result)
    return result


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _num(value) -> str:
    return "—" if value is None else f"{value:.2f}"


def format_table(result: dict) -> str:
    """The metrics as a Markdown table (one row per space)."""
    lines = ["| space | kNN recall | kNN accuracy | chance | year RMSE | chance RMSE |",
             "|---|---:|---:|---:|---:|---:|"]
    for s in result["spaces"]:
        acc, yr = s.get("knn_accuracy") or {}, s.get("year_rmse") or {}
        name = f"{s['space']} (baseline)" if s["kind"] == "baseline" and "baseline" not in s["space"] else s["space"]
        lines.append(f"| {name} | {_pct(s.get('knn_recall'))} | {_pct(acc.get('accuracy'))} | "
                     f"{_pct(acc.get('chance'))} | {_num(yr.get('rmse'))} | {_num(yr.get('chance'))} |")
    return "\n".join(lines)


def format_report(result: dict) -> str:
    """``metrics.md``: settings, the table, which maps were found, notes."""
    k = result["k"]
    acc = next((s["knn_accuracy"] for s in result["spaces"] if s.get("knn_accuracy")), None)
    yr = next((s["year_rmse"] for s in result["spaces"] if s.get("year_rmse")), None)
    out = [f"# Map quality: {result['run']}", "",
           f"{result['n']:,} points, {result['dim']} dims; k = {k}; up to {result['queries']:,} queries per metric "
           f"(seed {result['seed']}); high-D distance: {result['metric']}.", ""]
    if acc:
        out.append(f"kNN accuracy: label column `{result['label_col']}`, {acc['n_classes']} classes, "
                   f"{acc['n_test']:,} test points, {acc['n_train'] + 1:,} labelled points.")
    if yr:
        out.append(f"Year RMSE: year column `{result['year_col']}`, {yr['n_test']:,} test points, "
                   f"mean year {yr['mean_year']:.1f}.")
    out += ["", format_table(result), ""]
    if result["maps_found"]:
        out.append(f"Maps found in RUN/maps: {', '.join(result['maps_found'])}.")
    else:
        out.append("No maps found in RUN/maps (run `corpusmap map RUN`); high-D and the PCA baseline only.")
    out += ["", "kNN recall: fraction of each point's k exact high-D neighbours among its k nearest neighbours in "
                "2D (1 by definition in high-D). kNN accuracy: majority vote of the k nearest labelled "
                "neighbours; chance = frequency of the most common class. Year RMSE: mean year of the k nearest "
                "dated neighbours; chance = predicting the mean year."]
    for note in result["notes"]:
        out.append(f"\nNote: {note}.")
    return "\n".join(out) + "\n"


def write_results(run_path, result: dict) -> Path:
    """``RUN/eval/metrics.json`` and ``metrics.md``, each written atomically."""
    from corpusmap.atomic import atomic_path, write_json

    folder = Path(run_path) / EVAL_DIR
    write_json(folder / "metrics.json", result)
    with atomic_path(folder / "metrics.md") as tmp:
        tmp.write_text(format_report(result))
    return folder


__all__ = ["evaluate_run", "find_maps", "read_map", "format_table", "format_report", "write_results"]
