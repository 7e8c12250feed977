"""The embed stage: read the inputs into ``RUN/corpus.parquet``, then encode it shard by shard.

Resuming: the corpus is re-read only when the inputs or reader options changed; a shard with a receipt is
complete and skipped. Workers of a job array (``worker=(i, n)``) take every n-th shard, so several processes
can fill one run directory without collisions; whoever sees the last receipt writes the final manifest.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import pyarrow.parquet as pq

from corpusmap import progress
from corpusmap.atomic import atomic_path, read_json, save_npy, sha256_file, write_json
from corpusmap.corpus import (ColumnMap, CorpusFilters, CorpusStats, input_fingerprint, iter_corpus,
                              resolve_inputs)
from corpusmap.errors import CorpusmapError, UsageProblem
from corpusmap.store import (Run, package_versions, read_receipt, shard_name, verify_shard, write_receipt)

log = logging.getLogger("corpusmap")
STORE_DTYPES = ("float32", "float16")
MANIFEST_FORMAT = 1


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
    dim: int = 300  # tfidf only
    seed: int = 42  # tfidf only
    fit_rows: int = 200_000  # tfidf only
    fit_from: Optional[str] = None  # tfidf only: another run whose TF-IDF fit to reuse (one vector space)

    def check(self) -> None:
        """Raise the errors a user can cause with these options before anything is read or written."""
        self.resolved_store_dtype()
        if self.fit_from:
            if self.model.lower() != "tfidf":
                raise UsageProblem("--fit-from reuses a TF-IDF fit; it goes with --model tfidf only")
            tfidf_fit_files(self.fit_from)

    def resolved_store_dtype(self) -> str:
        if self.store_dtype == "auto":
            return "float16" if self.dtype == "float16" else "float32"
        if self.store_dtype not in STORE_DTYPES:
            raise UsageProblem(f"unknown --store-dtype {self.store_dtype!r}; use auto, float32 or float16")
        return self.store_dtype


# ---------------------------------------------------------------------------------------------- corpus

def prepare_corpus(run: Run, inputs: Iterable[str], columns: ColumnMap = ColumnMap(),
                   filters: CorpusFilters = CorpusFilters(), overwrite: bool = False,
                   pubmed_labels: bool = False) -> dict:
    """Write ``RUN/corpus.parquet`` from the inputs, unless it already holds exactly this corpus."""
    paths = resolve_inputs(inputs)
    wanted = {"inputs": input_fingerprint(paths), "columns": asdict(columns), "filters": asdict(filters),
              "pubmed_labels": pubmed_labels}
    manifest_path = run.corpus_manifest_path
    if run.has_corpus() and manifest_path.is_file():
        existing = read_json(manifest_path)
        if {k: existing.get(k) for k in wanted} == wanted:
            progress.info(f"corpus: reusing {run.corpus_path} ({existing['stats']['rows_kept']:,} abstracts)")
            return existing
        if not overwrite:
            raise CorpusmapError(
                f"{run.path} already holds a corpus read from other inputs or with other options; "
                "use --overwrite to replace it (this deletes its vectors, graph, maps and evaluation) "
                "or choose another -o directory")
    if overwrite:
        removed = run.remove_derived()
        if removed:
            progress.info(f"--overwrite: removed {', '.join(removed)} from {run.path}")
    run.path.mkdir(parents=True, exist_ok=True)
    stats = CorpusStats()
    total_bytes = sum(p.stat().st_size for p in paths)
    with atomic_path(run.corpus_path) as tmp, \
            progress.Progress("reading", total=len(paths), unit="files") as bar:
        writer = None
        files_seen = 0
        try:
            for batch in iter_corpus(paths, columns, filters, stats=stats, pubmed_labels=pubmed_labels):
                if writer is None:
                    writer = pq.ParquetWriter(tmp, batch.schema, compression="zstd")
                writer.write_batch(batch, row_group_size=65536)
                if stats.files > files_seen:
                    bar.update(stats.files - files_seen)
                    files_seen = stats.files
        finally:
            if writer is not None:
                writer.close()
    manifest = dict(wanted, stats=stats.as_dict(), rows=stats.rows_kept, input_bytes=total_bytes,
                    sha256=sha256_file(run.corpus_path), versions=package_versions())
    write_json(manifest_path, manifest)
    progress.info(f"corpus: {stats.summary()} -> {run.corpus_path}")
    if stats.years_unparsed:
        progress.info(f"corpus: {stats.years_unparsed:,} rows have a year value that is not a year (kept, no year)")
    return manifest


# ---------------------------------------------------------------------------------------------- encoding

def parse_worker(spec: Optional[str]) -> tuple[int, int]:
    """``I/N`` (0 <= I < N) -> (I, N): this worker takes shards I, I+N, I+2N, ...

    Without a spec, a SLURM job array sets it: SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN of
    SLURM_ARRAY_TASK_COUNT.
    """
    if spec is None:
        task, count = os.environ.get("SLURM_ARRAY_TASK_ID"), os.environ.get("SLURM_ARRAY_TASK_COUNT")
        if task is None or count is None:
            return 0, 1
        index = int(task) - int(os.environ.get("SLURM_ARRAY_TASK_MIN", "0"))
        return index, int(count)
    try:
        index_text, count_text = spec.split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise UsageProblem(f"--shard takes I/N with 0 <= I < N (e.g. 0/4), not {spec!r}") from None
    if count < 1 or not 0 <= index < count:
        raise UsageProblem(f"--shard takes I/N with 0 <= I < N (e.g. 0/4), not {spec!r}")
    return index, count


def _build_encoder(options: EmbedOptions, device: str):
    from corpusmap.encoders import make_encoder

    return make_encoder(options.model, pooling=options.pooling, max_length=options.max_length,
                        batch_size=options.batch_size, max_tokens_per_batch=options.max_tokens_per_batch,
                        device=device, dtype=options.dtype, normalize=options.normalize, dim=options.dim,
                        seed=options.seed, fit_rows=options.fit_rows)


TFIDF_FIT = "tfidf"  # RUN/embeddings/tfidf holds the fit
TFIDF_FIT_FILES = ("vocabulary.json", "idf.npy", "components.npy")


def tfidf_fit_files(run_dir: str | Path) -> list[Path]:
    """The files of the TF-IDF fit stored in ``run_dir`` (for ``--fit-from``); an error if there is none."""
    folder = Path(run_dir) / "embeddings" / TFIDF_FIT
    files = [folder / name for name in TFIDF_FIT_FILES]
    if not all(f.is_file() for f in files):
        raise CorpusmapError(f"--fit-from {run_dir}: no TF-IDF fit there (embeddings/{TFIDF_FIT}); "
                             f"embed that run with --model tfidf first")
    return files


def _fit_tfidf(run: Run, encoder, n_rows: int, fit_from: Optional[str] = None) -> None:
    """Fit TF-IDF + SVD on a seeded sample of the corpus (or load the fit a previous attempt stored, or copy
    ``fit_from``'s fit so that both runs' vectors live in one space, as ``map --add`` needs)."""
    folder = run.embeddings_dir / TFIDF_FIT
    if encoder.load(folder):
        return
    if fit_from:
        encoder.load(tfidf_fit_files(fit_from)[0].parent)
        encoder.save(folder)
        return
    rng = np.random.default_rng(encoder.seed)
    if n_rows > encoder.fit_rows:
        chosen = np.sort(rng.choice(n_rows, encoder.fit_rows, replace=False))
    else:
        chosen = np.arange(n_rows)
    texts, offset = [], 0
    parquet = pq.ParquetFile(run.corpus_path, memory_map=True)
    for batch in parquet.iter_batches(batch_size=65536, columns=["text"]):
        stop = offset + batch.num_rows
        lo, hi = np.searchsorted(chosen, [offset, stop])
        column = batch.column(0)
        texts.extend(column[int(i - offset)].as_py() for i in chosen[lo:hi])
        offset = stop
    progress.info(f"tfidf: fitting TF-IDF + SVD on {len(texts):,} abstracts")
    encoder.fit(texts)
    encoder.save(folder)


def _request(options: EmbedOptions, corpus: dict) -> dict:
    """What the user asked for, known before any model is loaded: a resumed run must ask the same."""
    from corpusmap.encoders import resolve_model

    common = {"corpus_sha256": corpus["sha256"], "n": corpus["rows"], "shard_rows": options.shard_rows,
              "store_dtype": options.resolved_store_dtype(), "normalize": options.normalize}
    if options.model.lower() == "tfidf":
        if options.fit_from:  # the fit decides the vectors: identify it by its files' checksums
            return dict(common, encoder="tfidf",
                        fit_sha256=[sha256_file(f) for f in tfidf_fit_files(options.fit_from)])
        return dict(common, encoder="tfidf", dim=options.dim, seed=options.seed, fit_rows=options.fit_rows)
    return dict(common, encoder="transformer", model=resolve_model(options.model), pooling=options.pooling,
                max_length=options.max_length, batch_size=options.batch_size,
                max_tokens_per_batch=options.max_tokens_per_batch, dtype=options.dtype)


def _request_id(request: dict) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:16]


def _check_request(run: Run, request: dict, overwrite: bool) -> None:
    """Refuse to mix vectors of different parameters in one run (unless --overwrite)."""
    path = run.embeddings_manifest_path
    if not path.is_file():
        return
    existing = read_json(path).get("request", {})
    if existing == request:
        return
    changed = sorted(k for k in set(existing) | set(request) if existing.get(k) != request.get(k))
    if not overwrite:
        raise CorpusmapError(
            f"{run.path} already holds vectors made with other parameters ({', '.join(changed)}); "
            "use --overwrite to replace them (this deletes its vectors, graph, maps and evaluation) "
            "or choose another -o directory")
    removed = run.remove_derived()
    progress.info(f"--overwrite: removed {', '.join(removed)} from {run.path}")


def _shard_done(folder: Path, index: int, request_id: str) -> bool:
    receipt = read_receipt(folder, index)
    if receipt is None or receipt.get("request_id") != request_id:
        return False
    try:
        verify_shard(folder, receipt)
    except CorpusmapError as exc:
        log.warning("%s; encoding it again", exc)
        return False
    return True


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
    """Check ``options`` against what RUN already holds (refusing a mix) and plan the shards."""
    if options.shard_rows < 1:
        raise UsageProblem("--shard-rows must be at least 1")
    corpus = read_json(run.corpus_manifest_path)
    request = _request(options, corpus)
    _check_request(run, request, overwrite)
    run.embeddings_dir.mkdir(parents=True, exist_ok=True)
    return ShardPlan(request, _request_id(request), corpus["rows"], options.shard_rows)


def pending_shards(run: Run, plan: ShardPlan, worker: tuple[int, int] = (0, 1)) -> list[int]:
    """This worker's shards (every N-th) that have no valid receipt yet."""
    mine = [i for i in range(plan.n_shards) if i % worker[1] == worker[0]]
    pending = [i for i in mine if not _shard_done(run.embeddings_dir, i, plan.request_id)]
    if len(pending) < len(mine):
        progress.info(f"embed: {len(mine) - len(pending)} of {len(mine)} shards already done, skipping them")
    return pending


