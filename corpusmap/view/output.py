"""Writing a page atomically: temporary names while writing, renames at the end.

A single-file page is ``NAME.html``. A page with data files is ``NAME.html`` plus ``NAME_files/<version>/``; the
version folder is complete before the HTML that names it replaces the old one, so at every moment the page on
disk is whole (old or new), and a failed write leaves the old page untouched.
"""
from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
from collections import Counter
from pathlib import Path
from typing import BinaryIO, Optional

from corpusmap.errors import CorpusmapError
from corpusmap.view.encoding import put_call

_VERSION_RE = re.compile(r"^(?:[0-9a-f]{12}|\.tmp-[0-9a-f]{12})$")


class InlineSink:
    """Data scripts written into the page itself, as inline <script> elements."""

    def __init__(self, fh: BinaryIO):
        self.fh = fh
        self.sizes: Counter = Counter()
        self.files = 0

    def put(self, key: str, payload: dict, part: str) -> None:
        data = f"<script>{put_call(key, payload)}</script>\n".encode("utf-8")
        self.fh.write(data)
        self.sizes[part] += len(data)


class FolderSink:
    """Data scripts written as files ``KEY.js`` into the (temporary) version folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.sizes: Counter = Counter()
        self.files = 0

    def put(self, key: str, payload: dict, part: str) -> None:
        path = self.folder / f"{key}.js"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = put_call(key, payload).encode("utf-8")
        path.write_bytes(data)
        self.sizes[part] += len(data)
        self.files += 1


class PageOutput:
    """The temporary files of one page write and the renames that publish them."""

    def __init__(self, html: Path, with_folder: bool):
        self.html = Path(html)
        self.root = self.html.with_name(f"{self.html.stem}_files")
        self.version = secrets.token_hex(6)
        self.with_folder = with_folder
        self.tmp_html = self.html.with_name(f".{self.html.name}.tmp-{self.version}")
        self.tmp_folder = self.root / f".tmp-{self.version}"
        self.folder = self.root / self.version
        self.work = self.html.with_name(f".{self.html.stem}.work-{self.version}")
        self.fh: Optional[BinaryIO] = None
        self.published = False

    @property
    def folder_url(self) -> Optional[str]:
        """The data folder relative to the page, as the page's scripts name it."""
        return f"{self.root.name}/{self.version}" if self.with_folder else None

    def open(self) -> BinaryIO:
        """Create the temporary names and open the HTML for writing (CorpusmapError if that is not possible)."""
        try:
            self.html.parent.mkdir(parents=True, exist_ok=True)
            if self.with_folder:
                self.tmp_folder.mkdir(parents=True)
            self.work.mkdir()
            self.fh = open(self.tmp_html, "wb")
        except OSError as e:
            self.abort()
            raise CorpusmapError(f"cannot write the page {self.html}: {e.strerror or e}") from None
        return self.fh

    def sink(self):
        """Where the data scripts go: into the HTML (single file) or into the version folder."""
        return FolderSink(self.tmp_folder) if self.with_folder else InlineSink(self.fh)

    def commit(self) -> None:
        """Publish: the version folder first, then the HTML that names it; then remove older versions."""
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        shutil.rmtree(self.work, ignore_errors=True)
        if self.with_folder:
            os.rename(self.tmp_folder, self.folder)
        os.replace(self.tmp_html, self.html)
        self.published = True
        self._remove_old_versions()

    def abort(self) -> None:
        """Remove everything this write made; the page that was there stays as it was."""
        if self.fh is not None and not self.fh.closed:
            self.fh.close()
        if self.published:
            return
        for path in (self.tmp_folder, self.work, self.folder):  # the version folder, if the HTML never named it
            shutil.rmtree(path, ignore_errors=True)
        if self.tmp_html.exists():
            self.tmp_html.unlink()
        if self.root.is_dir() and not any(self.root.iterdir()):
            self.root.rmdir()

    def _remove_old_versions(self) -> None:
        if not self.root.is_dir():
            return
        for entry in self.root.iterdir():
            if entry != self.folder and entry.is_dir() and _VERSION_RE.match(entry.name):
                shutil.rmtree(entry, ignore_errors=True)
        if not any(self.root.iterdir()):
            self.root.rmdir()


def folder_listing(folder: Path) -> dict:
    """The files of a page's data folder, their bytes and a digest of their names and sizes: what tells a later
    run that a file was deleted, cut short or added, without reading any."""
    entries = sorted((p.relative_to(folder).as_posix(), p.stat().st_size) for p in Path(folder).rglob("*")
                     if p.is_file())
    digest = hashlib.sha256("\n".join(f"{name}\t{size}" for name, size in entries).encode()).hexdigest()
    return {"files": len(entries), "bytes": sum(size for _, size in entries), "digest": digest}
