"""Memory a stage will need, checked before hours of work: a stage that cannot fit says so at once and names an
option that fits."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from corpusmap.errors import CorpusmapError

GiB = 1 << 30


def available_memory() -> Optional[int]:
    """Bytes this process can still use: MemAvailable, or the cgroup's limit minus its use when that is lower."""
    try:
        meminfo = Path("/proc/meminfo").read_text()
        available = int(next(line.split()[1] for line in meminfo.splitlines()
                             if line.startswith("MemAvailable:"))) * 1024
    except (OSError, StopIteration, ValueError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max":
            available = min(available, int(limit) - used)
    except (OSError, ValueError):
        pass
    return available


def readable(size: float) -> str:
    return f"{size / GiB:,.1f} GiB"


def require(needed: int, what: str, instead: str) -> None:
    """Refuse ``what`` when it needs more than the memory available (with a 10% margin), naming ``instead``."""
    available = available_memory()
    if available is not None and needed > 0.9 * available:
        raise CorpusmapError(f"{what} needs about {readable(needed)} of memory, but {readable(available)} is "
                             f"available; {instead}")


def umap_bytes(n: int, dim: int, n_neighbors: int) -> int:
    """umap-learn on the stored graph: the vectors in float32, its fuzzy graph (COO, CSR and their copies), the
    layout and its epochs' arrays (measured: 1.0 GiB at 74,728 x 300 with 15 neighbours)."""
    return n * dim * 4 + n * n_neighbors * 96 + n * 64 + 400 * (1 << 20)


def tsne_bytes(n: int, k: int) -> int:
    """openTSNE on the stored graph: the symmetrised affinities (CSR, float64 values), the embedding, its
    gradient and gains, and the FFT interpolation grid (measured: 0.8 GiB at 74,728 points with k = 10)."""
    return n * k * 2 * 16 + n * 2 * 8 * 8 + 400 * (1 << 20)