def start_manifest(run: Run, plan: ShardPlan, encoder) -> None:
    """Record the resolved encoder parameters before the first shard (manifest not complete yet)."""
    corpus = read_json(run.corpus_manifest_path)
    params = dict(encoder.describe(), store_dtype=plan.request["store_dtype"], shard_rows=plan.shard_rows,
                  n=plan.n, n_shards=plan.n_shards, corpus_sha256=corpus["sha256"])
    write_json(run.embeddings_manifest_path, _manifest(plan.request, params, [], complete=False))


def prepare_encoder(run: Run, plan: ShardPlan, options: EmbedOptions, device: str = "auto"):
    """Load the model (or fit/load TF-IDF) for this plan."""
    encoder = _build_encoder(options, device)
    if getattr(encoder, "kind", "") == "tfidf":
        _fit_tfidf(run, encoder, plan.n, options.fit_from)
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
        raise CorpusmapError(f"the model produced NaN or infinite values in shard {index} "
                             f"(rows {start}-{stop}); try --dtype float32")
    path = run.embeddings_dir / f"{shard_name(index)}.npy"
    save_npy(path, vectors)
    write_receipt(run.embeddings_dir, index, {
        "index": index, "file": path.name, "start": start, "stop": stop, "rows": stop - start,
        "sha256": sha256_file(path), "truncated": encoded.truncated, "request_id": plan.request_id,
        "seconds": round(seconds, 3), "device": device})


