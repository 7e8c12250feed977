"""`corpusmap run CONFIG.toml`: every stage of the pipeline from one file, resuming where a run stopped.

The file names the run directory and one table per stage whose keys are that command's long options
(``batch-size = 64``, ``method = "tsne"``); ``[[map]]`` and ``[[plot]]`` may repeat. Each stage becomes exactly
the command line a user would type, so the file accepts what the commands accept and nothing else::

    run = "runs/demo"
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

A stage whose command line is unchanged since it last succeeded is skipped (``RUN/pipeline.json``); embedding
always runs because it resumes by itself, shard by shard.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import click

from corpusmap.atomic import read_json, write_json
from corpusmap.errors import CorpusmapError, UsageProblem

STAGE_ORDER = ("embed", "neighbors", "map", "evaluate", "excess", "plot")
REPEATABLE = ("map", "plot")
STATE_FILE = "pipeline.json"


@dataclass
class Stage:
    """One command of the plan: its name, a key unique within the run, and its arguments."""

    command: str
    key: str
    args: list[str]
    always: bool = False
    skip: bool = field(default=False)

    def line(self) -> str:
        import shlex

        return "corpusmap " + " ".join(shlex.quote(a) for a in [self.command, *self.args])


def load_config(path: str | Path) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise CorpusmapError(f"no such config file: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CorpusmapError(f"{path}: not valid TOML ({exc})") from None


def _option_args(command: click.Command, stage: str, options: dict[str, Any]) -> list[str]:
    """Turn ``{"batch-size": 64, "normalize": false, "target": [2015, 2016]}`` into command-line arguments."""
    params = {p.name: p for p in command.params if isinstance(p, click.Option)}
    by_flag = {opt.lstrip("-"): p for p in params.values() for opt in p.opts + p.secondary_opts}
    args: list[str] = []
    for key, value in options.items():
        param = by_flag.get(key) or by_flag.get(key.replace("_", "-")) or params.get(key.replace("-", "_"))
        if param is None:
            known = sorted(max(p.opts, key=len).lstrip("-") for p in params.values())
            raise UsageProblem(f"[{stage}] has no option {key!r}; options: {', '.join(known)}")
        flag = next((o for o in param.opts if o.startswith("--")), param.opts[0])
        if param.is_flag and not param.secondary_opts:
            if value:
                args.append(flag)
        elif param.is_flag:
            args.append(flag if value else param.secondary_opts[0])
        elif isinstance(value, list):
            if not param.multiple:
                raise UsageProblem(f"[{stage}] {key} takes one value, not a list")
            for item in value:
                args += [flag, str(item)]
        else:
            args += [flag, str(value)]
    return args


def plan(config: dict, get_command: Callable[[str], click.Command], config_dir: Path) -> tuple[Path, list[Stage]]:
    """The stages of a config, in pipeline order, as command lines."""
    unknown = sorted(set(config) - set(STAGE_ORDER) - {"run"})
    if unknown:
        raise UsageProblem(f"unknown section(s) {', '.join(unknown)}; stages are {', '.join(STAGE_ORDER)}")
    if "run" not in config:
        raise UsageProblem('the config needs the run directory, e.g. run = "runs/demo"')
    run = (config_dir / str(config["run"])).resolve() if not Path(str(config["run"])).is_absolute() \
        else Path(config["run"])
    stages: list[Stage] = []
    for name in STAGE_ORDER:
        if name not in config:
            continue
        tables = config[name] if isinstance(config[name], list) else [config[name]]
        if len(tables) > 1 and name not in REPEATABLE:
            raise UsageProblem(f"[{name}] may appear once; only {' and '.join(REPEATABLE)} repeat")
        command = get_command(name)
        for number, table in enumerate(tables):
            options = dict(table)
            positional: list[str] = []
            if name == "embed":
                inputs = options.pop("inputs", None)
                if not inputs:
                    raise UsageProblem('[embed] needs inputs = ["file-or-folder", ...]')
                inputs = [inputs] if isinstance(inputs, str) else inputs
                positional = [str((config_dir / p) if not Path(p).is_absolute() and (config_dir / p).exists()
                                  else p) for p in inputs]
                args = positional + ["-o", str(run)] + _option_args(command, name, options)
            else:
                args = [str(run)] + _option_args(command, name, options)
            label = options.get("name") or options.get("method") or options.get("map") or str(number)
            key = name if name not in REPEATABLE else f"{name}:{label}:{options.get('color', '')}"
            stages.append(Stage(name, key, args, always=(name == "embed")))
    if not stages:
        raise UsageProblem("the config names no stage")
    return run, stages


def mark_skips(run: Path, stages: list[Stage]) -> None:
    """Skip stages whose exact command line already succeeded in this run."""
    state_path = run / STATE_FILE
    done = read_json(state_path).get("done", {}) if state_path.is_file() else {}
    for stage in stages:
        stage.skip = not stage.always and done.get(stage.key) == stage.args


def record_done(run: Path, stage: Stage) -> None:
    state_path = run / STATE_FILE
    state = read_json(state_path) if state_path.is_file() else {"done": {}}
    state["done"][stage.key] = stage.args
    write_json(state_path, state)


def execute(run: Path, stages: list[Stage], get_command: Callable[[str], click.Command],
            parent: Optional[click.Context] = None, echo: Callable[[str], None] = print) -> None:
    """Run the stages in order; a failing stage stops the pipeline (the ones before it stay recorded)."""
    for stage in stages:
        if stage.skip:
            echo(f"skip (done): {stage.line()}")
            continue
        echo(f"run: {stage.line()}")
        command = get_command(stage.command)
        with command.make_context(stage.command, list(stage.args), parent=parent) as ctx:
            command.invoke(ctx)
        record_done(run, stage)
