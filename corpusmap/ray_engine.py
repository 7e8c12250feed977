"""The Ray engine: encode a run's shards with a pool of Ray actors (one per GPU, or CPU actors), via Ray Data.

The driver (this process) plans the shards of a run whose corpus is read exactly as the local
engine does (:mod:`corpusmap.embed`); for TF-IDF it also fits once, so that every actor loads the same stored fit.
A Ray dataset of the pending shard indices then goes through ``map_batches`` with an actor class that holds the
encoder (built once per actor, on ``cuda`` when Ray gave the actor a GPU, else on ``cpu``) and, for each index,
reads that shard's rows from ``RUN/corpus.parquet``, encodes them and writes ``RUN/embeddings/shard-NNNNN.npy``
and its receipt. The driver finally collects the receipts into the manifest, so every later stage works unchanged
and the vectors are byte-identical to a local run with the same options (a shard's vectors depend only on its
rows and the options).

RUN must be on a filesystem that every Ray node sees at the same path (NFS, Lustre, GPFS, ...), as on a cluster:
actors read the corpus and write the shards there directly, only shard indices and row counts travel through Ray.
corpusmap (with its dependencies) must be importable on every node.

Resuming works like the local engine: only shards without a valid receipt are encoded.
"""
from __future__ import annotations

import inspect
import json
import logging
import math
import os
import signal
import socket
import threading
import time
import warnings
from typing import Optional

import numpy as np

from corpusmap import progress
from corpusmap.embed import (EmbedOptions, ShardPlan, finalize, pending_shards, plan_shards, prepare_encoder,
                             read_shard_texts, start_manifest, write_shard)
from corpusmap.encoders import encoder_kind
from corpusmap.errors import CorpusmapError, UsageProblem
from corpusmap.run import Run

log = logging.getLogger("corpusmap")
INSTALL_HINT = "pip install 'corpusmap[ray]'"


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401  (the [data] extra)
    except ImportError as exc:
        raise CorpusmapError(f"--engine ray needs Ray Data, which is not installed ({exc}); "
                             f"install it with `{INSTALL_HINT}` or use --engine local") from None
    return ray


class _Described:
    """Stands in for an encoder in :func:`start_manifest` with the description an actor sent back."""

    def __init__(self, description: dict):
        self._description = description

    def describe(self) -> dict:
        return dict(self._description)


class ShardEncoder:
    """A Ray Data actor: holds one encoder and encodes whole shards, writing them straight into RUN.

    ``__call__`` takes a batch ``{"shard": [index, ...]}`` and returns ``{"shard", "rows", "seconds",
    "describe"}``, one row per shard. When Ray runs several calls of one actor at once (``overlap``), a shard
    is read and tokenised while the previous one is on the device; the model itself runs one call at a time.
    """

    def __init__(self, run_dir: str, plan: ShardPlan, options: EmbedOptions, threads: Optional[int] = None):
        import ray

        self.device = "cuda" if ray.get_gpu_ids() else "cpu"
        if self.device == "cpu" and threads and not encoder_kind(options.model).fitted:
            import torch  # CPU actors: as many torch threads as the CPUs Ray gave the actor

            torch.set_num_threads(threads)
        self.run = Run(run_dir)
        if not self.run.corpus_path.is_file():
            raise CorpusmapError(
                f"Ray worker on {socket.gethostname()} cannot see {self.run.corpus_path}; the Ray engine needs "
                "the run directory on a filesystem shared by all nodes at the same path")
        self.plan = plan
        self.encoder = prepare_encoder(self.run, plan, options, self.device)
        self.description = json.dumps(self.encoder.describe())
        self._prepare = getattr(self.encoder, "prepare", None) or (lambda texts: texts)
        self._compute = getattr(self.encoder, "compute", None) or self.encoder.encode
        self._lock = threading.Lock()

    def __call__(self, batch: dict) -> dict:
        indices, rows, seconds = [], [], []
        for index in np.asarray(batch["shard"]).tolist():
            began = time.perf_counter()
            prepared = self._prepare(read_shard_texts(self.run, self.plan, int(index)))
            with self._lock:
                encoded = self._compute(prepared)
            elapsed = time.perf_counter() - began
            write_shard(self.run, self.plan, int(index), encoded, elapsed, self.device)
            indices.append(int(index))
            rows.append(int(encoded.vectors.shape[0]))
            seconds.append(elapsed)
        return {"shard": np.asarray(indices, dtype=np.int64), "rows": np.asarray(rows, dtype=np.int64),
                "seconds": np.asarray(seconds, dtype=np.float64),
                "describe": np.asarray([self.description] * len(indices), dtype=object)}


