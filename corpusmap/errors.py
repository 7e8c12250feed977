"""Errors a user can cause; the CLI turns them into one line and a non-zero exit."""


class CorpusmapError(Exception):
    """A failure caused by input, flags or the state of a run directory (exit 1)."""


class UsageProblem(CorpusmapError):
    """A flag or flag combination that cannot work (exit 2, like click's usage errors)."""
