"""The embed stage: read the inputs into ``RUN/corpus.parquet``, then encode it into vector shards.

Resuming: the corpus is re-read only when the inputs or reader options changed (inputs that were only touched or
moved give the same corpus, checked by its checksum, and keep the vectors); a shard with a receipt is complete and
skipped. Workers of a job array (``worker=(i, n)``) take every n-th shard, so several processes fill one run
without collisions: one of them reads the corpus while the others wait for it, each shard is encoded under its
own lock, and whoever sees the last receipt completes the manifest.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from corpusmap import progress
from corpusmap.atomic import read_json, save_npy, sha256_file, write_json
from corpusmap.corpus import (ColumnMap, CorpusFilters, CorpusStats, detect_format, input_fingerprint, iter_corpus,
                              resolve_inputs)
from corpusmap.encoders import encoder_kind
from corpusmap.errors import CorpusmapError, UsageProblem
from corpusmap.manifests import MANIFEST_FORMAT, canonical_hash, timestamp, try_read_manifest, versions
from corpusmap.run import Run, writing
from corpusmap.stage import (Result, Stage, Status, changed_flags, check_numbers, describe_changes, items,
                             params_dict, refuse_unused)

log = logging.getLogger("corpusmap")
STORE_DTYPES = ("float32", "float16")
PACKAGES = ("torch", "transformers", "sentence-transformers", "scikit-learn")


@dataclass(frozen=True)
class EmbedOptions:
    """Everything that decides the vectors' bytes (and so must match when a run resumes)."""

    model: str = "all-MiniLM-L6-v2"
    pooling: str = "auto"
    max_length: Optional[int] = None
    batch_size: int = 64
    max_tokens_per_batch: Optional[int] = None
    dtype: str = "float32"
    store_dtype: str = "auto"
    normalize: bool = False
    shard_rows: int = 16384
    dim: int = 300  # fitted encoders (tfidf) only
    seed: int = 42  # fitted encoders only
    fit_rows: int = 200_000  # fitted encoders only
    fit_from: Optional[str] = None  # fitted encoders only: another run whose fit to reuse (one vector space)
    vectors: Optional[str] = None  # vectors made elsewhere (FILE.npy or FILE.parquet:COLUMN), stored as they are

    def __post_init__(self):
        check_numbers(self)
        if self.shard_rows < 1:
            raise UsageProblem("--shard-rows must be at least 1")
        self._check_applicable()
        self.resolved_store_dtype()
        if self.fit_from:
            kind = encoder_kind(self.model)
            if not kind.fitted:
                raise UsageProblem("--fit-from reuses a TF-IDF fit; it goes with --model tfidf only")
            if not kind.has_fit(self.fit_from):
                raise CorpusmapError(f"--fit-from {self.fit_from}: no {kind.name} fit there "
                                     f"(embeddings/{kind.name}); embed that run with --model {kind.name} first")
            problem = fit_problem(Run(self.fit_from))
            if problem:
                raise CorpusmapError(f"--fit-from {self.fit_from}: {problem}; run `corpusmap embed` for that run "
                                     "again (it fits anew with the same seed and checks the result)")

    def _check_applicable(self) -> None:
        """An option of another kind of encoder, changed from its default, is refused (it would have no effect)."""
        model_options = ("pooling", "max_length", "batch_size", "max_tokens_per_batch", "dtype")
        fit_options = ("dim", "seed", "fit_rows")
        if self.vectors:
            refuse_unused(changed_flags(self, "model", *model_options, *fit_options, "fit_from"),
                          "--vectors stores the given vectors as they are (no model runs)")
        elif encoder_kind(self.model).fitted:
            refuse_unused(changed_flags(self, *model_options),
                          f"for transformer models, which --model {self.model} is not")
            if self.fit_from:  # (given as that fit has them, they are welcome)
                fit = (try_read_manifest(Run(self.fit_from).embeddings_manifest_path) or {}).get("params") or {}
                fit["dim"] = fit.get("requested_dim", fit.get("dim"))
                own = ", ".join(f"{n} {fit[n]}" for n in fit_options if fit.get(n) is not None)
                refuse_unused(changed_flags(self, *[n for n in fit_options if getattr(self, n) != fit.get(n)]),
                              "--fit-from reuses the other run's fit, with its own dimension and seed"
                              + (f" ({own})" if own else ""))
        else:
            refuse_unused(changed_flags(self, *fit_options),
                          "for --model tfidf (a fitted encoder); a transformer model has its own dimension")

    def resolved_store_dtype(self) -> str:
        if self.store_dtype == "auto":
            if self.vectors:
                from corpusmap.vector_files import open_vector_file

                return "float16" if open_vector_file(self.vectors).dtype == "float16" else "float32"
            return "float16" if self.dtype == "float16" else "float32"
        if self.store_dtype not in STORE_DTYPES:
            raise UsageProblem(f"unknown --store-dtype {self.store_dtype!r}; use auto, float32 or float16")
        return self.store_dtype


@dataclass(frozen=True)
class EmbedParams:
    """The inputs, how they are read, and the encoder options."""

    inputs: tuple = ()
    columns: ColumnMap = ColumnMap()
    filters: CorpusFilters = CorpusFilters()
    section_labels: bool = False  # PubMed XML: prefix abstract sections with their labels
    options: EmbedOptions = EmbedOptions()

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(str(p) for p in items(self.inputs)))
        if not self.inputs:
            raise UsageProblem("give at least one INPUT file, folder or glob")
        if self.filters.max_chars is not None and self.filters.max_chars < self.filters.min_chars:
            raise UsageProblem("--max-chars must be at least --min-chars")


# ---------------------------------------------------------------------------------------------- corpus

def _corpus_wanted(params: EmbedParams, paths: list[Path]) -> dict:
    return {"inputs": input_fingerprint(paths), "columns": params.columns.record(),
            "filters": params.filters.record(), "pubmed_labels": params.section_labels}


