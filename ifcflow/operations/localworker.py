"""A local run's worker process: ``python -m ifcflow.operations.localworker URL NAME SERVICES`` (started by
:mod:`ifcflow.standalone.local`), or ``... --early URL`` (started by :mod:`ifcflow.standalone.prestart` before
the plan exists: it imports ifcopenshell and the job function, then reads ``{"name", "services", "log"}`` as one
JSON line on stdin; an empty stdin means it is not needed and it exits quietly).

The same worker as ``ifcflow worker --quiet`` without the CLI around it (click, rich and the live view cost a
local run 0.2-0.5 s of start-up per worker), and it imports ifcopenshell and the services *before* it first
needs the private Redis, which ``ifcflow run`` starts meanwhile.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from ..engine.connection import connect
from ..errors import RedisUnavailable
from .worker import preload, run_worker

READY_TIMEOUT = 10.0
"""Seconds a local worker waits for the private Redis started beside it."""


def await_redis(url: str, timeout: float = READY_TIMEOUT) -> None:
    """Return once Redis at ``url`` answers a PING; raise :class:`RedisUnavailable` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            connect(url)
            return
        except RedisUnavailable:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def adopt_environment(env: dict[str, str] | None) -> None:
    """Take the command's environment as it is once its options were read (this process died-with setting kept)."""
    if env is None:
        return
    from ..engine import lifeline

    keep = {lifeline.ENV: os.environ[lifeline.ENV]} if lifeline.ENV in os.environ else {}
    os.environ.clear()
    os.environ.update({**env, **keep})


def configured(url: str) -> tuple[str, str, list[str]] | None:
    """``--early``: warm up, then read the name, services and log file the command sends once it has planned;
    stdout and stderr move from the early log (its content copied) to that log file."""
    import ifcopenshell  # noqa: F401  (what every step needs, before knowing the steps)

    import workers.dispatch  # noqa: F401

    line = sys.stdin.readline()
    if not line.strip():
        return None  # the command did not need this worker (a pipeline that does not check, --help)
    config = json.loads(line)
    adopt_environment(config.get("env"))
    early = Path(url.removeprefix("unix://")).with_name("worker-early.log")
    sys.stdout.flush()
    sys.stderr.flush()
    target = os.open(config["log"] or os.devnull, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    if config["log"] and early.exists():
        os.write(target, early.read_bytes())
    os.dup2(target, 1)
    os.dup2(target, 2)
    os.close(target)
    return url, config["name"], list(config["services"])


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--early":
        got = configured(argv[1])
        if got is None:
            return 0
        url, name, services = got
    elif len(argv) == 3:
        url, name, services = argv[0], argv[1], [s for s in argv[2].split(",") if s]
    else:
        print("usage: python -m ifcflow.operations.localworker URL NAME SERVICES | --early URL", file=sys.stderr)
        return 2
    preload(services)
    try:
        await_redis(url)
    except RedisUnavailable as exc:
        print(f"local worker {name}: {exc}", file=sys.stderr)
        return 1
    run_worker(url, (), name=name, logging_level="WARNING", services=services)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