def _quiet_ray_data(ray) -> None:
    """No Ray Data progress bars or banners (corpusmap draws its own progress), and no notice about that."""
    context = ray.data.DataContext.get_current()
    for name in ("enable_progress_bars", "enable_operator_progress_bars", "print_on_execution_start"):
        if hasattr(context, name):
            setattr(context, name, False)
    try:  # Ray Data logs "Progress bars disabled ..." once per process; mark it as already said
        from ray.util.debug import log_once

        log_once("ray_data_progress_manager_disabled")
    except ImportError:
        pass
    logging.getLogger("ray.data").setLevel(logging.WARNING)


# Ray Data logs an actor's failure at ERROR level (with a stack trace and a request to report a Ray bug) before
# raising it; for a CorpusmapError (bad model, unreadable run) the one-line message we raise is enough.
_RAY_ERROR_LOGGERS = ("ray.data.exceptions", "ray.data._internal.execution.operators.actor_pool_map_operator")


class _HeldErrors(logging.Filter):
    """Holds back ERROR records of Ray Data's loggers; :meth:`release` logs them after all (or drops them)."""

    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            self.records.append(record)
            return False
        return True

    def __enter__(self) -> "_HeldErrors":
        for name in _RAY_ERROR_LOGGERS:
            logging.getLogger(name).addFilter(self)
        return self

    def __exit__(self, *exc) -> None:
        for name in _RAY_ERROR_LOGGERS:
            logging.getLogger(name).removeFilter(self)

    def release(self) -> None:
        for record in self.records:
            logging.getLogger(record.name).handle(record)
        self.records.clear()


def _ray_error(exc: BaseException) -> Optional[CorpusmapError]:
    """The CorpusmapError an actor raised, found inside the exceptions Ray wraps it in (or None)."""
    seen, todo = set(), [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, CorpusmapError):
            return current
        todo.extend([getattr(current, "cause", None), current.__cause__, current.__context__])
    text = str(exc)
    marker = "CorpusmapError: "
    if marker in text:
        return CorpusmapError(text.split(marker, 1)[1].strip().splitlines()[0])
    return None


def _actor_compute(ray, size: int, overlap: bool) -> dict:
    """map_batches arguments for a fixed pool of ``size`` actors (``overlap``: two calls in flight per actor)."""
    strategy = getattr(ray.data, "ActorPoolStrategy", None)
    if strategy is None:
        return {"concurrency": size}
    accepted = inspect.signature(strategy.__init__).parameters
    if overlap and "max_concurrent_calls_per_actor" in accepted and "enable_true_multi_threading" in accepted:
        return {"compute": strategy(size=size, max_concurrent_calls_per_actor=2, enable_true_multi_threading=True)}
    return {"compute": strategy(size=size)}