def encode_shard(run: Run, plan: ShardPlan, encoder, index: int) -> int:
    """Read, encode and store one shard; returns its row count (used by other engines, e.g. Ray)."""
    began = time.perf_counter()
    encoded = encoder.encode(read_shard_texts(run, plan, index))
    write_shard(run, plan, index, encoded, time.perf_counter() - began, getattr(encoder, "device", "cpu"))
    return encoded.vectors.shape[0]


def encode_shards(run: Run, options: EmbedOptions, device: str = "auto", worker: tuple[int, int] = (0, 1),
                  overwrite: bool = False, encoder=None) -> dict:
    """Encode the pending shards of this worker; returns the embeddings manifest (complete or not).

    The next shard is read and tokenised in a background thread while the current one is encoded.
    """
    from concurrent.futures import ThreadPoolExecutor

    plan = plan_shards(run, options, overwrite)
    pending = pending_shards(run, plan, worker)
    if not pending and run.embeddings_manifest_path.is_file():
        return finalize(run)
    encoder = encoder or prepare_encoder(run, plan, options, device)
    start_manifest(run, plan, encoder)
    prepare = getattr(encoder, "prepare", None) or (lambda texts: texts)
    compute = getattr(encoder, "compute", None) or encoder.encode
    load = lambda i: prepare(read_shard_texts(run, plan, i))  # noqa: E731
    rows_pending = sum(plan.bounds(i)[1] - plan.bounds(i)[0] for i in pending)
    with progress.Progress("embedding", total=rows_pending, unit="abstracts") as bar, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="corpusmap-loader") as loader:
        upcoming = loader.submit(load, pending[0]) if pending else None
        for position, index in enumerate(pending):
            began = time.perf_counter()
            prepared = upcoming.result()
            if position + 1 < len(pending):
                upcoming = loader.submit(load, pending[position + 1])
            encoded = compute(prepared)
            write_shard(run, plan, index, encoded, time.perf_counter() - began, getattr(encoder, "device", "cpu"))
            bar.update(encoded.vectors.shape[0])
    return finalize(run)


