"""`corpusmap view` (the interactive page of a map) and `corpusmap export` (a map for other tools)."""
from __future__ import annotations

from pathlib import Path

import click

from corpusmap.cli.common import default, quiet_option, run_argument, run_command, with_jobs
from corpusmap.export import FORMATS, ExportParams, ExportStage
from corpusmap.pipeline import Job
from corpusmap.run import Run
from corpusmap.view.stage import ViewParams, ViewStage

V = ViewParams


def view_jobs(o: dict) -> list[Job]:
    params = V(map=o["name"], output=o["out"], label_col=o["label_col"], clusters=o["clusters"], title=o["title"],
               search=o["search"], max_points=o["max_points"])
    return [Job(ViewStage(), Run(o["run"]), params, label=f"view {o['name']}", report=report_view)]


def report_view(result) -> None:
    block = result.manifest["stage"]
    state = "" if result.computed else " (current; nothing to do)"
    total = block.get("total_points", block["points"])
    sample = f", a sample of {block['points']:,} drawn" if block.get("sampled") else ""
    click.echo(f"{result.where}: {total:,} points{sample}{state}; open it in a browser (works offline)")


def serve(path: Path) -> None:
    """Serve the page's folder on localhost until Ctrl-C (for browsers that restrict file:// pages)."""
    import functools
    import http.server

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(path.parent))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        url = f"http://127.0.0.1:{server.server_address[1]}/{path.name}"
        click.echo(f"serving {url} (Ctrl-C to stop)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


@with_jobs(view_jobs)
@click.command()
@run_argument
@click.option("--map", "name", default=default(V, "map"), show_default=True, help="Which map: RUN/maps/NAME.parquet.")
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="The page [default: RUN/maps/NAME.html, with NAME_files/ beside it for large maps].")
@click.option("--label-col", default=default(V, "label_col"), show_default=True,
              help="Corpus column shown and coloured as the label.")
@click.option("--clusters", default=None, metavar="NAME|none",
              help="Clustering whose regions are named on the page [default: the run's only one, or leiden; none "
                   "without clusters].")
@click.option("--title", default=None, help="Page title.")
@click.option("--search/--no-search", default=default(V, "search"), show_default=True,
              help="Build the word index for search and the word overlay.")
@click.option("--max-points", type=click.IntRange(min=1), default=default(V, "max_points"), show_default=True,
              help="Above this many points the page draws a random sample over a density image of all.")
@click.option("--open", "open_page", is_flag=True, help="Open the page in the default browser.")
@click.option("--serve", "serve_page", is_flag=True, help="Also serve it on localhost until Ctrl-C.")
@quiet_option
def view(**options):
    """Write the interactive map page of RUN: pan, zoom, hover, search, the high-D neighbours of a paper,
    colours by year, label, region or words, region names by zoom level. It opens from disk, offline."""
    jobs = view_jobs(options)
    run_command(jobs, options["quiet"])
    page = jobs[0].params.out_path(jobs[0].run)
    if options["open_page"]:
        import webbrowser

        webbrowser.open(page.resolve().as_uri())
    if options["serve_page"]:
        serve(page.resolve())


def export_jobs(o: dict) -> list[Job]:
    params = ExportParams(map=o["name"], format=o["format"], output=o["out"], clusters=o["clusters"])
    return [Job(ExportStage(), Run(o["run"]), params, label=f"export {o['name']}", report=report_export)]


def report_export(result) -> None:
    block = result.manifest["stage"]
    state = "" if result.computed else " (current; nothing to do)"
    click.echo(f"{result.where}: {block['rows']:,} rows{state}; open it with `embedding-atlas {result.where} --text "
               "text --x x --y y --neighbors neighbors`")


@with_jobs(export_jobs)
@click.command()
@run_argument
@click.option("--map", "name", default=default(ExportParams, "map"), show_default=True,
              help="Which map: RUN/maps/NAME.parquet.")
@click.option("--format", "format", type=click.Choice(FORMATS), default=default(ExportParams, "format"),
              show_default=True,
              help="atlas: a parquet that embedding-atlas opens as is (x, y, text, neighbours).")
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="The file [default: RUN/exports/NAME.FORMAT.parquet].")
@click.option("--clusters", default=None, metavar="NAME|none",
              help="Clustering whose region names become cluster_<level> columns [default: the run's only one, or "
                   "leiden; none without clusters].")
@quiet_option
def export(**options):
    """Export a map of RUN with its texts, regions and high-D neighbours for other tools."""
    run_command(export_jobs(options), options["quiet"])
