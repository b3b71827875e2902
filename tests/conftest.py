"""Shared fixtures: a private redis-server per test session (never the machine's shared one), in-process workers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from rq import SimpleWorker

from ifcflow import runner, status
from ifcflow.embedded import EmbeddedRedis
from ifcflow.services import QUEUES

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
    """Run every queued job (and the dependents they release) in this process, then return."""
    SimpleWorker(list(queues), connection=conn).work(burst=True, logging_level="WARNING")


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
