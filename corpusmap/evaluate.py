"""Evaluate a run: kNN recall, kNN accuracy and year RMSE in high-D, in each stored map and in a PCA-2D baseline.

The definitions are those of :mod:`corpusmap.metrics`. Every space uses the same seeded query samples, so rows of
the table are comparable. Results go to ``RUN/eval/metrics.json`` and a readable ``RUN/eval/metrics.md``, which
appear together once every number is computed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from corpusmap.errors import CorpusmapError, UsageProblem
from corpusmap.manifests import try_read_manifest
from corpusmap.maps import read_map
from corpusmap.progress import info, warn
from corpusmap.run import Run
from corpusmap.stage import Stage, check_numbers, items



@dataclass(frozen=True)
class EvaluateParams:
    """Which maps (default: every map of the run), k, the query sample, the label and year columns (``None``:
    ``label``/``year`` when they hold values, else skipped with a note; a named column must hold them)."""

    maps: tuple = ()
    k: int = 10
    queries: int = 10_000
    label_col: Optional[str] = None
    year_col: Optional[str] = None
    metric: str = "euclidean"
    pca: bool = True
    seed: int = 42
    clusters: tuple = ()  # clusterings whose agreement with the labels is measured (default: every one)

    def __post_init__(self):
        check_numbers(self)
        object.__setattr__(self, "maps", tuple(dict.fromkeys(items(self.maps))))
        object.__setattr__(self, "clusters", tuple(dict.fromkeys(items(self.clusters))))
        if self.k < 1:
            raise UsageProblem(f"-k must be at least 1, got {self.k}")
        if self.queries < 1:
            raise UsageProblem(f"--queries must be at least 1, got {self.queries}")
        if self.metric not in ("euclidean", "cosine"):
            raise UsageProblem(f"--metric must be euclidean or cosine, not {self.metric!r}")


class EvaluateStage(Stage):
    """``corpusmap evaluate``: ``RUN/eval`` (metrics.json, metrics.md, manifest.json)."""

    name = "evaluate"
    what = "an evaluation"
    packages = ("faiss-cpu", "scikit-learn")
    definitions = 2  # 2: stratified kNN-accuracy chance, training pool without test points, year chance of k papers
    unset = {"maps": "every map", "clusters": "every clustering"}

    def __init__(self, threads: Optional[int] = None):
        self.threads = threads  # where it is computed, not what: the metrics do not depend on it

    def key(self, params) -> str:
        return "eval"

    def needs(self, params: EvaluateParams) -> set:
        return {"embeddings"} | {f"maps/{m}" for m in params.maps} | {f"clusters/{c}" for c in params.clusters}

    def stored(self, run: Run, params) -> Optional[dict]:
        return try_read_manifest(run.eval_manifest_path)

    def check_files(self, run: Run, params, manifest: dict) -> Optional[str]:
        from corpusmap.neighbors import missing_files

        return missing_files(run, run.eval_dir, manifest)

    def selected(self, run: Run, params: EvaluateParams) -> list[str]:
        found = run.list_maps()
        unknown = [m for m in params.maps if m not in found]
        if unknown:
            raise CorpusmapError(f"--map {', '.join(unknown)}: no such map in {run.maps_dir}; found: "
                                 f"{', '.join(found) if found else f'none (run `corpusmap map {run.path}` first)'}")
        return list(params.maps) or found

    def clusterings(self, run: Run, params: EvaluateParams) -> list[str]:
        found = run.list_clusterings()
        unknown = [c for c in params.clusters if c not in found]
        if unknown:
            none = f"none (run `corpusmap clusters {run.path}`)"
            raise CorpusmapError(f"--clusters {', '.join(unknown)}: no such clustering in {run.clusters_dir}; "
                                 f"found: {', '.join(found) if found else none}")
        return list(params.clusters) or found

    def prepare(self, run: Run, params: EvaluateParams) -> None:
        run.need_corpus()
        n = len(run.vectors)
        if not 1 <= params.k < n:
            raise UsageProblem(f"-k must be between 1 and n - 1 = {n - 1}, got {params.k}")
        for col, flag in ((params.label_col, "--label-col"), (params.year_col, "--year-col")):
            if col is not None:
                run.corpus_column(col, flag)
        self.selected(run, params)
        self.clusterings(run, params)

    def will_read(self, run: Run, params: EvaluateParams, planned: set) -> set:
        """Also every map and clustering the run will hold, where none are named."""
        every = {k for k in planned if (k.startswith("maps/") and not params.maps)
                 or (k.startswith("clusters/") and not params.clusters)}
        return super().will_read(run, params, planned) | every

    def inputs(self, run: Run, params: EvaluateParams) -> dict:
        from corpusmap.clusters import clustering_fingerprint
        from corpusmap.maps import map_fingerprint
        from corpusmap.neighbors import vectors_fingerprint

        out = {"corpus": run.corpus_fingerprint, "embeddings": vectors_fingerprint(run)}
        for name in self.selected(run, params):
            out[f"maps/{name}"] = map_fingerprint(run, name)
        for name in self.clusterings(run, params):
            out[f"clusters/{name}"] = clustering_fingerprint(run, name)
        return out

    def compute(self, run: Run, params: EvaluateParams, staging: Path, block: dict) -> dict:
        from corpusmap.atomic import atomic_path, write_json
        from corpusmap.manifests import canonical_hash, file_record

        from corpusmap.knn import faiss_threads

        with faiss_threads(self.threads):
            result = evaluate_run(run, params, self.selected(run, params), self.clusterings(run, params))
        json_name, md_name = Run.EVAL_FILES
        write_json(staging / json_name, result)
        with atomic_path(staging / md_name) as tmp:
            tmp.write_text(format_report(result))
        files = {name: file_record(staging / name) for name in Run.EVAL_FILES}
        # the numbers, not the files (they hold the time taken and the run's path as given): the same evaluation
        # again, or of the run moved, keeps what was made from it
        numbers = {key: value for key, value in result.items() if key not in ("seconds", "run")}
        manifest = {"files": files, "stage": dict(block, fingerprint=canonical_hash(numbers))}
        write_json(staging / Run.MANIFEST, manifest)
        return dict(manifest, result=result)

    def commit(self, run: Run, params, staging: Path) -> None:
        run.commit_folder(staging, run.eval_dir)


def read_results(run: Run) -> dict:
    """``RUN/eval/metrics.json``."""
    from corpusmap.manifests import read_manifest

    return read_manifest(run.eval_dir / Run.EVAL_FILES[0], f"recompute it with `corpusmap evaluate {run.path}`")


def _note(notes: list, message: str) -> None:
    """A note of the report that the user should also see now."""
    notes.append(message)
    warn(message)


def _note_graph_metric(run: Run, notes: list, metric: str, rows: np.ndarray) -> None:
    """Note a graph built with the other distance: on vectors that are not of unit length, the high-D neighbours
    that kNN recall counts are then not those the maps were made from."""
    from corpusmap.vectors import take_float32

    graph = (try_read_manifest(run.knn_manifest_path) or {}).get("metric")
    if graph in (None, metric):
        return
    norms = np.linalg.norm(take_float32(run.vectors, rows[:1000]), axis=1)
    if np.allclose(norms, 1, atol=1e-3):  # unit vectors: both distances rank neighbours alike
        return
    _note(notes, f"the kNN graph (and so the maps) used {graph} distance, but the high-D neighbours here are "
                 f"{metric} (the landscape paper's is euclidean); --metric {graph} measures the maps against the "
                 "neighbours they were made from")


def _column(run: Run, name: str, flag: str, required: bool) -> Optional[np.ndarray]:
    """A corpus column as a numpy object array; ``None`` for a default column the corpus lacks."""
    if not required and name not in run.corpus_columns():
        return None
    return np.asarray(run.corpus_column(name, flag).to_pylist(), dtype=object)


def cluster_agreement(levels: Sequence[np.ndarray], labels, seed: int = 42) -> list[dict]:
    """NMI and ARI (scikit-learn) of each level with the labels, on the labelled points inside a cluster, and the
    same for random clusters of the same sizes (the level's assignment permuted with ``seed``, the same permutation
    for every level, so that equal partitions get equal baselines)."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    from corpusmap.metrics import label_codes

    codes, _ = label_codes(labels)
    out = []
    for level, clusters in enumerate(levels):
        use = (codes >= 0) & (clusters >= 0)
        truth, found = codes[use], clusters[use]
        shuffled = np.random.default_rng(seed).permutation(found)
        out.append({"level": level, "clusters": int(len(np.unique(found))), "points": int(use.sum()),
                    "nmi": float(normalized_mutual_info_score(truth, found)),
                    "ari": float(adjusted_rand_score(truth, found)),
                    "random_nmi": float(normalized_mutual_info_score(truth, shuffled)),
                    "random_ari": float(adjusted_rand_score(truth, shuffled))})
    return out


