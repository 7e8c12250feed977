"""The run directory: the normalised corpus, vector shards with their manifest, and reading them back.

Layout (see README): ``corpus.parquet`` + ``corpus.json``; ``embeddings/manifest.json`` and
``embeddings/shard-NNNNN.npy`` each with a ``shard-NNNNN.json`` receipt (rows, checksum). A shard is written to a
temporary name and renamed, and its receipt is written after it, so a shard with a receipt is complete.
"""
from __future__ import annotations

import platform
import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from corpusmap.atomic import read_json, sha256_file, write_json
from corpusmap.errors import CorpusmapError

EMBEDDINGS = "embeddings"
# folders computed from the vectors: stale once the vectors change
DERIVED_FROM_VECTORS = ("knn", "maps", "eval")


def package_versions(*names: str) -> dict:
    """Versions of corpusmap, Python and the named packages (those that are installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("corpusmap", "numpy", "pyarrow") + names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


@dataclass(frozen=True)
class Shard:
    index: int
    start: int
    stop: int
    path: Path

    @property
    def rows(self) -> int:
        return self.stop - self.start


class ShardedVectors:
    """All vector shards of a run as one (n, d) matrix, memory-mapped, read block by block."""

    def __init__(self, shards: list[Shard], dim: int, dtype: str):
        self.shards = shards
        self.dim = dim
        self.dtype = np.dtype(dtype)
        self._starts = np.array([s.start for s in shards], dtype=np.int64)
        self._maps: dict[int, np.ndarray] = {}

    @property
    def shape(self) -> tuple[int, int]:
        return (self.shards[-1].stop if self.shards else 0, self.dim)

    def __len__(self) -> int:
        return self.shape[0]

    def shard_array(self, shard: Shard) -> np.ndarray:
        if shard.index not in self._maps:
            try:
                array = np.load(shard.path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise CorpusmapError(f"vector shard {shard.path.name} cannot be read ({exc}); "
                                     "delete it and re-run `corpusmap embed` to re-encode it") from None
            if array.shape != (shard.rows, self.dim):
                raise CorpusmapError(f"vector shard {shard.path.name} has shape {array.shape}, expected "
                                     f"{(shard.rows, self.dim)}; delete it and re-run `corpusmap embed`")
            self._maps[shard.index] = array
        return self._maps[shard.index]

    def iter_blocks(self, block_rows: int = 65536, dtype=np.float32) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start_row, block)`` with blocks of ``block_rows`` rows (a copy in ``dtype``)."""
        n = len(self)
        for start in range(0, n, block_rows):
            yield start, self.rows(start, min(start + block_rows, n), dtype)

    def rows(self, start: int, stop: int, dtype=np.float32) -> np.ndarray:
        """Rows ``start:stop`` as one array in ``dtype``."""
        out = np.empty((max(stop - start, 0), self.dim), dtype=dtype)
        for shard in self.shards:
            lo, hi = max(start, shard.start), min(stop, shard.stop)
            if lo < hi:
                out[lo - start:hi - start] = self.shard_array(shard)[lo - shard.start:hi - shard.start]
        return out

    def take(self, rows: np.ndarray, dtype=np.float32) -> np.ndarray:
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

    def to_numpy(self, dtype=np.float32) -> np.ndarray:
        return self.rows(0, len(self), dtype)

    def __array__(self, dtype=None, copy=None):
        return self.to_numpy(dtype or np.float32)


