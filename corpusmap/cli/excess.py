"""`corpusmap excess`: excess-vocabulary reports (which words rose above their trend, and by how much)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from corpusmap import progress
from corpusmap.cli.common import THREADS, default, overwrite_option, quiet_option, run_command, with_jobs
from corpusmap.excess.analysis import Criteria
from corpusmap.excess.stage import ExcessParams, ExcessStage
from corpusmap.pipeline import Job

C = Criteria
P = ExcessParams


def _floats(value: str, flag: str) -> tuple:
    try:
        return tuple(float(v) for v in str(value).replace(" ", "").split(",") if v)
    except ValueError:
        raise click.UsageError(f"{flag} takes comma-separated numbers, not {value!r}") from None


def _words(value: str) -> tuple:
    return tuple(w.strip().lower() for w in str(value).split(",") if w.strip())


def _group_option(values) -> dict:
    """``--group-words`` values: ``NAME=w1,w2``, ``w1,w2``, ``FILE`` or ``NAME=FILE``."""
    from corpusmap.excess.words import parse_word_list

    groups: dict[str, list[str]] = {}
    for i, value in enumerate(values, 1):
        name, spec = None, value
        if "=" in value:
            name, spec = value.split("=", 1)
            name = name.strip()
        if name is None:
            name = Path(spec).stem if Path(spec).is_file() else ("words" if len(values) == 1 else f"words{i}")
        if not name[:1].isalnum():
            raise click.UsageError(f"--group-words {value}: a group name starts with a letter or digit, not "
                                   f"{name!r}")
        if name in groups:
            raise click.UsageError(f"two word groups are named {name!r}; name them with NAME=words")
        groups[name] = parse_word_list(spec.strip(), f"--group-words {value}")
    return groups


def jobs(o: dict) -> list[Job]:
    if o["threads"] and "polars" not in sys.modules:
        os.environ["POLARS_MAX_THREADS"] = str(o["threads"])  # polars sizes its thread pool on import
    from corpusmap.excess.stage import ExcessStage

    kinds = list(dict.fromkeys(o["group_kind"]))
    if len(kinds) > 1:
        raise click.UsageError(f"--group takes one kind, not {' and '.join(kinds)}: run excess once per kind (with "
                               "its own -o)")
    criteria = Criteria(min_freq=o["min_freq"], min_letters=o["min_letters"], letters_only=not o["any_token"],
                        min_delta=o["min_delta"], min_ratio=o["min_ratio"])
    params = ExcessParams(source=tuple(o["inputs"]), counts=o["counts_path"], output=o["out_dir"],
                          period=o["period"], year_col=o["year_col"], date_col=o["date_col"],
                          text_col=o["text_col"], with_titles=o["with_titles"], title_col=o["title_col"],
                          targets=tuple(o["targets"]), criteria=criteria, group_words=_group_option(o["group_words"]),
                          group=kinds[0] if kinds else None, group_max_freq=o["group_max_freq"],
                          style_words=o["style_words"],
                          style_groups=tuple(o["style_groups"]), cutoffs=_floats(o["cutoffs"], "--cutoffs"),
                          rare_max_freq=o["rare_max_freq"], common_words=_words(o["common_words"]), by=o["by"],
                          min_group_size=o["min_group_size"], size_window=o["size_window"],
                          subgroup_delta=o["subgroup_delta"], clean=o["clean"], lemmatize=o["lemmatize"],
                          top=o["top"], figures=o["figures"], csv=o["csv"])
    stage = ExcessStage(engine=o["engine"], threads=o["threads"], batch_rows=o["batch_rows"], argv=sys.argv[1:])
    return [Job(stage, params.workspace(), params, o["overwrite"], report=report)]


def _subgroup_line(row: dict, by: str) -> str:
    """One console line for the subgroups of one group and target (the manifest's ``subgroups`` row)."""
    checked = f" in each period of {row['window'][0]}–{row['window'][-1]}" if row["window"] else ""
    left = [f"{row['smaller']:,} smaller"] if row["smaller"] else []
    left += [f"{row['unmeasurable']:,} without abstracts in t…t−3"] if row["unmeasurable"] else []
    line = (f"{row['group']} by {by} in {row['target']}: {progress.plural(row['kept'], 'subgroup')} with at least "
            f"{progress.plural(row['min_group_size'], 'abstract')}{checked}"
            + (f" (left out: {', '.join(left)})" if left else ""))
    what = "the study's δ, (δ rare + δ common) / 2," if row["delta_rule"] == "study" else "δ"
    if row["kept"] == 1:
        hi = row["highest"]
        line += f"; {what} {hi['delta'] * 100:+.2f} percentage points ({hi['subgroup']})"
    elif row["kept"]:
        hi, lo = row["highest"], row["lowest"]
        line += f"; {what} from {lo['delta'] * 100:+.2f} ({lo['subgroup']}) to {hi['delta'] * 100:+.2f} " \
                f"percentage points ({hi['subgroup']})"
    elif row.get("empty"):
        line += (f"; the corpus has no abstracts in {', '.join(row['empty'])}, so none can pass: choose another "
                 "--size-window (e.g. t-3:t)")
    elif row["smaller"]:
        line += "; lower --min-group-size to see smaller ones"
    return line


def report(result) -> None:
    manifest = result.manifest
    if not result.computed:
        click.echo(f"excess: the report in {result.where} is current; nothing to do")
        return
    for row in manifest["results"]:
        absent = row.get("excess_absent")
        progress.info(f"excess {row['target']}: {row['excess_words']:,} excess words of {row['analysed_words']:,} "
                      f"analysed ({row['top_by_delta']})"
                      + (f"; {absent:,} of them do not occur in {row['target']} ({row['abstracts']:,} abstracts): "
                         "excess by the smoothing of a small period alone" if absent else ""))
    for row in manifest["groups"]:
        progress.info(f"group {row['group']} in {row['target']}: delta = {row['delta'] * 100:+.2f} percentage "
                      "points" + (" (style words: a lower bound on LLM-processed abstracts)" if row.get("lower_bound")
                                  else " (style words, before LLM tools: no bound)" if row.get("style_words")
                                  else ""))
    for row in manifest.get("style_bound") or []:
        if row.get("max_cutoff") is not None:
            what = f"lower bound {row['target']}" if row.get("lower_bound") else \
                f"style words {row['target']} (before LLM tools: no bound)"
            progress.info(f"{what}: max delta over cut-offs = {row['max_delta'] * 100:.2f} percentage points "
                          f"at p < {row['max_cutoff']:g} ({row['max_words']} style words)"
                          + (f"; the study's mean of rare and common = {row['delta_study'] * 100:.2f} points"
                             if row.get("delta_study") is not None else ""))
    excess_of = {str(row["target"]): row["excess_words"] for row in manifest["results"]}
    for target, lemmas in (manifest.get("lemmas") or {}).items():
        progress.info(f"lemmas {target}: the {excess_of.get(str(target), 0):,} excess words are {lemmas:,} lemmas "
                      "(excess_lemmas.csv)")
    by = manifest["parameters"].get("by")
    for row in manifest.get("subgroups") or []:
        progress.info(_subgroup_line(row, by))
    click.echo(f"excess: report in {result.where / 'report.md'}")


@with_jobs(jobs)
@click.command()
@click.argument("inputs", nargs=-1, metavar="[INPUT...|RUN]")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Output directory (default: RUN/excess when given a RUN; required otherwise); a new or empty "
                   "folder, or an excess report's (a folder of other files is refused).")