def _comparable(record: Optional[dict]) -> Optional[dict]:
    """A corpus record as compared: a preset's name is left out (``--preset landscape`` reads what its filters
    given one by one read)."""
    if record is None or not isinstance(record.get("filters"), dict):
        return record
    return dict(record, filters={k: v for k, v in record["filters"].items() if k != "preset"})


def _same_files_elsewhere(old: list, new: list) -> bool:
    """Only paths or modification times differ (moved or touched files): the corpus may well be the same."""
    return len(old) == len(new) and [o.get("bytes") for o in old] == [n["bytes"] for n in new]


def _maybe_same_corpus(existing: Optional[dict], wanted: dict) -> bool:
    """The same options, and inputs that were only moved or touched: reading them may well give the same corpus
    (kept, with everything computed from it, when its checksum is the same)."""
    existing, wanted = _comparable(existing), _comparable(wanted)
    return existing is not None and all(existing.get(k) == wanted[k] for k in wanted if k != "inputs") \
        and _same_files_elsewhere(existing.get("inputs") or [], wanted["inputs"])


def _what_changed(existing: dict, wanted: dict) -> str:
    existing, wanted = _comparable(existing), _comparable(wanted)
    parts = []
    for key in ("columns", "filters", "pubmed_labels"):
        stored, given = existing.get(key), wanted[key]
        if stored != given:
            if isinstance(stored, dict) and isinstance(given, dict):
                changed = tuple((k, stored.get(k), given.get(k)) for k in sorted(set(stored) | set(given))
                                if stored.get(k) != given.get(k))
                parts.append(f"{key} {describe_changes(changed)}")
            else:
                parts.append(f"{key} {stored} -> {given}")
    old = {i["path"]: i for i in existing.get("inputs") or []}
    new = {i["path"]: i for i in wanted["inputs"]}
    moved = {}  # old path -> new path: the same name and size elsewhere
    for path in set(old) - set(new):
        for other in set(new) - set(old) - set(moved.values()):
            if Path(other).name == Path(path).name and new[other]["bytes"] == old[path].get("bytes"):
                moved[path] = other
                break
    for path in sorted(set(old) | set(new)):
        if path in moved:
            parts.append(f"input {path} moved to {moved[path]}")
        elif path in moved.values():
            continue
        elif path not in new:
            parts.append(f"input {path} no longer given")
        elif path not in old:
            parts.append(f"new input {path}")
        elif old[path].get("bytes") != new[path]["bytes"]:
            parts.append(f"input {path} changed size ({old[path].get('bytes'):,} -> {new[path]['bytes']:,} bytes)")
        elif old[path].get("mtime_ns") != new[path]["mtime_ns"]:
            parts.append(f"input {path} was modified")
    return ", ".join(parts[:4]) + (f" and {len(parts) - 4} more" if len(parts) > 4 else "") or "the reader options"


def _replace_advice(run: Run, existing: dict, wanted: dict) -> str:
    """The ways out when RUN holds another corpus: --overwrite (what it deletes), resuming with the stored inputs
    (or, when they are the inputs given, edited since, restoring them), or another directory."""
    stored = [i["path"] for i in existing.get("inputs") or []]
    shown = " ".join(stored[:3]) + (" ..." if len(stored) > 3 else "")
    shards = len(list(run.embeddings_dir.glob("shard-*.npy"))) if run.embeddings_dir.is_dir() else 0
    lost = f"its {shards:,} finished vector shard(s)" if shards else "its vectors"
    if existing.get("inputs") == wanted["inputs"]:  # the same files: only reader options changed
        resume = "; to keep it instead, give the reader options it was read with (corpus.json's columns and filters)"
    elif sorted(stored) == sorted(i["path"] for i in wanted["inputs"]):
        resume = f"; to keep it instead, restore {shown} as it was when it was read"
    else:
        resume = f"; to resume it instead, give the inputs it was read from (`corpusmap embed {shown} -o " \
            f"{run.path}` with its reader options)" if stored else ""
    return (f"add --overwrite to replace it (this deletes {lost} and everything computed from them){resume}; or "
            "choose another -o directory")


def corpus_status(run: Run, params: EmbedParams, paths: list[Path]) -> Status:
    existing = try_read_manifest(run.corpus_manifest_path) if run.corpus_path.is_file() else None
    if existing is None:
        if run.corpus_path.is_file():
            return Status(False, f"{run.corpus_manifest_path} is damaged or missing: read again")
        return Status(False, f"{run.corpus_path} is missing: read again" if run.corpus_manifest_path.is_file()
                      else "no corpus yet")
    wanted = _comparable(_corpus_wanted(params, paths))
    if _comparable({k: existing.get(k) for k in wanted}) == wanted:
        try:
            run.verify(run.corpus_path, existing.get("sha256"), run.rebuild_corpus_hint)
        except CorpusmapError:  # read again: the same corpus keeps everything computed from it
            return Status(False, f"{run.corpus_path} was damaged or changed since it was written")
        return Status(True, "current")
    # inputs only moved or touched may give the same corpus (decided once read); other changes are known now
    if _maybe_same_corpus(existing, wanted):
        return Status(False, f"{_what_changed(existing, wanted)}: read again; the same corpus keeps everything "
                             "computed from it, another one needs --overwrite", (("inputs", "stored", "given"),))
    return Status(False, f"other inputs or options: {_what_changed(existing, wanted)}",
                  (("inputs or reader options", "as read before", "changed"),))


def _read_corpus(params: EmbedParams, paths: list[Path], out: Path) -> CorpusStats:
    import pyarrow.parquet as pq

    stats = CorpusStats()
    with progress.Progress("reading", total=len(paths), unit="files") as bar:
        writer, files_seen = None, 0
        try:
            for batch in iter_corpus(paths, params.columns, params.filters, stats=stats,
                                     pubmed_labels=params.section_labels):
                if writer is None:
                    writer = pq.ParquetWriter(out, batch.schema, compression="zstd")
                writer.write_batch(batch, row_group_size=65536)
                if stats.files > files_seen:
                    bar.update(stats.files - files_seen)
                    files_seen = stats.files
        finally:
            if writer is not None:
                writer.close()
    return stats


