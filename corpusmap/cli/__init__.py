"""The ``corpusmap`` command: a click group; each command lives in its own module and only parses,
calls the library and reports. Errors a user can cause become one line and a non-zero exit."""
from __future__ import annotations

import importlib
import importlib.util
import io
import logging
import os
import sys

import click

from corpusmap.errors import CorpusmapError, UsageProblem
from corpusmap.progress import set_quiet

# (module, attribute) of every command; modules are imported lazily so `corpusmap --help` stays fast
COMMANDS = {
    "embed": ("corpusmap.cli.embed", "embed"),
    "merge": ("corpusmap.cli.embed", "merge"),
    "neighbors": ("corpusmap.cli.neighbors", "neighbors"),
    "clusters": ("corpusmap.cli.clusters", "clusters"),
    "evaluate": ("corpusmap.cli.evaluate", "evaluate"),
    "map": ("corpusmap.cli.maps", "map_command"),
    "plot": ("corpusmap.cli.maps", "plot"),
    "excess": ("corpusmap.cli.excess", "excess"),
    "view": ("corpusmap.cli.view", "view"),
    "export": ("corpusmap.cli.view", "export"),
    "run": ("corpusmap.cli.pipeline", "run"),
}


LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # what str.splitlines breaks at


def one_line(text: str) -> str:
    """``text`` with every line break escaped as Python writes it (``\\n``, ``\\x0b``, ``\\u2028``)."""
    return "".join(repr(ch)[1:-1] if ch in LINE_BREAKS else ch for ch in text)


class BadUsage(click.ClickException):
    """A flag or argument that cannot work: one line, exit 2 (click's usage errors print the usage too)."""

    exit_code = 2


def _debug() -> bool:
    return os.environ.get("CORPUSMAP_DEBUG", "") not in ("", "0")


def _not_empty(ctx, param, value):
    for v in value if isinstance(value, tuple) else (value,):
        if isinstance(v, str) and not v.strip():
            raise click.BadParameter("an empty value; give one, or leave the option out for its default",
                                     ctx, param)
    return value


# options where '' is a value: no title above a figure, no date column
EMPTY_IS_A_VALUE = {("plot", "title"), ("map", "title"), ("excess", "date_col")}


def _refusing_empty_values(command: click.Command) -> click.Command:
    """An option of text or a path given as '' (``--add ''``, ``name = ""`` in a config) is refused, not taken for
    the option left out (except where '' means something: :data:`EMPTY_IS_A_VALUE`)."""
    for param in command.params:
        if isinstance(param, click.Option) and param.callback is None and not param.is_flag \
                and (command.name, param.name) not in EMPTY_IS_A_VALUE \
                and isinstance(param.type, (click.types.StringParamType, click.Path)):
            param.callback = _not_empty
    return command


class CorpusmapGroup(click.Group):
    """Lazy command loading, and library errors turned into click errors (no tracebacks)."""

    def list_commands(self, ctx):
        return [name for name, (module, _) in COMMANDS.items() if importlib.util.find_spec(module)]

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name]
        if importlib.util.find_spec(module) is None:
            return None
        return _refusing_empty_values(getattr(importlib.import_module(module), attr))

    def invoke(self, ctx):
        try:
            return self._invoke(ctx)
        except click.exceptions.ClickException as exc:  # one line, whatever a value in it holds (a path with \n)
            exc.message = one_line(exc.message)
            raise

    def _invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UsageProblem as exc:
            raise BadUsage(str(exc)) from (exc if _debug() else None)
        except click.UsageError as exc:  # click's own (unknown option, bad value): one line too, with the fix
            command = f" {exc.ctx.info_name}" if exc.ctx is not None and exc.ctx is not ctx else ""
            raise BadUsage(f"{exc.format_message()} (see `corpusmap{command} --help`)") from None
        except CorpusmapError as exc:
            if _debug():
                raise
            raise click.ClickException(str(exc)) from None
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("Interrupted; nothing half-written was kept. Run the same command again: finished parts "
                       "(embedding shards) are not redone, other stages start over.", err=True)
            sys.exit(130)
        except BrokenPipeError:  # whoever read the output stopped (`| head`): stop quietly, as other tools do
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
            except (OSError, ValueError, io.UnsupportedOperation):
                pass
            sys.exit(1)
        except OSError as exc:  # a write that failed for lack of room, outside a run's staging folder
            from corpusmap.run import write_failure

            reason = write_failure(exc)
            if _debug():
                raise
            if reason is None:
                raise click.ClickException(
                    f"{type(exc).__name__}: {exc} (set CORPUSMAP_DEBUG=1 to see the traceback)") from None
            where = exc.filename2 or exc.filename
            raise click.ClickException(
                f"cannot write {where or 'an output file'}: {reason}; free some space (or raise the limit) and run "
                "the same command again") from None
        except MemoryError:
            raise click.ClickException("out of memory; for embed try a smaller --batch-size or --max-tokens-per-batch; "
                                       "the README lists what each stage needs") from None
        except Exception as exc:  # anything unexpected: one line, the traceback only on request
            if _debug():
                raise
            raise click.ClickException(
                f"{type(exc).__name__}: {exc} (set CORPUSMAP_DEBUG=1 to see the traceback)") from None


@click.group(cls=CorpusmapGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="corpusmap")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or info lines: only warnings and errors.")
def main(quiet: bool) -> None:
    """Turn a corpus of scientific abstracts into a map.

    Typical run: corpusmap embed abstracts.jsonl.gz -o RUN; corpusmap neighbors RUN;
    corpusmap map RUN --method tsne; corpusmap evaluate RUN; corpusmap excess RUN.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # no lines about which SIMD build loaded
    logging.getLogger("fontTools").setLevel(logging.WARNING)  # no lines about subsetting fonts into PDFs
    set_quiet(quiet)
