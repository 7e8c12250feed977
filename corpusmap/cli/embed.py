"""`corpusmap embed` and `corpusmap merge`."""
from __future__ import annotations

from pathlib import Path

import click

from corpusmap import progress
from corpusmap.cli.common import default, device_option, quiet_option, run_argument, run_command, with_jobs
from corpusmap.corpus import PRESETS, ColumnMap, CorpusFilters
from corpusmap.embed import (EmbedOptions, EmbedParams, EmbedStage, encoder_kind, finalize, parse_devices,
                             parse_worker)
from corpusmap.encoders import DTYPES, POOLINGS
from corpusmap.pipeline import Job
from corpusmap.run import Run, open_run
from corpusmap.stage import refuse_unused

O = EmbedOptions


def jobs(o: dict) -> list[Job]:
    if (o["address"] or o["num_workers"] or o["gpus_per_worker"] is not None) and o["engine"] != "ray":
        raise click.UsageError("--address, --num-workers and --gpus-per-worker go with --engine ray")
    columns = ColumnMap(id=o["id_col"], text=o["text_col"], title=o["title_col"], year=o["year_col"],
                        label=o["label_col"])
    filters = CorpusFilters.from_preset(o["preset"], min_chars=o["min_chars"], max_chars=o["max_chars"],
                                        english_only=o["english_only"], cut_truncated=o["cut_truncated"],
                                        finished_only=o["finished_only"])
    if not (o["vectors"] or o["prepare_only"]):  # neither needs the model
        check_model_available(o["model"])
    options = EmbedOptions(model=o["model"], pooling=o["pooling"], max_length=o["max_length"],
                           batch_size=o["batch_size"], max_tokens_per_batch=o["max_tokens_per_batch"],
                           dtype=o["dtype"], store_dtype=o["store_dtype"], normalize=o["normalize"],
                           shard_rows=o["shard_rows"], dim=o["dim"], seed=o["seed"], fit_from=o["fit_from"],
                           vectors=o["vectors"])
    params = EmbedParams(inputs=tuple(o["inputs"]), columns=columns, filters=filters,
                         section_labels=o["section_labels"], options=options)
    if o["prepare_only"]:
        refuse_unused([flag for flag, on in (("--shard", o["worker"] is not None), ("--engine", o["engine"] != "local"))
                       if on], "--prepare-only only reads the inputs into RUN/corpus.parquet (it encodes no shard)")
    tokenizer_workers = parse_tokenizer_workers(o["tokenizer_workers"])
    if o["vectors"] or encoder_kind(o["model"]).fitted:  # no model on a device, no tokenizer
        off = [flag for flag, on in (("--device", o["device"] not in ("auto", "cpu")), ("--devices", o["devices"]),
                                     ("--tokenizer-workers", o["tokenizer_workers"] != "auto")) if on]
        what = "--vectors stores vectors made elsewhere" if o["vectors"] else f"--model {o['model']} runs on the CPU"
        refuse_unused(off, f"{what}, with no tokenizer")
    stage = EmbedStage(engine=o["engine"], device=o["device"], devices=parse_devices(o["devices"]),
                       worker=parse_worker(o["worker"]), address=o["address"], num_workers=o["num_workers"],
                       gpus_per_worker=o["gpus_per_worker"], prepare_only=o["prepare_only"],
                       tokenizer_workers=tokenizer_workers)
    return [Job(stage, Run(o["run_dir"]), params, o["overwrite"], report=report)]


def parse_tokenizer_workers(value: str) -> int | None:
    """``auto`` (None) or a count of tokenizer processes."""
    if value == "auto":
        return None
    if not value.isdigit():
        raise click.BadParameter(f"{value!r}: give auto or a number of processes (0: one loader thread)",
                                 param_hint="--tokenizer-workers")
    return int(value)


def _offline_reason() -> str | None:
    """Why the Hugging Face hub cannot be reached now (HF_HUB_OFFLINE, or no connection within 3 s), else None."""
    import os
    import socket
    import threading
    from urllib.parse import urlparse

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{name}={os.environ[name]}"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = urlparse(endpoint).hostname or "huggingface.co"
    port = urlparse(endpoint).port or (80 if endpoint.startswith("http:") else 443)
    outcome: list = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=3).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(f"no connection to {host}: {exc.strerror or exc}")

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(4)  # name resolution ignores the socket timeout
    return outcome[0] if outcome else f"no connection to {host} within 4 s"


