"""Texts streamed into lazily loaded chunks by row range: titles in one series, abstracts + ids + neighbours in
another (an abstract is only needed on click, a title on hover)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import numpy as np

from corpusmap.view.data import PageData
from corpusmap.view.encoding import typed_array
from corpusmap.view.points import as_list, take

Emit = Callable[[str, dict, str], None]  # (key, payload, part)


@dataclass
class Block:
    """Consecutive page rows ``start ..`` with their texts (None where the data has none)."""

    start: int
    titles: list
    abstracts: Optional[list]
    ids: Optional[list]
    dois: Optional[list] = None  # a DOI column beside the ids (PubMed XML has both), linked on the page

    def __len__(self) -> int:
        return len(self.titles)


def iter_blocks(data: PageData, rows: Optional[np.ndarray], block_rows: int) -> Iterator[Block]:
    """The page rows in order, read ``block_rows`` source rows at a time (only the sampled ones are kept)."""
    n = data.n
    page_start = 0
    for start in range(0, n, block_rows):
        stop = min(n, start + block_rows)
        local = None
        if rows is not None:
            lo, hi = np.searchsorted(rows, [start, stop])
            if hi == lo:
                continue
            local = rows[lo:hi] - start
        block = _read(data, start, stop, local)
        block.start = page_start
        page_start += len(block)
        yield block


def _read(data: PageData, start: int, stop: int, local: Optional[np.ndarray]) -> Block:
    fetched: dict = {}
    need = data.abstracts is not None
    if need:
        fetched = dict(data.abstracts(start, stop))
        for key, values in fetched.items():
            if values is not None and len(values) != stop - start:
                raise ValueError(f"read_rows({start}, {stop}) returned {len(values)} values for {key!r}")

    def column(own, key):
        values = as_list(own, start, stop) if own is not None else fetched.get(key)
        if values is None:
            return None
        values = list(values)
        return values if local is None else [values[int(j)] for j in local]

    titles = column(data.titles, "title")
    count = (stop - start) if local is None else len(local)
    return Block(0, titles if titles is not None else [None] * count, column(None, "abstract"), column(data.ids, "id"),
                 column(None, "doi"))


class TitleChunks:
    """Titles in chunks of ``rows`` page rows: {"start", "title": [...]}."""

    def __init__(self, rows: int, total: int, emit: Emit):
        self.rows, self.emit = rows, emit
        self.pad = len(str(max(_count(total, rows) - 1, 0)))
        self.buffer: list = []
        self.start = 0

    def add(self, block: Block) -> None:
        self.buffer.extend(block.titles)
        while len(self.buffer) >= self.rows:
            self._flush(self.rows)

    def finish(self) -> None:
        if self.buffer:
            self._flush(len(self.buffer))

    def _flush(self, count: int) -> None:
        chunk, self.buffer = self.buffer[:count], self.buffer[count:]
        key = f"titles/{self.start // self.rows:0{self.pad}d}"
        self.emit(key, {"start": self.start, "title": [_text(t) for t in chunk]}, "titles")
        self.start += count


class TextChunks:
    """Abstracts, ids (and DOIs where the data has them) and neighbour rows in chunks of ``rows`` page rows.

    Neighbours are stored as page rows; -2 is no neighbour; in a sampled page -1 is a neighbour that is not
    drawn, whose [title, id, x, y, year] follows in ``out`` (so the list stays the full high-D neighbour row).
    """

    def __init__(self, rows: int, total: int, emit: Emit, data: PageData, page_rows: Optional[np.ndarray],
                 xn_all: np.ndarray, yn_all: np.ndarray):
        self.rows, self.emit, self.data = rows, emit, data
        self.pad = len(str(max(_count(total, rows) - 1, 0)))
        self.page_rows = page_rows
        self.xn_all, self.yn_all = xn_all, yn_all
        self.neighbors = None if data.neighbors is None else np.asarray(data.neighbors)
        self.page_of = None
        if page_rows is not None and self.neighbors is not None:
            self.page_of = np.full(data.n, -1, dtype=np.int32)
            self.page_of[page_rows] = np.arange(len(page_rows), dtype=np.int32)
        self.abstracts: list = []
        self.ids: list = []
        self.dois: list = []
        self.start = 0

    def add(self, block: Block) -> None:
        self.abstracts.extend(block.abstracts if block.abstracts is not None else [None] * len(block))
        self.ids.extend(block.ids if block.ids is not None else [None] * len(block))
        self.dois.extend(block.dois if block.dois is not None else [None] * len(block))
        while len(self.abstracts) >= self.rows:
            self._flush(self.rows)

    def finish(self) -> None:
        if self.abstracts:
            self._flush(len(self.abstracts))

    def _flush(self, count: int) -> None:
        abstracts, self.abstracts = self.abstracts[:count], self.abstracts[count:]
        ids, self.ids = self.ids[:count], self.ids[count:]
        dois, self.dois = [_text(d) for d in self.dois[:count]], self.dois[count:]
        payload = {"start": self.start, "abstract": [_text(a) for a in abstracts], "id": [_text(i) for i in ids]}
        if any(dois):
            payload["doi"] = dois
        if self.neighbors is not None:
            payload.update(self._neighbours(self.start, self.start + count))
        key = f"texts/{self.start // self.rows:0{self.pad}d}"
        self.emit(key, payload, "texts")
        self.start += count

    def _neighbours(self, start: int, stop: int) -> dict:
        source = np.arange(start, stop) if self.page_rows is None else self.page_rows[start:stop]
        nb = self.neighbors[source].astype(np.int64)
        if self.page_of is None:
            return {"nbr": typed_array(np.where(nb >= 0, nb, -2).astype(np.int32).ravel())}
        mapped = np.where(nb >= 0, self.page_of[np.maximum(nb, 0)], -2).astype(np.int32)
        outside = nb[mapped == -1]
        titles = take(self.data.titles, outside) if self.data.titles is not None else [None] * len(outside)
        ids = take(self.data.ids, outside) if self.data.ids is not None else [None] * len(outside)
        years = np.full(len(outside), np.nan) if self.data.years is None else \
            np.asarray(self.data.years, dtype=np.float64)[outside]
        entries = iter([[_text(t), _text(i), round(float(self.xn_all[r]), 5), round(float(self.yn_all[r]), 5),
                         None if math.isnan(y) else float(y)]
                        for t, i, r, y in zip(titles, ids, outside, years)])
        out = [[next(entries) for _ in range(int(c))] for c in (mapped == -1).sum(axis=1)]
        return {"nbr": typed_array(mapped.ravel()), "out": out}


def _count(total: int, rows: int) -> int:
    return (total + rows - 1) // rows


def _text(value) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):  # a missing value from pandas
        return None
    return str(value)