def _remove_if_only_bookkeeping(path: Path) -> None:
    """Remove a run folder that holds nothing but corpusmap's own ``.corpusmap`` bookkeeping."""
    if path.is_dir() and all(p.name == ".corpusmap" for p in path.iterdir()):
        shutil.rmtree(path, ignore_errors=True)


def _refuse_replacing_unrecorded(run: Run, sha: str) -> None:
    """A corpus whose file or record (corpus.json) is missing or damaged is replaced by another only with
    --overwrite when outputs were computed from it: what they were computed from is known from their manifests."""
    used = {o.inputs.get("corpus") for o in run.outputs() if o.key != "corpus"} - {None}
    if used and sha not in used:
        lost = run.corpus_manifest_path if run.corpus_path.is_file() else run.corpus_path
        raise CorpusmapError(
            f"{lost} is missing or damaged, and the inputs give another corpus than the one "
            f"the outputs in {run.path} were computed from; give the inputs and reader options it was read with "
            "(that rebuilds the record and keeps everything), or add --overwrite to replace it (this deletes "
            "everything computed from it)")


def prepare_corpus(run: Run, params: EmbedParams, overwrite: bool = False) -> dict:
    """Write ``RUN/corpus.parquet`` and ``corpus.json`` from the inputs, unless they already hold this corpus.

    New inputs are read completely (into a staging folder) before anything of the old corpus is replaced; a
    corpus read from other inputs is replaced only with ``overwrite``, except when the inputs were merely moved
    or touched and give the very same corpus (same checksum), which keeps everything computed from it.
    """
    paths = resolve_inputs(params.inputs)
    if params.section_labels and not any(detect_format(p) == "pubmed" for p in paths):
        raise UsageProblem("--section-labels prefixes the sections of PubMed XML abstracts, and no INPUT is .xml "
                           "(PubMed/MEDLINE): leave it out")
    with writing(run.path):
        run.path.mkdir(parents=True, exist_ok=True)
    with run.lock("corpus"):
        status = corpus_status(run, params, paths)
        if status.current:
            existing = read_json(run.corpus_manifest_path)
            progress.info(f"corpus: reusing {run.corpus_path} ({existing['stats']['rows_kept']:,} abstracts)")
            return existing
        existing = try_read_manifest(run.corpus_manifest_path) if run.corpus_path.is_file() else None
        wanted = _corpus_wanted(params, paths)
        maybe_same = _maybe_same_corpus(existing, wanted)
        if status.changed and not overwrite and not maybe_same:
            raise CorpusmapError(
                f"{run.path} already holds a corpus read from other inputs or with other options "
                f"({_what_changed(existing, wanted)}); {_replace_advice(run, existing, wanted)}")
        with run.staging("corpus") as staging:
            staged = staging / run.corpus_path.name
            stats = _read_corpus(params, paths, staged)
            if params.options.vectors:  # refused before the corpus is stored, so a failed embed leaves nothing
                imported_vectors(params.options.vectors, stats.rows_kept)
            sha = sha256_file(staged)
            if existing is not None and sha == existing.get("sha256"):
                # moved or touched inputs, or a damaged corpus file: the very same corpus, so everything computed
                # from it stays valid
                manifest = dict(existing, inputs=wanted["inputs"], bytes=staged.stat().st_size)
                write_json(staging / run.corpus_manifest_path.name, manifest)
                run.commit_files(staging, run.path, manifest=run.corpus_manifest_path.name)
                run.refresh()
                progress.info(f"corpus: the inputs give the same corpus as before ({status.reason}); keeping "
                              "everything computed from it")
                return manifest
            if existing is None and not overwrite:
                _refuse_replacing_unrecorded(run, sha)
            if status.changed and not overwrite:
                raise CorpusmapError(
                    f"{run.path} already holds a corpus that differs from what the inputs give now "
                    f"({_what_changed(existing, wanted)}); {_replace_advice(run, existing, wanted)}")
            manifest = dict(wanted, stats=stats.as_dict(), rows=stats.rows_kept,
                            input_bytes=sum(p.stat().st_size for p in paths), sha256=sha,
                            bytes=staged.stat().st_size, versions=versions(), created=timestamp(),
                            stage={"name": "embed", "output": "corpus", "fingerprint": sha, "inputs": {},
                                   "created": timestamp()})
            write_json(staging / run.corpus_manifest_path.name, manifest)
            run.commit_files(staging, run.path, manifest=run.corpus_manifest_path.name)
    run.refresh()
    removed = run.invalidate()
    if removed:
        progress.info(f"--overwrite: removed {', '.join(removed)} (computed from the old corpus)")
    progress.info(f"corpus: {stats.summary()} -> {run.corpus_path}")
    if stats.years_unparsed:
        log.warning(
            "warning: corpus: %s rows have a year value that is not a year; they are kept without a year (if the "
            "years are in another column, name it with --year-col)", f"{stats.years_unparsed:,}")
    return manifest


# ---------------------------------------------------------------------------------------------- shards

def parse_worker(spec: Optional[str]) -> tuple[int, int]:
    """``I/N`` (0 <= I < N) -> (I, N): this worker takes shards I, I+N, I+2N, ...

    Without a spec, a SLURM job array sets it: (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP
    of SLURM_ARRAY_TASK_COUNT (sbatch array 0-4:2 is tasks 0, 2, 4: workers 0, 1, 2 of 3).
    """
    if spec is None:
        task, count = os.environ.get("SLURM_ARRAY_TASK_ID"), os.environ.get("SLURM_ARRAY_TASK_COUNT")
        if task is None or count is None:
            return 0, 1
        values = {}
        for name, default in (("ID", None), ("COUNT", None), ("MIN", "0"), ("STEP", "1")):
            text = os.environ.get(f"SLURM_ARRAY_TASK_{name}", default)
            try:
                values[name] = int(text)
            except ValueError:
                raise UsageProblem(f"SLURM_ARRAY_TASK_{name}={text!r} is not a whole number; give this task its "
                                   "share with --shard I/N") from None
        first, step = values["MIN"], values["STEP"]
        offset = values["ID"] - first
        index, count = offset // max(step, 1), values["COUNT"]
        if offset % max(step, 1) or not 0 <= index < count:
            raise UsageProblem(f"SLURM array task {task} (min {first}, step {step}, {count} tasks) is not one of "
                               "the array's workers (a job array with gaps, e.g. tasks 0,3,7?); give this task "
                               "its share with --shard I/N")
        return index, count
    try:
        index_text, count_text = spec.split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise UsageProblem(f"--shard takes I/N with 0 <= I < N (e.g. 0/4), not {spec!r}") from None
    if count < 1 or not 0 <= index < count:
        raise UsageProblem(f"--shard takes I/N with 0 <= I < N (e.g. 0/4), not {spec!r}")
    return index, count


