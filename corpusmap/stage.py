"""The stage contract: every stage (embed, neighbors, clusters, map, evaluate, excess, plot, view) has typed
parameters, a ``run(run, params, overwrite=False)``, and knows whether its stored output is current.

An output is *current* when its manifest is present and valid, its files are there, it was computed with equal
parameters and the stage's current definitions (a corpusmap that corrects how a quantity is computed numbers its new
definitions, so earlier outputs are recomputed), and the fingerprints of what it was computed from (the corpus
checksum, the vectors, the graph, the map, the clustering) are those the run holds now. One rule for every stage: a
current output is kept; an output computed with other parameters is replaced only with ``overwrite``; a missing,
damaged or stale output is recomputed. Outputs are written to a staging folder and put in place as a whole, under a
lock on the output, and then everything computed from the replaced output is removed
(:meth:`corpusmap.run.Run.invalidate`).

Each manifest's ``stage`` block records ``name``, ``output``, ``params``, ``inputs`` (run outputs -> fingerprint),
``sources`` (files outside the run -> fingerprint), ``fingerprint`` (of this output), ``created``, ``versions`` and,
from the second, ``definitions``.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional

from corpusmap.errors import CorpusmapError, UsageProblem
from corpusmap.manifests import timestamp, versions
from corpusmap.progress import info
from corpusmap.run import Run


@dataclass(frozen=True)
class Status:
    """Whether a stage's stored output is current, and if not, why."""

    current: bool
    reason: str
    changed: tuple = ()  # (parameter, stored value, wanted value) when the parameters differ


@dataclass
class Result:
    """What :meth:`Stage.run` did: ``computed`` False means the stored output was current and kept."""

    stage: str
    output: str
    computed: bool
    reason: str
    manifest: dict
    removed: list = field(default_factory=list)
    where: Optional[Path] = None  # the output's path


_NUMBER_TYPES = {"int": "an integer", "Optional[int]": "an integer", "float": "a number", "Optional[float]": "a number"}


def items(value) -> tuple:
    """A parameter of several values as a tuple; one value (a string, a path, a number) is one item, not its
    characters (``ExcessParams(source="run")`` as ``("run",)``)."""
    if value is None:
        return ()
    if isinstance(value, (str, bytes, int, float, os.PathLike)):
        return (value,)
    return tuple(value)


def check_numbers(params) -> None:
    """Refuse what the command line would: a parameters dataclass's integer field holding 15.5 or '15', a number
    field holding text or NaN or infinity, a negative seed (a library caller gets one clear line, not a TypeError
    hours in)."""
    import numbers

    for f in dataclasses.fields(params):
        kind, value = _NUMBER_TYPES.get(str(f.type)), getattr(params, f.name)
        if kind is None or (value is None and str(f.type).startswith("Optional")):
            continue
        wanted = numbers.Integral if kind == "an integer" else numbers.Real
        if isinstance(value, bool) or not isinstance(value, wanted):
            raise UsageProblem(f"{type(params).__name__}.{f.name} must be {kind}, got {value!r}")
        if not isinstance(value, numbers.Integral) and not math.isfinite(value):  # (NaN passes every comparison)
            raise UsageProblem(f"--{f.name.replace('_', '-')} must be a finite number, not {value}")
        if f.name == "seed" and value < 0:
            raise UsageProblem(f"{type(params).__name__}.seed must be 0 or more, got {value}")


def params_dict(params) -> dict:
    """Parameters as plain JSON values (tuples become lists), for storing and comparing."""
    from corpusmap.atomic import json_default

    return json.loads(json.dumps(dataclasses.asdict(params), default=json_default))


def param_default(params_type, name: str):
    """The default of one parameter, for click options (the dataclass owns the defaults)."""
    f = params_type.__dataclass_fields__[name]
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    raise KeyError(f"{params_type.__name__}.{name} has no default")


def changed_flags(params, *names: str, flags: Optional[dict] = None) -> list[str]:
    """The command-line flags of the fields ``names`` of ``params`` that differ from their defaults (``--name``
    unless ``flags`` names it otherwise)."""
    return [(flags or {}).get(n, "--" + n.replace("_", "-")) for n in names
            if getattr(params, n) != param_default(type(params), n)]


