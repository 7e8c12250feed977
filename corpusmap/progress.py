"""Progress for long work: a bar on a terminal, periodic log lines in batch jobs, nothing with --quiet."""
from __future__ import annotations

import logging
import sys
import time
from typing import Optional

log = logging.getLogger("corpusmap")

_QUIET = False


def set_quiet(quiet: bool) -> None:
    """Silence progress bars and info lines for the whole process (``--quiet``)."""
    global _QUIET
    _QUIET = quiet
    log.setLevel(logging.WARNING if quiet else logging.INFO)


def is_quiet() -> bool:
    return _QUIET


def info(message: str) -> None:
    """A line for the user on stderr (silenced by --quiet)."""
    log.info(message)


def warn(message: str) -> None:
    """A ``warning:`` line on stderr (shown with --quiet too)."""
    log.warning("warning: %s", message)


class Progress:
    """Counts work done; draws a tqdm bar on a TTY, else logs a line every ``interval`` seconds.

    Use as a context manager: ``with Progress("embedding", total=n, unit="abstracts") as p: p.update(k)``.
    """

    def __init__(self, description: str, total: Optional[int] = None, unit: str = "it",
                 interval: float = 30.0, stream=None):
        self.description = description
        self.total = total
        self.unit = unit
        self.interval = interval
        self.done = 0
        self._stream = stream or sys.stderr
        self._bar = None
        self._start = time.monotonic()
        self._last_log = self._start
        self._logged = 0
        if _QUIET:
            return
        if getattr(self._stream, "isatty", lambda: False)():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=description, unit=unit, file=self._stream,
                             dynamic_ncols=True, unit_scale=True)

    def update(self, n: int = 1) -> None:
        self.done += n
        if _QUIET:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last_log >= self.interval:
            self._last_log, self._logged = now, self.done
            log.info(self._line(now))

    def _line(self, now: float) -> str:
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        of_total = f"/{self.total:,}" if self.total else ""
        return f"{self.description}: {self.done:,}{of_total} {self.unit} ({rate:,.1f} {self.unit}/s, {elapsed:,.0f} s)"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif not _QUIET and self.done != self._logged:
            log.info(self._line(time.monotonic()))

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def plural(count: int, word: str) -> str:
    """``1 abstract``, ``2,000 abstracts``: a count with its noun, for messages."""
    return f"{count:,} {word}{'' if count == 1 else 's'}"
