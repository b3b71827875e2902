"""The resident work horse of ``ifcflow worker`` (ifcflow/operations/horse.py), on a real worker process: jobs run
one after another in one horse; a job that kills its process (SIGKILL, segfault) or times out fails alone, with a
clear error, and the worker goes on with the next job in a fresh (or the same) horse; RQ's stop-job command works."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from pathlib import Path

from redis import Redis
from rq import Queue
from rq.command import send_stop_job_command
from rq.job import Job, JobStatus

from ifcflow.operations import horse
from ifcflow.standalone.embedded import EmbeddedRedis

from .servers import spawn, stop


def pid() -> int:
    return os.getpid()


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def segfault() -> None:
    ctypes.string_at(0)


def sleep(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def leave_work(marker: str, die: bool) -> int:
    """A job that leaves after-job work: write ``marker`` a second after the job ended (or kill the horse then)."""

    def later() -> None:
        time.sleep(1.0)
        if die:
            os.kill(os.getpid(), signal.SIGKILL)
        Path(marker).write_text(str(time.time()))

    assert horse.after_job(later)
    return os.getpid()


def run_worker(url: str, log: Path) -> int:
    worker = spawn([sys.executable, "-m", "ifcflow", "worker", "--redis", url, "--preload", "ifc2json", "--burst"],
                   log)
    try:
        return worker.wait(timeout=120)
    finally:
        stop(worker)


def error(conn: Redis, job: Job) -> str:
    result = Job.fetch(job.id, connection=conn).latest_result()
    return result.exc_string or "" if result else ""


def test_crashing_jobs_fail_alone_and_the_worker_goes_on(redis_server: EmbeddedRedis, conn: Redis,
                                                         tmp_path: Path) -> None:
    queue = Queue("default", connection=conn)
    jobs = [queue.enqueue(func) for func in (pid, pid, kill_self, pid, segfault, pid)]
    jobs.append(queue.enqueue(sleep, 5, job_timeout=1))
    after = queue.enqueue(pid)
    log = tmp_path / "worker.log"
    assert run_worker(redis_server.url, log) == 0, log.read_text()  # burst: it ran every job and ended cleanly
    first, second, killed, third, crashed, fourth, timed_out = (Job.fetch(j.id, connection=conn) for j in jobs)
    assert first.return_value() == second.return_value()  # one horse ran both
    assert first.return_value() != os.getpid()
    assert killed.get_status() == JobStatus.FAILED
    assert "Work-horse terminated unexpectedly" in error(conn, killed) and "(signal 9)" in error(conn, killed)
    assert third.get_status() == JobStatus.FINISHED and third.return_value() != second.return_value()  # a new horse
    assert crashed.get_status() == JobStatus.FAILED and "(signal 11)" in error(conn, crashed)
    assert fourth.get_status() == JobStatus.FINISHED
    assert timed_out.get_status() == JobStatus.FAILED and "JobTimeoutException" in error(conn, timed_out)
    last = Job.fetch(after.id, connection=conn)
    assert last.get_status() == JobStatus.FINISHED
    assert last.return_value() == fourth.return_value()  # a timeout does not cost the horse


def test_stop_job_command_kills_the_horse_and_the_next_job_runs(redis_server: EmbeddedRedis, conn: Redis,
                                                                tmp_path: Path) -> None:
    queue = Queue("default", connection=conn)
    slow = queue.enqueue(sleep, 60)
    after = queue.enqueue(pid)
    log = tmp_path / "worker.log"
    worker = spawn([sys.executable, "-m", "ifcflow", "worker", "--redis", redis_server.url, "--preload", "ifc2json",
                    "--burst"], log)
    try:
        deadline = time.monotonic() + 60
        while Job.fetch(slow.id, connection=conn).get_status() != JobStatus.STARTED:
            assert time.monotonic() < deadline and worker.poll() is None, log.read_text()
            time.sleep(0.1)
        send_stop_job_command(conn, slow.id)
        assert worker.wait(timeout=30) == 0, log.read_text()
    finally:
        stop(worker)
    assert Job.fetch(slow.id, connection=conn).get_status() == JobStatus.STOPPED
    assert Job.fetch(after.id, connection=conn).get_status() == JobStatus.FINISHED


def test_after_job_work_runs_before_the_next_job_and_a_horse_dying_in_it_is_replaced(
        redis_server: EmbeddedRedis, conn: Redis, tmp_path: Path) -> None:
    queue = Queue("default", connection=conn)
    done, lost = tmp_path / "done", tmp_path / "lost"
    first = queue.enqueue(leave_work, str(done), False)
    second = queue.enqueue(pid)
    dying = queue.enqueue(leave_work, str(lost), True)
    last = queue.enqueue(pid)
    log = tmp_path / "worker.log"
    assert run_worker(redis_server.url, log) == 0, log.read_text()  # never hangs on a dead horse
    first, second, dying, last = (Job.fetch(j.id, connection=conn) for j in (first, second, dying, last))
    assert first.get_status() == second.get_status() == dying.get_status() == last.get_status() == JobStatus.FINISHED
    assert first.ended_at is not None and second.started_at is not None
    written = float(done.read_text())
    assert first.ended_at.timestamp() < written - 0.5  # the job's end was recorded before its after-job work
    assert second.started_at.timestamp() >= written - 0.05  # and the next job waited for that work
    assert second.return_value() == first.return_value()  # in the same horse
    assert not lost.exists() and last.return_value() != dying.return_value()  # a fresh horse after the death
    assert "work horse ended during the after-job work of job " + dying.id in log.read_text()


NO_FORK = """
import os, sys, traceback
real, refused = os.fork, []
def fork():  # the first horse cannot be forked (no memory): ENOMEM, as the kernel answers then
    if not refused and any(f.name == "_fork_resident" for f in traceback.extract_stack()):
        refused.append(1)
        raise OSError(12, "Cannot allocate memory")
    return real()
os.fork = fork
sys.argv = ["ifcflow", "worker", "--redis", sys.argv[1], "--preload", "ifc2json", "--burst"]
from ifcflow.cli import main
main()
"""


def test_a_horse_that_cannot_be_forked_fails_its_job_and_the_worker_goes_on(redis_server: EmbeddedRedis,
                                                                           conn: Redis, tmp_path: Path) -> None:
    """Was: the exception left RQ's work loop, the worker restarted, and the job stayed "queued" in the started
    registry until RQ's maintenance (10 min)."""
    queue = Queue("default", connection=conn)
    refused, ran = queue.enqueue(pid), queue.enqueue(pid)
    log = tmp_path / "worker.log"
    worker = spawn([sys.executable, "-c", NO_FORK, redis_server.url], log)
    try:
        assert worker.wait(timeout=120) == 0, log.read_text()
    finally:
        stop(worker)
    assert Job.fetch(refused.id, connection=conn).get_status() == JobStatus.FAILED
    assert "could not start a work horse for the job: Cannot allocate memory" in error(conn, refused)
    after = Job.fetch(ran.id, connection=conn)
    assert after.get_status() == JobStatus.FINISHED
    failed_at = Job.fetch(refused.id, connection=conn).ended_at
    assert after.started_at and failed_at and (after.started_at - failed_at).total_seconds() >= 0.9  # it paused
    assert "unhandled exception" not in log.read_text() and "restarting the worker" not in log.read_text()