def imported_vectors(spec: str, rows: int):
    """The ``--vectors`` file, refused unless it holds one vector per corpus row."""
    from corpusmap.vector_files import open_vector_file

    source = open_vector_file(spec)
    if source.n != rows:
        raise CorpusmapError(f"--vectors {spec}: {source.n:,} rows, but the corpus has {rows:,} (its rows in the "
                             "order of the inputs, after the filters); give one vector per corpus row")
    return source


def vector_request(options: EmbedOptions, corpus: dict) -> dict:
    """What the vectors are made of, known before any model is loaded: a resumed run must ask the same."""
    from corpusmap.encoders import resolve_model

    kind = encoder_kind(options.model)
    common = {"corpus_sha256": corpus["sha256"], "n": corpus["rows"], "shard_rows": options.shard_rows,
              "store_dtype": options.resolved_store_dtype(), "normalize": options.normalize, "encoder": kind.name}
    if options.vectors:
        source = imported_vectors(options.vectors, corpus["rows"])
        return dict(common, encoder="file", vectors=str(source.path.resolve()), column=source.column,
                    dim=source.dim, vectors_sha256=sha256_file(source.path))
    if kind.fitted:
        if options.fit_from:  # the fit decides the vectors: identify it by its files' checksums
            return dict(common, fit_sha256=kind.fit_fingerprint(options.fit_from))
        return dict(common, dim=options.dim, seed=options.seed, fit_rows=options.fit_rows)
    return dict(common, model=resolve_model(options.model), pooling=options.pooling,
                max_length=options.max_length, batch_size=options.batch_size,
                max_tokens_per_batch=options.max_tokens_per_batch, dtype=options.dtype)


@dataclass(frozen=True)
class ShardPlan:
    """How a run's rows are cut into shards, and the request every shard must be made with."""

    request: dict
    request_id: str
    n: int
    shard_rows: int

    @property
    def n_shards(self) -> int:
        return math.ceil(self.n / self.shard_rows)

    def bounds(self, index: int) -> tuple[int, int]:
        return index * self.shard_rows, min((index + 1) * self.shard_rows, self.n)


def plan_shards(run: Run, options: EmbedOptions, overwrite: bool = False) -> ShardPlan:
    """Check ``options`` against the vectors RUN already holds (refusing a mix unless ``overwrite``, which removes
    them and what was computed from them) and plan the shards."""
    corpus = run.corpus_manifest
    request = vector_request(options, corpus)
    with run.lock("embeddings"):
        current = try_read_manifest(run.embeddings_manifest_path) if run.embeddings_manifest_path.is_file() else None
        bare = current is not None and _bare_claim(run, current)
        existing = None if current is None or bare else current.get("request")
        if existing is not None and existing != request:
            changed = tuple((k, existing.get(k), request.get(k)) for k in sorted(set(existing) | set(request))
                            if existing.get(k) != request.get(k))
            if not overwrite:
                raise CorpusmapError(
                    f"{run.path} already holds vectors made with other parameters ({describe_changes(changed)}); "
                    "add --overwrite to replace them (this deletes them and everything computed from them) or "
                    "choose another -o directory")
            # what was computed from them goes first: a kill between the two leaves the old vectors, not a graph
            # and maps that no vectors account for
            removed = run.invalidate(gone=["embeddings"]) + ["embeddings"]
            with writing(run.embeddings_dir):
                shutil.rmtree(run.embeddings_dir)
            run.removed.append("embeddings")
            progress.info(f"--overwrite: removed {', '.join(removed)} from {run.path}")
            existing = None
        plan = ShardPlan(request, canonical_hash(request)[:16], corpus["rows"], options.shard_rows)
        if existing is None:  # claim the run for this request before anything is encoded: one set of vectors
            with writing(run.embeddings_dir):
                run.embeddings_dir.mkdir(parents=True, exist_ok=True)
                kept = bare and current.get("request") == request  # (an array task before this one fitted it)
                for leftover in run.embeddings_dir.iterdir():  # a fit of no recorded request
                    if leftover.is_dir() and not kept:
                        shutil.rmtree(leftover)
                write_json(run.embeddings_manifest_path, {"format": MANIFEST_FORMAT, "complete": False,
                                                          "request": request, "n": plan.n,
                                                          "n_shards": plan.n_shards, "shards": []})
        run.hold(ENCODING)  # until this process ends: its claim is not a bare one
    return plan


ENCODING = "embeddings/encoding"  # held (shared) by every process that encodes shards of the run


def _bare_claim(run: Run, manifest: dict) -> bool:
    """A manifest that claimed the run for a request of which no shard was finished (its encoding never started,
    or failed before the first shard) and that no process is working on: replacing it loses nothing."""
    return not any(run.embeddings_dir.glob("shard-*.npy")) and not run.busy(ENCODING)


def _drop_bare_claim(run: Run, plan: ShardPlan) -> None:
    run.release(ENCODING)
    with run.lock("embeddings"):
        current = try_read_manifest(run.embeddings_manifest_path) or {}
        if current.get("request") == plan.request and _bare_claim(run, current):
            run.embeddings_manifest_path.unlink(missing_ok=True)


