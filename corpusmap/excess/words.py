"""Word lists for word groups: from the command line, from files."""
from __future__ import annotations

import re

from corpusmap.errors import UsageProblem



_TOKEN_FULL = re.compile(r"^\w\w+$")


def read_word_file(path, what: str) -> str:
    """The text of a word list or annotation file; a usage error naming ``what`` when it is not UTF-8 text."""
    from pathlib import Path

    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageProblem(f"{what}: cannot read it as UTF-8 text ({exc})") from None
    if "\x00" in text:
        raise UsageProblem(f"{what}: a binary file, not a list of words")
    return text


def parse_word_list(spec: str) -> list[str]:
    """Words from ``w1,w2,...`` or from a file (one word per line or comma/space separated; ``#`` comments)."""
    from pathlib import Path

    path = Path(spec)
    if path.is_file():
        lines = [line.split("#", 1)[0] for line in read_word_file(path, f"word list {spec}").splitlines()]
        raw = re.split(r"[\s,;]+", " ".join(lines))
    else:
        if "," not in spec and ("/" in spec or spec.endswith((".txt", ".csv"))):
            raise UsageProblem(f"word list file {spec} does not exist")
        raw = spec.split(",")
    words = list(dict.fromkeys(w.strip().lower() for w in raw if w.strip()))
    if not words:
        raise UsageProblem(f"no words in {spec!r}")
    return words