@click.option("--counts", "counts_path", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Analyse a count table made elsewhere: our counts.parquet, or a CSV (.gz) with a word column, "
                   "one column per period and a last row of totals with an empty word (the study's shape).")
@click.option("--period", type=click.Choice(["year", "month"]), default=default(P, "period"), show_default=True,
              help="Count per year (year column) or per month (YYYY-MM from a date column).")
@click.option("--year-col", default=None,
              help="Year column (files: the source column, else auto; RUN: a column of corpus.parquet, default "
                   "year).")
@click.option("--date-col", default=default(P, "date_col"), show_default=True,
              help="Date column for --period month, and, named, the years' source instead of the year column "
                   "(auto: date, listing_date, pub_date, publication_date, ...).")
@click.option("--text-col", default=None, help="Text column (files: default auto; RUN: text).")
@click.option("--with-titles", is_flag=True,
              help="Count words on title + ' ' + abstract. A RUN embedded with --title-col already has the title "
                   "in its text: do not add it twice.")
@click.option("--title-col", default=default(P, "title_col"), show_default=True,
              help="Title column, for --with-titles and for the errata filter of --clean.")
@click.option("--target", "targets", multiple=True, metavar="PERIOD",
              help="Target period, repeatable (default: every period with three earlier ones).")
@click.option("--min-freq", type=click.FloatRange(0, 1), default=default(C, "min_freq"), show_default=True,
              help="Analysed words have at least this frequency in t and t-1.")
@click.option("--min-letters", type=click.IntRange(min=1), default=default(C, "min_letters"), show_default=True,
              help="Analysed words have at least this many characters.")
@click.option("--any-token", is_flag=True, help="Analyse every token, not only words of the letters a-z.")
@click.option("--min-delta", type=float, default=default(C, "min_delta"), show_default=True,
              help="Excess if the gap p - q exceeds this ...")
@click.option("--min-ratio", type=click.FloatRange(min=1, min_open=True), default=default(C, "min_ratio"),
              show_default=True,
              help="... or if log10 r exceeds log10 R - (log10 p + 4) log10(R) / 4, with R this value.")