def _shard_done(run: Run, index: int, request_id: str) -> bool:
    """Shard ``index`` has a receipt of this request and passes its checksum (verified once, then remembered)."""
    receipt = try_read_manifest(run.receipt_path(index))
    if receipt is None or receipt.get("request_id") != request_id:
        return False
    try:
        run.verify(run.embeddings_dir / receipt["file"], receipt.get("sha256"), "encoding it again")
    except CorpusmapError as exc:
        log.warning("%s", exc)
        return False
    return True


def pending_shards(run: Run, plan: ShardPlan, worker: tuple[int, int] = (0, 1)) -> list[int]:
    """This worker's shards (every N-th) that have no valid receipt yet."""
    mine = [i for i in range(plan.n_shards) if i % worker[1] == worker[0]]
    pending = [i for i in mine if not _shard_done(run, i, plan.request_id)]
    if len(pending) < len(mine):
        progress.info(f"embed: {len(mine) - len(pending)} of {len(mine)} shards already done, skipping them")
    return pending


def start_manifest(run: Run, plan: ShardPlan, encoder) -> None:
    """Record the resolved encoder parameters before the first shard (manifest not complete yet)."""
    with run.lock("embeddings"):
        current = try_read_manifest(run.embeddings_manifest_path) or {}
        if current.get("request") != plan.request:
            raise CorpusmapError(f"another corpusmap process replaced the vectors of {run.path} while this one "
                                 "was starting; run one `corpusmap embed` per run directory at a time")
        if current.get("params"):
            return  # another worker of this plan started it
        params = dict(encoder.describe(), store_dtype=plan.request["store_dtype"], shard_rows=plan.shard_rows,
                      n=plan.n, n_shards=plan.n_shards, corpus_sha256=plan.request["corpus_sha256"])
        kind = encoder_kind(params.get("model", ""))
        if kind.fitted:  # the fit the vectors are made with, so that a damaged or lost fit is found
            params["fit_sha256"] = kind.fit_fingerprint(run.path)
        with writing(run.embeddings_manifest_path):
            write_json(run.embeddings_manifest_path, _manifest(plan.request, params, [], complete=False))


def fit_problem(run: Run) -> Optional[str]:
    """What is wrong with the fit of a fitted encoder's vectors in ``run`` (``RUN/embeddings/tfidf``): missing, or
    other bytes than its vectors were made with (the manifest's ``fit_sha256``); ``None`` when it is fine or the
    vectors need none (or are older than that record)."""
    params = (try_read_manifest(run.embeddings_manifest_path) or {}).get("params") or {}
    recorded = params.get("fit_sha256")
    if not recorded:
        return None
    kind = encoder_kind(params.get("model", ""))
    if kind.fit_fingerprint(run.path) == recorded:
        return None
    folder = kind.fit_folder(run.path)
    what = "is missing" if not kind.has_fit(run.path) else "differs from the one its vectors were made with (damaged)"
    return f"the {kind.name} fit in {folder} {what}"


def _fit(run: Run, encoder, n_rows: int, fit_from: Optional[str] = None) -> None:
    """Fit a fitted encoder (TF-IDF + SVD) on a seeded sample of the corpus, or load the fit a previous attempt
    stored, or copy ``fit_from``'s fit so that both runs' vectors live in one space (as ``map --add`` needs)."""
    kind = encoder_kind(encoder.describe()["model"])
    folder = kind.fit_folder(run)
    with run.lock("embeddings/fit"):
        damaged = fit_problem(run)
        if damaged:  # fitted anew below: the same seed gives the same fit, checked against the record after
            progress.info(f"embed: {damaged}; fitting it again")
            shutil.rmtree(folder, ignore_errors=True)
        if encoder.load(folder):
            return
        if fit_from:
            encoder.load(kind.fit_folder(fit_from))
            with writing(folder):
                encoder.save(folder)
            return
        rng = np.random.default_rng(encoder.seed)
        chosen = np.sort(rng.choice(n_rows, encoder.fit_rows, replace=False)) if n_rows > encoder.fit_rows \
            else np.arange(n_rows)
        texts, offset = [], 0
        for batch in run.iter_corpus_batches(["text"], 65536):
            stop = offset + batch.num_rows
            lo, hi = np.searchsorted(chosen, [offset, stop])
            column = batch.column(0)
            texts.extend(column[int(i - offset)].as_py() for i in chosen[lo:hi])
            offset = stop
        progress.info(f"{kind.name}: fitting on {len(texts):,} abstracts")
        encoder.fit(texts)
        with writing(folder):
            encoder.save(folder)
        if damaged and fit_problem(run):
            raise CorpusmapError(f"{folder}: fitted again, it differs from the fit the stored vectors were made with; "
                                 f"re-encode them with `corpusmap embed ... -o {run.path} --overwrite`")


class ImportedVectors:
    """Stands in for an encoder when the vectors come from a file (``--vectors``): shard by shard, as they are."""

    def __init__(self, spec: str, normalize: bool):
        from corpusmap.vector_files import open_vector_file

        self.source = open_vector_file(spec)
        self.normalize = normalize
        self.dim = self.source.dim

    def describe(self) -> dict:
        return {"encoder": "file", "model": f"file:{self.source.path.name}", "vectors": str(self.source.path),
                "column": self.source.column, "dim": self.dim, "dtype": self.source.dtype,
                "normalize": self.normalize}

    def rows(self, start: int, stop: int):
        from corpusmap.encoders import Encoded

        block = np.asarray(self.source.rows(start, stop), dtype=np.float32)
        if self.normalize:  # a new array: the rows may be a read-only memory map of the user's file
            block = block / np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
        return Encoded(block, 0)


def prepare_encoder(run: Run, plan: ShardPlan, options: EmbedOptions, device: str = "auto"):
    """Load the model (or fit/load a fitted encoder, or open the vector file) for this plan."""
    from corpusmap.encoders import make_encoder

    if options.vectors:
        return ImportedVectors(options.vectors, options.normalize)

    encoder = make_encoder(options.model, pooling=options.pooling, max_length=options.max_length,
                           batch_size=options.batch_size, max_tokens_per_batch=options.max_tokens_per_batch,
                           device=device, dtype=options.dtype, normalize=options.normalize, dim=options.dim,
                           seed=options.seed, fit_rows=options.fit_rows)
    if encoder_kind(options.model).fitted:
        _fit(run, encoder, plan.n, options.fit_from)
    return encoder


