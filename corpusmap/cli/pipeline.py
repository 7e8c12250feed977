"""`corpusmap run CONFIG.toml`: every stage from one file whose tables hold each command's own long options.

::

    run = "runs/demo"                 # the run directory (relative paths: to this file)
    [embed]
    inputs = ["examples/elife_2012_2016.jsonl.gz"]
    [neighbors]
    k = 15
    [[map]]
    method = "tsne"
    [evaluate]
    [excess]
    [[plot]]
    map = "tsne"
    color = "year"

Each table is parsed by its command (so the file accepts exactly what the command accepts, with TOML types:
a flag takes true or false, a number a number) and becomes that command's jobs; a job runs only when its
stored output is not current (:mod:`corpusmap.pipeline`). ``[[map]]``, ``[[clusters]]``, ``[[plot]]``,
``[[view]]`` and ``[[export]]`` may repeat. Paths (the inputs, globs included, every path option, and a
``model`` or ``group-words`` file where one is there) are relative to the file.
"""
from __future__ import annotations

import datetime

import shlex
import sys
from pathlib import Path
from typing import Any, Callable

import click

from corpusmap import progress
from corpusmap.cli.common import quiet_option
from corpusmap.errors import UsageProblem
from corpusmap.pipeline import Job, plan, refused, run_jobs
from corpusmap.run import Run

STAGE_ORDER = ("embed", "neighbors", "map", "clusters", "evaluate", "excess", "plot", "view", "export")
REPEATABLE = ("map", "clusters", "plot", "view", "export")
POSITIONAL = {"embed": "inputs", "excess": "inputs"}  # tables name the positional argument like this
# options that take a name or a path (a hub model or a local folder; words or a file of words, NAME= before
# either): a value is a path relative to the file where one is there
NAME_OR_PATH = {("embed", "model"), ("excess", "group_words")}
# options of the command line that a table cannot have: the run names the output, a pipeline opens nothing
NOT_IN_TABLES = {("embed", "run_dir"): "the run directory is the config's run = ...",
                 ("view", "open_page"): "open the page afterwards with `corpusmap view RUN --open`",
                 ("view", "serve_page"): "serve the page afterwards with `corpusmap view RUN --serve`"}


