"""``ifcflow worker`` stops when told to (idle or busy) and survives Redis restarting under a running job without
running it twice: real worker processes, real redis-servers."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psutil
import pytest
from redis import Redis
from rq import Worker

from ifcflow.engine import runner, status
from ifcflow.engine.states import RunState, StepState
from ifcflow.standalone.embedded import EmbeddedRedis

from .factories import tiny_model
from .processes import kill_tree, start_worker
from .test_redis_faults import Server, server  # noqa: F401 - the fixture
from .test_reliability import slow_pipeline


def wait_until(conn: Redis, run_id: str, predicate, timeout: float = 90.0) -> status.RunStatus:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            doc = status.read(conn, run_id)
            if predicate(doc):
                return doc
        except Exception:  # noqa: BLE001 - Redis may be restarting
            pass
        time.sleep(0.1)
    raise AssertionError(f"condition not reached in {timeout}s")


def test_sigterm_stops_an_idle_worker(redis_server: EmbeddedRedis, conn: Redis) -> None:
    proc = start_worker(redis_server.url, f"idle-{time.monotonic_ns()}")
    try:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0  # before: RQ's StopRequested went unseen and the worker restarted
    finally:
        kill_tree(proc)


@pytest.mark.slow
def test_sigterm_lets_a_busy_worker_finish_its_job_then_stop(redis_server: EmbeddedRedis, conn: Redis,
                                                               tmp_path: Path) -> None:
    tiny_model(tmp_path / "arch.ifc")
    proc = start_worker(redis_server.url, f"busy-{time.monotonic_ns()}")
    try:
        planned = runner.start(conn, slow_pipeline(tmp_path), out=tmp_path / "runs")
        wait_until(conn, planned.run_id, lambda s: s.steps["clash"].status == StepState.RUNNING)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
        doc = status.read(conn, planned.run_id)
        assert doc.steps["clash"].status == StepState.SUCCEEDED  # warm shutdown: the job finished
        assert doc.steps["after"].status == StepState.QUEUED  # and no other job was taken
    finally:
        kill_tree(proc)


@pytest.mark.slow
@pytest.mark.parametrize("server", [True], indirect=True)
def test_redis_restart_while_a_job_runs_leaves_no_second_horse(server: Server, tmp_path: Path) -> None:
    tiny_model(tmp_path / "arch.ifc")
    conn = Redis.from_url(server.url)
    name = f"restart-{time.monotonic_ns()}"
    proc = start_worker(server.url, name)
    try:
        planned = runner.start(conn, slow_pipeline(tmp_path), out=tmp_path / "runs")
        wait_until(conn, planned.run_id, lambda s: s.steps["clash"].status == StepState.RUNNING)
        time.sleep(0.5)
        horse = max(psutil.Process(proc.pid).children(), key=lambda p: p.create_time())
        server.stop()
        time.sleep(7)  # longer than a heartbeat interval: the worker notices while the job runs
        server.start()
        conn = Redis.from_url(server.url)
        deadline = time.monotonic() + 60
        while not any(w.name == f"{name}-1" for w in Worker.all(connection=conn)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert any(w.name == f"{name}-1" for w in Worker.all(connection=conn)), "no fresh worker after the restart"
        assert not horse.is_running() or horse.status() == psutil.STATUS_ZOMBIE, "the old work horse still runs"
        # the reconciler fails the step once the old worker's registration expired: ~55 s on a quiet machine (as
        # before this stop's changes), so 60 s was too tight under CI load
        doc = wait_until(conn, planned.run_id, lambda s: s.terminal, timeout=150)
        assert doc.steps["clash"].status == StepState.FAILED
        error = doc.steps["clash"].error or ""  # the worker fails it, unless the reconciler saw the dead name first
        assert "lost the Redis connection" in error or error == f"worker {name} died while running the step", error
        assert doc.steps["after"].status == StepState.SKIPPED
        assert doc.status == RunState.FAILED
        time.sleep(3)
        assert status.read(conn, planned.run_id).steps["clash"].status == StepState.FAILED  # no late flip
    finally:
        kill_tree(proc)
