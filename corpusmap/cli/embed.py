"""`corpusmap embed` and `corpusmap merge`."""
from __future__ import annotations

import click

from corpusmap import progress
from corpusmap.cli.common import device_option, run_argument
from corpusmap.corpus import ColumnMap, CorpusFilters
from corpusmap.embed import EmbedOptions, embed as embed_corpus, finalize, parse_devices, parse_worker
from corpusmap.encoders import DTYPES, POOLINGS
from corpusmap.store import open_run


@click.command()
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("-o", "--output", "run_dir", required=True, type=click.Path(path_type=str),
              help="Run directory to create or resume.")
@click.option("--model", default="all-MiniLM-L6-v2", show_default=True,
              help="Hugging Face / sentence-transformers model name or local directory, or `tfidf`. "
                   "The default is bundled and works offline.")
@click.option("--pooling", type=click.Choice(POOLINGS), default="auto", show_default=True,
              help="auto = the model's own sentence-transformers pooling (else mean); sep = last token.")
@click.option("--max-length", type=click.IntRange(min=2), default=None,
              help="Truncate texts to this many tokens (default: the model's limit).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--max-tokens-per-batch", type=click.IntRange(min=1), default=None,
              help="Token budget per batch instead of a fixed row count (batches of short texts get more rows).")
@device_option
@click.option("--devices", default=None, metavar="LIST",
              help="One worker process per device: 'all' GPUs, GPU ids '0,1', or names 'cuda:0,cpu'.")
@click.option("--dtype", type=click.Choice(DTYPES), default="float32", show_default=True,
              help="Compute precision of the model.")
@click.option("--store-dtype", type=click.Choice(["auto", "float32", "float16"]), default="auto",
              show_default=True, help="Precision on disk (auto: float16 when computing in float16, else float32).")
@click.option("--normalize/--no-normalize", default=False, show_default=True, help="L2-normalise the vectors.")
@click.option("--dim", type=click.IntRange(min=1), default=300, show_default=True,
              help="tfidf only: dimensions after truncated SVD.")
@click.option("--seed", type=int, default=42, show_default=True, help="tfidf only: seed of the fit sample and SVD.")
@click.option("--fit-from", "fit_from", default=None, metavar="RUN",
              help="tfidf only: reuse RUN's TF-IDF fit, so the vectors share RUN's space (for `map RUN --add`).")
@click.option("--shard-rows", type=click.IntRange(min=1), default=16384, show_default=True,
              help="Rows per vector shard (the unit of resuming).")
@click.option("--shard", "worker", default=None, metavar="I/N",
              help="Encode only shards I, I+N, ... (job arrays; default from SLURM_ARRAY_TASK_ID/COUNT).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this machine's processes; ray: a Ray cluster (Ray Data actors, GPU when present).")
@click.option("--address", default=None, help="--engine ray: address of a running Ray cluster (default: local).")
@click.option("--num-workers", type=click.IntRange(min=1), default=None,
              help="--engine ray: number of encoder actors (default: one per GPU, else per CPU).")
@click.option("--id-col", default=None, help="Column with the document id (default: auto).")
@click.option("--text-col", default=None, help="Column with the abstract (default: abstract or text).")
@click.option("--title-col", default=None, help="Title column; its text is prepended to the abstract.")
@click.option("--year-col", default=None, help="Column with the year or date (default: auto).")
@click.option("--label-col", default=None, help="Column with a label, e.g. journal or field (default: auto).")
@click.option("--min-chars", type=click.IntRange(min=0), default=0, show_default=True,
              help="Drop abstracts shorter than this (the landscape paper used 250).")
@click.option("--max-chars", type=click.IntRange(min=1), default=None,
              help="Drop abstracts longer than this (the landscape paper used 4000).")
@click.option("--english-only", is_flag=True,
              help="Keep English abstracts only (language column when present, else a function-word test).")
@click.option("--section-labels", is_flag=True, help="PubMed XML: prefix abstract sections with their labels.")
@click.option("--overwrite", is_flag=True, help="Replace a run made with other inputs or parameters.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def embed(inputs, run_dir, model, pooling, max_length, batch_size, max_tokens_per_batch, device, devices, dtype,
          store_dtype, normalize, dim, seed, fit_from, shard_rows, worker, engine, address, num_workers, id_col,
          text_col, title_col, year_col, label_col, min_chars, max_chars, english_only, section_labels, overwrite,
          quiet):
    """Read abstracts (CSV/TSV/JSONL/JSON/Parquet/PubMed XML, .gz too; files, folders or globs) and encode
    them into vectors in RUN. Re-running the same command resumes an interrupted run."""
    if quiet:
        progress.set_quiet(True)
    if max_chars is not None and max_chars < min_chars:
        raise click.UsageError("--max-chars must be at least --min-chars")
    columns = ColumnMap(id=id_col, text=text_col, title=title_col, year=year_col, label=label_col)
    filters = CorpusFilters(min_chars=min_chars, max_chars=max_chars, english_only=english_only)
    options = EmbedOptions(model=model, pooling=pooling, max_length=max_length, batch_size=batch_size,
                           max_tokens_per_batch=max_tokens_per_batch, dtype=dtype, store_dtype=store_dtype,
                           normalize=normalize, shard_rows=shard_rows, dim=dim, seed=seed, fit_from=fit_from)
    if engine == "ray":
        if worker or devices or device != "auto":
            raise click.UsageError("--engine ray places work itself; drop --shard, --devices and --device")
        from corpusmap.ray_engine import embed_with_ray

        manifest = embed_with_ray(run_dir, inputs, columns, filters, options, address=address,
                                  num_workers=num_workers, overwrite=overwrite, pubmed_labels=section_labels)
    else:
        if address or num_workers:
            raise click.UsageError("--address and --num-workers go with --engine ray")
        manifest = embed_corpus(inputs, run_dir, columns, filters, options, device=device,
                                worker=parse_worker(worker), overwrite=overwrite, pubmed_labels=section_labels,
                                devices=parse_devices(devices))
    _report(manifest, run_dir)


@click.command()
@run_argument
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def merge(run, quiet):
    """Check that every vector shard of RUN is present and valid (e.g. after a job array) and write the
    final manifest."""
    if quiet:
        progress.set_quiet(True)
    manifest = finalize(open_run(run), verify=True)
    if not manifest["complete"]:
        missing = manifest.get("missing", [])
        raise click.ClickException(
            f"{len(missing)} of {manifest['n_shards']} shards missing in {run}/embeddings "
            f"({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}); run the embed tasks that make them")
    _report(manifest, run)


def _report(manifest: dict, run_dir: str) -> None:
    if not manifest["complete"]:
        progress.info(f"embed: this worker is done; {len(manifest['shards'])} of {manifest['n_shards']} shards "
                      f"present; `corpusmap merge {run_dir}` checks the rest once all tasks have finished")
        return
    truncated = manifest.get("truncated", 0)
    note = f"; {truncated:,} truncated at {manifest['max_length']} tokens" if manifest.get("max_length") else ""
    progress.info(f"embed: {manifest['n']:,} vectors of {manifest['dim']} dims ({manifest['store_dtype']}){note} "
                  f"-> {run_dir}/embeddings")
