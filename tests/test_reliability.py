"""Faults provoked for real: failing attempts, timeouts, policies, killed work horses and workers, cancel, retry."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from redis import Redis
from rq import Worker
from rq.job import Job

from ifcflow.engine import control, runner, status
from ifcflow.engine.states import RunState, StepState
from ifcflow.standalone.embedded import EmbeddedRedis

from .conftest import run_pipeline, shared_ifc, work
from .factories import tiny_model, wall_name_ids, write_pipeline
from .processes import kill_tree


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    tiny_model(tmp_path / "arch.ifc")
    wall_name_ids(tmp_path / "rules.ids")
    return tmp_path


class Workers:
    """Real ``ifcflow worker`` processes on the test's Redis."""

    def __init__(self, url: str, count: int = 1):
        # their log goes to a file: a pipe nobody reads fills up and blocks a worker after a few hundred failed jobs
        self.log = tempfile.TemporaryFile()
        self.procs = [subprocess.Popen([sys.executable, "-m", "ifcflow", "worker", "--redis", url, "--quiet",
                                        "--name", f"test-{os.getpid()}-{i}-{time.monotonic_ns()}"],
                                       start_new_session=True, stdout=subprocess.DEVNULL, stderr=self.log)
                      for i in range(count)]

    def stop(self) -> None:
        """SIGKILL every worker with its work horse (RQ puts horses in their own process group)."""
        for proc in self.procs:
            kill_tree(proc)
        self.log.close()


@pytest.fixture()
def workers(redis_server: EmbeddedRedis, conn: Redis) -> Iterator[Workers]:
    procs = Workers(redis_server.url)
    yield procs
    procs.stop()


def wait_for(reader: status.StatusReader, predicate, timeout: float = 60.0) -> status.RunStatus:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = reader.read()
        if predicate(result):
            return result
        time.sleep(0.1)
    raise AssertionError(f"condition not reached in {timeout}s: {reader.read().model_dump_json(indent=1)}")


CLASH_FZK = """\
    version: 1
    name: slow
    inputs: {{fzk: fzk.ifc}}
    steps:
      clash:
        uses: ifcclash
        {timeout}
        with:
          clash_sets: [{{name: all, a: [{{file: "${{{{ inputs.fzk }}}}"}}], b: []}}]
          check_all: true
      after: {{uses: ifcpatch, needs: [clash], with: {{ifc: arch.ifc, recipe: Optimise}}}}
    """


def slow_pipeline(folder: Path, timeout: str = "") -> Path:
    os.symlink(shared_ifc("AC20-FZK-Haus.ifc"), folder / "fzk.ifc")
    return write_pipeline(folder, CLASH_FZK.format(timeout=timeout))


def test_attempts_are_counted_with_each_error(conn: Redis, folder: Path) -> None:
    path = write_pipeline(folder, """\
        version: 1
        name: retrying
        defaults: {retry: {attempts: 3}}
        steps:
          bad: {uses: ifcpatch, with: {ifc: arch.ifc, recipe: NoSuchRecipe}}
        """)
    result = run_pipeline(conn, path, folder / "runs")
    bad = result.steps["bad"]
    assert bad.status == StepState.FAILED
    assert bad.attempts == 3 and bad.attempt == 3
    assert len(bad.errors) == 3 and all("NoSuchRecipe" in e for e in bad.errors)


def test_retry_succeeds_after_transient_failure(conn: Redis, folder: Path) -> None:
    path = write_pipeline(folder, """\
        version: 1
        name: transient
        steps:
          patch: {uses: ifcpatch, retry: {attempts: 2}, with: {ifc: arch.ifc, recipe: Optimise}}
        """)
    planned = runner.start(conn, path, out=folder / "runs")
    good = (folder / "arch.ifc").read_bytes()
    (folder / "arch.ifc").write_text("not an ifc any more")  # the model is being re-exported...
    from rq import SimpleWorker
    SimpleWorker(["default"], connection=conn).work(burst=True, max_jobs=1, logging_level="WARNING")
    (folder / "arch.ifc").write_bytes(good)  # ...and is back
    work(conn)
    patch = status.read(conn, planned.run_id).steps["patch"]
    assert patch.status == StepState.SUCCEEDED
    assert patch.attempt == 2 and len(patch.errors) == 1 and "not an IFC-SPF file" in patch.errors[0]


