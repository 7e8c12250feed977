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
from corpusmap.errors import CorpusmapError, UsageProblem
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
             state: Optional[Run] = None,
             allow: Callable[[Job], str] = lambda job: "give its Job overwrite=True") -> list[Result]:
    """Run each job whose output is not current (checked just before it runs, after the jobs before it); a failing
    job stops the pipeline, and one that would replace an output computed with other parameters without leave
    (``allow``: how to give it, in the caller's words) stops it before any job runs. ``state``: the run whose
    ``pipeline.json`` records what happened."""
    planned = plan(jobs)  # a plan that cannot work stops before anything runs (pipeline.json left as it was)
    refusal = next(((job, status) for job, status in planned if refused(job, status)), None)
    results, log = [], []
    try:
        if refusal is not None:  # recorded in pipeline.json: this run did nothing, and why
            job, status = refusal
            why = (f"from {status.reason}" if status.reason.startswith("other inputs") else  # (embed's own words)
                   f"computed with other parameters ({job.stage.shown_changes(status.changed)})")
            raise CorpusmapError(
                f"{job.label.split(': ')[0]}: {job.stage.where(job.run, job.params)} holds {job.stage.what} {why}; "
                f"nothing was run. To replace it (and what was computed from it) {allow(job)}")
        for job in jobs:
            job.run.refresh()  # a job before it may have rewritten the corpus or the vectors this object read
            status = job.status()
            if status.current:
                echo(f"skip (current): {job.label}")
                log.append({"job": job.label, "action": "kept", "reason": status.reason})
                continue
            echo(f"run: {job.label} ({status.reason})")
            try:
                results.append(job())
            except CorpusmapError as exc:  # a stage's own refusal names its flag: say how a pipeline gives leave
                if job.overwrite or "--overwrite" not in str(exc):
                    raise
                raise type(exc)(f"{exc} (in this pipeline: {allow(job)})") from None
            log.append({"job": job.label, "action": "ran", "reason": status.reason,
                        "removed": results[-1].removed})
    finally:
        if state is not None and state.path.is_dir():
            from corpusmap.atomic import write_json

            record = {"ended": timestamp(), "jobs": log, "complete": len(log) == len(jobs)}
            if refusal is not None:  # nothing ran: the plan would have replaced an output without leave
                record["refused"] = refusal[0].label
            elif not record["complete"]:  # stopped by an error or an interruption
                record["stopped_at"] = jobs[len(log)].label
            try:
                with writing(state.pipeline_state_path):
                    write_json(state.pipeline_state_path, record)
            except CorpusmapError as exc:  # a read-only run: the stages' own outcome (or error) is what counts
                logging.getLogger("corpusmap").warning("warning: %s not written: %s", state.pipeline_state_path, exc)
    return results


_MADE_BY = {"embeddings": "[embed]", "knn": "[neighbors]", "corpus": "[embed]", "excess": "[excess]"}


def refused(job: Job, status: Status) -> bool:
    """Whether ``job`` will stop the pipeline for want of ``overwrite`` (its output was computed with other
    parameters). Embed decides on other inputs once it has read them: moved inputs that give the same corpus are
    kept; other vectors of the same corpus it refuses like every stage."""
    later = job.stage.name == "embed" and status.changed[:1] == (("inputs", "stored", "given"),)
    return bool(status.changed) and not (job.overwrite or job.stage.redrawn or later)


def _dependents(outputs: dict, keys: set) -> set:
    """The outputs computed from ``keys``, directly or through others (``outputs``: key -> keys it is from)."""
    gone = set(keys)
    while True:
        more = {k for k, inputs in outputs.items() if k not in gone and inputs & gone}
        if not more:
            return gone - set(keys)
        gone |= more


def plan(jobs: list[Job]) -> list[tuple[Job, Status]]:
    """Each job with the status it will have when its turn comes (``corpusmap run --dry-run``), checked before any
    job runs (not hours in): a job needing an output that its run will not hold by then (neither held now nor made
    by a job before it, or removed by a job before it that recomputes what it was computed from with other
    parameters) fails, and so do parameters that cannot work on what the jobs before them leave. A job whose
    stored output is current now runs all the same when it was computed from an output that a job before it
    rewrites."""
    held: dict = {}  # run -> {output key: keys it is computed from}, as the run will be when the job's turn comes
    removed_by: dict = {}  # (run, output key) -> label of the job whose rerun removes it
    planned, rewritten = [], {}  # (run, output key) -> label of the job that rewrites it
    for i, job in enumerate(jobs):
        where, name = job.run.path.resolve(), job.label.split(": ")[0]
        if where not in held:
            held[where] = {o.key: set(o.inputs) for o in job.run.outputs()} if job.run.path.is_dir() else {}
        outputs = held[where]
        missing = sorted(job.stage.needs(job.params) - set(outputs))
        if missing:
            key = missing[0]
            table = _MADE_BY.get(key) or (f"a [[map]] named {key[5:]!r}" if key.startswith("maps/") else
                                          f"a [clusters] table named {key[9:]!r}" if key.startswith("clusters/")
                                          else key)
            gone = removed_by.get((where, key))
            why = (f"which the {gone} job before it may remove (it recomputes what {key} was computed from, with "
                   f"other parameters, and what was computed from the old output goes): add {table} after it"
                   if gone else
                   f"which the run does not hold and no job before it makes: add {table} before it")
            raise UsageProblem(f"{name} needs {key} of {job.run.path}, {why}")
        job.stage.check_plan(job.run, job.params, [(j.stage, j.run, j.params) for j in jobs[:i]],
                             {run_path: set(keys) for run_path, keys in held.items()})
        status = job.status()
        writes = job.stage.writes(job.run, job.params)
        gone = [removed_by[(where, key)] for key in writes if (where, key) in removed_by and key not in outputs]
        if status.changed and gone and len(gone) == len(writes):  # an earlier job removes it: it is made anew
            status = Status(False, f"its stored output goes when {gone[0]} runs")
        if status.current:
            reads = job.stage.will_read(job.run, job.params, set(outputs))
            upstream = sorted({rewritten[(where, key)] for key in reads if (where, key) in rewritten})
            if upstream:
                status = Status(False, f"computed from the output of {'; '.join(upstream)}, which runs before it")
        if not status.current and not refused(job, status):  # (a refused job stops the run: nothing after it)
            rewritten.update({(where, key): name for key in writes})
            if status.changed:  # other parameters: what was computed from the old output goes (Run.invalidate)
                for key in _dependents(outputs, writes):
                    del outputs[key]
                    removed_by[(where, key)] = name
            outputs.update({key: set(job.stage.needs(job.params)) for key in writes})
        planned.append((job, status))
    return planned