def evaluate_run(run: Run, params: EvaluateParams, selected: Sequence[str], clusterings: Sequence[str] = ()) -> dict:
    """The metrics of the vectors, of each map in ``selected`` and of the PCA-2D baseline (an exact PCA of the
    vectors, unless a stored map named ``pca`` is evaluated anyway), as the dict stored in ``metrics.json``.

    ``spaces`` holds one entry per space with ``knn_recall`` (``None`` in high-D, where it is 1 by definition),
    ``knn_accuracy`` and ``year_rmse`` dicts; beside it the settings, the maps found and notes.
    """
    from corpusmap import metrics as M

    t0 = time.monotonic()
    vectors = run.vectors
    n, dim = (int(s) for s in vectors.shape)
    k, queries, seed, metric = params.k, params.queries, params.seed, params.metric
    label_col, year_col = params.label_col or "label", params.year_col or "year"
    require_labels, require_years = params.label_col is not None, params.year_col is not None
    notes: list[str] = []
    labels = _column(run, label_col, "--label-col", require_labels)
    if labels is not None:
        codes, classes = M.label_codes(labels)
        n_lab = int((codes >= 0).sum())
        if n_lab <= 2 * k:
            msg = (f"label column {label_col!r} has {'no' if n_lab == 0 else f'only {n_lab}'} labelled rows"
                   + ("" if n_lab == 0 else f" (kNN accuracy needs more than 2k = {2 * k}: test and training)"))
            if require_labels:
                raise UsageProblem(msg + "; choose another --label-col")
            notes.append(msg + "; kNN accuracy skipped")
            labels = None
        elif len(classes) > n_lab / 2:
            _note(notes, f"label column {label_col!r} has {len(classes):,} classes for {n_lab:,} labelled rows: with "
                         "labels of about one paper each, kNN accuracy is near 0 whatever the map (choose a column "
                         "of topics with --label-col)")
    years = _column(run, year_col, "--year-col", require_years)
    if years is not None:
        y = M.year_values(years)
        n_dated = int(np.isfinite(y).sum())
        distinct = np.unique(y[np.isfinite(y)])
        if n_dated <= 2 * k or distinct.size == 1:
            msg = f"year column {year_col!r} has {'no' if n_dated == 0 else f'only {n_dated}'} years" \
                if n_dated <= 2 * k else f"year column {year_col!r} holds one year only ({int(distinct[0])})"
            if require_years:
                raise UsageProblem(msg + "; choose another --year-col")
            notes.append(msg + "; year RMSE skipped")
            years = None
        elif n_dated < len(years) / 2:  # (the values are counted only then: a loop over every row)
            present = sum(v is not None and str(v).strip() != "" for v in years)
            if n_dated < present / 2:
                _note(notes, f"year column {year_col!r}: only {n_dated:,} of its {present:,} values read as years "
                             "(is it a column of years? choose one with --year-col); year RMSE is of those rows")

    found = run.list_maps()  # (the report names them)
    spaces_in: list[tuple[str, str, object]] = []
    for name in selected:  # read every map before the (slow) metrics, so a bad map fails fast
        data = read_map(run, name)  # a PCA map (whatever its name) is the baseline
        spaces_in.append((name, "baseline" if data.manifest.get("method") == "pca" else "map", data.coords))
    rows_all = M.sample_queries(n, queries, seed)
    _note_graph_metric(run, notes, metric, rows_all)
    info(f"evaluate: exact high-D neighbours of {len(rows_all):,} queries ({dim} dims, {metric})")
    high_nb = M.exact_neighbors(vectors, rows_all, k, metric)
    if params.pca and not any(kind == "baseline" for _, kind, _ in spaces_in):
        from corpusmap.layouts import pca_2d

        info("evaluate: PCA-2D baseline: exact PCA of the vectors")
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
        spaces.append({"space": name, "kind": kind,
                       "knn_recall": M.recall_from_neighbors(high_nb, low_nb), **score(coords, "euclidean")})

    agreement = []
    if labels is not None:
        from corpusmap.clusters import read_clustering

        for name in clusterings:
            for row in cluster_agreement(read_clustering(run, name).levels, labels, seed):
                agreement.append({"clustering": name, **row})
    elif clusterings:
        notes.append("no labels, so the clusters' agreement with them (NMI, ARI) is not measured")

    from corpusmap import __version__

    result = {
        "run": str(run.path), "n": n, "dim": dim, "k": int(k), "queries": len(rows_all), "seed": int(seed),
        "metric": metric, "label_col": label_col if labels is not None else None,
        "year_col": year_col if years is not None else None, "maps_found": found, "maps_evaluated": selected,
        "definitions": {
            "knn_recall": "fraction of each query's k exact high-D neighbours (self excluded) among its k "
                          "nearest neighbours in the map, averaged over the query sample",
            "knn_accuracy": "majority vote of the k nearest labelled training points (test: a seeded sample of "
                            "at most half the labelled points; training: every other labelled point; ties go to "
                            "the class that sorts first); chance = expected accuracy of stratified guessing, "
                            "sum_c p_train(c) p_test(c) (the landscape paper's); chance_majority = accuracy "
                            "of always predicting the most common training class (its share of the test points)",
            "year_rmse": "RMSE of the mean year of the k nearest dated training points; chance = RMSE of the "
                         "mean year of k random training papers (the landscape paper's); chance_mean = RMSE of "
                         "the mean year",
        },
        "spaces": spaces, "clusters": agreement, "notes": notes,
        "seconds": round(time.monotonic() - t0, 3), "corpusmap_version": __version__,
    }
    return result


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _num(value) -> str:
    return "—" if value is None else f"{value:.2f}"


