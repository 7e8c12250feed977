"""Options and arguments shared by several commands."""
from __future__ import annotations

import click

run_argument = click.argument("run", type=click.Path(file_okay=False, path_type=str), metavar="RUN")

seed_option = click.option("--seed", type=int, default=42, show_default=True,
                           help="Random seed; the same inputs and seed give the same outputs.")

device_option = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                             show_default=True, help="Where to compute; auto picks CUDA when present.")

threads_option = click.option("--threads", type=int, default=None,
                              help="CPU threads (default: all cores).")
