"""The view stage: the interactive page of a stored map (``RUN/maps/<map>.html``), built from what the run holds:
the map, the corpus texts (streamed), the high-D kNN graph (the honest neighbours), the regions and their names,
the evaluation and the excess words. Recorded in ``RUN/maps/<map>.renders.json`` like a figure."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from corpusmap.atomic import sha256_file
from corpusmap.errors import CorpusmapError, UsageProblem
from corpusmap.manifests import try_read_manifest
from corpusmap.progress import info
from corpusmap.run import Run, check_name
from corpusmap.stage import Stage, check_numbers


@dataclass(frozen=True)
class ViewParams:
    """The page of map ``map``: ``label_col`` is the category shown and coloured as the label; ``clusters`` the
    clustering whose regions are named (default: the run's only one or ``leiden``; ``none`` for none)."""

    map: str = "tsne"
    output: Optional[str] = None  # default RUN/maps/MAP.html
    label_col: str = "label"
    clusters: Optional[str] = None
    title: Optional[str] = None
    search: bool = True
    max_points: int = 2_000_000
    inline_max_points: int = 20_000

    def __post_init__(self):
        check_numbers(self)
        check_name(self.map, "--map")
        if self.output is not None and Path(self.output).suffix.lower() != ".html":
            raise UsageProblem(f"-o {self.output}: the page must end in .html")
        if self.max_points < 1 or self.inline_max_points < 0:
            raise UsageProblem("--max-points must be at least 1")

    def out_path(self, run: Run) -> Path:
        return Path(self.output) if self.output is not None else run.default_render_path(self.map, "html")


class ViewStage(Stage):
    """``corpusmap view``: the offline page of one map."""

    name = "view"
    what = "a page"
    redrawn = True  # like a figure: written again whenever its parameters change
    drawn_by = ("corpusmap.view",)

    def key(self, params: ViewParams) -> str:
        return f"renders/{params.map}"

    def needs(self, params: ViewParams) -> set:
        from corpusmap.clusters import named_clustering

        return {f"maps/{params.map}"} | named_clustering(params.clusters)

    def where(self, run: Run, params: ViewParams) -> Path:
        return params.out_path(run)

    def stored(self, run: Run, params: ViewParams) -> Optional[dict]:
        block = run.render_block(params.map, params.out_path(run))
        return {"stage": block} if block is not None else None

    def check_files(self, run: Run, params: ViewParams, manifest: dict) -> Optional[str]:
        """The page and its data folder (``NAME_files/<version>/``, for pages of more than
        ``inline_max_points``), each as it was written."""
        from corpusmap.view.output import folder_listing

        block = manifest["stage"]
        problem = run.render_problem(params.out_path(run), block)
        folder = block.get("folder")
        if problem or not folder:
            return problem
        path = run.resolve(folder["path"])
        if not path.is_dir():
            return f"{path} (the page's data) is missing"
        if folder_listing(path) != {k: folder.get(k) for k in ("files", "bytes", "digest")}:
            return f"{path} (the page's data) was changed since it was written"
        return None

    def prepare(self, run: Run, params: ViewParams) -> None:
        from corpusmap.maps import read_map

        run.refuse_own_file(params.out_path(run), params.output, params.map)
        run.need_corpus()
        read_map(run, params.map)  # present, and made from this corpus
        run.corpus_column(params.label_col, "--label-col")
        self._clustering(run, params)

    def _clustering(self, run: Run, params: ViewParams):
        from corpusmap.clusters import chosen_clustering

        return chosen_clustering(run, params.clusters)

    def will_read(self, run: Run, params: ViewParams, planned: set) -> set:
        """Also the graph, the evaluation and the excess report when the run will hold them, and the clustering
        named (or the default: the only one, else leiden)."""
        from corpusmap.clusters import planned_clustering

        present = ({"knn", "eval", "excess"} & planned) | planned_clustering(planned, params.clusters)
        return super().will_read(run, params, planned) | present

    def inputs(self, run: Run, params: ViewParams) -> dict:
        from corpusmap.maps import map_fingerprint
        from corpusmap.neighbors import graph_fingerprint, has_knn_graph

        out = {"corpus": run.corpus_fingerprint, f"maps/{params.map}": map_fingerprint(run, params.map)}
        if has_knn_graph(run):
            out["knn"] = graph_fingerprint(run)
        clustering = self._clustering(run, params)
        if clustering is not None:
            out[f"clusters/{clustering.name}"] = clustering.manifest["stage"]["fingerprint"]
        outputs = run.outputs_by_key()
        for key in ("eval", "excess"):
            if key in outputs and outputs[key].fingerprint:
                out[key] = outputs[key].fingerprint
        return out

    def compute(self, run: Run, params: ViewParams, staging: Path, block: dict) -> dict:
        from corpusmap.view import write_page

        out = params.out_path(run)
        data = page_data(run, params, self._clustering(run, params))
        result = write_page(out, data, title=params.title or f"{run.path.name} · {params.map}",
                            max_points=params.max_points, inline_max_points=params.inline_max_points,
                            search=params.search, label_title=run.source_column(params.label_col), log=info)
        from corpusmap.view.output import folder_listing

        folder = result.folder and {"path": run.relative(result.folder), **folder_listing(result.folder)}
        block.update(output=run.relative(out), bytes=out.stat().st_size, sha256=sha256_file(out), folder=folder,
                     points=result.n_points,
                     total_points=result.n_total, sampled=result.sampled, search=result.search, files=result.files,
                     bytes_per_point={k: round(v, 2) for k, v in result.bytes_per_point().items()},
                     fingerprint=f"{run.relative(out)}@{block['created']}")
        from corpusmap.atomic import write_json

        write_json(staging / "receipt.json", block)
        return {"stage": block}

    def commit(self, run: Run, params: ViewParams, staging: Path) -> None:
        from corpusmap.atomic import read_json

        run.record_render(params.map, params.out_path(run), read_json(staging / "receipt.json"))


def page_data(run: Run, params: ViewParams, clustering):
    """The :class:`corpusmap.view.PageData` of a run's map."""
    from corpusmap.maps import read_map, reference_coords
    from corpusmap.neighbors import has_knn_graph, load_knn_graph
    from corpusmap.values import year_array
    from corpusmap.view import ClusterLevel, PageData

    stored = read_map(run, params.map)
    reference = stored.manifest.get("reference") or {}
    columns = run.corpus_columns()
    corpus = run.read_corpus([c for c in ("id", "title", "year") if c in columns] + [params.label_col])
    neighbors = np.asarray(load_knn_graph(run).indices) if has_knn_graph(run) else None
    levels = []
    if clustering is not None:
        for level, labels in enumerate(clustering.levels):
            levels.append(ClusterLevel(f"{clustering.name} level {level}", labels.astype(np.int32),
                                       clustering.names(level)))

    texts = ["text"] + (["doi"] if "doi" in columns else [])  # (a DOI column besides the ids: PubMed XML)

    def read_rows(start: int, stop: int) -> dict:
        rows = run.read_corpus_rows(start, stop, texts)
        return {"abstract": rows.column("text").to_pylist(), **{c: rows.column(c).to_pylist() for c in texts[1:]}}

    labels = corpus.column(params.label_col).to_pylist()
    return PageData(
        x=stored.coords[:, 0].astype(np.float32), y=stored.coords[:, 1].astype(np.float32),
        ids=[str(i) for i in corpus.column("id").to_pylist()] if "id" in columns else None,
        titles=corpus.column("title").to_pylist() if "title" in columns else None, abstracts=read_rows,
        years=year_array(corpus.column("year")) if "year" in columns else None,
        labels=[None if v is None else str(v) for v in labels], neighbors=neighbors, clusters=levels,
        info=_info(run, params, stored), excess=_excess_words(run), pmids=ids_are_pmids(run),
        background=reference_coords(stored),
        background_name=f"reference map ({Path(reference.get('run', '')).name} · {reference.get('map')})")


PMID_COLUMNS = ("pmid", "pubmed_id", "pubmedid")


def ids_are_pmids(run: Run) -> bool:
    """Whether every id of the corpus came from a PMID column (PubMed XML, or a column named so): only then is a
    bare number linked to PubMed (otherwise it may be a row number, or another scheme's)."""
    stats = run.corpus_manifest.get("stats") or {}
    sources = stats.get("id_columns", [(stats.get("columns") or {}).get("id")])
    return bool(sources) and all(isinstance(c, str) and c.lower() in PMID_COLUMNS for c in sources)


def _info(run: Run, params: ViewParams, stored) -> dict:
    from corpusmap.evaluate import read_results

    manifest = stored.manifest
    info_ = {"run": run.path.resolve().name, "method": manifest.get("method"), "points": f"{len(stored.coords):,}",
             "parameters": manifest.get("parameters") or {}}
    encoder = (try_read_manifest(run.embeddings_manifest_path) or {}).get("model")
    if encoder:
        info_["encoder"] = str(encoder)
    if run.eval_dir.is_dir():
        try:
            result = read_results(run)
        except CorpusmapError:
            return info_
        spaces = [s for s in result.get("spaces", []) if s["space"] == params.map or s["kind"] == "vectors"]
        if spaces:
            info_["evaluation"] = {"spaces": spaces, "k": result.get("k")}
            if not any(s["space"] == params.map for s in spaces):  # (a map made after the evaluation)
                info_["evaluation"]["this map"] = f"not evaluated yet: run `corpusmap evaluate {run.path}`"
            accuracy = next((s["knn_accuracy"] for s in spaces if s.get("knn_accuracy")), None)
            if accuracy and result.get("label_col"):
                column, source = result["label_col"], run.source_column(result["label_col"])
                info_["evaluation"]["kNN accuracy of"] = (
                    f"column {column}" + (f" ({source})" if source != column else "") +
                    f", {accuracy['n_classes']} classes, {accuracy['n_test']:,} test points")
            if result.get("notes"):  # (what it skipped, what its numbers mean: as the report says them)
                info_["evaluation"]["notes"] = [str(note) for note in result["notes"]]
    return info_


def _excess_words(run: Run) -> Optional[dict]:
    """Per target period, the top excess words of ``RUN/excess`` (the quick picks of the word overlay)."""
    import pandas as pd

    path = run.excess_dir / "excess_words.parquet"
    manifest = try_read_manifest(run.excess_dir / Run.MANIFEST)
    if manifest is None or not path.is_file():
        return None
    table = pd.read_parquet(path, columns=["target", "word", "delta"])
    counts = manifest.get("counts") or {}
    kept = offered_targets([str(t) for t in table["target"].unique()],
                           dict(zip(map(str, counts.get("periods", [])), counts.get("totals", []))))
    return {str(t): group.sort_values("delta", ascending=False)["word"].head(20).tolist()
            for t, group in table.groupby("target") if str(t) in kept}


def offered_targets(targets: list[str], totals: dict, share: float = 0.05) -> list[str]:
    """The targets whose excess words the page offers: those with at least ``share`` of the largest target's
    abstracts, so that a corpus's stray early years (ACL's 1977: a handful of papers, every word "excess") do not
    stand beside its real periods. Targets of unknown size are kept."""
    sizes = {t: totals.get(t) for t in targets}
    largest = max((n for n in sizes.values() if n is not None), default=0)
    return [t for t, n in sizes.items() if n is None or n >= share * largest]