def _manifest(request: dict, params: dict, receipts: list[dict], complete: bool) -> dict:
    keep = ("index", "file", "start", "stop", "rows", "sha256", "truncated")
    return {
        "format": MANIFEST_FORMAT, "complete": complete,
        "model": params.get("model"), "pooling": params.get("pooling"), "max_length": params.get("max_length"),
        "dtype": params.get("dtype"), "store_dtype": params["store_dtype"], "dim": params["dim"],
        "n": params["n"], "n_shards": params["n_shards"], "shard_rows": params["shard_rows"],
        "normalize": params.get("normalize"), "corpus_sha256": params["corpus_sha256"],
        "truncated": sum(r.get("truncated", 0) for r in receipts),
        "request": request, "params": params, "shards": [{k: r[k] for k in keep} for r in receipts],
        "versions": package_versions("torch", "transformers", "sentence-transformers", "scikit-learn"),
    }


def finalize(run: Run, verify: bool = False) -> dict:
    """Collect the shard receipts into the manifest; it is marked complete once every shard is there."""
    folder = run.embeddings_dir
    if not run.embeddings_manifest_path.is_file():
        raise CorpusmapError(f"no vectors in {run.path}; run `corpusmap embed INPUT -o {run.path}` first")
    current = read_json(run.embeddings_manifest_path)
    request, params = current["request"], current["params"]
    request_id = _request_id(request)
    receipts, missing = [], []
    for index in range(params["n_shards"]):
        receipt = read_receipt(folder, index)
        if receipt is None or receipt.get("request_id") != request_id or not (folder / receipt["file"]).is_file():
            missing.append(shard_name(index))
            continue
        if verify:
            verify_shard(folder, receipt)
        receipts.append(receipt)
    manifest = _manifest(request, params, receipts, complete=not missing)
    write_json(run.embeddings_manifest_path, manifest)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        manifest["missing"] = missing
        progress.info(f"embed: {len(receipts)} of {params['n_shards']} shards done; missing {shown}")
    return manifest


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
    if options.model.lower() == "tfidf":
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


def embed(inputs: Iterable[str], run_dir: str | Path, columns: ColumnMap = ColumnMap(),
          filters: CorpusFilters = CorpusFilters(), options: EmbedOptions = EmbedOptions(),
          device: str = "auto", worker: tuple[int, int] = (0, 1), overwrite: bool = False,
          pubmed_labels: bool = False, devices: Optional[list[str]] = None) -> dict:
    """Read the inputs and encode them into ``run_dir``; returns the embeddings manifest.

    ``devices`` (more than one) runs one worker process per device on this node.
    """
    options.check()
    run = Run(run_dir)
    if run.path.exists() and not run.path.is_dir():
        raise CorpusmapError(f"-o {run.path} exists and is not a directory")
    prepare_corpus(run, inputs, columns, filters, overwrite=overwrite, pubmed_labels=pubmed_labels)
    if devices and len(devices) > 1:
        if worker != (0, 1):
            raise UsageProblem("--devices and --shard do not combine; use one per job")
        return encode_on_devices(run, options, devices, overwrite=overwrite)
    if devices:
        device = devices[0]
    return encode_shards(run, options, device=device, worker=worker, overwrite=overwrite)
