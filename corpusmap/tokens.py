"""Word tokens as in the excess-vocabulary study: lower-case, scikit-learn's default pattern ``\\b\\w\\w+\\b``."""
from __future__ import annotations

import re
from typing import Iterable, Sequence

import numpy as np

TOKEN_PATTERN = r"(?u)\b\w\w+\b"
_TOKEN_RE = re.compile(TOKEN_PATTERN)


def tokenize(text: str) -> list[str]:
    """All tokens of ``text`` (lower-cased), in order, with repeats."""
    return _TOKEN_RE.findall(text.lower())


def contains_any(texts: Sequence[str | None], words: Iterable[str]) -> np.ndarray:
    """Boolean array: does each text contain at least one of ``words`` as a whole token?"""
    wanted = {w.lower() for w in words}
    out = np.zeros(len(texts), dtype=bool)
    for i, text in enumerate(texts):
        if text:
            out[i] = not wanted.isdisjoint(_TOKEN_RE.findall(text.lower()))
    return out