@pytest.mark.slow
def test_timeout_fails_step_with_reason(conn: Redis, folder: Path) -> None:
    result = run_pipeline(conn, slow_pipeline(folder, "timeout: 1s"), folder / "runs")
    assert result.steps["clash"].status == StepState.FAILED
    assert result.steps["clash"].error == "timed out after 1s"
    assert result.steps["after"].status == StepState.SKIPPED
    assert not list((folder / "runs").rglob(".partial-*"))


def test_on_failure_continue_and_conditions(conn: Redis, folder: Path) -> None:
    path = write_pipeline(folder, """\
        version: 1
        name: policies
        steps:
          validate: {uses: ifctester, on_failure: continue, with: {ifc: arch.ifc, ids: rules.ids}}
          publish: {uses: ifcpatch, needs: [validate], with: {ifc: arch.ifc, recipe: Optimise}}
          notify: {uses: ifcpatch, needs: [validate], if: failure(), with: {ifc: arch.ifc, recipe: Optimise}}
          strict: {uses: ifctester, with: {ifc: arch.ifc, ids: rules.ids, gate: false}}
          on-error: {uses: ifcpatch, needs: [strict], if: failure(), with: {ifc: arch.ifc, recipe: Optimise}}
        """)
    result = run_pipeline(conn, path, folder / "runs")
    steps = result.steps
    assert steps["validate"].status == StepState.FAILED
    assert steps["publish"].status == StepState.SUCCEEDED  # continue: dependents run
    assert steps["notify"].status == StepState.SUCCEEDED   # failure() sees the failed need
    assert steps["strict"].status == StepState.SUCCEEDED
    assert steps["on-error"].status == StepState.SKIPPED
    assert steps["on-error"].error == "condition failure() is false: no upstream step failed"
    assert result.status == RunState.SUCCEEDED_WITH_FAILURES


def test_killed_work_horse_fails_step_and_skips_dependents(conn: Redis, folder: Path, workers: Workers) -> None:
    planned = runner.start(conn, slow_pipeline(folder), out=folder / "runs")
    reader = status.StatusReader(conn, planned.run_id)
    wait_for(reader, lambda s: s.steps["clash"].status == StepState.RUNNING)
    time.sleep(0.5)
    children = psutil.Process(workers.procs[0].pid).children()
    horse = max(children, key=lambda p: p.create_time())  # forked for the job, after the scheduler process
    killed = time.monotonic()
    horse.send_signal(signal.SIGKILL)
    result = wait_for(reader, lambda s: s.terminal, timeout=60)
    elapsed = time.monotonic() - killed
    assert result.steps["clash"].status == StepState.FAILED
    assert "Work-horse terminated unexpectedly" in (result.steps["clash"].error or "")
    assert len(result.steps["clash"].errors) == 1 and "signal 9" in result.steps["clash"].errors[0]
    assert result.steps["after"].status == StepState.SKIPPED
    assert result.status == RunState.FAILED
    assert elapsed < 10, elapsed