def check_model_available(model: str) -> None:
    """Fail at once, before torch is imported, for a hub model that is neither in the local Hugging Face cache nor
    downloadable (offline): otherwise the hub client retries for a minute before it gives up."""
    from corpusmap.encoders import encoder_kind, resolve_model
    from corpusmap.errors import CorpusmapError

    if encoder_kind(model).fitted:
        return
    resolved = resolve_model(model)  # bundled model names and local directories (an error if one is missing)
    if resolved != model or Path(model).expanduser().exists():
        return
    try:
        from huggingface_hub import constants, try_to_load_from_cache
    except ImportError:
        return
    names = [model] + ([f"sentence-transformers/{model}"] if "/" not in model else [])
    for name in names:
        try:
            if isinstance(try_to_load_from_cache(name, "config.json"), str):
                return
        except Exception:  # noqa: BLE001 - an invalid repo id: let the loader say what is wrong
            return
    reason = _offline_reason()
    if reason is None:
        return  # the hub is reachable: the loader downloads it (or says it does not exist)
    raise CorpusmapError(
        f"cannot load model {model!r}: it is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and the "
        f"hub cannot be reached ({reason}); download it where there is a network (`huggingface-cli download "
        f"{names[-1]}`, or copy the cache folder), or give a local model directory with --model /path/to/model")


def report(result) -> None:
    manifest, run_dir = result.manifest, result.where.parent
    if result.output == "corpus":
        progress.info(f"corpus: {manifest['rows']:,} abstracts in {run_dir}/corpus.parquet; encode them with the "
                   "same command without --prepare-only")
        return
    if not manifest.get("complete"):
        progress.info(f"embed: this worker is done; {len(manifest['shards'])} of {manifest['n_shards']} shards "
                   f"present; `corpusmap merge {run_dir}` checks the rest once all tasks have finished")
        return
    truncated = manifest.get("truncated", 0)
    note = f"; {truncated:,} truncated at {manifest['max_length']} tokens" if manifest.get("max_length") else ""
    state = "" if result.computed else " (already complete; nothing to do)"
    progress.info(f"embed: {manifest['n']:,} vectors of {manifest['dim']} dims ({manifest['store_dtype']}){note} "
               f"-> {run_dir}/embeddings{state}")


@with_jobs(jobs)
@click.command()
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("-o", "--output", "run_dir", required=True, type=click.Path(path_type=str),
              help="Run directory to create or resume.")
@click.option("--model", default=default(O, "model"), show_default=True,
              help="Hugging Face / sentence-transformers model name or local directory, or `tfidf`. "
                   "The default is bundled and works offline.")
@click.option("--pooling", type=click.Choice(POOLINGS), default=default(O, "pooling"), show_default=True,
              help="auto = the model's own sentence-transformers pooling (else mean); sep = last token.")
@click.option("--max-length", type=click.IntRange(min=2), default=None,
              help="Truncate texts to this many tokens (default: the model's limit).")
@click.option("--batch-size", type=click.IntRange(min=1), default=default(O, "batch_size"), show_default=True)
@click.option("--max-tokens-per-batch", type=click.IntRange(min=1), default=None,
              help="Token budget per batch: rows * padded width <= this, and at most --batch-size rows (raise "
                   "--batch-size too so that batches of short texts get more rows).")
@device_option
@click.option("--devices", default=None, metavar="D1,D2,...",
              help="One worker process per device: 'all' GPUs, GPU ids '0,1', or names 'cuda:0,cpu'.")
@click.option("--dtype", type=click.Choice(DTYPES), default=default(O, "dtype"), show_default=True,
              help="Compute precision of the model.")
@click.option("--store-dtype", type=click.Choice(["auto", "float32", "float16"]), default=default(O, "store_dtype"),
              show_default=True, help="Precision on disk (auto: float16 when computing in float16, else float32).")
@click.option("--normalize/--no-normalize", default=default(O, "normalize"), show_default=True,
              help="L2-normalise the vectors.")
@click.option("--dim", type=click.IntRange(min=1), default=default(O, "dim"), show_default=True,
              help="tfidf only: dimensions after truncated SVD.")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=default(O, "seed"), show_default=True,
              help="tfidf only: seed of the fit sample and SVD.")
@click.option("--fit-from", "fit_from", type=click.Path(path_type=str), default=None, metavar="RUN",
              help="tfidf only: reuse RUN's TF-IDF fit, so the vectors share RUN's space (for `map RUN --add`).")
