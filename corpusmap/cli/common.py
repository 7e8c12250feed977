"""Options and arguments shared by several commands, and running a command's jobs.

Every command is a click function ``command(**options)`` whose body is ``run_command(JOBS(options))``; ``JOBS``
(attached as ``command.jobs``) turns the parsed options into :class:`corpusmap.pipeline.Job` objects, which is
also how ``corpusmap run CONFIG.toml`` runs the command's TOML table. Parameter defaults come from the stages'
parameter dataclasses (:func:`default`).
"""
from __future__ import annotations

from typing import Callable

import click

from corpusmap import progress
from corpusmap.pipeline import Job
from corpusmap.stage import param_default

run_argument = click.argument("run", type=click.Path(file_okay=False, path_type=str), metavar="RUN")

device_option = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                             show_default=True, help="Where to compute; auto picks CUDA when present.")


MAX_THREADS = 4096  # more than any node has (OpenMP and the process pools fail or hang on absurd counts)


class ThreadCount(click.IntRange):
    """``--threads N``, the same in every command: 1 <= N <= MAX_THREADS; leaving it out means all cores (others
    are refused, exit 2)."""

    name = "threads"

    def __init__(self) -> None:
        super().__init__(min=1, max=MAX_THREADS)

    def convert(self, value, param, ctx):
        number = click.INT.convert(value, param, ctx)
        if not 1 <= number <= MAX_THREADS:
            self.fail(f"{number} is not a number of threads; give 1 to {MAX_THREADS:,}, or leave the option out to "
                      "use all cores", param, ctx)
        return number


THREADS = ThreadCount()

threads_option = click.option("--threads", type=THREADS, default=None,
                              help="CPU threads (default: all cores). Results do not depend on it.")

overwrite_option = click.option("--overwrite", is_flag=True,
                                help="Replace an output computed with other parameters (and what was computed "
                                     "from it).")

quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress output: only warnings and errors.")


def default(params_type, name: str):
    """The default of a parameter, from the stage's parameter dataclass."""
    return param_default(params_type, name)


def seed_option(params_type):
    return click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=default(params_type, "seed"),
                        show_default=True, help="Random seed (0 or more); the same inputs and seed give the same "
                                                "outputs.")


def with_jobs(jobs: Callable[[dict], list[Job]]):
    """Attach ``jobs`` to a click command, for `corpusmap run`."""
    def attach(command: click.Command) -> click.Command:
        command.jobs = jobs  # type: ignore[attr-defined]
        return command
    return attach


def run_command(jobs: list[Job], quiet: bool = False) -> None:
    """Run a command's jobs in order (each keeps a current output, see :mod:`corpusmap.stage`)."""
    if quiet:
        progress.set_quiet(True)
    for job in jobs:  # (e.g. `map --labels keywords` without clusters fails before the map is computed)
        job.stage.preflight(job.run, job.params)
    for job in jobs:
        job()
