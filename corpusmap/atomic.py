"""Atomic file writes: write to a temporary name in the same folder, then rename.

A crash or kill at any moment leaves either the old file or the new one, never half of one.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np


LEFTOVER_AGE_S = 600  # a temporary file untouched this long, of a process gone, was left by a killed writer


def _host() -> str:
    """A short tag of this machine (temporary names stay short whatever the host name's length)."""
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # (another user's process; a number no process can have)
        return True
    return True


_CLEANED: set = set()  # folders this process has cleaned (once: a folder of thousands of shards is not listed
#                        again for every file written into it)


def _remove_left_by_the_dead(folder: Path) -> None:
    """Temporary files in ``folder`` left by killed writers on this machine: ``.NAME.tmp-HOST-PID`` whose process
    is gone and which nothing has written for :data:`LEFTOVER_AGE_S` (a writer in another PID namespace of a
    host of the same name is still writing its file). Those of other machines sharing the folder are left alone."""
    if folder in _CLEANED:
        return
    _CLEANED.add(folder)
    marker = f".tmp-{_host()}-"
    for leftover in folder.glob(".*" + glob.escape(marker) + "*"):
        pid = leftover.name.rpartition(marker)[2]
        if pid.isascii() and pid.isdigit() and not _alive(int(pid)) \
                and time.time() - leftover.stat().st_mtime > LEFTOVER_AGE_S:
            leftover.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds (temporary files that
    killed writers left in its folder go first, once per process)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        _remove_left_by_the_dead(path.parent.resolve())
    tmp = path.with_name(f".{path.name}.tmp-{_host()}-{os.getpid()}")
    try:
        yield tmp
        if tmp.exists():
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Save one array as ``.npy``, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in JSON")