def read_shard_texts(run: Run, plan: ShardPlan, index: int) -> list[str]:
    start, stop = plan.bounds(index)
    return run.read_corpus_rows(start, stop, ["text"]).column(0).to_pylist()


def write_shard(run: Run, plan: ShardPlan, index: int, encoded, seconds: float, device: str) -> None:
    """Store one shard's vectors (temp name, rename) and then its receipt."""
    start, stop = plan.bounds(index)
    vectors = encoded.vectors.astype(np.dtype(plan.request["store_dtype"]), copy=False)
    if vectors.shape[0] != stop - start:
        raise RuntimeError(f"shard {index}: {vectors.shape[0]} vectors for {stop - start} rows")
    if not np.isfinite(vectors).all():
        if plan.request.get("encoder") == "file":
            bad = int(np.flatnonzero(~np.isfinite(vectors).all(axis=1))[0]) + start
            finite = bool(np.isfinite(encoded.vectors[bad - start]).all())
            why = "exceeds the range of float16 storage; use --store-dtype float32" if finite else \
                "holds NaN or infinite values; fix it in the file"
            raise CorpusmapError(f"--vectors: row {bad:,} of the vectors {why}")
        raise CorpusmapError(f"the model produced NaN or infinite values in shard {index} "
                             f"(rows {start}-{stop}); try --dtype float32")
    path = run.shard_path(index)
    with writing(path):
        save_npy(path, vectors)
        write_json(run.receipt_path(index), {
            "index": index, "file": path.name, "start": start, "stop": stop, "rows": stop - start,
            "sha256": sha256_file(path), "truncated": encoded.truncated, "request_id": plan.request_id,
            "seconds": round(seconds, 3), "device": device})


@contextlib.contextmanager
def _claim(run: Run, index: int):
    """Yield True if this process may encode shard ``index`` now (no other process holds it), else False; an
    error inside the block is the block's own (never taken for a lock held elsewhere)."""
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(run.lock(f"embeddings/shard-{index}", wait=False))
        except CorpusmapError:
            yield False
            return
        for orphan in run.embeddings_dir.glob(f".{run.shard_path(index).name}.tmp-*"):
            orphan.unlink(missing_ok=True)  # left by a killed writer of this shard
        yield True


def _prepared(run: Run, plan: ShardPlan, pending: list[int], encoder, tokenizer_workers: int):
    """The prepared (tokenised) pending shards, in order: by ``tokenizer_workers`` processes
    (:mod:`corpusmap.feeder`), or by one loader thread that works one shard ahead."""
    from concurrent.futures import ThreadPoolExecutor

    if tokenizer_workers > 0 and hasattr(encoder, "prepare") and hasattr(encoder, "_model"):
        from corpusmap.feeder import TokenFeeder

        with TokenFeeder(encoder, tokenizer_workers) as feeder:
            yield from feeder.prepared(str(run.path), [plan.bounds(i) for i in pending])
        return
    prepare = getattr(encoder, "prepare", None) or (lambda texts: texts)
    load = lambda i: prepare(read_shard_texts(run, plan, i))  # noqa: E731
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="corpusmap-loader") as loader:
        upcoming = loader.submit(load, pending[0]) if pending else None
        for position in range(len(pending)):
            prepared = upcoming.result()
            if position + 1 < len(pending):
                upcoming = loader.submit(load, pending[position + 1])
            yield prepared


def encode_shards(run: Run, options: EmbedOptions, device: str = "auto", worker: tuple[int, int] = (0, 1),
                  overwrite: bool = False, encoder=None, tokenizer_workers: Optional[int] = 0) -> dict:
    """Encode the pending shards of this worker; returns the embeddings manifest (complete or not).

    The next shards are read and tokenised ahead (a loader thread, or ``tokenizer_workers`` processes; ``None``:
    :func:`auto_tokenizer_workers`) while the current one is encoded.
    """
    plan = plan_shards(run, options, overwrite)
    pending = pending_shards(run, plan, worker)
    if not pending and (try_read_manifest(run.embeddings_manifest_path) or {}).get("params") \
            and not fit_problem(run):
        return finalize(run)  # (a claim without params, e.g. one replacing a damaged manifest, records them first)
    try:
        encoder = encoder or prepare_encoder(run, plan, options, device)
    except BaseException:
        _drop_bare_claim(run, plan)  # a model that does not load leaves no trace
        raise
    start_manifest(run, plan, encoder)
    if tokenizer_workers is None:
        tokenizer_workers = auto_tokenizer_workers(getattr(encoder, "device", "cpu"))
    while pending:
        held = _encode_pass(run, plan, pending, encoder, tokenizer_workers)
        if worker[1] > 1 or not held:  # an array worker leaves the shards other workers hold to them
            break
        # a worker of every shard waits for those another process holds, and encodes any it left undone
        progress.info(f"embed: waiting for another corpusmap process that is encoding {len(held)} shard(s) of "
                      f"{run.path}")
        for index in held:
            with run.lock(f"embeddings/shard-{index}", say=False):
                pass
        pending = [i for i in held if not _shard_done(run, i, plan.request_id)]
    return finalize(run)


def _encode_pass(run: Run, plan: ShardPlan, pending: list[int], encoder, tokenizer_workers: int) -> list[int]:
    """Encode (or store) each of ``pending`` that no other process holds and none has finished; returns those
    another process held."""
    held = []
    rows = sum(plan.bounds(i)[1] - plan.bounds(i)[0] for i in pending)
    imported = isinstance(encoder, ImportedVectors)
    compute = None if imported else (getattr(encoder, "compute", None) or encoder.encode)
    inputs = ((i, None) for i in pending) if imported else \
        zip(pending, _prepared(run, plan, pending, encoder, tokenizer_workers))
    with progress.Progress("storing vectors" if imported else "embedding", total=rows,
                           unit="vectors" if imported else "abstracts") as bar:
        began = time.perf_counter()
        for index, prepared in inputs:
            with _claim(run, index) as mine:
                if not mine:
                    held.append(index)
                elif not _shard_done(run, index, plan.request_id):  # another process may have done it
                    if imported:
                        write_shard(run, plan, index, encoder.rows(*plan.bounds(index)), 0.0, "file")
                    else:
                        write_shard(run, plan, index, compute(prepared), time.perf_counter() - began,
                                    getattr(encoder, "device", "cpu"))
            bar.update(plan.bounds(index)[1] - plan.bounds(index)[0])
            began = time.perf_counter()
    return held


