"""The run directory: every path in it, who may write what, and what goes stale when something changes.

::

    RUN/
      corpus.parquet, corpus.json            embed: the normalised corpus and how it was read
      embeddings/                            embed: manifest.json, shard-NNNNN.npy (+ .json receipts), tfidf/
      knn/                                   neighbors: indices.npy, distances.npy, manifest.json
      clusters/NAME.parquet                  clusters: id + one column per level; NAME.summary.parquet, NAME.json
      maps/NAME.parquet                      map: id, x, y + metadata; its manifest in the parquet metadata
      maps/NAME.renders.json                 plot, view, export: the figures, pages and exports of map NAME
      exports/NAME.FORMAT.parquet            export: a map for other tools (embedding-atlas)
      eval/                                  evaluate: metrics.json, metrics.md, manifest.json
      excess/                                excess: counts, tables, report.md, figures, manifest.json
      pipeline.json                          run: what the last `corpusmap run` did
      .corpusmap/                            locks, staging folders, checksums already verified

Every output's manifest holds a ``stage`` block (:mod:`corpusmap.stage`): the parameters, the fingerprints of the
run outputs it was computed from (``inputs``) and its own ``fingerprint``. :meth:`Run.invalidate` removes every
output whose recorded inputs no longer match what the run holds, so the directory never mixes results of
different computations.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterable, Iterator, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from corpusmap.errors import CorpusmapError, UsageProblem
from corpusmap.manifests import read_manifest, try_read_manifest
from corpusmap.progress import info
from corpusmap.vectors import Shard, ShardedVectors

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def check_name(name: str, what: str = "name") -> str:
    """Names of maps and clusterings become file names: letters, digits, '.', '_', '-'."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or name.endswith((".renders", ".summary")):
        raise UsageProblem(f"{what} {name!r} must be letters, digits, '.', '_' or '-' (starting with a letter or "
                           "digit)")
    return name


def os_error_reason(exc: OSError) -> str:
    """Why a write failed, in words a user can act on."""
    reasons = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
               errno.EFBIG: "file too large (a file-size limit such as `ulimit -f`)",
               errno.EACCES: "permission denied", errno.EPERM: "permission denied",
               errno.EROFS: "read-only file system"}
    if exc.errno is None:
        reason = write_failure(exc)
        if reason:
            return reason
    return reasons.get(exc.errno, exc.strerror or str(exc))


_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)
_ERRNO_IN_TEXT = re.compile(r"\[errno (\d+)\]", re.IGNORECASE)
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


def write_failure(exc: OSError) -> Optional[str]:
    """The reason, if ``exc`` is a write that failed for lack of room (full disk, quota, file-size limit, read-only
    file system), including the errors pyarrow and numpy raise without an errno; else None."""
    code = exc.errno
    if code is None:
        found = _ERRNO_IN_TEXT.search(str(exc))
        code = int(found.group(1)) if found else None
    if code in _WRITE_ERRNOS:
        return os_error_reason(OSError(code, os.strerror(code)))
    if code is None and _SHORT_WRITE.search(str(exc)):  # numpy's tofile: a short write
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY:
            return f"file too large (a file-size limit: `ulimit -f` allows {limit:,} bytes)"
        return "the write was cut short (no space left on the device?)"
    return None


