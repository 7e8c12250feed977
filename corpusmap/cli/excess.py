"""`corpusmap excess`: excess-vocabulary reports (which words rose above their trend, and by how much)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from corpusmap import progress


def _is_run(path: str) -> bool:
    return Path(path).is_dir() and (Path(path) / "corpus.parquet").is_file()


def _group_option(values) -> dict:
    """``--group-words`` values: ``NAME=w1,w2``, ``w1,w2``, ``FILE`` or ``NAME=FILE``."""
    from corpusmap.excess import parse_word_list

    groups: dict[str, list[str]] = {}
    for i, value in enumerate(values, 1):
        name, spec = None, value
        if "=" in value:
            name, spec = value.split("=", 1)
            name = name.strip()
        if name is None:
            name = Path(spec).stem if Path(spec).is_file() else ("words" if len(values) == 1 else f"words{i}")
        if name in groups:
            raise click.UsageError(f"two word groups are named {name!r}; name them with NAME=words")
        groups[name] = parse_word_list(spec.strip())
    return groups


@click.command()
@click.argument("inputs", nargs=-1, metavar="[INPUT...|RUN]")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Output directory (default: RUN/excess when given a RUN; required otherwise).")
@click.option("--counts", "counts_path", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Analyse a count table made elsewhere: our counts.parquet, or a CSV (.gz) with a word column, "
                   "one column per period and a last row of totals with an empty word (the study's shape).")
@click.option("--period", type=click.Choice(["year", "month"]), default="year", show_default=True,
              help="Count per year (year column) or per month (YYYY-MM from a date column).")
@click.option("--year-col", default=None,
              help="Year column (files: the source column, else auto; RUN: a column of corpus.parquet, default "
                   "year).")
@click.option("--date-col", default="auto", show_default=True,
              help="Date column for --period month (auto: date, listing_date, pub_date, publication_date, ...).")
@click.option("--text-col", default=None, help="Text column (files: default auto; RUN: text).")
@click.option("--with-titles", is_flag=True,
              help="Count words on title + ' ' + abstract. A RUN embedded with --title-col already has the title "
                   "in its text: do not add it twice.")
@click.option("--title-col", default="title", show_default=True, help="Title column for --with-titles.")
@click.option("--target", "targets", multiple=True, metavar="PERIOD",
              help="Target period, repeatable (default: every period with three earlier ones).")
@click.option("--min-freq", type=click.FloatRange(min=0), default=1e-4, show_default=True,
              help="Analysed words have at least this frequency in t and t-1.")
@click.option("--min-letters", type=click.IntRange(min=1), default=4, show_default=True,
              help="Analysed words have at least this many characters.")
@click.option("--any-token", is_flag=True, help="Analyse every token, not only words of the letters a-z.")
@click.option("--min-delta", type=float, default=0.01, show_default=True,
              help="Excess if the gap p - q exceeds this ...")
@click.option("--min-ratio", type=click.FloatRange(min=1, min_open=True), default=2.0, show_default=True,
              help="... or if log10 r exceeds log10 R - (log10 p + 4) log10(R) / 4, with R this value.")
@click.option("--group-words", "group_words", multiple=True, metavar="[NAME=]WORDS|FILE",
              help="A word group: comma-separated words or a file of words; repeatable. Its gap delta is a lower "
                   "bound on the share of abstracts processed with an LLM when the words are style words.")
@click.option("--group", "group_kind", type=click.Choice(["excess"]), default=None,
              help="excess: the excess words of each target period as a group.")
@click.option("--group-max-freq", type=click.FloatRange(min=0, min_open=True), default=None,
              help="With --group excess: only excess words with frequency below this in the target period.")
@click.option("--by", default=None, metavar="COLUMN",
              help="Gap of each word group per value of this column (label, journal, venue, ...; lists count "
                   "in each of their values).")
@click.option("--min-group-size", type=click.IntRange(min=1), default=300, show_default=True,
              help="--by: subgroups need this many abstracts in each of the four periods.")
@click.option("--top", type=click.IntRange(min=1), default=20, show_default=True,
              help="Words per table in the report.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="CPU threads/processes for counting (default: all cores).")
@click.option("--engine", type=click.Choice(["auto", "polars", "python"]), default="auto", show_default=True,
              help="polars: Rust tokeniser, exact to CountVectorizer; python: re in worker processes.")
@click.option("--batch-rows", type=click.IntRange(min=1), default=16384, show_default=True,
              help="Rows per batch read from a RUN.")
@click.option("--figures/--no-figures", default=True, show_default=True, help="Write PNG figures.")
@click.option("--csv/--no-csv", default=True, show_default=True,
              help="Write CSV copies of the tables (counts.csv can be large).")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def excess(inputs, out_dir, counts_path, period, year_col, date_col, text_col, with_titles, title_col, targets,
           min_freq, min_letters, any_token, min_delta, min_ratio, group_words, group_kind, group_max_freq, by,
           min_group_size, top, workers, engine, batch_rows, figures, csv, quiet):
    """Excess vocabulary: words that became more frequent in a period than their trend predicts.

    Reads abstracts (files, folders or globs in any format corpusmap reads, or a RUN directory) or a count
    table (--counts), counts per period the abstracts containing each word, and writes to OUT: counts
    (counts.parquet, counts.csv), one table per target period (excess_<t>.parquet/.csv), report.md, figures/
    and manifest.json.

    Example: corpusmap excess RUN --target 2024 --group excess --by label
    """
    if quiet:
        progress.set_quiet(True)
    if workers and "polars" not in sys.modules:
        os.environ["POLARS_MAX_THREADS"] = str(workers)  # polars sizes its thread pool on import
    from corpusmap.excess import ExcessParams, run_excess

    if group_max_freq is not None and group_kind != "excess":
        raise click.UsageError("--group-max-freq applies to --group excess")
    if not inputs and not counts_path:
        raise click.UsageError("give INPUT files, a RUN directory, or --counts TABLE")
    groups = _group_option(group_words)
    run_dir = inputs[0] if len(inputs) == 1 and _is_run(inputs[0]) else None
    if out_dir is None:
        if run_dir is None:
            raise click.UsageError("give an output directory with -o OUT (the default RUN/excess needs a RUN)")
        out_dir = str(Path(run_dir) / "excess")
    params = ExcessParams(min_freq=min_freq, min_letters=min_letters, letters_only=not any_token,
                          min_delta=min_delta, min_ratio=min_ratio)
    scan_options = {"period": period, "date_col": None if date_col in ("", "none") else date_col,
                    "workers": workers, "engine": engine,
                    "title_col": title_col if with_titles else None}
    open_batches, source, source_info = None, "", {}
    if run_dir is not None:
        from corpusmap.store import open_run
        from corpusmap.vocab import read_run_batches

        run = open_run(run_dir)
        names = run.corpus_columns()
        scan_options.update(text_col=text_col or "text", year_col=year_col or "year", total_rows=run.n_rows)
        wanted = [scan_options["text_col"], scan_options["year_col"], scan_options["title_col"], by,
                  *[c for c in names if c in _date_candidates(date_col)]]
        columns = [c for c in wanted if c]
        open_batches = lambda: read_run_batches(run_dir, columns, batch_rows)  # noqa: E731
        source = f"run {run_dir} (corpus.parquet)"
        source_info = {"run": str(run_dir)}
    elif inputs:
        from corpusmap.corpus import ColumnMap, CorpusStats, iter_corpus, resolve_inputs

        paths = resolve_inputs(inputs)
        title_in_text = with_titles and title_col != "title"  # the reader prepends a named title column
        columns = ColumnMap(text=text_col, year=year_col, title=title_col if title_in_text else None)
        if title_in_text:
            scan_options["title_col"] = None
        reader_stats: list = []

        def open_batches():
            stats = CorpusStats()
            reader_stats.append(stats)
            for batch in iter_corpus(paths, columns=columns, stats=stats):
                yield _by_from_core_column(batch, by, stats)

        scan_options.update(text_col="text", year_col="year")
        if with_titles and not title_in_text:
            scan_options["title_col"] = "title"
        source = ", ".join(str(p) for p in paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
        source_info = {"inputs": [str(p) for p in paths], "reader": reader_stats}
    result = run_excess(out_dir, open_batches=open_batches, counts_path=counts_path, source=source or counts_path,
                        source_info=source_info, targets=list(targets) or None, params=params,
                        scan_options=scan_options, group_words=groups,
                        excess_group=group_kind == "excess", group_max_freq=group_max_freq, by=by,
                        min_group_size=min_group_size, top=top, figures=figures, csv=csv,
                        argv=sys.argv[1:])
    for row in result.manifest["results"]:
        progress.info(f"excess {row['target']}: {row['excess_words']:,} excess words of {row['analysed_words']:,} "
                      f"analysed ({row['top_by_delta']})")
    for row in result.manifest["groups"]:
        progress.info(f"group {row['group']} in {row['target']}: delta = {row['delta'] * 100:+.2f} percentage "
                      "points")
    click.echo(f"excess: report in {Path(out_dir) / 'report.md'}")


def _by_from_core_column(batch, by, stats):
    """``--by venue`` when the reader turned ``venue`` into its ``label`` column: add it back under its name."""
    if not by or by in batch.schema.names:
        return batch
    core = next((k for k, v in (stats.columns or {}).items() if v == by and k in batch.schema.names), None)
    return batch.append_column(by, batch.column(core)) if core else batch


def _date_candidates(date_col):
    from corpusmap.vocab import DATE_COLUMNS

    return DATE_COLUMNS if date_col in (None, "auto") else (date_col,)