def refuse_unused(flags: list[str], why: str) -> None:
    """Options given where they have no effect are refused, not ignored: one line naming them and why."""
    if flags:
        raise UsageProblem(f"{', '.join(flags)}: {why}; drop {'them' if len(flags) > 1 else 'it'}")


def _diff(stored: dict, wanted: dict, prefix: str = "") -> tuple:
    """(name, stored, wanted) of each differing parameter; nested tables by their leaves (``tsne.n_iter``)."""
    out = []
    for k in sorted(set(stored) | set(wanted)):
        old, new = stored.get(k), wanted.get(k)
        if isinstance(old, dict) and isinstance(new, dict):
            out += _diff(old, new, f"{prefix}{k}.")
        elif old != new:
            out.append((f"{prefix}{k}", old, new))
    return tuple(out)


def describe_changes(changed: tuple, limit: int = 6) -> str:
    """``k 10 -> 12, clusterings none -> leiden``: the first ``limit`` changes, then how many more."""
    shown = changed if len(changed) <= limit else changed[:limit - 1]
    parts = [f"{k} {_short(old)} -> {_short(new)}" for k, old, new in shown]
    more = f" and {len(changed) - len(shown)} other parameters" if len(shown) < len(changed) else ""
    return ", ".join(parts) + more


def _short(value: Any, width: int = 40) -> str:
    """A stored parameter value as the user would write it: lists comma-joined (each part shortened, so that the
    one that differs shows), none for empty, default for unset (``--clusters`` unset is not ``--clusters none``)."""
    if value is None:
        return "default"
    if value in ("", [], {}):
        return "none"
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return ",".join(_short(v, 16) for v in value)
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= width else text[:width - 3] + "..."


