"""`corpusmap run CONFIG.toml`."""
from __future__ import annotations

from pathlib import Path

import click

from corpusmap import progress
from corpusmap.pipeline import execute, load_config, mark_skips, plan


@click.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Print the plan (the command of every stage) and stop.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@click.pass_context
def run(ctx, config, dry_run, quiet):
    """Run the whole pipeline (embed, neighbors, maps, evaluate, excess, plots) from a TOML file, resuming
    where a previous run stopped. Each table holds one command's long options; see examples/demo.toml."""
    if quiet:
        progress.set_quiet(True)
    group = ctx.find_root().command
    get_command = lambda name: group.get_command(ctx, name)  # noqa: E731
    run_dir, stages = plan(load_config(config), get_command, config.resolve().parent)
    mark_skips(run_dir, stages)
    if dry_run:
        for stage in stages:
            click.echo(f"{'skip (done)' if stage.skip else 'run'}: {stage.line()}")
        return
    echo = (lambda line: None) if progress.is_quiet() else (lambda line: click.echo(line, err=True))
    execute(run_dir, stages, get_command, parent=ctx.find_root(), echo=echo)
    if not progress.is_quiet():
        click.echo(f"done: outputs are in {run_dir}", err=True)