def format_table(result: dict) -> str:
    """The metrics as a Markdown table (one row per space)."""
    lines = ["| space | kNN recall | kNN accuracy | chance (stratified) | majority class | year RMSE | "
             "chance RMSE (k random) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for s in result["spaces"]:
        acc, yr = s.get("knn_accuracy") or {}, s.get("year_rmse") or {}
        name = f"{s['space']} (baseline)" if s["kind"] == "baseline" and "baseline" not in s["space"] else s["space"]
        lines.append(f"| {name} | {_pct(s.get('knn_recall'))} | {_pct(acc.get('accuracy'))} | "
                     f"{_pct(acc.get('chance'))} | {_pct(acc.get('chance_majority'))} | {_num(yr.get('rmse'))} | "
                     f"{_num(yr.get('chance'))} |")
    return "\n".join(lines)


def format_cluster_table(result: dict) -> str:
    """NMI and ARI of each clustering level with the labels, beside random clusters of the same sizes; points:
    the labelled points inside a cluster that they are computed on (fewer where a clustering leaves noise)."""
    lines = ["| clustering | level | clusters | points | NMI | random NMI | ARI | random ARI |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in result.get("clusters", []):
        lines.append(f"| {row['clustering']} | {row['level']} | {row['clusters']:,} | {row['points']:,} | "
                     f"{row['nmi']:.3f} | "
                     f"{row['random_nmi']:.3f} | {row['ari']:.3f} | {row['random_ari']:.3f} |")
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
                   f"{acc['n_test']:,} test points, a training pool of the other {acc['n_train']:,} labelled "
                   "points.")
    if yr:
        out.append(f"Year RMSE: year column `{result['year_col']}`, {yr['n_test']:,} test points, "
                   f"mean year {yr['mean_year']:.1f}.")
    out += ["", format_table(result), ""]
    if result.get("clusters"):
        out += ["Agreement of the clusters with the labels (labelled points in a cluster; random: the same "
                "cluster sizes, shuffled):", "", format_cluster_table(result), ""]
    if result["maps_found"]:
        out.append(f"Maps found in maps/: {', '.join(result['maps_found'])}.")
    else:
        out.append("No maps found in maps/ (make one with `corpusmap map`); high-D and the PCA baseline only.")
    out += ["", "kNN recall: fraction of each point's k exact high-D neighbours among its k nearest neighbours in "
                "2D (1 by definition in high-D). kNN accuracy: majority vote of the k nearest labelled training "
                "points (the test points are not in the training pool); chance (stratified) = expected accuracy of "
                "guessing by the class frequencies, as in the landscape paper; majority class = always predicting "
                "the most common class. Year RMSE: mean year of the k nearest dated training points; chance = the "
                "mean year of k random papers, as in the paper.",
            "",
            "Year RMSE is not comparable with Table 1 of the landscape paper: its code indexes the years of the "
            "neighbours by their positions in the training subset (so a neighbour's year is another paper's) and "
            "compares the mean of neighbours 2–11 with the (mis-indexed) nearest neighbour's year instead of the "
            "paper's own year, which measures the spread of years near a point, not a prediction error."]
    for note in result["notes"]:
        out.append(f"\nNote: {note}.")
    return "\n".join(out) + "\n"


__all__ = ["EvaluateParams", "EvaluateStage", "evaluate_run", "cluster_agreement", "read_results", "format_table",
           "format_cluster_table", "format_report"]