@functools.lru_cache(maxsize=None)
def code_fingerprint(modules: tuple) -> str:
    """sha256 over the source files of ``modules`` (a package: every file in its folder but the front end's
    sources and caches), in path order: the code that draws a figure or page."""
    digest = hashlib.sha256()
    for name in modules:
        spec = importlib.util.find_spec(name)
        origin = Path(spec.origin)
        if origin.name == "__init__.py":
            files = [p for p in origin.parent.rglob("*") if p.is_file()
                     and not {"web", "__pycache__"} & set(p.relative_to(origin.parent).parts)]
        else:
            files = [origin]
        for path in sorted(files):
            digest.update(f"{name}/{path.relative_to(origin.parent)}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class Stage:
    """Base class of the stages. Subclasses set ``name``, ``what`` and ``packages`` and implement
    :meth:`key`, :meth:`stored`, :meth:`inputs`, :meth:`compute` and :meth:`commit` (and :meth:`check_files`,
    :meth:`sources`, :meth:`prepare` where they need to)."""

    name: ClassVar[str]
    what: ClassVar[str] = "output"          # "a kNN graph", for messages
    redrawn: ClassVar[bool] = False         # True: cheap outputs (figures) replaced whenever parameters change
    elsewhere: ClassVar[str] = "another run directory"  # where else a user may put a second result
    packages: ClassVar[tuple] = ()          # versions recorded in the manifest
    # what the stage computes, numbered: raised when a new corpusmap gives other numbers for the same parameters
    # (a corrected definition), so that outputs of the earlier definition are not current (recorded from 2 on)
    definitions: ClassVar[int] = 1
    # modules whose code draws the output (renders): one drawn by other code is not current and is drawn again
    drawn_by: ClassVar[tuple] = ()
    # parameter -> what it means when left unset, for messages (evaluate's maps: "every map", not "none")
    unset: ClassVar[dict] = {}

    # ------------------------------------------------------------------------------------------ per stage
    def record(self, params) -> dict:
        """The parameters as stored in the manifest and compared to decide whether an output is current."""
        return params_dict(params)

    def comparable(self, run: Run, recorded: dict) -> dict:
        """A recorded parameter set as compared (stored with the output, and wanted now): parameters that make no
        difference here (e.g. the recall target of an exact graph) are left out, so that they never call for
        --overwrite."""
        return recorded

    def shown_changes(self, changed: tuple) -> str:
        """Parameter changes as messages show them: a changed method alone (the parameters that differ with it are
        the other method's), an unset parameter as what it means."""
        methods = tuple(c for c in changed if c[0] == "method")
        return describe_changes(tuple((k, self._meaning(k, old), self._meaning(k, new))
                                      for k, old, new in methods or changed))

    def _meaning(self, name: str, value):
        return self.unset[name] if name in self.unset and value in (None, "", []) else value

    def packages_for(self, params) -> tuple:
        """The packages whose versions the manifest records for ``params`` (by default ``packages``)."""
        return self.packages

    def resolved(self, run: Run, params):
        """``params`` with defaults that depend on the run filled in (e.g. clusters' ``k`` from the graph), so
        that a value given explicitly and the default it equals are the same parameters."""
        return params

    def key(self, params) -> str:
        """The output this run writes, e.g. ``knn`` or ``maps/tsne`` (also the name of its lock)."""
        raise NotImplementedError

    def where(self, run: Run, params) -> Path:
        """The path a user knows the output by, for messages."""
        return run.path / self.key(params)

    def stored(self, run: Run, params) -> Optional[dict]:
        """The stored output's manifest, or ``None`` when there is none (or it cannot be read)."""
        raise NotImplementedError

    def check_files(self, run: Run, params, manifest: dict) -> Optional[str]:
        """A problem with the stored files (missing, wrong size) or ``None``; cheap, no checksums."""
        return None

    def prepare(self, run: Run, params) -> None:
        """Errors the user can cause, raised before anything is computed or written."""

    def needs(self, params) -> set:
        """The run outputs (keys) the stage cannot run without: a pipeline fails before its first job when the
        run holds one of them neither now nor after the jobs before it."""
        return set()

    def preflight(self, run: Run, params) -> None:
        """Checks that need none of what the jobs before it make (a figure's clustering before its map is
        computed): a command runs those of all its jobs before its first job."""

    def check_plan(self, run: Run, params, earlier: list, planned: Optional[dict] = None) -> None:
        """In a pipeline, before any job runs: an error when ``params`` cannot work on what the jobs before it
        (``(stage, run, params)`` tuples, in order) will leave, e.g. a map needing more neighbours than the
        configured graph has; ``planned``: run path -> the output keys it will hold when this job's turn comes."""

    def inputs(self, run: Run, params) -> dict:
        """Fingerprints of the run outputs this stage reads; an error naming the command to run when one is
        missing."""
        return {}

    def sources(self, run: Run, params) -> dict:
        """Fingerprints of files outside the run that this stage reads."""
        return {}

    def _sources(self, run: Run, params) -> dict:
        out = self.sources(run, params)
        if self.drawn_by:
            out["corpusmap drawing code"] = code_fingerprint(self.drawn_by)
        return out

    def reads(self, run: Run, params) -> set:
        """The run outputs (keys) the stored output was computed from, as its manifest records them."""
        block = (self.stored(run, params) or {}).get("stage") or {}
        return set(block.get("inputs") or {})

    def will_read(self, run: Run, params, planned: set) -> set:
        """The run outputs (keys) this stage will read when its turn in a pipeline comes, the run then holding
        ``planned``: those its stored output was computed from and those it needs (stages that read every map, or
        an output when present, add those)."""
        return self.reads(run, params) | self.needs(params)

    def writes(self, run: Run, params) -> set:
        """The run outputs (keys) that running this stage now rewrites."""
        return {self.key(params)}

    def compute(self, run: Run, params, staging: Path, block: dict) -> dict:
        """Compute the output into ``staging`` with its manifest (holding ``block`` plus its ``fingerprint``);
        returns the manifest."""
        raise NotImplementedError

    def commit(self, run: Run, params, staging: Path) -> None:
        """Put the staged output in place as a whole."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------ the contract
    def status(self, run: Run, params) -> Status:
        params = self.resolved(run, params)
        manifest = self.stored(run, params)
        if manifest is None:
            return Status(False, "not computed yet")
        block = manifest.get("stage")
        if not isinstance(block, dict) or "params" not in block:
            damaged = self.check_files(run, params, manifest)  # unreadable: computed again, nothing to keep
            if damaged:
                return Status(False, damaged)
            return Status(False, "made by an earlier corpusmap (no parameters recorded)",
                          (("parameters", "unknown", "these"),))
        earlier = block.get("definitions", 1)
        if earlier != self.definitions:
            return Status(False, f"computed by a corpusmap with other definitions of {self.what} "
                                 f"({earlier} -> {self.definitions})")
        try:  # (comparing may read the corpus: a damaged one makes the output not current, as its embed mends it)
            changed = _diff(self.comparable(run, block.get("params") or {}),
                            self.comparable(run, self.record(params)))
        except CorpusmapError as exc:
            return Status(False, str(exc))
        if changed:
            return Status(False, f"computed with other parameters ({self.shown_changes(changed)})", changed)
        problem = self.check_files(run, params, manifest)
        if problem:
            return Status(False, problem)
        try:
            now = {**self.inputs(run, params), **self._sources(run, params)}
        except CorpusmapError as exc:
            return Status(False, str(exc))
        recorded = {**(block.get("inputs") or {}), **(block.get("sources") or {})}
        new = sorted(k for k in now if k not in recorded)  # e.g. an evaluation of every map, a map added since
        if new:
            return Status(False, f"not computed from {', '.join(new)}, which the run now holds")
        stale = sorted(k for k in now if recorded.get(k) != now[k])
        if stale:
            return Status(False, f"computed from an earlier {', '.join(stale)}")
        gone = sorted(set(recorded) - set(now))  # e.g. a page drawn with regions whose clustering was removed
        if gone:
            return Status(False, f"computed from {', '.join(gone)}, which the run no longer holds")
        return Status(True, "current")

    def block(self, run: Run, params) -> dict:
        """The ``stage`` block for a new output (``fingerprint`` is added by :meth:`compute`)."""
        out = {"name": self.name, "output": self.key(params), "params": self.record(params),
               "inputs": self.inputs(run, params), "sources": self._sources(run, params),
               "created": timestamp(), "versions": versions(*self.packages_for(params))}
        if self.definitions > 1:
            out["definitions"] = self.definitions
        return out

    def run(self, run: Run, params, overwrite: bool = False) -> Result:
        """Keep a current output, else compute it (see the module docstring for the rule)."""
        key = self.key(params)
        start = len(run.removed)
        self.prepare(run, params)
        self._finish_invalidation(run)
        params = self.resolved(run, params)
        status = self.status(run, params)
        if status.current:  # nothing to write: no lock needed (a read-only run can still be used)
            return Result(self.name, key, False, status.reason, self.stored(run, params) or {},
                          run.removed[start:], self.where(run, params))
        with run.lock(key):
            status = self.status(run, params)
            if status.current:
                return Result(self.name, key, False, status.reason, self.stored(run, params) or {},
                              run.removed[start:], self.where(run, params))
            if status.changed and not (overwrite or self.redrawn):
                raise CorpusmapError(
                    f"{self.where(run, params)} holds {self.what} computed with other parameters "
                    f"({self.shown_changes(status.changed)}); add --overwrite (from Python: overwrite=True) to "
                    f"replace it (what was computed from it is removed too), or choose {self.elsewhere}")
            block = self.block(run, params)
            with run.staging(key) as staging:
                manifest = self.compute(run, params, staging, block)
                moved = sorted(k for k, v in self.inputs(run, params).items() if block["inputs"].get(k) != v)
                if moved:  # another command replaced an input meanwhile: this output would be stale at once
                    raise CorpusmapError(f"{', '.join(moved)} of {run.path} changed while {self.what} was computed "
                                         f"from it (another command replaced it); nothing was written, run the "
                                         f"command again")
                self.commit(run, params, staging)
        removed = run.invalidate()
        if self.stored(run, params) is None:  # its input was replaced between the check above and the commit
            raise CorpusmapError(f"an input of {self.what} in {run.path} was replaced by another command while it "
                                 "was computed; the output was removed as stale, run the command again")
        if removed:
            info(f"{self.name}: removed {', '.join(removed)} (computed from the {key} it replaced)")
        return Result(self.name, key, True, status.reason, manifest, run.removed[start:], self.where(run, params))

    def _finish_invalidation(self, run: Run) -> None:
        """Remove what is stale: the rest of a removal a killed process left unfinished, or outputs copied in from
        another run (in a read-only run nothing goes, and what is stale is refused as such where it is read)."""
        removed = run.invalidate() if run.path.is_dir() else []
        if removed:
            info(f"{self.name}: removed {', '.join(removed)} (computed from outputs that have been replaced since)")