@contextlib.contextmanager
def writing(path: Path | str) -> Iterator[None]:
    """Turn an OSError while writing ``path`` into one clear line naming it and the reason."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, (FileNotFoundError, IsADirectoryError)) and exc.errno not in (errno.ENOSPC,):
            raise
        where = exc.filename2 or exc.filename or path  # a rename: the target's folder is the one refused
        if ".tmp-" in Path(str(where)).name:  # the temporary file of an atomic write: name the file it becomes
            where = path
        raise CorpusmapError(f"cannot write {where}: {os_error_reason(exc)}; nothing was replaced") from None


@dataclass
class Output:
    """One stored output of the run: its key, the ``stage`` block of its manifest, and what removing it deletes."""

    key: str
    block: dict
    paths: list[Path] = field(default_factory=list)
    forget: Optional[object] = None  # called after the paths are removed (e.g. to drop a render's record)

    @property
    def fingerprint(self) -> Optional[str]:
        return self.block.get("fingerprint")

    @property
    def inputs(self) -> dict:
        return self.block.get("inputs") or {}


class Run:
    """A run directory (it need not exist yet); see the module docstring for its layout."""

    MANIFEST = "manifest.json"            # of embeddings/, knn/, eval/, excess/
    KNN_FILES = ("indices.npy", "distances.npy")
    EVAL_FILES = ("metrics.json", "metrics.md")

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.removed: list[str] = []  # what :meth:`invalidate` removed through this object, in order

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    def refresh(self) -> None:
        """Forget what was read of the corpus and the vectors (after they were rewritten)."""
        for name in ("corpus_manifest", "_corpus_file", "vectors"):
            self.__dict__.pop(name, None)

    # ----------------------------------------------------------------------------------------------- paths
    corpus_path = property(lambda self: self.path / "corpus.parquet")
    corpus_manifest_path = property(lambda self: self.path / "corpus.json")
    embeddings_dir = property(lambda self: self.path / "embeddings")
    embeddings_manifest_path = property(lambda self: self.embeddings_dir / self.MANIFEST)
    tfidf_dir = property(lambda self: self.embeddings_dir / "tfidf")
    knn_dir = property(lambda self: self.path / "knn")
    clusters_dir = property(lambda self: self.path / "clusters")
    maps_dir = property(lambda self: self.path / "maps")
    exports_dir = property(lambda self: self.path / "exports")
    eval_dir = property(lambda self: self.path / "eval")
    excess_dir = property(lambda self: self.path / "excess")
    pipeline_state_path = property(lambda self: self.path / "pipeline.json")
    meta_dir = property(lambda self: self.path / ".corpusmap")

    def shard_path(self, index: int) -> Path:
        return self.embeddings_dir / f"shard-{index:05d}.npy"

    def receipt_path(self, index: int) -> Path:
        return self.embeddings_dir / f"shard-{index:05d}.json"

    knn_manifest_path = property(lambda self: self.knn_dir / self.MANIFEST)
    eval_manifest_path = property(lambda self: self.eval_dir / self.MANIFEST)

    def knn_file(self, name: str) -> Path:
        """One of :data:`KNN_FILES` of the kNN graph."""
        return self.knn_dir / name

    def cluster_paths(self, name: str) -> dict[str, Path]:
        check_name(name, "clustering name")
        return {"clusters": self.clusters_dir / f"{name}.parquet",
                "summary": self.clusters_dir / f"{name}.summary.parquet",
                "manifest": self.clusters_dir / f"{name}.json"}

    def map_path(self, name: str) -> Path:
        return self.maps_dir / f"{check_name(name, 'map name')}.parquet"

    def renders_path(self, map_name: str) -> Path:
        return self.maps_dir / f"{check_name(map_name, 'map name')}.renders.json"

    def default_render_path(self, map_name: str, suffix: str, variant: Optional[str] = None) -> Path:
        """``maps/NAME.png`` or ``maps/NAME.VARIANT.png`` (and .svg, .pdf, .html)."""
        middle = f".{variant}" if variant else ""
        return self.maps_dir / f"{check_name(map_name, 'map name')}{middle}.{suffix.lstrip('.')}"

    def owns(self, path: str | os.PathLike) -> bool:
        """Whether ``path`` is where a stage keeps its own files (corpus, vectors, graph, clusterings, maps and
        their manifests, evaluation, excess, state): no file written at the user's request may go there."""
        path = Path(path).resolve()
        if path in (self.corpus_path.resolve(), self.corpus_manifest_path.resolve(),
                    self.pipeline_state_path.resolve()):
            return True
        folders = (self.embeddings_dir, self.knn_dir, self.clusters_dir, self.eval_dir, self.excess_dir, self.meta_dir)
        if any(f.resolve() in path.parents for f in folders):
            return True
        return path.parent == self.maps_dir.resolve() and path.suffix in (".parquet", ".json")

    def refuse_own_file(self, path: str | os.PathLike, given, map_name: Optional[str] = None) -> None:
        """A usage error when ``-o given`` (resolved: ``path``) is a file of the run's own stages (:meth:`owns`),
        or, for a render of map ``map_name``, a figure or page named after another map of the run (``maps/tsne.png``
        drawn from the umap map would stand for the tsne map's)."""
        from corpusmap.errors import UsageProblem

        if given is None:
            return
        if self.owns(path):
            raise UsageProblem(f"-o {given}: a file of the run's own stages ({self.path}); write it elsewhere, e.g. "
                               f"under {self.exports_dir}")
        path = Path(path).resolve()
        if not map_name or path.parent != self.maps_dir.resolve():
            return
        named = [m for m in self.list_maps() if path.name.startswith(m + ".")]  # names may hold dots: the longest
        other = max(named, key=len) if named else None
        if other is not None and other != map_name:
            raise UsageProblem(f"-o {given}: named after map {other!r} of {self.path}, not {map_name!r}; name it "
                               f"{map_name}.* or write it elsewhere")

    def list_maps(self) -> list[str]:
        return sorted(p.stem for p in self.maps_dir.glob("*.parquet")) if self.maps_dir.is_dir() else []

    def list_clusterings(self) -> list[str]:
        if not self.clusters_dir.is_dir():
            return []
        return sorted(p.stem for p in self.clusters_dir.glob("*.json"))

    # ----------------------------------------------------------------------------------------------- corpus
    def has_corpus(self) -> bool:
        return self.corpus_path.is_file() and self.corpus_manifest_path.is_file()

    def need_corpus(self) -> None:
        if not self.path.is_dir():
            raise CorpusmapError(f"no run directory at {self.path}; create one with "
                                 f"`corpusmap embed INPUT -o {self.path}`")
        if not self.has_corpus():
            raise CorpusmapError(f"{self.path} holds no corpus; run `corpusmap embed INPUT -o {self.path}` first")

    @cached_property
    def corpus_manifest(self) -> dict:
        self.need_corpus()
        return read_manifest(self.corpus_manifest_path, self.rebuild_corpus_hint)

    @property
    def texts_begin_with_titles(self) -> bool:
        """Whether the corpus was read with ``embed --title-col``: each text then begins with its title."""
        read_as = self.corpus_manifest.get("columns") or {}
        return read_as.get("title") is not None and read_as.get("prepend", True)

    @property
    def rebuild_corpus_hint(self) -> str:
        inputs = [i.get("path") for i in (try_read_manifest(self.corpus_manifest_path) or {}).get("inputs") or []
                  if isinstance(i, dict) and i.get("path")]
        shown = (" ".join(inputs[:3]) + (" ..." if len(inputs) > 3 else "")) if inputs else "INPUT"
        return (f"rebuild it with `corpusmap embed {shown} -o {self.path}` and the reader options it was read with "
                "(the same inputs give the same corpus and keep everything computed from it)")

    @cached_property
    def _corpus_file(self) -> pq.ParquetFile:
        self.need_corpus()
        self.verify(self.corpus_path, self.corpus_manifest.get("sha256"), self.rebuild_corpus_hint)
        try:
            return pq.ParquetFile(self.corpus_path, memory_map=True)
        except (pa.ArrowException, OSError) as exc:
            raise CorpusmapError(f"{self.corpus_path} is damaged ({exc}); {self.rebuild_corpus_hint}") from None

    def read_corpus(self, columns: Optional[list[str]] = None) -> pa.Table:
        """The normalised corpus (memory-mapped), optionally only some columns (an unknown one is an error listing
        the corpus's columns: pyarrow would leave it out without a word)."""
        from corpusmap.errors import UsageProblem

        unknown = [c for c in columns or () if c not in self.corpus_columns()]
        if unknown:
            raise UsageProblem(f"{self.corpus_path} has no column {', '.join(map(repr, unknown))}; columns: "
                               f"{', '.join(self.corpus_columns())}")
        try:
            return self._corpus_file.read(columns=columns)
        except (pa.ArrowException, OSError) as exc:
            raise CorpusmapError(f"{self.corpus_path} is damaged ({exc}); {self.rebuild_corpus_hint}") from None

    def corpus_columns(self) -> list[str]:
        return self._corpus_file.schema_arrow.names

    @property
    def n_rows(self) -> int:
        return self._corpus_file.metadata.num_rows

    @property
    def corpus_fingerprint(self) -> str:
        manifest = self.corpus_manifest
        return (manifest.get("stage") or {}).get("fingerprint") or manifest["sha256"]

    def iter_corpus_batches(self, columns: list[str], batch_rows: int = 16_384) -> Iterator[pa.RecordBatch]:
        """The corpus in record batches of some columns (bounded memory)."""
        yield from self._corpus_file.iter_batches(batch_size=batch_rows, columns=columns)

    def read_corpus_rows(self, start: int, stop: int, columns: list[str]) -> pa.Table:
        """Rows ``start:stop`` of some columns, reading only the row groups that hold them. Each call reads through
        its own reader: a pyarrow reader is not safe for the concurrent calls of an encoder's overlapped shards
        (``ReadRangeCache did not find matching cache entry``)."""
        self._corpus_file  # (checked against its checksum once)
        try:
            parquet = pq.ParquetFile(self.corpus_path, memory_map=True)
        except (pa.ArrowException, OSError) as exc:
            raise CorpusmapError(f"{self.corpus_path} is damaged ({exc}); {self.rebuild_corpus_hint}") from None
        groups, offsets, offset = [], [], 0
        for g in range(parquet.num_row_groups):
            rows = parquet.metadata.row_group(g).num_rows
            if offset < stop and offset + rows > start:
                groups.append(g)
                offsets.append(offset)
            offset += rows
        if not groups:
            return parquet.schema_arrow.empty_table().select(columns)
        table = parquet.read_row_groups(groups, columns=columns)
        return table.slice(start - offsets[0], stop - start)

    def check_corpus_column(self, name: str, flag: str) -> None:
        """An unknown corpus column is an error naming ``flag`` and listing all of the corpus's columns."""
        from corpusmap.errors import UsageProblem

        columns = self.corpus_columns()
        if name not in columns:
            raise UsageProblem(f"{flag} {name!r}: no such column in {self.corpus_path}{self.read_as_hint(name, flag)}"
                               f"; columns: {', '.join(columns)}")

    def source_column(self, own: str) -> str:
        """The input's name of a corpus column (``subjects`` for the ``label`` that embed read from it), for
        titles a user recognises; ``own`` when it kept its name or was not read from one."""
        source = self._read_as.get(own)
        return source if isinstance(source, str) and source else own

    @property
    def _read_as(self) -> dict:
        """Each corpus column -> the input column embed read it from."""
        return (self.corpus_manifest.get("stats") or {}).get("columns") or {}

    def read_as_hint(self, name: str, flag: str) -> str:
        """For a source column that embed read as one of its own (``subjects`` as ``label``): the flag to use."""
        read_as = [own for own, source in self._read_as.items() if source == name and own in self.corpus_columns()]
        return f"; the source column {name!r} was read as {read_as[0]!r}: use {flag} {read_as[0]}" if read_as else ""

    def corpus_column(self, name: str, flag: str) -> pa.ChunkedArray:
        """One corpus column; an unknown name is an error naming ``flag`` and listing the corpus's columns."""
        self.check_corpus_column(name, flag)
        return self.read_corpus([name]).column(name)

    # ----------------------------------------------------------------------------------------------- vectors
    @property
    def rebuild_vectors_hint(self) -> str:
        return f"re-run `corpusmap embed` for {self.path} (add --overwrite to start over)"

    def has_vectors(self) -> bool:
        manifest = try_read_manifest(self.embeddings_manifest_path)
        return bool(manifest and manifest.get("complete"))

    @property
    def embeddings_manifest(self) -> dict:
        if not self.embeddings_manifest_path.is_file():
            raise CorpusmapError(f"no vectors in {self.path}; run `corpusmap embed INPUT -o {self.path}` first")
        return read_manifest(self.embeddings_manifest_path, self.rebuild_vectors_hint)

    @cached_property
    def vectors(self) -> ShardedVectors:
        """All shards as one memory-mapped (n, d) matrix; each shard's checksum is verified once, when first read."""
        manifest = self.embeddings_manifest
        if not manifest.get("complete"):
            total = manifest.get("n_shards", "?")
            # finished shards: their receipts (the manifest lists them only once the shards are merged)
            done = max(len(manifest.get("shards", [])), len(list(self.embeddings_dir.glob("shard-*.json"))))
            raise CorpusmapError(
                f"the vectors in {self.path} are incomplete ({done} of {total} shards present); re-run the same "
                f"`corpusmap embed` command to finish, or `corpusmap merge {self.path}` after a job array")
        shards = [Shard(s["index"], s["start"], s["stop"], self.embeddings_dir / s["file"], s.get("sha256"))
                  for s in manifest["shards"]]
        for shard in shards:
            if not shard.path.is_file():
                raise CorpusmapError(f"vector shard {shard.path} is missing; re-run `corpusmap embed` for "
                                     f"{self.path} to re-encode it")
        if manifest.get("n") is not None and self.has_corpus() and int(manifest["n"]) != self.n_rows:
            raise CorpusmapError(f"{self.path}: {manifest['n']:,} vectors but {self.n_rows:,} corpus rows; "
                                 f"{self.rebuild_vectors_hint}")
        hint = f"re-run `corpusmap embed` for {self.path}: it encodes it again"
        return ShardedVectors(shards, int(manifest["dim"]), manifest["store_dtype"],
                              verify=lambda shard: self.verify(shard.path, shard.sha256, hint))

    @property
    def embeddings_fingerprint(self) -> str:
        return self.embeddings_manifest["stage"]["fingerprint"]

    # ----------------------------------------------------------------------------------------------- checksums
    @property
    def _verified_path(self) -> Path:
        return self.meta_dir / "verified.json"

    def verify(self, path: Path, sha256: Optional[str], rebuild: str) -> None:
        """Check ``path`` against its recorded checksum, once: a file whose size and modification time are those
        it had when it last passed is not read again."""
        if not sha256:
            return
        from corpusmap.atomic import sha256_file

        try:
            st = path.stat()
        except FileNotFoundError:
            raise CorpusmapError(f"{path} is missing; {rebuild}") from None
        key = os.path.relpath(path, self.path)
        stamp = {"sha256": sha256, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
        cache = try_read_manifest(self._verified_path) or {}
        if cache.get(key) == stamp:
            return
        if sha256_file(path) != sha256:
            raise CorpusmapError(f"{path} fails its checksum (damaged or changed since it was written); {rebuild}")
        self._record_verified(key, stamp)

    def _record_verified(self, key: str, stamp: dict) -> None:
        """One entry of ``verified.json``, written under an OS lock so that concurrent writers of one run keep each
        other's entries; a read-only run still reads (it just verifies again next time)."""
        import fcntl

        from corpusmap.atomic import write_json

        with contextlib.suppress(OSError, CorpusmapError), self._lock_file("verified.json") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            cache = try_read_manifest(self._verified_path) or {}
            cache[key] = stamp
            write_json(self._verified_path, cache)

    def remember_checksum(self, path: Path) -> None:
        """Record the checksum of a file this process has just written, for an output whose manifest cannot hold
        its own file's checksum (a map parquet, whose manifest is inside it): :meth:`changed_since_written`
        compares with it later. (Lost with ``.corpusmap``, e.g. in a copy without it: then only the map's
        coordinates are checked.)"""
        from corpusmap.atomic import sha256_file

        sha = sha256_file(path)
        st = path.stat()
        self._record_verified(os.path.relpath(path, self.path),
                              {"sha256": sha, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns})

    def changed_since_written(self, path: Path, sha256: Optional[str] = None) -> bool:
        """Whether ``path`` no longer has the checksum ``sha256``, by default the one :meth:`remember_checksum`
        recorded (False when there is none)."""
        if sha256 is None:
            recorded = (try_read_manifest(self._verified_path) or {}).get(os.path.relpath(path, self.path)) or {}
            sha256 = recorded.get("sha256")
        try:
            self.verify(path, sha256, "")
        except CorpusmapError:
            return True
        return False

    def render_problem(self, path: Path, block: dict) -> Optional[str]:
        """Why a figure, page or export (``block``: its render record, with the file's size and checksum) is not
        the file that was written, or None."""
        if not path.is_file():
            return f"{path} is missing"
        if path.stat().st_size != block.get("bytes") or self.changed_since_written(path, block.get("sha256") or ""):
            return f"{path} was changed since it was written"
        return None

    # ----------------------------------------------------------------------------------------------- writers
    def _lock_file(self, key: str):
        folder = self.meta_dir / "locks"
        with writing(folder):
            folder.mkdir(parents=True, exist_ok=True)
            return open(folder / f"{_slug(key)}.lock", "a+")

    def hold(self, key: str) -> None:
        """A shared OS lock on ``key`` that this process keeps until it ends (several holders at once), so that
        :meth:`busy` tells other processes that ``key`` is in use."""
        import fcntl

        if key in self.__dict__.setdefault("_held", {}):
            return
        handle = self._lock_file(key)
        fcntl.flock(handle, fcntl.LOCK_SH)
        self._held[key] = handle

    def release(self, key: str) -> None:
        """Let go of a lock taken with :meth:`hold`."""
        handle = self.__dict__.get("_held", {}).pop(key, None)
        if handle is not None:
            handle.close()

    def busy(self, key: str) -> bool:
        """Whether a process (another one, or this one through another Run object) :meth:`hold` s ``key`` now."""
        import fcntl

        handle = self._lock_file(key)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            handle.close()

    @contextlib.contextmanager
    def lock(self, key: str, wait: bool = True, say: bool = True) -> Iterator[None]:
        """An exclusive OS lock on one output of the run (released when the block ends or the process dies).

        A second writer of the same output waits (``wait``; saying so unless not ``say``) or fails with a line
        that says who holds it.
        """
        import fcntl

        handle = self._lock_file(key)
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not wait:
                    raise CorpusmapError(f"another corpusmap process is writing {key} in {self.path}; wait for it "
                                         "to finish") from None
                if say:
                    info(f"waiting for another corpusmap process that is writing {key} in {self.path}")
                fcntl.flock(handle, fcntl.LOCK_EX)
            yield
        finally:
            handle.close()

    @contextlib.contextmanager
    def staging(self, key: str) -> Iterator[Path]:
        """An empty folder for the outputs of ``key`` while they are computed (hold ``lock(key)``); removed
        afterwards whatever happens. Folders left by killed writers of the same key are removed first."""
        root = self.meta_dir / "tmp"
        prefix = f"{_slug(key)}-"
        with writing(root):
            root.mkdir(parents=True, exist_ok=True)
            for orphan in _left_by_writers(root, prefix):
                shutil.rmtree(orphan, ignore_errors=True)
            folder = root / f"{prefix}{os.getpid()}"
            folder.mkdir()
        try:
            yield folder
        except OSError as exc:  # a full disk or a file-size limit while computing: say so, keep the old output
            reason = write_failure(exc)
            if reason is None:
                raise
            raise CorpusmapError(f"cannot write the {key} output of {self.path} (staged in {folder}): {reason}; "
                                 "nothing was replaced") from None
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def commit_folder(self, staged: Path, target: Path) -> None:
        """Replace folder ``target`` by ``staged`` in two renames (never a mix of old and new files)."""
        prefix = f"old-{target.name}-"
        for orphan in _left_by_writers(self.meta_dir / "tmp", prefix):  # by a writer killed between the renames
            shutil.rmtree(orphan, ignore_errors=True)
        old = self.meta_dir / "tmp" / f"{prefix}{os.getpid()}"
        with writing(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                os.replace(target, old)
            os.replace(staged, target)
        shutil.rmtree(old, ignore_errors=True)

    def commit_files(self, staged: Path, target_dir: Path, manifest: Optional[str] = None) -> list[Path]:
        """Move every file of ``staged`` into ``target_dir``; the file named ``manifest`` goes last, after the old
        one was removed, so the output is never described by a manifest of another computation."""
        names = sorted(p.name for p in staged.iterdir())
        if manifest in names:
            names.remove(manifest)
            names.append(manifest)
        moved = []
        with writing(target_dir):
            target_dir.mkdir(parents=True, exist_ok=True)
            if manifest:
                (target_dir / manifest).unlink(missing_ok=True)
            for name in names:
                os.replace(staged / name, target_dir / name)
                moved.append(target_dir / name)
        return moved

    # ----------------------------------------------------------------------------------------------- outputs
    def outputs(self) -> list[Output]:
        """Every output the run holds, with its stage block."""
        found: list[Output] = []

        def add(key: str, manifest: Optional[dict], paths: list[Path]) -> None:
            if manifest is not None:
                found.append(Output(key, manifest.get("stage") or {}, paths))

        if self.corpus_manifest_path.is_file():
            add("corpus", try_read_manifest(self.corpus_manifest_path) or {},
                [self.corpus_path, self.corpus_manifest_path])
        add("embeddings", try_read_manifest(self.embeddings_manifest_path), [self.embeddings_dir])
        add("knn", try_read_manifest(self.knn_manifest_path), [self.knn_dir])
        for name in self.list_clusterings():
            paths = self.cluster_paths(name)
            add(f"clusters/{name}", try_read_manifest(paths["manifest"]) or {}, list(paths.values()))
        for name in self.list_maps():
            path = self.map_path(name)
            stage = read_map_stage(path).get("stage") or {"fingerprint": file_fingerprint(path)}  # made elsewhere
            found.append(Output(f"maps/{name}", stage, [path]))
        for renders_file in sorted(self.maps_dir.glob("*.renders.json")) if self.maps_dir.is_dir() else []:
            map_name = renders_file.name[:-len(".renders.json")]
            for rel, entry in ((try_read_manifest(renders_file) or {}).get("renders") or {}).items():
                path = self.resolve(rel)
                inside = path.resolve().is_relative_to(self.path.resolve())  # never delete the user's own files
                folder = (entry.get("folder") or {}).get("path")  # a page's NAME_files/<version>/: all of NAME_files
                paths = [path] + ([self.resolve(folder).parent] if folder else []) if inside else []
                found.append(Output(f"render:{rel}", entry, paths,
                                    forget=lambda m=map_name, r=rel: self.forget_render(m, r)))
        add("eval", try_read_manifest(self.eval_manifest_path), [self.eval_dir])
        add("excess", try_read_manifest(self.excess_dir / self.MANIFEST), [self.excess_dir])
        return found

    def outputs_by_key(self) -> dict[str, Output]:
        return {o.key: o for o in self.outputs()}

    def invalidate(self, gone: Iterable[str] = ()) -> list[str]:
        """Remove every output computed from an earlier version of what the run holds now (another corpus, other
        vectors, an earlier graph, map or clustering) or from an output in ``gone`` (removed on purpose), and
        everything computed from those; returns the keys removed (also added to :attr:`removed`). An input that
        is merely missing (deleted or moved by hand, or its manifest damaged) removes nothing: what was computed
        from it is still what it was. The most derived outputs go first, so that a process killed midway leaves
        the rest still recognisably stale (the next stage run finishes the work)."""
        outputs = self.outputs()
        current = {o.key: o.fingerprint for o in outputs if o.fingerprint is not None}
        gone = set(gone)
        stale, grown = set(gone), True
        while grown:  # the closure: computed from a changed output, or from one that goes
            grown = False
            for o in outputs:
                if o.key not in stale and any(k in stale or (k in current and current[k] != fp)
                                              for k, fp in o.inputs.items()):
                    stale.add(o.key)
                    grown = True
        left = sorted((o for o in outputs if o.key in stale - gone), key=lambda o: o.key)  # (gone: the caller removes)
        removed = []
        while left:  # those no other stale output was computed from first (all at once in a cycle)
            first = [o for o in left if not any(o.key in other.inputs for other in left)] or left
            for output in first:
                if not self._remove(output):  # (a read-only run: nothing is said to be removed that is still there)
                    continue
                kept = output.key.startswith("render:") and not output.paths  # a figure outside the run
                removed.append(f"the record of {output.key[len('render:'):]} (a file outside the run: kept, out "
                               "of date)" if kept else output.key)
            left = [o for o in left if o not in first]
        self.removed += removed
        return removed

    def _remove(self, output: Output) -> bool:
        """Delete the output's files (and forget a render's record); whether it is gone."""
        for path in output.paths:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
        if any(path.exists() for path in output.paths):
            return False
        try:
            if output.forget is not None:
                output.forget()
        except OSError:
            return False
        return True

    def resolve(self, rel: str) -> Path:
        """The path that :meth:`relative` gave ``rel``."""
        return Path(rel) if Path(rel).is_absolute() else self.path / rel

    def relative(self, path: Path) -> str:
        """``path`` relative to the run if it lies inside it, else absolute: how renders are keyed."""
        path = Path(path).resolve()
        root = self.path.resolve()
        return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)

    def record_render(self, map_name: str, path: Path, block: dict) -> None:
        """Note a figure or page drawn from map ``map_name`` (hold ``lock('renders/NAME')``)."""
        from corpusmap.atomic import write_json

        renders_file = self.renders_path(map_name)
        data = try_read_manifest(renders_file) or {"map": map_name, "renders": {}}
        data["renders"][self.relative(path)] = block
        with writing(renders_file):
            write_json(renders_file, data)

    def forget_render(self, map_name: str, rel: str) -> None:
        """Drop the record of one render (and the record file once it lists none), under the lock its writers
        hold, so that a figure another process records meanwhile keeps its record."""
        from corpusmap.atomic import write_json

        renders_file = self.renders_path(map_name)
        with self.lock(f"renders/{map_name}"):
            data = try_read_manifest(renders_file)
            if data and rel in data.get("renders", {}):
                del data["renders"][rel]
                if data["renders"]:
                    write_json(renders_file, data)
                else:
                    renders_file.unlink(missing_ok=True)

    def render_block(self, map_name: str, path: Path) -> Optional[dict]:
        data = try_read_manifest(self.renders_path(map_name)) or {}
        return (data.get("renders") or {}).get(self.relative(path))


def read_map_stage(path: Path) -> dict:
    """The manifest stored in a map parquet's key-value metadata (``{}`` if it cannot be read)."""
    try:
        raw = (pq.read_schema(path).metadata or {}).get(b"corpusmap")
        return json.loads(raw) if raw else {}
    except (pa.ArrowException, OSError, ValueError):
        return {}


def file_fingerprint(path: Path) -> str:
    """A cheap fingerprint of a file corpusmap did not write (a map made elsewhere): its size and mtime."""
    st = path.stat()
    return f"file:{st.st_size}:{st.st_mtime_ns}"


def _left_by_writers(root: Path, prefix: str) -> list[Path]:
    """The folders ``PREFIX<pid>`` in ``root``: those of writers of one output (``maps_tsne-123``), not of another
    output whose name merely begins alike (``maps_tsne-2-123``, map ``tsne-2``)."""
    pattern = re.compile(re.escape(prefix) + r"\d+")
    return [p for p in root.glob(prefix + "*") if pattern.fullmatch(p.name)] if root.is_dir() else []


def _slug(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("_") or "run"


def open_run(path: str | os.PathLike) -> Run:
    """An existing run directory (it must hold at least the corpus)."""
    run = Run(path)
    run.need_corpus()
    return run