@pytest.mark.slow
def test_killed_worker_reaches_terminal_state_within_120s(conn: Redis, folder: Path, workers: Workers) -> None:
    planned = runner.start(conn, slow_pipeline(folder), out=folder / "runs")
    reader = status.StatusReader(conn, planned.run_id)
    running = wait_for(reader, lambda s: s.steps["clash"].status == StepState.RUNNING)
    worker_name = running.steps["clash"].worker
    killed = time.monotonic()
    workers.stop()  # SIGKILL to the worker and its work horse
    url = conn.connection_pool.connection_kwargs["path"]
    reconciler = subprocess.Popen([sys.executable, "-m", "ifcflow", "reconcile", "--loop", "--interval", "2",
                                   "--redis", f"unix://{url}"], start_new_session=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # no worker is left
    try:
        result = wait_for(reader, lambda s: s.terminal, timeout=120)
    finally:
        reconciler.terminate()
        assert reconciler.wait(timeout=20) == 0  # SIGTERM ends the loop
    elapsed = time.monotonic() - killed
    assert result.steps["clash"].status == StepState.FAILED
    assert result.steps["clash"].error == f"worker {worker_name} died while running the step"
    assert result.steps["after"].status == StepState.SKIPPED
    assert elapsed < 120
    print(f"terminal {elapsed:.1f}s after the worker was killed")


def test_cancel_stops_running_and_waiting_steps(conn: Redis, folder: Path, workers: Workers) -> None:
    planned = runner.start(conn, slow_pipeline(folder), out=folder / "runs")
    reader = status.StatusReader(conn, planned.run_id)
    wait_for(reader, lambda s: s.steps["clash"].status == StepState.RUNNING)
    assert set(control.cancel(conn, planned.run_id)) == {"clash", "after"}
    result = wait_for(reader, lambda s: s.terminal, timeout=30)
    assert result.status == RunState.CANCELED
    assert {s.status for s in result.steps.values()} == {StepState.CANCELED}
    assert not list((folder / "runs").rglob(".partial-*"))
    assert not Path(planned.step("clash").outputs["report"]).exists()


def test_retry_reruns_only_what_failed(conn: Redis, folder: Path) -> None:
    path = write_pipeline(folder, """\
        version: 1
        name: fixme
        steps:
          prep: {uses: ifcpatch, with: {ifc: arch.ifc, recipe: Optimise}}
          validate: {uses: ifctester, needs: [prep], with: {ifc: arch.ifc, ids: rules.ids}}
          publish: {uses: ifcpatch, needs: [validate], with: {ifc: arch.ifc, recipe: Optimise}}
        """)
    first = run_pipeline(conn, path, folder / "runs")
    assert first.status == RunState.FAILED and first.steps["publish"].status == StepState.SKIPPED
    prep_started = first.steps["prep"].started_at
    wall_name_ids(folder / "rules.ids", attribute="Name")  # fix the rules: every wall has a name
    assert control.retry(conn, first.run_id) == ["validate", "publish"]
    assert control.retry(conn, first.run_id) == []  # idempotent while the first retry waits
    work(conn)
    second = status.read(conn, first.run_id)
    assert second.status == RunState.SUCCEEDED
    assert second.steps["prep"].started_at == prep_started  # kept, not re-run
    assert control.retry(conn, first.run_id) == []


def test_many_runs_at_once_execute_each_job_once(conn: Redis, folder: Path, redis_server: EmbeddedRedis) -> None:
    steps = "\n".join(f"  s{i}: {{uses: ifcpatch, needs: [{f's{i - 1}' if i % 4 else ''}], "
                      f"with: {{ifc: arch.ifc, recipe: Optimise}}}}" for i in range(20))
    path = write_pipeline(folder, f"version: 1\nname: many\nsteps:\n{steps}\n")
    plans = [runner.start(conn, path, out=folder / "runs") for _ in range(10)]
    procs = Workers(redis_server.url, count=2)
    try:
        results = [wait_for(status.StatusReader(conn, p.run_id), lambda s: s.terminal, timeout=240) for p in plans]
        executed = sum(w.successful_job_count for w in Worker.all(connection=conn))
    finally:
        procs.stop()
    assert all(r.status == RunState.SUCCEEDED for r in results)
    # every job executed exactly once (finished runs are compacted: their result streams are gone)
    assert executed == sum(len(p.steps) for p in plans)
    for planned in plans:
        for step in planned.steps:
            assert Job.fetch(step.job_id, connection=conn).get_status().value == "finished"


def test_delayed_retry_runs_on_the_worker_scheduler(conn: Redis, folder: Path, workers: Workers) -> None:
    path = write_pipeline(folder, """\
        version: 1
        name: backoff
        steps:
          patch: {uses: ifcpatch, retry: {attempts: 2, backoff: 2s}, with: {ifc: arch.ifc, recipe: Optimise}}
        """)
    good = (folder / "arch.ifc").read_bytes()
    planned = runner.start(conn, path, out=folder / "runs")
    (folder / "arch.ifc").write_text("being re-exported")
    reader = status.StatusReader(conn, planned.run_id)
    waiting = wait_for(reader, lambda s: s.steps["patch"].errors != [] and s.steps["patch"].status == StepState.QUEUED)
    assert Job.fetch(planned.step("patch").job_id, connection=conn).get_status().value == "scheduled"
    (folder / "arch.ifc").write_bytes(good)
    done = wait_for(reader, lambda s: s.terminal, timeout=60)
    assert done.status == RunState.SUCCEEDED
    assert done.steps["patch"].attempt == 2 and len(waiting.steps["patch"].errors) == 1