def load_config(path: Path) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise UsageProblem(f"no such config file: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageProblem(f"{path}: not valid TOML ({exc})") from None


def _resolve(value: str, base: Path) -> str:
    import os

    return value if Path(value).is_absolute() else os.path.normpath(base / value)


def _name_or_path(value: str, base: Path) -> str:
    name, sep, rest = value.partition("=") if "=" in value and not value.startswith("=") else ("", "", value)
    return f"{name}{sep}{_resolve(rest, base)}" if (base / rest).exists() else value


def _scalar(stage: str, key: str, value: Any, param: click.Parameter) -> str:
    """One TOML value as a command-line word, refusing values of the wrong type."""
    kind = param.type
    wrong = isinstance(value, (dict, list, bool, datetime.date, datetime.time))  # (a TOML date is not text)
    if isinstance(kind, (click.types.IntParamType, click.IntRange)):
        wrong = wrong or not isinstance(value, int)
    elif isinstance(kind, (click.types.FloatParamType, click.FloatRange)):
        wrong = wrong or not isinstance(value, (int, float))
    if wrong:
        raise UsageProblem(f"[{stage}] {key} = {value!r}: expected {_expected(param)}")
    return str(value)


def _expected(param: click.Parameter) -> str:
    if getattr(param, "is_flag", False):
        return "true or false"
    name = {click.INT: "a whole number", click.FLOAT: "a number"}.get(param.type, None)
    if isinstance(param.type, click.IntRange):
        name = "a whole number"
    elif isinstance(param.type, click.FloatRange):
        name = "a number"
    elif isinstance(param.type, click.Choice):
        name = "one of " + ", ".join(repr(c) for c in param.type.choices)
    return (name or "a string") + (" (or a list of them)" if getattr(param, "multiple", False) else "")


def _check_inputs(stage: str, paths: list[str]) -> list[str]:
    """The inputs of a table, each a file, a folder or a glob that matches something (resolved against the config
    file's folder, which the message says)."""
    import glob

    for path in paths:
        if not (glob.has_magic(path) and glob.glob(path, recursive=True)) and not Path(path).exists():
            raise UsageProblem(f"[{stage}] {POSITIONAL[stage]}: {path} "
                               f"{'matches nothing' if glob.has_magic(path) else 'does not exist'} (paths in a "
                               "config are relative to its folder)")
    return paths


def command_args(command: click.Command, stage: str, table: dict, base: Path) -> list[str]:
    """A TOML table as the command line of ``command``, checking every value's type."""
    options = {p.name: p for p in command.params if isinstance(p, click.Option)}
    by_flag = {opt.lstrip("-"): p for p in options.values() for opt in p.opts + p.secondary_opts}
    positional = [p for p in command.params if isinstance(p, click.Argument)]
    args: list[str] = []
    table = dict(table)
    if stage in POSITIONAL and positional:
        values = table.pop(POSITIONAL[stage], None)
        if values is None:
            if positional[0].required:
                raise UsageProblem(f'[{stage}] needs {POSITIONAL[stage]} = ["file-or-folder", ...]')
            values = []
        values = [values] if isinstance(values, str) else values
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise UsageProblem(f"[{stage}] {POSITIONAL[stage]} must be a list of paths (strings)")
        args += _check_inputs(stage, [_resolve(v, base) for v in values])
    seen: dict = {}
    for key, value in table.items():
        name = key if key in by_flag else key.replace("_", "-")
        param = by_flag.get(name)
        if param is not None and (stage, param.name) in NOT_IN_TABLES:
            raise UsageProblem(f"[{stage}] {key}: not in a config; {NOT_IN_TABLES[stage, param.name]}")
        if param is not None and param.name in seen:
            raise UsageProblem(f"[{stage}] {seen[param.name]} and {key} set one option; keep one")
        if param is not None:
            seen[param.name] = key
        if param is None:
            known = sorted({next((o for o in p.opts if o.startswith("--")), p.opts[0]).lstrip("-")
                            for p in options.values()})
            raise UsageProblem(f"[{stage}] has no option {key!r}; its options: {', '.join(known)}")
        flag = next((o for o in param.opts if o.startswith("--")), param.opts[0])
        is_path = isinstance(param.type, click.Path)
        if param.is_flag:
            if not isinstance(value, bool):
                raise UsageProblem(f"[{stage}] {key} = {value!r}: expected true or false")
            if param.secondary_opts:
                negated = name in (o.lstrip("-") for o in param.secondary_opts)  # no-normalize = true
                args.append(flag if value != negated else param.secondary_opts[0])
            elif value:
                args.append(flag)
            continue
        if isinstance(value, list) and not param.multiple:
            if "," not in (param.metavar or ""):
                raise UsageProblem(f"[{stage}] {key} takes one value, not a list")
            # an option of comma-separated values (metavar like R1,R2,...): a TOML list is those values
            value = ",".join(_scalar(stage, key, item, param) for item in value)
        values = value if isinstance(value, list) else [value]
        for item in values:
            word = _scalar(stage, key, item, param)
            if is_path:
                word = _resolve(word, base)
            elif (stage, param.name) in NAME_OR_PATH:
                word = _name_or_path(word, base)
            args += [flag, word]
    return args


def load_jobs(config_path: Path, get_command: Callable[[str], click.Command]) -> tuple[Run, list[Job]]:
    """The run directory and the jobs of a config file, in pipeline order."""
    config = load_config(config_path)
    base = config_path.resolve().parent
    unknown = sorted(set(config) - set(STAGE_ORDER) - {"run"})
    if unknown:
        raise UsageProblem(f"{config_path}: unknown table(s) {', '.join(unknown)}; the stages are "
                           f"{', '.join(STAGE_ORDER)}")
    if not isinstance(config.get("run"), str):
        raise UsageProblem(f'{config_path}: name the run directory, e.g. run = "runs/demo"')
    run_dir = _resolve(config["run"], base)
    jobs: list[Job] = []
    writer: dict[Path, str] = {}  # output -> the table writing it: two tables writing one would replace each other
    for name in STAGE_ORDER:
        if name not in config:
            continue
        tables = config[name]
        if isinstance(tables, dict):
            tables = [tables]
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            raise UsageProblem(f"{config_path}: {name} must be a table ([{name}]) of options, not {tables!r}")
        if len(tables) > 1 and name not in REPEATABLE:
            raise UsageProblem(f"{config_path}: [{name}] may appear once; only {', '.join(REPEATABLE)} repeat")
        command = get_command(name)
        for number, table in enumerate(tables, 1):
            try:
                args = command_args(command, name, table, base)
            except UsageProblem as exc:
                raise UsageProblem(f"{config_path}: {exc}") from None
            args = args + ["-o", run_dir] if name == "embed" else [run_dir] + args
            try:
                with command.make_context(f"corpusmap {name}", list(args)) as ctx:
                    made = command.jobs(ctx.params)
            except click.UsageError as exc:
                raise UsageProblem(f"{config_path}: [{name}]: {exc.format_message()}") from None
            except UsageProblem as exc:  # a value the command's own checks refuse (e.g. a list of numbers)
                raise UsageProblem(f"{config_path}: [{name}]: {exc}") from None
            line = shlex.join(["corpusmap", name, *args])
            where = f"[{name}]" if len(tables) == 1 else f"the {_ordinal(number)} [[{name}]]"
            for job in made:
                made_by = "" if job.stage.name == name else f" (by {where})"  # e.g. the figure a [[map]] draws
                job.label = f"{job.label}{made_by}: {line}"
                output = job.stage.where(job.run, job.params)
                if output.resolve() in writer:
                    raise UsageProblem(f"{config_path}: {writer[output.resolve()]} and {where} both write {output}; "
                                       "give one of them its own name")
                writer[output.resolve()] = where
            jobs += made
    if not jobs:
        raise UsageProblem(f"{config_path} names no stage")
    return Run(run_dir), jobs


def _ordinal(i: int) -> str:
    return {1: "first", 2: "second", 3: "third"}.get(i, f"{i}th")


@click.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Print each stage and whether it would run, and stop.")
@click.option("--overwrite", is_flag=True,
              help="Let every stage replace an output computed with other parameters (as each table's "
                   "overwrite = true does for its stage).")
@quiet_option
@click.pass_context
def run(ctx, config, dry_run, overwrite, quiet):
    """Run the whole pipeline (embed, neighbors, maps, clusters, evaluate, excess, plots, pages, exports) from a TOML
    file; a stage whose stored output is current is skipped. Each table holds one command's long options; see
    examples/demo.toml."""
    if quiet:
        progress.set_quiet(True)
    group = ctx.find_root().command
    run_dir, jobs = load_jobs(config, lambda name: group.get_command(ctx, name))
    for job in jobs:
        job.overwrite = job.overwrite or overwrite
    def allow(job):
        table = f"[[{job.stage.name}]]" if job.stage.name in REPEATABLE else f"[{job.stage.name}]"
        return f"set overwrite = true in {table} or run `corpusmap run {config} --overwrite`"

    if dry_run:  # (a refused job stops the run before any job runs; what comes after it depends on it)
        stop = None
        for job, status in plan(jobs):
            if stop is not None:
                click.echo(f"not reached: {job.label}")
                continue
            stop = job if refused(job, status) else None
            action = "skip (current)" if status.current else "refused" if stop else "run"
            click.echo(f"{action}: {job.label}" + ("" if status.current else f" ({status.reason})"))
        if stop is not None:
            click.echo(f"nothing would run: to replace the output of {stop.label.split(': ')[0]}, {allow(stop)}")
        return
    echo = (lambda line: None) if progress.is_quiet() else (lambda line: click.echo(line, err=True))
    run_jobs(jobs, echo=echo, state=run_dir, allow=allow)
    if not progress.is_quiet():
        click.echo(f"done: outputs are in {run_dir.path}", err=True)


__all__ = ["load_jobs", "command_args", "STAGE_ORDER", "run"]