@click.option("--group-words", "group_words", multiple=True, metavar="[NAME=]WORDS|FILE",
              help="A word group: comma-separated words or a file of words; repeatable. Its gap delta is a lower "
                   "bound on the share of abstracts processed with an LLM only for style words: declare such a "
                   "group with --style-group NAME.")
@click.option("--style-group", "style_groups", multiple=True, metavar="NAME",
              help="Declare a --group-words group to be style words (its delta is then reported as a lower bound "
                   "on LLM-processed abstracts); repeatable.")
@click.option("--group", "group_kind", type=click.Choice(["excess", "style"]), multiple=True,
              help="style: the study's lower bound, from the target's excess words annotated 'style' (the study's "
                   "annotation, or --style-words), over frequency cut-offs; excess: all excess words of each "
                   "target as a group (content words included: not a lower bound).")
@click.option("--style-words", type=click.Path(dir_okay=False, path_type=str), default=None, metavar="FILE",
              help="With --group style: your annotation instead of the study's, a CSV with columns word,type "
                   "(type exactly 'style' counts) or a plain list of words (all style).")
@click.option("--cutoffs", default=",".join(f"{c:g}" for c in default(P, "cutoffs")), show_default=True,
              metavar="C1,C2,...",
              help="With --group style: frequency cut-offs c of the bound (style words with p < c in the target).")
@click.option("--rare-max-freq", type=click.FloatRange(min=0, max=1, min_open=True),
              default=default(P, "rare_max_freq"), show_default=True,
              help="With --group style: rare style words have p below this (the study's subgroup delta).")
@click.option("--common-words", default=",".join(default(P, "common_words")), show_default=True,
              metavar="W1,W2,...",
              help="With --group style: the study's fixed common words (the study's subgroup delta).")
@click.option("--group-max-freq", type=click.FloatRange(min=0, min_open=True), default=None,
              help="With --group excess: only excess words with frequency below this in the target period.")
@click.option("--by", default=None, metavar="COLUMN",
              help="Gap of each word group per value of this column (label, journal, venue, ...; lists count "
                   "in each of their values), or cluster[:LEVEL] (cluster:NAME[:LEVEL]) for the map's regions.")
@click.option("--min-group-size", type=click.IntRange(min=1), default=default(P, "min_group_size"),
              show_default=True, help="--by: subgroups need this many abstracts in each period of --size-window.")
@click.option("--size-window", default=default(P, "size_window"), show_default=True, metavar="FIRST:LAST",
              help="--by: the periods, as offsets from the target t, in which a subgroup needs --min-group-size "
                   "abstracts: the study's t-6:t-1 (2018-2023 for 2024); t-3:t is t and the three before it.")
@click.option("--subgroup-delta", type=click.Choice(["study", "group"]), default=default(P, "subgroup_delta"),
              show_default=True,
              help="--by with --group style: study = the mean of the rare and the common style words' delta (the "
                   "study's); group = the style group's own delta. Other groups always use their own delta.")
@click.option("--clean", is_flag=True,
              help="Clean the abstracts as the study did before counting: errata/retractions (by title) become "
                   "empty, copyright lines, publisher notes, 'Graphical abstract', section headings and the "
                   "study's other boilerplate removed; the report counts what each rule changed.")
@click.option("--lemmatize", is_flag=True,
              help="Also report the excess words as lemmas (as the study; needs lemminflect and breame).")
@click.option("--top", type=click.IntRange(min=1), default=default(ExcessParams, "top"), show_default=True,
              help="Words per table in the report.")
@click.option("--threads", "--workers", "threads", type=THREADS, default=None,
              help="CPU threads/processes for counting (default: all cores). Results do not depend on it.")
@click.option("--engine", type=click.Choice(["auto", "polars", "python"]), default=default(ExcessStage, "engine"),
              show_default=True,
              help="polars: Rust tokeniser, exact to CountVectorizer; python: re in worker processes.")
@click.option("--batch-rows", type=click.IntRange(min=1), default=default(ExcessStage, "batch_rows"),
              show_default=True,
              help="Rows per batch read from a RUN.")
@click.option("--figures/--no-figures", default=default(P, "figures"), show_default=True, help="Write PNG figures.")
@click.option("--csv/--no-csv", default=default(P, "csv"), show_default=True,
              help="Write CSV copies of the tables (counts.csv can be large).")
@overwrite_option
@quiet_option
def excess(**options):
    """Excess vocabulary: words that became more frequent in a period than their trend predicts.

    Reads abstracts (files, folders or globs in any format corpusmap reads, or a RUN directory) or a count
    table (--counts), counts per period the abstracts containing each word, and writes to OUT: counts
    (counts.parquet, counts.csv), one table per target period (excess_<t>.parquet/.csv), report.md, figures/
    and manifest.json.

    Example: corpusmap excess RUN --target 2024 --group excess --by label
    """
    run_command(jobs(options), options["quiet"])
