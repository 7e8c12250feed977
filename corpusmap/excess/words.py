"""Word lists for word groups: from the command line, from files."""
from __future__ import annotations

import re

from corpusmap.errors import UsageProblem



_TOKEN_FULL = re.compile(r"^\w\w+$")


def parse_word_list(spec: str) -> list[str]:
    """Words from ``w1,w2,...`` or from a file (one word per line or comma/space separated; ``#`` comments)."""
    from pathlib import Path

    path = Path(spec)
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageProblem(f"word list {spec}: cannot read it as UTF-8 text ({exc})") from None
        if "\x00" in text:
            raise UsageProblem(f"word list {spec}: a binary file, not a list of words")
        lines = [line.split("#", 1)[0] for line in text.splitlines()]
        raw = re.split(r"[\s,;]+", " ".join(lines))
    else:
        if "," not in spec and ("/" in spec or spec.endswith((".txt", ".csv"))):
            raise UsageProblem(f"word list file {spec} does not exist")
        raw = spec.split(",")
    words = list(dict.fromkeys(w.strip().lower() for w in raw if w.strip()))
    if not words:
        raise UsageProblem(f"no words in {spec!r}")
    return words