def auto_tokenizer_workers(device: str) -> int:
    """Tokenizer processes for ``--tokenizer-workers auto``: none on a CPU (the model needs every core, and one
    loader thread keeps up with it), else the spare cores up to 8 (the feed rate a GPU needs, bench/bench_feed.py)."""
    if not str(device).startswith("cuda"):
        return 0
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def _manifest(request: dict, params: dict, receipts: list[dict], complete: bool) -> dict:
    keep = ("index", "file", "start", "stop", "rows", "sha256", "truncated")
    shards = [{k: r[k] for k in keep} for r in receipts]
    manifest = {
        "format": MANIFEST_FORMAT, "complete": complete,
        "model": params.get("model"), "pooling": params.get("pooling"), "max_length": params.get("max_length"),
        "dtype": params.get("dtype"), "store_dtype": params["store_dtype"], "dim": params["dim"],
        "n": params["n"], "n_shards": params["n_shards"], "shard_rows": params["shard_rows"],
        "normalize": params.get("normalize"), "corpus_sha256": params["corpus_sha256"],
        "truncated": sum(r.get("truncated", 0) for r in receipts),
        "request": request, "params": params, "shards": shards,
    }
    manifest["stage"] = {"name": "embed", "output": "embeddings", "inputs": {"corpus": params["corpus_sha256"]},
                         "created": timestamp(), "versions": versions(*PACKAGES),
                         "fingerprint": canonical_hash([request, [s["sha256"] for s in shards]]) if complete
                         else None}
    return manifest


def finalize(run: Run, verify: bool = False) -> dict:
    """Collect the shard receipts into the manifest; it is marked complete once every shard is there. A complete
    manifest that lists exactly the receipts is only checked (nothing written: a read-only run can be merged)."""
    from corpusmap.manifests import read_manifest

    listed = try_read_manifest(run.embeddings_manifest_path) or {}
    if listed.get("complete") and all(
            (try_read_manifest(run.receipt_path(s["index"])) or {}).get("sha256") == s["sha256"]
            for s in listed.get("shards", [])):
        for shard in listed["shards"] if verify else []:
            run.verify(run.embeddings_dir / shard["file"], shard["sha256"],
                       f"delete it and re-run `corpusmap embed` for {run.path} to re-encode it")
        return listed
    with run.lock("embeddings"):
        current = read_manifest(run.embeddings_manifest_path, run.rebuild_vectors_hint)
        request, params = current["request"], current.get("params")
        if not params:  # claimed, but no worker has started encoding
            return dict(current, missing=[run.shard_path(i).stem for i in range(current.get("n_shards", 0))])
        request_id = canonical_hash(request)[:16]
        receipts, missing = [], []
        for index in range(params["n_shards"]):
            receipt = try_read_manifest(run.receipt_path(index))
            if receipt is None or receipt.get("request_id") != request_id \
                    or not (run.embeddings_dir / receipt["file"]).is_file():
                missing.append(run.shard_path(index).stem)
                continue
            if verify:
                run.verify(run.embeddings_dir / receipt["file"], receipt["sha256"],
                           f"delete it and re-run `corpusmap embed` for {run.path} to re-encode it")
            receipts.append(receipt)
        manifest = _manifest(request, params, receipts, complete=not missing)
        if current.get("complete") and manifest["complete"] and current.get("shards") == manifest["shards"]:
            manifest["stage"] = current["stage"]  # nothing changed: keep the record (and its creation time)
        with writing(run.embeddings_manifest_path):
            write_json(run.embeddings_manifest_path, manifest)
    run.refresh()
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        manifest["missing"] = missing
        progress.info(f"embed: {len(receipts)} of {params['n_shards']} shards done; missing {shown}")
    return manifest


# ---------------------------------------------------------------------------------------------- devices

def parse_devices(spec: Optional[str]) -> list[str]:
    """``--devices``: ``all`` (every visible GPU), GPU ids ``0,1``, or device names ``cuda:0,cpu,cpu``."""
    if not spec:
        return []
    if spec == "all":
        import torch

        count = torch.cuda.device_count()
        if not count:
            raise CorpusmapError("--devices all: PyTorch sees no CUDA GPU")
        return [f"cuda:{i}" for i in range(count)]
    devices = []
    for item in (part.strip() for part in spec.split(",")):
        if item.isdigit():
            devices.append(f"cuda:{item}")
        elif item == "cpu" or item.startswith("cuda"):
            devices.append(item)
        else:
            raise UsageProblem(f"--devices takes 'all', GPU ids (0,1) or device names (cuda:0,cpu), not {item!r}")
    gpus = [d for d in devices if d.startswith("cuda")]
    if gpus:  # before any worker starts: a GPU that is not there fails here, in one line
        import torch

        count = torch.cuda.device_count()
        absent = [d for d in gpus if not (d == "cuda" and count or d[5:].isdigit() and int(d[5:]) < count)]
        if absent:
            raise CorpusmapError(f"--devices {spec}: PyTorch sees {count or 'no'} CUDA GPU(s), so not "
                                 f"{', '.join(absent)}; use the GPUs it sees (--devices all), or leave --devices "
                                 "out to embed on the CPU")
    return devices


def _device_worker(run_dir: str, options: EmbedOptions, device: str, worker: tuple[int, int], quiet: bool) -> None:
    """One process of a multi-device run: its own device, every N-th shard, its own shard files."""
    if device == "cpu":
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // worker[1]))
    progress.set_quiet(quiet)
    encode_shards(Run(run_dir), options, device=device, worker=worker)


