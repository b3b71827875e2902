"""A local run's worker process: ``python -m ifcflow.operations.localworker URL NAME SERVICES`` (started by
:mod:`ifcflow.standalone.local`).

The same worker as ``ifcflow worker --quiet`` without the CLI around it (click, rich and the live view cost a
local run 0.2-0.5 s of start-up per worker), and it imports ifcopenshell and the services *before* it first
needs the private Redis, which ``ifcflow run`` starts meanwhile.
"""

from __future__ import annotations

import sys
import time

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


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m ifcflow.operations.localworker URL NAME SERVICES", file=sys.stderr)
        return 2
    url, name, services = argv[0], argv[1], [s for s in argv[2].split(",") if s]
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
