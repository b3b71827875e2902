"""Every error ifcflow raises on purpose derives from :class:`IfcflowError`.

Messages say what went wrong and what to do next; the CLI prints them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass


class IfcflowError(Exception):
    """Base class of all ifcflow errors. ``exit_code`` is what the CLI exits with."""

    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One problem found in a pipeline file, located as file:line:col (1-based)."""

    file: str
    line: int
    col: int
    message: str
    path: str = ""

    def __str__(self) -> str:
        if not self.line:  # not in a file: a command-line value such as "-i arch=x.ifc"
            return f"{self.file}: {self.message}"
        where = f" (at {self.path})" if self.path else ""
        return f"{self.file}:{self.line}:{self.col}: {self.message}{where}"


class PipelineError(IfcflowError):
    """A pipeline file (or its inputs) is invalid. Nothing was enqueued."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.col, p.message))
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} found; nothing was enqueued. Fix them and run again."
        super().__init__("\n".join([*(str(p) for p in self.problems), head]))


class NotAllowed(IfcflowError):
    """A value a submission over HTTP may not use (a recipe, an argument kind, a host); HTTP 422."""


class RedisUnavailable(IfcflowError):
    """The Redis server cannot be reached."""

    def __init__(self, url: str, reason: str):
        super().__init__(
            f"cannot reach Redis at {url}: {reason}. Start the server, or check --redis / IFCFLOW_REDIS_URL."
        )


class RedisLost(IfcflowError):
    """The Redis server went away while a command was following a run."""

    def __init__(self, run_id: str, reason: str):
        reason = (reason.strip().splitlines() or ["connection lost"])[0].rstrip(".")
        super().__init__(f"lost Redis while following run {run_id}: {reason}. The run's record stays on that server "
                         f"if it persists data; when it is back: ifcflow status {run_id} --watch")


class EmbeddedRedisError(IfcflowError):
    """The private Redis server could not be started."""


class RunNotFound(IfcflowError):
    """No run record with that id exists on this Redis."""

    def __init__(self, run_id: str):
        super().__init__(
            f"no run '{run_id}' on this Redis. List runs with 'ifcflow runs'; runs are pruned after their "
            "retention period. A local run (no Redis configured) leaves its record in its run folder: read it "
            "without --redis (ifcflow status RUN --out FOLDER)."
        )


class RunExists(IfcflowError):
    """A new run's id is already taken on this Redis; nothing was written."""

    def __init__(self, run_id: str):
        super().__init__(f"a run with id '{run_id}' already exists on this Redis; nothing was enqueued. Start the "
                         "run again (a new id is drawn), or pass a different run id")


class StepError(IfcflowError):
    """A pipeline step failed on a worker; the message is for a BIM coordinator.

    With ``keep_outputs`` the files the step wrote are still published (e.g. the report of a failed IDS gate).
    """

    exit_code = 1

    def __init__(self, message: str, *, keep_outputs: bool = False):
        super().__init__(message)
        self.keep_outputs = keep_outputs


class RunTimeout(IfcflowError):
    """Waiting for a run (or batch) ended before it did; the run goes on. ``status`` is the last status read."""

    exit_code = 1

    def __init__(self, run_id: str, timeout: float, status: object = None):
        super().__init__(f"run {run_id} did not end within {timeout:g} s; it goes on. Wait again, or stop it with "
                         f"ifcflow cancel {run_id}")
        self.run_id = run_id
        self.status = status


class StorageError(IfcflowError):
    """The object store is unreachable, refuses the credentials, or an object is missing or not what was pinned."""