def encode_on_devices(run: Run, options: EmbedOptions, devices: list[str], overwrite: bool = False) -> dict:
    """One worker process per device (e.g. per GPU of a node); the parent collects the manifest."""
    import multiprocessing

    plan = plan_shards(run, options, overwrite)
    if encoder_kind(options.model).fitted:
        prepare_encoder(run, plan, options)  # fit once, before the workers load the stored fit
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_device_worker, name=f"corpusmap-{device}",
                               args=(str(run.path), options, device, (i, len(devices)), progress.is_quiet()))
               for i, device in enumerate(devices)]
    for process in workers:
        process.start()
    failed = []
    for process in workers:
        process.join()
        if process.exitcode != 0:
            failed.append(process.name)
    if failed:
        raise CorpusmapError(f"embedding worker(s) {', '.join(failed)} failed; re-run the same command to resume")
    return finalize(run)


# ---------------------------------------------------------------------------------------------- the stage

@dataclass
class EmbedStage(Stage):
    """``corpusmap embed``: the corpus and its vectors. Where the work runs (engine, devices, this worker's share
    of the shards) does not change the bytes, so it is not a parameter."""

    engine: str = "local"
    device: str = "auto"
    devices: list = field(default_factory=list)
    worker: tuple = (0, 1)
    address: Optional[str] = None
    num_workers: Optional[int] = None
    gpus_per_worker: Optional[float] = None
    tokenizer_workers: Optional[int] = None  # None: auto_tokenizer_workers(device)
    prepare_only: bool = False

    name = "embed"
    what = "vectors"
    packages = PACKAGES

    def key(self, params) -> str:
        return "embeddings"

    def reads(self, run: Run, params: EmbedParams) -> set:
        return set()  # input files only

    def writes(self, run: Run, params: EmbedParams) -> set:
        """Moved or touched inputs are read again but likely give the same corpus, and then the same vectors."""
        paths = resolve_inputs(params.inputs)
        if not corpus_status(run, params, paths).current:
            existing = try_read_manifest(run.corpus_manifest_path) if run.corpus_path.is_file() else None
            if not _maybe_same_corpus(existing, _corpus_wanted(params, paths)):
                return {"corpus", "embeddings"}
        return set() if self._vectors_status(run, params).current else {"embeddings"}

    def status(self, run: Run, params: EmbedParams) -> Status:
        corpus = corpus_status(run, params, resolve_inputs(params.inputs))
        return corpus if not corpus.current else self._vectors_status(run, params)

    def _vectors_status(self, run: Run, params: EmbedParams) -> Status:
        """Whether the stored vectors are those of ``params`` for the stored corpus."""
        manifest = try_read_manifest(run.embeddings_manifest_path)
        if manifest is None:
            return Status(False, "not computed yet")
        wanted = vector_request(params.options, read_json(run.corpus_manifest_path))
        if manifest.get("request") != wanted:
            stored = manifest.get("request") or {}
            changed = tuple((k, stored.get(k), wanted.get(k)) for k in sorted(set(stored) | set(wanted))
                            if stored.get(k) != wanted.get(k))
            return Status(False, f"computed with other parameters ({describe_changes(changed)})", changed)
        if not manifest.get("complete"):
            return Status(False, f"{len(manifest.get('shards', []))} of {manifest.get('n_shards')} shards done")
        problem = fit_problem(run)
        if problem:
            return Status(False, problem)
        for shard in manifest["shards"]:
            try:
                run.verify(run.embeddings_dir / shard["file"], shard["sha256"], "encoding it again")
            except CorpusmapError as exc:
                return Status(False, str(exc))
        return Status(True, "current")

    def record(self, params: EmbedParams) -> dict:
        return params_dict(params)

    def run(self, run: Run, params: EmbedParams, overwrite: bool = False) -> Result:
        if run.path.exists() and not run.path.is_dir():
            raise CorpusmapError(f"-o {run.path} exists and is not a directory")
        if self.engine == "ray" and (self.worker != (0, 1) or self.devices or self.device != "auto"):
            raise UsageProblem("--engine ray places work itself; drop --shard, --devices and --device")
        if len(self.devices) > 1 and self.worker != (0, 1):
            raise UsageProblem("--devices and --shard do not combine; use one per job")
        start = len(run.removed)
        before = self.status(run, params) if run.path.is_dir() else Status(False, "not computed yet")
        if before.current:
            return Result(self.name, "embeddings", False, "current", read_json(run.embeddings_manifest_path),
                          where=run.embeddings_dir)
        new = not run.path.exists()
        try:
            corpus = prepare_corpus(run, params, overwrite)
        except BaseException:
            if new:  # a run folder that held nothing before goes again (with its locks and staging folders)
                _remove_if_only_bookkeeping(run.path)
            raise
        if self.prepare_only:
            return Result(self.name, "corpus", True, before.reason, corpus, run.removed[start:], run.corpus_path)
        try:
            if self.engine == "ray":
                from corpusmap.ray_engine import embed_with_ray

                manifest = embed_with_ray(run, params.options, address=self.address, num_workers=self.num_workers,
                                          gpus_per_worker=self.gpus_per_worker, overwrite=overwrite)
            elif len(self.devices) > 1:
                manifest = encode_on_devices(run, params.options, self.devices, overwrite=overwrite)
            else:
                device = self.devices[0] if self.devices else self.device
                manifest = encode_shards(run, params.options, device=device, worker=self.worker,
                                         overwrite=overwrite, tokenizer_workers=self.tokenizer_workers)
        finally:
            run.release(ENCODING)
        run.invalidate()
        return Result(self.name, "embeddings", True, before.reason, manifest, run.removed[start:], run.embeddings_dir)


def embed(params: EmbedParams, run_dir: str | Path, overwrite: bool = False, **execution) -> dict:
    """Read ``params.inputs`` and encode them into ``run_dir``; returns the embeddings manifest.

    ``execution``: where to work (:class:`EmbedStage` fields: engine, device, devices, worker, ...).
    """
    return EmbedStage(**execution).run(Run(run_dir), params, overwrite).manifest
