"""Shared fixtures: a private redis-server per test session (never the machine's shared one), in-process workers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from rq import SimpleWorker

from ifcflow.engine import reconcile, runner, status
from ifcflow.services import QUEUES
from ifcflow.standalone.embedded import EmbeddedRedis

from . import processes
from .s3server import s3_env, s3_server  # noqa: F401  (fixtures: a real S3 server, SeaweedFS)

# Tests count step executions: identical steps (the same recipe on the same model) must run each time. The cache
# is switched on by the tests about it (tests/test_cache.py), for in-process and forked workers alike.
os.environ.setdefault("IFCFLOW_CACHE", "off")

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
SHARED_IFC = SHARED / "ifc"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture()
def conn(redis_server: EmbeddedRedis) -> Iterator[Redis]:
    connection = Redis.from_url(redis_server.url)
    connection.flushdb()  # our own private server: safe
    yield connection
    connection.flushdb()
    connection.close()


def work(conn: Redis, queues: tuple[str, ...] = QUEUES) -> None:
    """Run every queued job (and the dependents they release) in this process, then one reconcile pass over the
    unfinished runs (what ``ifcflow worker`` does after each job and periodically; status reads never repair)."""
    SimpleWorker(list(queues), connection=conn).work(burst=True, logging_level="WARNING")
    reconcile.sweep(conn)


def run_pipeline(conn: Redis, file: Path, out: Path, inputs: dict[str, str] | None = None) -> status.RunStatus:
    """Plan and enqueue ``file``, drain it with an in-process worker, and return the final status."""
    planned = runner.start(conn, file, inputs, out=out)
    work(conn)
    return status.read(conn, planned.run_id, with_traceback=True)


def shared_ifc(name: str) -> Path:
    path = SHARED_IFC / name
    if not path.exists():
        pytest.skip(f"{path} is not present: the real-model tests need ../shared/ifc next to the checkout")
    return path


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the session when a process that a test started is still alive (and kill it)."""
    alive = processes.leftovers()
    if not alive:
        return
    lines = []
    for proc in alive:
        try:
            lines.append(f"  pid {proc.pid}: {' '.join(proc.cmdline())[:200]}")
            proc.kill()
        except Exception:
            continue
    print("\nERROR: processes started by tests were still alive at the end of the session (killed now):\n"
          + "\n".join(lines))
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