class Run:
    """A run directory; see the module docstring for its layout."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    # --------------------------------------------------------------------------------- corpus
    @property
    def corpus_path(self) -> Path:
        return self.path / "corpus.parquet"

    @property
    def corpus_manifest_path(self) -> Path:
        return self.path / "corpus.json"

    def has_corpus(self) -> bool:
        return self.corpus_path.is_file()

    def read_corpus(self, columns: Optional[list[str]] = None) -> pa.Table:
        """The normalised corpus (memory-mapped), optionally only some columns."""
        self._need_corpus()
        return pq.read_table(self.corpus_path, columns=columns, memory_map=True)

    def corpus_columns(self) -> list[str]:
        self._need_corpus()
        return pq.read_schema(self.corpus_path).names

    @property
    def n_rows(self) -> int:
        self._need_corpus()
        return pq.ParquetFile(self.corpus_path).metadata.num_rows

    def read_corpus_rows(self, start: int, stop: int, columns: list[str]) -> pa.Table:
        """Rows ``start:stop`` of some columns, reading only the row groups that hold them."""
        parquet = pq.ParquetFile(self.corpus_path, memory_map=True)
        groups, offsets, offset = [], [], 0
        for g in range(parquet.num_row_groups):
            rows = parquet.metadata.row_group(g).num_rows
            if offset < stop and offset + rows > start:
                groups.append(g)
                offsets.append(offset)
            offset += rows
        if not groups:
            return pq.read_schema(self.corpus_path).empty_table().select(columns)
        table = parquet.read_row_groups(groups, columns=columns)
        return table.slice(start - offsets[0], stop - start)

    def _need_corpus(self) -> None:
        if not self.has_corpus():
            raise CorpusmapError(f"{self.path} holds no corpus; run `corpusmap embed INPUT -o {self.path}` first")

    # --------------------------------------------------------------------------------- vectors
    @property
    def embeddings_dir(self) -> Path:
        return self.path / EMBEDDINGS

    @property
    def embeddings_manifest_path(self) -> Path:
        return self.embeddings_dir / "manifest.json"

    def has_vectors(self) -> bool:
        path = self.embeddings_manifest_path
        return path.is_file() and bool(read_json(path).get("complete"))

    @property
    def embeddings_manifest(self) -> dict:
        if not self.embeddings_manifest_path.is_file():
            raise CorpusmapError(f"no vectors in {self.path}; run `corpusmap embed INPUT -o {self.path}` first")
        return read_json(self.embeddings_manifest_path)

    @cached_property
    def vectors(self) -> ShardedVectors:
        manifest = self.embeddings_manifest
        if not manifest.get("complete"):
            done = len(manifest.get("shards", []))
            raise CorpusmapError(
                f"the vectors in {self.path} are incomplete ({done} of {manifest.get('n_shards', '?')} shards); "
                "re-run the same `corpusmap embed` command to finish, or `corpusmap merge` after a job array")
        shards = [Shard(s["index"], s["start"], s["stop"], self.embeddings_dir / s["file"])
                  for s in manifest["shards"]]
        for shard in shards:
            if not shard.path.is_file():
                raise CorpusmapError(f"vector shard {shard.path.name} is missing from {self.embeddings_dir}; "
                                     "re-run `corpusmap embed` to re-encode it")
        return ShardedVectors(shards, int(manifest["dim"]), manifest["store_dtype"])

    def verify_vectors(self) -> None:
        """Check every shard against the checksum in the manifest; name the first that fails."""
        manifest = self.embeddings_manifest
        for entry in manifest.get("shards", []):
            verify_shard(self.embeddings_dir, entry)

    def subdir(self, name: str) -> Path:
        path = self.path / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def remove_derived(self, include_embeddings: bool = True) -> list[str]:
        """Delete what was computed from the vectors (for --overwrite); returns the names removed."""
        removed = []
        names = ((EMBEDDINGS,) if include_embeddings else ()) + DERIVED_FROM_VECTORS
        for name in names:
            path = self.path / name
            if path.exists():
                shutil.rmtree(path)
                removed.append(name)
        return removed


def verify_shard(folder: Path, entry: dict) -> None:
    path = folder / entry["file"]
    if not path.is_file():
        raise CorpusmapError(f"vector shard {entry['file']} is missing from {folder}; "
                             "re-run `corpusmap embed` to re-encode it")
    if sha256_file(path) != entry["sha256"]:
        raise CorpusmapError(f"vector shard {entry['file']} fails its checksum (corrupt or changed); "
                             "delete it and re-run `corpusmap embed` to re-encode it")


def open_run(path: str | Path) -> Run:
    """Open an existing run directory (it must hold at least the corpus)."""
    run = Run(path)
    if not run.path.is_dir():
        raise CorpusmapError(f"no run directory at {run.path}; create one with `corpusmap embed INPUT -o {run.path}`")
    run._need_corpus()
    return run


def write_receipt(folder: Path, index: int, receipt: dict) -> None:
    write_json(folder / f"{shard_name(index)}.json", receipt)


def read_receipt(folder: Path, index: int) -> Optional[dict]:
    path = folder / f"{shard_name(index)}.json"
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except ValueError:
        return None
