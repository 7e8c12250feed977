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


def parse_word_list(spec: str, what: str = "word list") -> list[str]:
    """Words from ``w1,w2,...`` or from a file: one word per line or comma/space separated (``#`` comments), or a
    CSV table with a ``word`` column (e.g. an annotation like the study's ``excess_words.csv``)."""
    from pathlib import Path

    path = Path(spec)
    try:
        is_file, is_dir = path.is_file(), bool(spec.strip()) and path.is_dir()
    except OSError:  # e.g. a long list of words is too long a file name: words, then
        is_file = is_dir = False
    if is_dir:
        raise UsageProblem(f"{what}: {spec} is a folder; give a file of words or w1,w2,...")
    if is_file:
        text = read_word_file(path, f"{what} {spec}")
        column = _word_column(text)
        if column is not None:
            raw = column
        else:
            lines = [line.split("#", 1)[0] for line in text.splitlines()]
            raw = re.split(r"[\s,;]+", " ".join(lines))
    else:
        if "," not in spec and ("/" in spec or spec.endswith((".txt", ".csv"))):
            raise UsageProblem(f"{what}: file {spec} does not exist")
        raw = spec.split(",")
    words = list(dict.fromkeys(w.strip().lower() for w in raw if w.strip()))
    if not words:
        raise UsageProblem(f"{what}: no words in {spec!r}")
    return words


def _word_column(text: str):
    """The ``word`` column of a CSV table (a header row naming several columns), else ``None`` (a plain list)."""
    import csv
    import io

    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return None
    header = [h.strip().lower() for h in next(csv.reader([lines[0]]))]
    if "word" in header and len(header) > 1:
        i = header.index("word")
        return [row[i] for row in csv.reader(io.StringIO("\n".join(lines[1:]))) if len(row) > i]
    return None
