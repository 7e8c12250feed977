"""Vectors as one interface, whether memory-mapped shards of a run or a plain array.

Every consumer (the kNN graph, layouts, metrics) reads vectors through :class:`Vectors`: ``shape``,
``rows(start, stop, dtype)``, ``take(rows, dtype)`` and ``iter_blocks(block_rows, dtype)`` yielding
``(start_row, block)``; nothing converts the whole matrix to float64. :func:`as_vectors` wraps a numpy array (or
memmap) in the same interface, so every function that takes a run's vectors also takes an array.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from corpusmap.errors import CorpusmapError

DEFAULT_BLOCK_ROWS = 65_536


class Vectors:
    """An (n, d) matrix read in blocks. Subclasses implement ``shape``, ``rows`` and ``take``."""

    shape: tuple[int, int]

    def __len__(self) -> int:
        return self.shape[0]

    def rows(self, start: int, stop: int, dtype=np.float32) -> np.ndarray:
        """Rows ``start:stop`` as a copy in ``dtype``, clipped to the matrix as a slice is (``rows(0, 10_000)`` of
        2,500 rows gives 2,500)."""
        raise NotImplementedError

    def take(self, rows, dtype=np.float32) -> np.ndarray:
        raise NotImplementedError

    def iter_blocks(self, block_rows: int = DEFAULT_BLOCK_ROWS, dtype=np.float32) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start_row, block)`` with blocks of ``block_rows`` rows (a copy in ``dtype``)."""
        n = len(self)
        for start in range(0, n, block_rows):
            yield start, self.rows(start, min(start + block_rows, n), dtype)

    def to_numpy(self, dtype=np.float32) -> np.ndarray:
        return self.rows(0, len(self), dtype)

    def __array__(self, dtype=None, copy=None):
        return self.to_numpy(dtype or np.float32)


class ArrayVectors(Vectors):
    """A numpy array or memmap behind the :class:`Vectors` interface."""

    def __init__(self, array: np.ndarray):
        array = array if isinstance(array, np.memmap) else np.asarray(array)
        if array.ndim != 2:
            raise CorpusmapError(f"vectors must be a 2-D array (n, dim), got shape {array.shape}")
        self.array = array

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.array.shape[0]), int(self.array.shape[1]))

    @property
    def dtype(self):
        return self.array.dtype

    def rows(self, start: int, stop: int, dtype=np.float32) -> np.ndarray:
        return np.array(self.array[start:stop], dtype=dtype)

    def take(self, rows, dtype=np.float32) -> np.ndarray:
        return np.asarray(self.array[np.asarray(rows, dtype=np.int64)], dtype=dtype)


@dataclass(frozen=True)
class Shard:
    """Rows ``start:stop`` of the matrix, stored in ``path`` (a ``.npy``) with checksum ``sha256``."""

    index: int
    start: int
    stop: int
    path: Path
    sha256: Optional[str] = None

    @property
    def rows(self) -> int:
        return self.stop - self.start


class ShardedVectors(Vectors):
    """A run's vector shards as one (n, d) matrix, memory-mapped.

    ``verify(shard)`` is called once per shard, when it is first opened (the run checks its checksum there).
    """

    def __init__(self, shards: list[Shard], dim: int, dtype: str,
                 verify: Optional[Callable[[Shard], None]] = None):
        self.shards = shards
        self.dim = dim
        self.dtype = np.dtype(dtype)
        self._verify = verify
        self._starts = np.array([s.start for s in shards], dtype=np.int64)
        self._maps: dict[int, np.ndarray] = {}

    @property
    def shape(self) -> tuple[int, int]:
        return (self.shards[-1].stop if self.shards else 0, self.dim)

    def shard_array(self, shard: Shard) -> np.ndarray:
        if shard.index not in self._maps:
            if self._verify is not None:
                self._verify(shard)
            try:
                array = np.load(shard.path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise CorpusmapError(f"vector shard {shard.path} cannot be read ({exc}); delete it and re-run "
                                     "`corpusmap embed` to re-encode it") from None
            if array.shape != (shard.rows, self.dim):
                raise CorpusmapError(f"vector shard {shard.path} has shape {array.shape}, expected "
                                     f"{(shard.rows, self.dim)}; delete it and re-run `corpusmap embed`")
            self._maps[shard.index] = array
        return self._maps[shard.index]

    def rows(self, start: int, stop: int, dtype=np.float32) -> np.ndarray:
        start, stop, _ = slice(start, stop).indices(len(self))
        out = np.empty((max(stop - start, 0), self.dim), dtype=dtype)
        for shard in self.shards:
            lo, hi = max(start, shard.start), min(stop, shard.stop)
            if lo < hi:
                out[lo - start:hi - start] = self.shard_array(shard)[lo - shard.start:hi - shard.start]
        return out

    def take(self, rows, dtype=np.float32) -> np.ndarray:
        """The given rows (any order, repeats allowed) as one array in ``dtype``."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError("row index out of range")
        out = np.empty((rows.size, self.dim), dtype=dtype)
        which = np.searchsorted(self._starts, rows, side="right") - 1
        for shard_pos in np.unique(which):
            shard = self.shards[shard_pos]
            mask = which == shard_pos
            out[mask] = self.shard_array(shard)[rows[mask] - shard.start]
        return out


def as_vectors(vectors) -> Vectors:
    """``vectors`` if it already is a :class:`Vectors`, else the array wrapped in :class:`ArrayVectors`."""
    return vectors if isinstance(vectors, Vectors) else ArrayVectors(vectors)


def iter_float32_blocks(vectors, block_rows: int = DEFAULT_BLOCK_ROWS, *, normalize: bool = False,
                        check_finite: bool = True) -> Iterator[tuple[int, np.ndarray]]:
    """``(start_row, float32 C-contiguous block)`` over all vectors; checks for NaN/inf, L2-normalises if asked."""
    for start, block in as_vectors(vectors).iter_blocks(block_rows, dtype=np.float32):
        block = np.ascontiguousarray(block, dtype=np.float32)
        if check_finite:
            _check_finite(block, start)
        yield start, (normalize_rows(block) if normalize else block)


def take_float32(vectors, rows: np.ndarray, *, normalize: bool = False) -> np.ndarray:
    """Rows ``rows`` (any order) as float32, checked for NaN/inf."""
    vectors = as_vectors(vectors)
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        return np.zeros((0, vectors.shape[1]), dtype=np.float32)
    order = np.argsort(rows, kind="stable")
    block = np.empty((rows.size, vectors.shape[1]), dtype=np.float32)
    block[order] = vectors.take(rows[order], dtype=np.float32)  # sorted reads are kinder to shards
    _check_finite(block, None)
    return normalize_rows(block) if normalize else block


def normalize_rows(block: np.ndarray) -> np.ndarray:
    """L2-normalise rows in float32 (zero rows stay zero)."""
    norms = np.linalg.norm(block, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(block / norms, dtype=np.float32)


def _check_finite(block: np.ndarray, start: Optional[int]) -> None:
    if not np.isfinite(block).all():
        bad = np.flatnonzero(~np.isfinite(block).all(axis=1))
        where = f"row {start + int(bad[0])}" if start is not None else "a requested row"
        raise CorpusmapError(f"vectors contain NaN or infinite values ({bad.size} rows in one block, first at "
                             f"{where}); re-create them with `corpusmap embed`")
