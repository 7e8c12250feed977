"""What every manifest records the same way: package versions, the creation time, checksums of files, and
reading a manifest back with an error that names the file and the command that rebuilds it."""
from __future__ import annotations

import hashlib
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from corpusmap.errors import CorpusmapError

MANIFEST_FORMAT = 2


def versions(*packages: str) -> dict:
    """Versions of Python, corpusmap, numpy, pyarrow and the named packages that are installed."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("corpusmap", "numpy", "pyarrow") + packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def timestamp() -> str:
    """Now, as every manifest writes it: UTC, ISO 8601, whole seconds (``2026-12-01T09:00:00+00:00``)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def canonical_hash(value: Any) -> str:
    """sha256 of ``value`` as canonical JSON (sorted keys): a fingerprint of parameters or file lists."""
    from corpusmap.atomic import json_default

    text = json.dumps(value, sort_keys=True, default=json_default, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def read_manifest(path: str | os.PathLike, rebuild: str) -> dict:
    """A JSON manifest; a missing file is an error naming ``rebuild`` (the command that makes it), and so is a
    damaged one (truncated, not JSON, not an object)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CorpusmapError(f"{path} is missing; {rebuild}") from None
    except UnicodeDecodeError:
        raise CorpusmapError(f"{path} is damaged (not UTF-8 text); {rebuild}") from None
    except OSError as exc:
        raise CorpusmapError(f"{path} cannot be read ({exc.strerror or exc}); check its permissions") from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise CorpusmapError(f"{path} is damaged (not valid JSON, perhaps cut short); {rebuild}") from None
    if not isinstance(data, dict):
        raise CorpusmapError(f"{path} is damaged (not a JSON object); {rebuild}")
    return data


def try_read_manifest(path: str | os.PathLike) -> Optional[dict]:
    """A JSON manifest, or ``None`` if it is missing or damaged (for deciding whether an output is current)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def file_record(path: str | os.PathLike) -> dict:
    """``{"bytes": size, "sha256": checksum}`` of one file."""
    from corpusmap.atomic import sha256_file

    return {"bytes": os.path.getsize(path), "sha256": sha256_file(path)}
