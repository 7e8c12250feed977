"""The export stage: a map as one parquet for other tools, written in row groups (texts are never all in memory).

``--format atlas`` is what Apple's embedding-atlas opens as is: ``embedding-atlas FILE --text text --x x --y y
--neighbors neighbors``. Columns: ``id, x, y, text`` (title and abstract), ``title, year, label``, one
``cluster_<level>`` name column per level of the clustering (``--clusters NAME``; default: the run's only one or
``leiden``; ``none`` for none), and ``neighbors``, the stored high-D kNN rows as
``{"ids": [...], "distances": [...]}`` (zero-based row numbers), the format embedding-atlas reads; then every
other column of the corpus (doi, journal, ...; one named like a column above is left out).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from corpusmap.atomic import sha256_file
from corpusmap.clusters import chosen_clustering, named_clustering
from corpusmap.errors import UsageProblem
from corpusmap.run import Run, check_name
from corpusmap.stage import Stage

FORMATS = ("atlas",)
ROW_GROUP = 65_536


@dataclass(frozen=True)
class ExportParams:
    map: str = "tsne"
    format: str = "atlas"
    output: Optional[str] = None  # default RUN/exports/MAP.atlas.parquet
    clusters: Optional[str] = None  # the clustering whose names are columns (None: the default; "none": none)

    def __post_init__(self):
        check_name(self.map, "--map")
        if self.format not in FORMATS:
            raise UsageProblem(f"--format must be one of {', '.join(FORMATS)}, not {self.format!r}")
        if self.output is not None and Path(self.output).suffix.lower() != ".parquet":
            raise UsageProblem(f"-o {self.output}: the export must end in .parquet")

    def out_path(self, run: Run) -> Path:
        return Path(self.output) if self.output else run.exports_dir / f"{self.map}.{self.format}.parquet"


class ExportStage(Stage):
    """``corpusmap export``."""

    name = "export"
    what = "an export"
    redrawn = True

    def key(self, params: ExportParams) -> str:
        return f"renders/{params.map}"

    def needs(self, params: ExportParams) -> set:
        return {f"maps/{params.map}", "knn"} | named_clustering(params.clusters)

    def where(self, run: Run, params: ExportParams) -> Path:
        return params.out_path(run)

    def stored(self, run: Run, params: ExportParams) -> Optional[dict]:
        block = run.render_block(params.map, params.out_path(run))
        return {"stage": block} if block is not None else None

    def check_files(self, run: Run, params: ExportParams, manifest: dict) -> Optional[str]:
        return run.render_problem(params.out_path(run), manifest["stage"])

    def prepare(self, run: Run, params: ExportParams) -> None:
        from corpusmap.maps import read_map
        from corpusmap.neighbors import load_knn_graph

        run.refuse_own_file(params.out_path(run), params.output)
        run.need_corpus()
        read_map(run, params.map)
        load_knn_graph(run)
        chosen_clustering(run, params.clusters)

    def will_read(self, run: Run, params: ExportParams, planned: set) -> set:
        """Also the clustering named (or the default) as the run will hold it."""
        from corpusmap.clusters import planned_clustering

        return super().will_read(run, params, planned) | planned_clustering(planned, params.clusters)

    def inputs(self, run: Run, params: ExportParams) -> dict:
        from corpusmap.maps import map_fingerprint
        from corpusmap.neighbors import graph_fingerprint

        out = {"corpus": run.corpus_fingerprint, f"maps/{params.map}": map_fingerprint(run, params.map),
               "knn": graph_fingerprint(run)}
        clustering = chosen_clustering(run, params.clusters)
        if clustering is not None:
            out[f"clusters/{clustering.name}"] = clustering.manifest["stage"]["fingerprint"]
        return out

    def compute(self, run: Run, params: ExportParams, staging: Path, block: dict) -> dict:
        from corpusmap.atomic import write_json

        staged = staging / params.out_path(run).name
        rows = write_atlas(run, params.map, staged, chosen_clustering(run, params.clusters))
        block.update(output=run.relative(params.out_path(run)), bytes=staged.stat().st_size,
                     sha256=sha256_file(staged), rows=rows,
                     fingerprint=f"{run.relative(params.out_path(run))}@{block['created']}")
        write_json(staging / "receipt.json", block)
        return {"stage": block}

    def commit(self, run: Run, params: ExportParams, staging: Path) -> None:
        from corpusmap.atomic import read_json
        from corpusmap.run import writing

        out = params.out_path(run)
        with writing(out):
            out.parent.mkdir(parents=True, exist_ok=True)
            (staging / out.name).replace(out)
        run.record_render(params.map, out, read_json(staging / "receipt.json"))


def write_atlas(run: Run, map_name: str, out: Path, clustering=None) -> int:
    """The embedding-atlas parquet of one map (see the module docstring), with the region names of
    ``clustering`` (a :class:`corpusmap.clusters.Clustering`, or None); returns its row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from corpusmap.maps import read_map
    from corpusmap.neighbors import load_knn_graph

    coords = read_map(run, map_name).coords.astype(np.float32)
    graph = load_knn_graph(run)
    level_names = [np.array([None] + clustering.names(i), dtype=object) for i in range(len(clustering.levels))] \
        if clustering else []
    columns = run.corpus_columns()
    titled = run.texts_begin_with_titles
    writer, offset = None, 0
    try:
        for batch in run.iter_corpus_batches(columns, ROW_GROUP):
            n = batch.num_rows
            part = {c: batch.column(c) for c in columns}
            title = part.get("title")
            text = [f"{t}\n\n{a}" if t else a for t, a in zip(title.to_pylist(), part["text"].to_pylist())] \
                if title is not None and not titled else part["text"]
            table = {"id": part.get("id", pa.array(np.arange(offset, offset + n))),
                     "x": coords[offset:offset + n, 0], "y": coords[offset:offset + n, 1], "text": text}
            table.update({c: part[c] for c in ("title", "year", "label") if c in part})
            for level, level_name in enumerate(level_names):
                table[f"cluster_{level}"] = level_name[clustering.levels[level][offset:offset + n] + 1]
            ids = np.asarray(graph.indices[offset:offset + n])
            dist = np.asarray(graph.distances[offset:offset + n])
            table["neighbors"] = pa.StructArray.from_arrays(
                [pa.array(list(ids)), pa.array(list(dist))], names=["ids", "distances"])
            table.update({c: part[c] for c in columns if c not in table and c != "text"})  # doi, journal, ...
            arrow = pa.table(table)
            if writer is None:
                writer = pq.ParquetWriter(out, arrow.schema, compression="zstd")
            writer.write_table(arrow)
            offset += n
    finally:
        if writer is not None:
            writer.close()
    return offset
