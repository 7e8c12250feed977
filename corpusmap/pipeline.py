"""Running stages in order, each only when its stored output is not current: what ``corpusmap run CONFIG.toml``
does, usable without the command line::

    from corpusmap.pipeline import Job, run_jobs
    from corpusmap.neighbors import NeighborsParams, NeighborsStage
    from corpusmap.maps import MapParams, MapStage
    from corpusmap.run import Run

    run = Run("runs/demo")
    run_jobs([Job(NeighborsStage(), run, NeighborsParams(k=15)), Job(MapStage(), run, MapParams("tsne"))])

``RUN/pipeline.json`` records what the last pipeline did (for the user; nothing is decided from it).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Optional

from corpusmap import progress
from corpusmap.manifests import timestamp
from corpusmap.errors import UsageProblem
from corpusmap.run import Run, writing
from corpusmap.stage import Result, Stage, Status


@dataclass
class Job:
    """One stage to run on one run directory with its parameters."""

    stage: Stage
    run: Run
    params: object
    overwrite: bool = False
    label: str = ""
    report: Optional[Callable[[Result], None]] = field(default=None, repr=False)

    def __post_init__(self):
        self.label = self.label or self.stage.name

    def status(self) -> Status:
        return self.stage.status(self.run, self.params)

    def __call__(self) -> Result:
        result = self.stage.run(self.run, self.params, self.overwrite)
        if self.report is not None and not progress.is_quiet():  # --quiet: only warnings and errors
            self.report(result)
        return result


def run_jobs(jobs: list[Job], echo: Callable[[str], None] = lambda line: None,
             state: Optional[Run] = None) -> list[Result]:
    """Run each job whose output is not current (checked just before it runs, after the jobs before it); a failing
    job stops the pipeline. ``state``: the run whose ``pipeline.json`` records what happened."""
    check_plan(jobs)
    results, log = [], []
    try:
        for job in jobs:
            status = job.status()
            if status.current:
                echo(f"skip (current): {job.label}")
                log.append({"job": job.label, "action": "kept", "reason": status.reason})
                continue
            echo(f"run: {job.label} ({status.reason})")
            results.append(job())
            log.append({"job": job.label, "action": "ran", "reason": status.reason,
                        "removed": results[-1].removed})
    finally:
        if state is not None and state.path.is_dir():
            from corpusmap.atomic import write_json
            from corpusmap.errors import CorpusmapError

            try:
                with writing(state.pipeline_state_path):
                    write_json(state.pipeline_state_path, {"finished": timestamp(), "jobs": log,
                                                           "complete": len(log) == len(jobs)})
            except CorpusmapError as exc:  # a read-only run: the stages' own outcome (or error) is what counts
                logging.getLogger("corpusmap").warning("warning: %s not written: %s", state.pipeline_state_path, exc)
    return results


_MADE_BY = {"embeddings": "[embed]", "knn": "[neighbors]", "corpus": "[embed]"}


def check_plan(jobs: list[Job]) -> None:
    """A job needing an output that neither its run holds nor a job before it makes, or parameters that cannot
    work on what the jobs before them leave, fail before any job runs (not hours in)."""
    available: dict = {}  # run -> the outputs it holds or a job before makes
    for i, job in enumerate(jobs):
        where = job.run.path.resolve()
        if where not in available:
            available[where] = {o.key for o in job.run.outputs()} if job.run.path.is_dir() else set()
        missing = sorted(job.stage.needs(job.params) - available[where])
        if missing:
            key = missing[0]
            table = _MADE_BY.get(key) or (f"a [[map]] named {key[5:]!r}" if key.startswith("maps/") else key)
            raise UsageProblem(f"{job.label.split(':')[0]} needs {key} of {job.run.path}, which the run does not "
                               f"hold and no job before it makes: add {table} before it")
        job.stage.check_plan(job.run, job.params, [(j.stage, j.run, j.params) for j in jobs[:i]])
        available[where] |= {job.stage.key(job.params)} | job.stage.writes(job.run, job.params)


def plan(jobs: list[Job]) -> list[tuple[Job, Status]]:
    """Each job with the status it will have when its turn comes (``corpusmap run --dry-run``): a job whose stored
    output is current now runs all the same when it was computed from an output that a job before it rewrites."""
    check_plan(jobs)
    planned, rewritten = [], {}  # (run, output key) -> label of the job that rewrites it
    for job in jobs:
        status = job.status()
        where = job.run.path.resolve()
        if status.current:
            upstream = sorted({rewritten[(where, key)] for key in job.stage.reads(job.run, job.params)
                               if (where, key) in rewritten})
            if upstream:
                status = Status(False, f"computed from the output of {'; '.join(upstream)}, which runs before it")
        if not status.current:
            rewritten.update({(where, key): job.label.split(":")[0] for key in job.stage.writes(job.run, job.params)})
        planned.append((job, status))
    return planned
