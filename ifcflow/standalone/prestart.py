"""A head start for ``ifcflow run`` with no Redis configured: the private Redis and the first local worker are
started before the command line imports its commands, checks the pipeline and plans it.

A local worker's start (Python, rq, ifcopenshell: about 1 s) is most of an embedded one-step run. Started here,
it overlaps the command's own imports (about 0.5 s) and the checking and planning; it waits on its stdin for
what only the plan says (its name, the services to import, the log file) and is adopted by
:class:`ifcflow.standalone.local.LocalCluster`. What the command does not adopt (a pipeline that does not check,
``--help`` after all) is stopped when the command exits; the worker also exits on its own when its stdin closes
and dies with the command (:mod:`ifcflow.engine.lifeline`).

Only the standard library and :mod:`ifcflow.standalone.embedded` are imported here (no redis, no click).
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..engine import lifeline
from ..errors import EmbeddedRedisError
from .embedded import EmbeddedRedis

REDIS_ENV = "IFCFLOW_REDIS_URL"
"""The same variable as :data:`ifcflow.engine.connection.ENV` (not imported: it would import redis)."""
SKIP = {"--detach", "--redis", "-h", "--help"}


@dataclass
class Early:
    """A launched private Redis and one worker process waiting for its configuration on stdin."""

    redis: EmbeddedRedis
    worker: subprocess.Popen[bytes]
    early_log: Path

    def configure(self, name: str, services: list[str], log_file: Path | None) -> None:
        """Hand the worker what the plan says; it imports the services, waits for Redis and starts working."""
        assert self.worker.stdin is not None
        # the environment as the command has made it since (--storage, --redis-less settings, secrets): the worker
        # was launched before the options were read, and must work as the workers launched after them do
        line = json.dumps({"name": name, "services": services, "log": str(log_file) if log_file else None,
                           "env": dict(os.environ)})
        try:
            self.worker.stdin.write(line.encode() + b"\n")
            self.worker.stdin.close()
        except OSError:  # it died meanwhile: LocalCluster.check reports workers that all exited
            pass

    def stop(self) -> None:
        if self.worker.poll() is None:
            self.worker.kill()
            self.worker.wait()
        if self.worker.stdin is not None and not self.worker.stdin.closed:
            try:
                self.worker.stdin.close()
            except OSError:
                pass
        self.redis.stop()


_early: Early | None = None


def wanted(argv: list[str]) -> bool:
    """Whether ``argv`` (after the program name) is an ``ifcflow run`` that will start a private Redis."""
    if not argv or argv[0] != "run" or os.environ.get(REDIS_ENV):
        return False
    return not any(arg.split("=", 1)[0] in SKIP for arg in argv[1:])


def early(argv: list[str]) -> None:
    """Start the private Redis and one worker now if ``argv`` is a local ``ifcflow run``; never raises (the
    command then starts them itself, and reports what fails)."""
    global _early
    if _early is not None or not wanted(argv):
        return
    redis = EmbeddedRedis(die_with_parent=True)
    try:
        redis.launch()
        early_log = redis.folder / "worker-early.log"  # until the worker knows the run's workers.log
        with early_log.open("ab") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "ifcflow.operations.localworker", "--early", redis.url],
                stdin=subprocess.PIPE, stdout=log, stderr=log, start_new_session=True,
                env={**os.environ, lifeline.ENV: str(os.getpid())})
    except (OSError, EmbeddedRedisError):
        redis.stop()
        return
    _early = Early(redis, worker, early_log)
    atexit.register(_stop_unadopted)


def take() -> Early | None:
    """The early Redis and worker, once (None when there are none)."""
    global _early
    found, _early = _early, None
    return found


def _stop_unadopted() -> None:
    found = take()
    if found is not None:
        found.stop()
