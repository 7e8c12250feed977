"""What a map page shows, as plain arrays: independent of the run directory, so any map can be viewed."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

# read_rows(start, stop) -> {"abstract": [...], optionally "title", "id", "doi": [...]}, rows start..stop-1
ReadRows = Callable[[int, int], Mapping[str, Sequence[Any]]]


@dataclass
class ClusterLevel:
    """One level of clusters: a code per point (-1 = none) and a display name per cluster code."""

    name: str
    codes: np.ndarray
    names: Sequence[str]


@dataclass
class PageData:
    """Everything the page can show. Only x and y are required.

    Texts are streamed: ``abstracts(start, stop)`` returns the rows ``start..stop-1`` (key ``"abstract"``, and
    ``"title"``/``"id"`` used where ``titles``/``ids`` are not given, ``"doi"`` a DOI per row, linked beside the
    id), so a big map never holds every abstract;
    it is called once per range, with consecutive increasing ranges from 0 to n (a sequential reader will do).
    ``neighbors`` holds the high-D kNN rows (self excluded; negative = none). ``clusters`` go from coarse to
    fine. ``info`` may hold ``parameters`` and ``evaluation`` dicts and other scalars for the info panel;
    ``excess`` maps a target (e.g. a year) to its top excess words, offered as quick picks. ``pmids``: bare
    numbers in ``ids`` are PMIDs, linked to PubMed (``PMID:123`` always is). ``background``: (x, y) of other
    points drawn in grey underneath, not clickable (the reference map that ``map --add`` placed these points
    into), described in the legend by ``background_name``.
    """

    x: np.ndarray
    y: np.ndarray
    ids: Optional[Sequence[Any]] = None
    titles: Optional[Sequence[Optional[str]]] = None
    abstracts: Optional[ReadRows] = None
    years: Optional[np.ndarray] = None
    labels: Optional[Sequence[Optional[str]]] = None
    neighbors: Optional[np.ndarray] = None
    clusters: list[ClusterLevel] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    excess: Optional[Mapping[Any, Sequence[str]]] = None
    pmids: bool = False  # ids that are bare numbers are PMIDs (linked to PubMed); else they may be row numbers
    background: Optional[tuple] = None
    background_name: str = "reference map"

    @property
    def n(self) -> int:
        return len(self.x)

    def validate(self) -> None:
        """Raise ValueError naming the first field whose shape or values do not fit."""
        n = self.n
        x = np.asarray(self.x)
        y = np.asarray(self.y)
        if x.ndim != 1 or y.shape != x.shape:
            raise ValueError(f"x and y must be 1-D arrays of one length (got {x.shape} and {y.shape})")
        if n == 0:
            raise ValueError("the map has no points")
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise ValueError("x and y must be finite")
        for name in ("ids", "titles", "labels", "years"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"{name} has {len(value):,} rows, the map {n:,}")
        if self.neighbors is not None:
            nb = np.asarray(self.neighbors)
            if nb.ndim != 2 or nb.shape[0] != n:
                raise ValueError(f"neighbors must have shape (n, k) = ({n}, k), got {nb.shape}")
            if nb.size and nb.max() >= n:
                raise ValueError("neighbors refers to rows beyond the map")
        for level in self.clusters:
            codes = np.asarray(level.codes)
            if codes.shape != (n,):
                raise ValueError(f"cluster level {level.name!r} has codes of shape {codes.shape}, expected ({n},)")
            if codes.size and codes.max() >= len(level.names):
                raise ValueError(f"cluster level {level.name!r} has codes without a name")
        if self.background is not None:
            bx, by = (np.asarray(v) for v in self.background)
            if bx.ndim != 1 or by.shape != bx.shape or not (np.isfinite(bx).all() and np.isfinite(by).all()):
                raise ValueError("background must be (x, y): finite 1-D arrays of one length")
        if self.abstracts is not None and not callable(self.abstracts):
            raise ValueError("abstracts must be a callable read_rows(start, stop)")