def _takes_remote_args(ray) -> bool:
    """Whether this Ray's map_batches still passes extra keyword arguments on to the actors (removed in 2.64)."""
    parameters = inspect.signature(ray.data.Dataset.map_batches).parameters.values()
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def ray_processes(parent: Optional[int] = None) -> list[int]:
    """Process ids of the Ray processes below ``parent`` (default: this process); Linux only, else []."""
    parent = os.getpid() if parent is None else parent
    children: dict[int, list[int]] = {}
    try:
        entries = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []
    for pid in entries:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(pid)
    found, todo = [], list(children.get(parent, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return sorted(pid for pid in found if _is_ray(pid))


def _is_ray(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            command = handle.read().replace(b"\0", b" ")
    except OSError:
        return False
    return command.startswith(b"ray::") or b"/ray/" in command


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until these processes have exited (or are zombies); returns those still running."""
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive:
        alive = [pid for pid in alive if _running(pid)]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return alive


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _shutdown(ray) -> None:
    """Stop the Ray we started; its workers exit on their own once the raylet is gone, or are asked to (TERM)."""
    pids = ray_processes()
    ray.shutdown()
    left = wait_gone(pids, 2.0)
    for pid in left:
        if _is_ray(pid):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    left = wait_gone(left, 10.0)
    if left:
        log.debug("Ray processes still exiting: %s", left)


def _check_pool(num_workers: Optional[int], gpus_per_worker: Optional[float]) -> None:
    if gpus_per_worker is not None and gpus_per_worker < 0:
        raise UsageProblem("--gpus-per-worker must be 0 or more")
    if num_workers is not None and num_workers < 1:
        raise UsageProblem("--num-workers must be at least 1")


def _pool_size(ray, pending: int, num_workers: Optional[int], gpus_per_worker: Optional[float]):
    """(actors, GPUs per actor, CPUs per actor) from the cluster's resources and the caller's wishes."""
    resources = ray.cluster_resources()
    total_gpus, total_cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 1))
    _check_pool(num_workers, gpus_per_worker)
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if total_gpus >= 1 else 0.0
    if gpus_per_worker > 0:
        if total_gpus < gpus_per_worker:
            raise CorpusmapError(f"the Ray cluster has {total_gpus:g} GPUs, fewer than --gpus-per-worker "
                                 f"{gpus_per_worker:g}; use --gpus-per-worker 0 for CPU actors")
        workers = num_workers or max(1, int(total_gpus // gpus_per_worker))
        cpus = 1.0
    else:
        workers = num_workers or max(1, int(total_cpus))
        cpus = max(1.0, float(math.floor(total_cpus / workers)))
    return max(1, min(workers, pending)), float(gpus_per_worker), cpus


def embed_with_ray(run: Run, options: EmbedOptions = EmbedOptions(), *, address: Optional[str] = None,
                   num_workers: Optional[int] = None, gpus_per_worker: Optional[float] = None,
                   overwrite: bool = False, _overlap: Optional[bool] = None) -> dict:
    """Encode the pending shards of ``run`` (whose corpus is read) on a Ray cluster; returns the manifest.

    ``address``: a Ray cluster to attach to (``auto``, ``HOST:6379`` or ``ray://HOST:10001``); ``None`` attaches
    to the Ray this process already initialised or starts a local one. ``num_workers``: actors (default: one per
    ``gpus_per_worker`` GPUs, or one per CPU without GPUs). ``gpus_per_worker``: GPUs per actor (default 1 when
    the cluster has GPUs, else 0 = CPU actors; fractions pack several actors on one GPU).
    """
    _check_pool(num_workers, gpus_per_worker)
    ray = _import_ray()
    plan = plan_shards(run, options, overwrite)
    pending = pending_shards(run, plan)
    if not pending:
        if not run.embeddings_manifest_path.is_file():
            start_manifest(run, plan, prepare_encoder(run, plan, options, "cpu"))
        return finalize(run)
    manifest_started = False
    if encoder_kind(options.model).fitted:
        # fit once here and store it in RUN; every actor loads that fit instead of fitting again
        start_manifest(run, plan, prepare_encoder(run, plan, options, "cpu"))
        manifest_started = True

    started = not ray.is_initialized()
    local = started and not (address or os.environ.get("RAY_ADDRESS"))  # a Ray instance of our own
    if started:
        try:
            # a local instance of our own logs only errors (not its token-auth notice)
            ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR if local else logging.WARNING)
        except ConnectionError as exc:
            raise CorpusmapError(f"cannot connect to the Ray cluster at {address!r} ({exc}); start it with "
                                 "`ray start --head` or check --address") from None
    elif address:
        progress.info(f"embed: using the Ray this process already initialised, not --address {address}")
    try:
        _quiet_ray_data(ray)
        workers, gpus, cpus = _pool_size(ray, len(pending), num_workers, gpus_per_worker)
        overlap = gpus > 0 if _overlap is None else _overlap
        # On a cluster keep Ray Data's fault tolerance (an actor lost with its node is restarted and its shard
        # retried); on a local instance of our own an actor dies only of a real failure (e.g. out of memory):
        # fail at once instead of retrying forever; re-running resumes with the shards that are missing.
        restarts = {"max_restarts": 0} if local and _takes_remote_args(ray) else {}
        kind = f"{gpus:g} GPU" if gpus else f"{cpus:g} CPU"
        progress.info(f"embed: {len(pending)} shards on {workers} Ray actor{'s' * (workers != 1)} ({kind} each)")
        dataset = ray.data.from_items([{"shard": i} for i in pending], override_num_blocks=len(pending))
        with warnings.catch_warnings():  # Ray >= 2.60 marks **ray_remote_args (max_restarts) as deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            encoded = dataset.map_batches(
                ShardEncoder, batch_size=1, batch_format="numpy",
                fn_constructor_kwargs={"run_dir": str(run.path.resolve()), "plan": plan, "options": options,
                                       "threads": None if gpus else int(cpus)},
                num_gpus=gpus or None, num_cpus=cpus, **_actor_compute(ray, workers, overlap), **restarts)
        rows_pending = sum(plan.bounds(i)[1] - plan.bounds(i)[0] for i in pending)
        held = _HeldErrors()
        try:
            with held, progress.Progress("embedding", total=rows_pending, unit="abstracts") as bar:
                for row in encoded.iter_rows():
                    if not manifest_started:
                        start_manifest(run, plan, _Described(json.loads(row["describe"])))
                        manifest_started = True
                    bar.update(int(row["rows"]))
        except Exception as exc:  # Ray wraps what the actors raised
            error = _ray_error(exc)
            if error is not None:
                kind = UsageProblem if isinstance(error, UsageProblem) else CorpusmapError
                raise kind(str(error)) from None
            held.release()
            raise
        held.release()
    finally:
        if started:
            _shutdown(ray)
    return finalize(run)
