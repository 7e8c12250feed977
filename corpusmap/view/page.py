"""``write_page``: an offline interactive map page (HTML + lazily loaded data scripts) from plain arrays.

Tiers by size (all thresholds are options):

* up to ``inline_max_points`` points: one self-contained ``.html`` file;
* above: ``NAME.html`` + ``NAME_files/<version>/`` with the coordinates and colour codes (loaded at once), texts
  and neighbours in chunks by row range, and the search index in buckets by token hash (loaded on demand);
* above ``max_points``: a uniform random sample of ``max_points`` points is drawn over a density image of
  all points; above ``search_max_points`` drawn points the search index is left out.

Data format (``corpusmap-view/1``): the HTML holds the app, its style and a JSON manifest (counts, chunk sizes,
label names, cluster names with their medoids, years, info rows). Every other payload is a data script
``corpusmapPut(KEY, {...})``: inline in a single-file page, else the file ``NAME_files/<version>/KEY.js``.
Numeric columns are ``{"dtype", "b64"}`` little-endian typed arrays. Keys:

* ``points``: x, y (float32, scaled into [-1, 1]), year (float32, NaN unknown), label and cluster codes
  (uint16/uint32, code == number of names means none); loaded when the page opens (24 B/point with a year, a
  label and two cluster levels);
* ``titles/I``: titles of rows ``I*title_rows ..`` (hover);
* ``texts/I``: abstracts, ids and the neighbour rows (int32, ``k`` per row) of rows ``I*text_rows ..`` (click);
* ``index/B``: the tokens whose CRC-32 modulo ``buckets`` is B, with document counts and posting lists
  (:mod:`corpusmap.view.search_index`), loaded by a search or a word overlay that needs them;
* ``density``: a PNG of all points (sampled pages only);
* ``background``: a grey PNG of the points of ``PageData.background`` (a reference map), drawn underneath.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from corpusmap.view.chunks import TextChunks, TitleChunks, iter_blocks
from corpusmap.view.data import PageData
from corpusmap.view.density import BACKGROUND_RGB, density_payload, dot_radius
from corpusmap.view.encoding import typed_array
from corpusmap.view.info import info_sections
from corpusmap.view.output import PageOutput
from corpusmap.view.points import (COLOURED_LABELS, cluster_columns, label_column, normalise, point_style, sample_rows,
                                    scaled, take, year_column)
from corpusmap.view.search_index import SearchIndexBuilder, choose_buckets, search_text
from corpusmap.view.template import page_head, page_tail

FORMAT = "corpusmap-view/1"
PARTS = ("page", "points", "titles", "texts", "index", "density", "background")


@dataclass
class PageResult:
    """Where the page went and what it weighs: bytes per part (page = HTML with the app and manifest)."""

    html: Path
    folder: Optional[Path]
    n_points: int
    n_total: int
    sampled: bool
    search: bool
    bytes: dict = field(default_factory=dict)
    files: int = 1
    seconds: float = 0.0

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())

    def bytes_per_point(self) -> dict:
        return {part: size / self.n_total for part, size in self.bytes.items()}


def write_page(out_html: Path, data: PageData, *, title: Optional[str] = None, inline_max_points: int = 20_000,
               max_points: int = 2_000_000, search: bool = True, search_max_points: int = 2_000_000,
               text_chunk_rows: int = 1_000, title_chunk_rows: int = 5_000, read_rows: int = 20_000,
               bucket_bytes: int = 1 << 20, label_top: int = COLOURED_LABELS, label_title: str = "label",
               point_size: Optional[float] = None, opacity: Optional[float] = None, density_size: int = 1024,
               seed: int = 0, log: Optional[Callable[[str], None]] = None) -> PageResult:
    """Write the map page for ``data`` to ``out_html`` (and ``NAME_files/`` beside it when it is large).

    Raises ValueError for data of the wrong shape and CorpusmapError when the page cannot be written; in both
    cases an existing page at ``out_html`` is left as it was.
    """
    started = time.perf_counter()
    say = log or (lambda message: None)
    data.validate()
    out_html = Path(out_html)
    n = data.n
    rows = sample_rows(n, max_points, seed)
    m = n if rows is None else len(rows)
    indexed = bool(search) and m <= search_max_points
    xn_all, yn_all, transform = normalise(data.x, data.y, data.background)
    output = PageOutput(out_html, with_folder=m > inline_max_points)
    fh = output.open()
    index = None
    try:
        fh.write(page_head(title or "corpusmap map").encode("utf-8"))
        sink = output.sink()
        points, meta = _points(data, rows, xn_all, yn_all, label_top)
        sink.put("points", points, "points")
        if rows is not None:
            say(f"view: drawing a sample of {m:,} of {n:,} points over a density image of all")
            sink.put("density", density_payload(xn_all, yn_all, density_size), "density")
        if data.background is not None:
            nb = len(data.background[0])
            sink.put("background", density_payload(*scaled(*data.background, transform), density_size,
                                                    BACKGROUND_RGB, dot_radius(nb)), "background")
        titles = TitleChunks(title_chunk_rows, m, sink.put)
        texts = TextChunks(text_chunk_rows, m, sink.put, data, rows, xn_all, yn_all)
        buckets = choose_buckets(m, bucket_bytes) if indexed else 0
        index = SearchIndexBuilder(m, buckets, output.work) if indexed else None
        done = 0
        for block in iter_blocks(data, rows, read_rows):
            titles.add(block)
            texts.add(block)
            if index is not None:
                abstracts = block.abstracts or [None] * len(block)
                index.add(block.start, [search_text(t, a) for t, a in zip(block.titles, abstracts)])
            if (done + len(block)) * 10 // m > done * 10 // m:
                say(f"view: texts {done + len(block):,}/{m:,}")
            done += len(block)
        titles.finish()
        texts.finish()
        if index is not None:
            pad = len(str(buckets - 1))
            for b, payload in index.payloads():
                sink.put(f"index/{b:0{pad}d}", payload, "index")
        manifest = _manifest(data, title, m, n, rows, meta, transform, output.folder_url, indexed, buckets,
                             text_chunk_rows, title_chunk_rows, label_title, search_max_points,
                             point_style(m, point_size, opacity))
        fh.write(page_tail(manifest).encode("utf-8"))
        page_bytes = fh.tell() - sum(sink.sizes.values()) if not output.with_folder else fh.tell()
        output.commit()
    except BaseException:
        if index is not None:
            index.close()
        output.abort()
        raise
    sizes = {part: int(sink.sizes.get(part, 0)) for part in PARTS}
    sizes["page"] = int(page_bytes)
    return PageResult(html=out_html, folder=output.folder if output.with_folder else None, n_points=m, n_total=n,
                      sampled=rows is not None, search=indexed, bytes=sizes, files=1 + sink.files,
                      seconds=time.perf_counter() - started)


def _points(data: PageData, rows, xn_all, yn_all, label_top: int) -> tuple[dict, dict]:
    """The eager payload (coordinates, year, label and cluster codes) and the manifest parts they need."""
    xn = xn_all if rows is None else xn_all[rows]
    yn = yn_all if rows is None else yn_all[rows]
    years = None if data.years is None else np.asarray(data.years, dtype=np.float64)
    year, year_range = year_column(years if rows is None else take(years, rows), years)
    label, labels = label_column(take(data.labels, rows), label_top)
    clusters, cluster_meta = cluster_columns(data.clusters, xn_all, yn_all, rows)
    payload = {"x": typed_array(xn), "y": typed_array(yn), "year": year, "label": label, "clusters": clusters}
    return payload, {"years": year_range, "labels": labels, "clusters": cluster_meta}


def _hubs(data: PageData, rows) -> dict:
    """Page row -> the share of all papers whose neighbour list holds it, for the drawn papers that are hubs (as
    ``corpusmap neighbors`` warns of them: neighbours of more than max(20 k, 5% of n) papers)."""
    from corpusmap.neighbors import hub_rows, in_degrees

    if data.neighbors is None or not np.asarray(data.neighbors).size:
        return {}
    degree, limit = in_degrees(np.asarray(data.neighbors))
    out = {}
    for row in hub_rows(degree, limit).tolist():  # (at most 20 k of them: the in-degrees add up to k n)
        at = row if rows is None else int(np.searchsorted(rows, row))
        if rows is None or (at < len(rows) and rows[at] == row):  # (a hub left out of a sample is not listed)
            out[str(at)] = round(int(degree[row]) / data.n, 4)
    return out


def _manifest(data: PageData, title, m, n, rows, meta, transform, folder_url, indexed, buckets, text_rows,
              title_rows, label_title, search_max_points, style) -> dict:
    years = meta["years"]
    k = 0 if data.neighbors is None else int(np.asarray(data.neighbors).shape[1])
    subtitle = f"{n:,} abstract{'s' * (n != 1)}"
    if years:
        first, last = f"{years['min']:.0f}", f"{years['max']:.0f}"
        dash = " – " if years["min"] < 0 else "–"  # (-499 – -101, not -499–-101)
        subtitle += f" · {first}" if first == last else f" · {first}{dash}{last}"
    if rows is not None:
        subtitle += f" · {m:,} drawn"
    labels = meta["labels"]
    if labels:
        labels["title"] = label_title
    summary = [["abstracts", f"{n:,}"]]
    if rows is not None:
        summary.append(["points drawn", f"{m:,} (uniform random sample; density of all {n:,} underneath)"])
    background = None if data.background is None else {"n": len(data.background[0]), "name": data.background_name}
    if background:
        summary.append([data.background_name, f"{background['n']:,} points, in grey underneath"])
    hubs = _hubs(data, rows)
    if k:
        summary.append(["neighbours listed", f"{k} nearest in the high-D space (self excluded)"])
    if hubs:
        summary.append(["hubs", f"{len(hubs):,} paper(s) among the neighbours of unusually many (more than 20 k "
                                "or 5% of all, whichever is more): near everything, marked in neighbour lists "
                                "(vectors of very different lengths give them: try a cosine graph)"])
    summary.append(["search", f"whole words in titles and abstracts ({buckets} index bucket{'s' * (buckets != 1)})"
                    if indexed
                    else "off" + (f" (more than {search_max_points:,} points)" if m > search_max_points else "")])
    return {
        "format": FORMAT,
        "title": title or data.info.get("title") or "corpusmap map",
        "subtitle": subtitle,
        "n": m,
        "n_total": n,
        "sampled": rows is not None,
        "density": rows is not None,
        "background": background,
        "folder": folder_url,
        "k": k,
        "hubs": hubs,
        "pmids": bool(data.pmids),
        "chunks": {"title_rows": title_rows, "title_count": -(-m // title_rows),
                   "text_rows": text_rows, "text_count": -(-m // text_rows)},
        "years": years,
        "labels": labels,
        "clusters": meta["clusters"],
        "index": {"buckets": buckets} if indexed else None,
        "index_note": None if indexed else "Search is off for this map.",
        "excess": {str(t): [str(w) for w in words][:40] for t, words in (data.excess or {}).items()} or None,
        "info": info_sections({key: v for key, v in data.info.items() if key != "title"}, summary),
        "transform": transform,
        "style": style,
    }