@click.option("--vectors", type=click.Path(path_type=str), default=None, metavar="FILE",
              help="Store vectors made elsewhere instead of encoding: FILE.npy (n x d, the corpus' rows in order) "
                   "or FILE.parquet:COLUMN (a column of fixed-size lists), one row per corpus row, in order.")
@click.option("--tokenizer-workers", default="auto", show_default=True, metavar="auto|N",
              help="Processes that tokenize ahead of the model (auto: none on a CPU, the spare cores up to 8 on "
                   "a GPU; 0: one loader thread).")
@click.option("--shard-rows", type=click.IntRange(min=1), default=default(O, "shard_rows"), show_default=True,
              help="Rows per vector shard (the unit of resuming).")
@click.option("--shard", "worker", default=None, metavar="I/N",
              help="Encode only shards I, I+N, ... (job arrays; default from SLURM_ARRAY_TASK_ID/COUNT).")
@click.option("--prepare-only", is_flag=True,
              help="Only read the inputs into RUN/corpus.parquet (run it once before a job array).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this machine's processes; ray: a Ray cluster (Ray Data actors, GPU when present).")
@click.option("--address", default=None, help="--engine ray: address of a running Ray cluster (default: local).")
@click.option("--num-workers", type=click.IntRange(min=1), default=None,
              help="--engine ray: number of encoder actors (default: one per GPU, else per CPU).")
@click.option("--gpus-per-worker", type=click.FloatRange(min=0), default=None,
              help="--engine ray: GPUs per actor (default 1 on a cluster with GPUs; 0.5 packs two actors on a GPU; "
                   "0 for CPU actors).")
@click.option("--id-col", default=None, help="Column with the document id (default: auto).")
@click.option("--text-col", default=None, help="Column with the abstract (default: abstract or text).")
@click.option("--title-col", default=None, help="Title column; its text is prepended to the abstract.")
@click.option("--year-col", default=None, help="Column with the year or date (default: auto).")
@click.option("--label-col", default=None, help="Column with a label, e.g. journal or field (default: auto).")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default=None,
              help="The corpus of a study. landscape (PubMed landscape paper): --english-only, 250 < length < "
                   "4000 (--min-chars 251 --max-chars 3999), --cut-truncated, --finished-only; flags given "
                   "explicitly override it (--any-language, --no-cut-truncated, --any-ending turn one off).")
@click.option("--min-chars", type=click.IntRange(min=0), default=None,
              help="Drop abstracts shorter than this many characters [default: 0].")
@click.option("--max-chars", type=click.IntRange(min=1), default=None,
              help="Drop abstracts longer than this many characters.")
@click.option("--english-only/--any-language", default=None,
              help="Keep English abstracts only (language column when present, else a function-word test).")
@click.option("--cut-truncated/--no-cut-truncated", default=None,
              help="Cut the text from 'ABSTRACT TRUNCATED AT' on, with the character before it (after the "
                   "length filters, as the landscape paper).")
@click.option("--finished-only/--any-ending", default=None,
              help="Keep abstracts with '.', '?' or '!' among their last two characters (after --cut-truncated).")
@click.option("--section-labels", is_flag=True, help="PubMed XML: prefix abstract sections with their labels.")
@click.option("--overwrite", is_flag=True,
              help="Replace a corpus or vectors made with other inputs or parameters (and everything computed "
                   "from them).")
@quiet_option
def embed(**options):
    """Read abstracts (CSV/TSV/JSONL/JSON/Parquet/PubMed XML, .gz too; files, folders or globs) and encode
    them into vectors in RUN. Re-running the same command resumes an interrupted run."""
    run_command(jobs(options), options["quiet"])


@click.command()
@run_argument
@quiet_option
def merge(run, quiet):
    """Check that every vector shard of RUN is present and valid (e.g. after a job array) and write the
    final manifest."""
    if quiet:
        progress.set_quiet(True)
    r = open_run(run)
    manifest = finalize(r, verify=True)
    if not manifest["complete"]:
        missing = manifest.get("missing", [])
        raise click.ClickException(
            f"{len(missing)} of {manifest['n_shards']} shards missing in {run}/embeddings "
            f"({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}); run the embed tasks that make them "
            "(their `corpusmap embed ... --shard I/N`, or the same command without --shard for all), then merge")
    r.invalidate()
    progress.info(f"embed: {manifest['n']:,} vectors of {manifest['dim']} dims ({manifest['store_dtype']}) "
                  f"-> {run}/embeddings")
