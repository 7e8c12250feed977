"""Vectors made elsewhere (``embed --vectors FILE``): an ``.npy`` matrix (read memory-mapped) or a parquet/Arrow
column of fixed-size lists (``FILE.parquet:COLUMN``), one row per corpus row, stored as the run's embeddings so that
every later stage works on them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from corpusmap.errors import CorpusmapError, UsageProblem


@dataclass
class VectorFile:
    """An (n, d) matrix in a file, read in row ranges."""

    path: Path
    column: str | None
    n: int
    dim: int
    dtype: str

    def rows(self, start: int, stop: int) -> np.ndarray:
        if self.column is None:
            return np.asarray(np.load(self.path, mmap_mode="r", allow_pickle=False)[start:stop])
        import pyarrow.parquet as pq

        table = _slice(pq.ParquetFile(self.path, memory_map=True), self.column, start, stop)
        return _to_matrix(table, self.dim, f"{self.path}:{self.column}")


def open_vector_file(spec: str) -> VectorFile:
    """``FILE.npy`` or ``FILE.parquet:COLUMN``; an error naming the file and what is wrong with it."""
    path, _, column = spec.partition(":") if ".parquet:" in spec or ".arrow:" in spec else (spec, "", "")
    path = Path(path)
    if not path.is_file():
        raise UsageProblem(f"--vectors {spec}: no such file")
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise CorpusmapError(f"--vectors {path}: not a readable .npy matrix ({exc})") from None
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.floating):
            raise CorpusmapError(f"--vectors {path}: need a 2-D float matrix (n, dim), got {array.dtype} of shape "
                                 f"{array.shape}")
        return VectorFile(path, None, int(array.shape[0]), int(array.shape[1]), str(array.dtype))
    if path.suffix.lower() in (".parquet", ".arrow"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not column:
            raise UsageProblem(f"--vectors {spec}: name the column, e.g. {path}:embedding")
        try:
            parquet = pq.ParquetFile(path, memory_map=True)
        except (pa.ArrowException, OSError) as exc:
            raise CorpusmapError(f"--vectors {path}: not a readable parquet file ({exc})") from None
        if column not in parquet.schema_arrow.names:
            raise UsageProblem(f"--vectors {spec}: no column {column!r}; columns: "
                               f"{', '.join(parquet.schema_arrow.names)}")
        kind = parquet.schema_arrow.field(column).type
        if not (pa.types.is_fixed_size_list(kind) or pa.types.is_list(kind) or pa.types.is_large_list(kind)) \
                or not pa.types.is_floating(kind.value_type):
            raise CorpusmapError(f"--vectors {spec}: the column holds {kind}, not lists of floats")
        first = _to_matrix(_slice(parquet, column, 0, 1), None, spec)
        return VectorFile(path, column, parquet.metadata.num_rows, int(first.shape[1]), str(first.dtype))
    raise UsageProblem(f"--vectors {spec}: give an .npy matrix or FILE.parquet:COLUMN")


def _slice(parquet, column: str, start: int, stop: int):
    groups, offset, offsets = [], 0, []
    for g in range(parquet.num_row_groups):
        rows = parquet.metadata.row_group(g).num_rows
        if offset < stop and offset + rows > start:
            groups.append(g)
            offsets.append(offset)
        offset += rows
    table = parquet.read_row_groups(groups, columns=[column])
    return table.slice(start - offsets[0], stop - start).column(0)


def _to_matrix(column, dim, where: str) -> np.ndarray:
    import pyarrow as pa

    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if array.null_count:
        raise CorpusmapError(f"--vectors {where}: some rows have no vector")
    lengths = np.diff(array.offsets.to_numpy()) if not pa.types.is_fixed_size_list(array.type) else None
    width = array.type.list_size if lengths is None else (int(lengths[0]) if len(lengths) else 0)
    if lengths is not None and (lengths != width).any():
        raise CorpusmapError(f"--vectors {where}: the vectors have different lengths")
    if dim is not None and width != dim:
        raise CorpusmapError(f"--vectors {where}: vectors of {width} values, expected {dim}")
    return array.flatten().to_numpy(zero_copy_only=False).reshape(len(array), width)
