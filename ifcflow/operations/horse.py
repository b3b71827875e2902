"""A resident work horse: one forked process runs a worker's jobs one after another, supervised by the worker.

RQ's ``Worker`` forks a new work horse for every job. For a worker that has ifcopenshell imported that fork costs
35-60 ms, and every module a step imports lazily (IfcPatch recipes, ``ifcopenshell.api`` modules, ~0.2 s for some)
is imported again in every horse and thrown away with it: a tiny step cost ~0.4 s. Here the worker forks a horse
once and hands it one job at a time over a pipe; the horse runs RQ's own ``perform_job`` (the same bookkeeping,
timeouts and callbacks as a forked horse) and answers when the job's end is recorded.

Isolation stays what RQ gives: the horse is a separate process in its own process group. When it dies during a
job (segfault, ``os._exit``, SIGKILL, the OOM killer) the worker sees the pipe close, reaps it, fails that one job
as RQ does for a dead horse ("Work-horse terminated unexpectedly; waitpid returned ... (signal 9)"), and forks a
fresh horse for the next job. RQ's stop-job command, the hard kill at timeout + 60 s and a cold shutdown kill the
horse exactly as they kill RQ's. A horse retires (exits after its job, the next job forks a new one) after
:data:`MAX_JOBS` jobs or once its memory grew by :data:`MAX_GROWTH` bytes since its fork, so state a job leaves
behind (memory, caches) is bounded. An idle horse exits when its worker closes the pipe (stop, restart) or dies.

**After-job work** (:func:`after_job`): a job may leave work for its horse to do once the job's end is recorded
(the shared geometry pass's clash query, so the glb step's time is the glb's own). The horse then answers twice:
:data:`AFTER_JOB` when the job ended (the worker handles the end as usual), then its usual answer once the work is
done; the worker dequeues its next job only after that (:meth:`ResidentHorseWorker.await_after_job`, heartbeating,
killing the horse after the job's timeout + 60 s). What the work held is freed before the horse takes its next job
(garbage collection, ``malloc_trim``). Outside a resident horse :func:`after_job` declines and the job does the
work itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gc
import os
import random
import select
import signal
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.utils import now
from rq.worker import Worker
from rq.worker.base import WorkerStatus, logger

from . import pipes

MAX_JOBS = 500
"""Jobs a horse runs before it retires (the next job forks a fresh one)."""
MAX_GROWTH = 256 * 1024 * 1024
"""Bytes of resident memory a horse may gain since its fork before it retires after its job."""
HEARTBEAT_GAP = 1.0
"""Seconds within which a worker's plain heartbeat is not repeated (RQ sends three per job; the key lives 120 s)."""
IDLE_CHECK = 5.0
"""Seconds between an idle horse's checks that its worker is still alive."""
FORK_BACKOFF_MAX = 30.0
"""Seconds a worker waits at most, after a refused horse fork, before it takes another job."""
ENV = "IFCFLOW_RESIDENT_HORSE"
"""``0``: fork a new horse for every job, as RQ does (for comparison, or a job that must not share a process)."""


AFTER_JOB = "after-job"
"""The horse's first answer after a job that left :func:`after_job` work: the job ended, the work follows."""


class _AfterJob:
    resident = False
    """True in a resident horse (set when it starts its loop)."""
    work: list[Callable[[], None]] = []


def after_job(work: Callable[[], None]) -> bool:
    """Run ``work`` in this work horse once the current job's end is recorded, before the horse takes its next
    job (the worker waits for it); whatever ``work`` holds is released when it returned. False outside a resident
    horse (RQ's fork per job, a ``SimpleWorker``, no worker): the caller then does the work itself, now."""
    if not _AfterJob.resident:
        return False
    _AfterJob.work.append(work)
    return True


def _run_after_job(replies: int, job_id: str) -> None:
    """In the horse, after a job: if it left after-job work, say the job ended, do the work, free what it held."""
    if not _AfterJob.work:
        return
    pipes.send(replies, AFTER_JOB)
    started, before = time.monotonic(), _rss()
    while _AfterJob.work:
        work = _AfterJob.work.pop(0)
        try:
            work()
        except Exception:  # (the job's own result is recorded; whoever waits on this work sees it missing)
            logger.exception("after-job work of job %s failed", job_id)
        del work
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # glibc keeps freed arenas otherwise (not on musl)
        ctypes.CDLL(None).malloc_trim(0)
    logger.info("after-job work of job %s done in %.1f s; resident memory %d MB -> %d MB", job_id,
                time.monotonic() - started, before >> 20, _rss() >> 20)


def _rss() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class ResidentHorseWorker(Worker):
    """An RQ ``Worker`` whose jobs run one after another in one long-lived work horse (see the module doc)."""

    resident_pid = 0
    """The horse's pid while it lives (idle or busy); ``horse_pid`` is set only while it runs a job, as in RQ."""
    _to_horse = -1
    _from_horse = -1

    def execute_job(self, job: Job, queue: Any) -> None:
        if os.environ.get(ENV, "1").strip() == "0":
            super().execute_job(job, queue)  # RQ's fork per job
            return
        execution = self.prepare_execution(job)
        os.environ.update(RQ_WORKER_ID=self.name, RQ_JOB_ID=job.id)  # (RQ's own, set as its fork does)
        if not self._hand_over(job, queue, execution):
            try:
                self._fork_resident()
            except OSError as exc:  # no memory or no descriptors left for a horse: this job fails, the worker lives
                self._unforked(job, queue, execution, exc)
                return
            self._fork_failures = 0
            if not self._hand_over(job, queue, execution):  # a horse that dies before reading: RQ's dead horse
                self._horse_pid = self.resident_pid
        self._monitor(job, queue, execution)
        self.set_state(WorkerStatus.IDLE)

    _fork_failures = 0
    """Horse forks refused in a row (reset by the next fork that works)."""

    def _unforked(self, job: Job, queue: Any, execution: Execution, exc: OSError) -> None:
        """Fail ``job`` (RQ retries it if it has attempts left) when no horse could be forked to run it, then wait
        before taking another job (1, 2, 4 ... 30 s while forks keep failing), so a lasting shortage does not
        fail a whole queue in a moment."""
        message = f"could not start a work horse for the job: {exc.strerror or exc}; the worker goes on"
        logger.error("Worker %s: %s (job %s)", self.name, message, job.id)
        job.ended_at = now()
        self.handle_job_failure(job, queue, exc_string=message, execution=execution)
        self.set_state(WorkerStatus.IDLE)
        pause = min(2.0 ** self._fork_failures, FORK_BACKOFF_MAX)
        self._fork_failures += 1
        deadline = time.monotonic() + pause
        while (left := deadline - time.monotonic()) > 0:  # (heart-beating: a pausing worker is alive)
            time.sleep(min(left, 5.0))
            self.heartbeat()

    def _hand_over(self, job: Job, queue: Any, execution: Execution) -> bool:
        if not self.resident_pid:
            return False
        try:
            pipes.send(self._to_horse, (job.id, queue.name, execution.id, execution.created_at))
        except OSError:  # the idle horse died (OOM killer, a stray signal): reap it, fork another
            self._forget_resident(kill=True)
            return False
        self._horse_pid = self.resident_pid
        return True

    def _fork_resident(self) -> None:
        to_horse, horse_in = os.pipe()
        horse_out, from_horse = os.pipe()
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError:
            for end in (to_horse, horse_in, horse_out, from_horse):
                os.close(end)
            raise
        if pid == 0:  # the horse
            os.setpgrp()
            os.close(horse_in)
            os.close(horse_out)
            try:
                self._horse_loop(to_horse, from_horse, parent)
            finally:
                os._exit(1)
        os.close(to_horse)
        os.close(from_horse)
        self.resident_pid, self._to_horse, self._from_horse = pid, horse_in, horse_out
        self.procline(f"Forked resident horse {pid} at {now()}")

    def _horse_loop(self, commands: int, replies: int, parent: int) -> None:
        """In the horse: run each job the worker sends, answer once its end is recorded, until told to stop."""
        random.seed()
        self.setup_work_horse_signals()
        self._is_horse = True
        self.log = logger
        _AfterJob.resident = True
        born, served = _rss(), 0
        while True:
            ready, _, _ = select.select([commands], [], [], IDLE_CHECK)
            if not ready:
                if os.getppid() != parent:
                    os._exit(0)  # the worker died and some other process still holds the pipe open
                continue
            message = pipes.receive(commands)
            if message is None:
                os._exit(0)  # the worker closed the pipe: it stops or restarts
            job_id, queue_name, execution_id, created_at = message
            try:
                self._perform(job_id, queue_name, execution_id, created_at)
            except BaseException:  # RQ's horse exits 1 when its bookkeeping fails; the worker fails the job
                os._exit(1)
            served += 1
            _run_after_job(replies, job_id)  # (the worker waits for it before its next job)
            retire = served >= MAX_JOBS or _rss() - born > MAX_GROWTH
            pipes.send(replies, retire)
            if retire:
                os._exit(0)

    def _perform(self, job_id: str, queue_name: str, execution_id: str, created_at: datetime) -> None:
        os.environ.update(RQ_JOB_ID=job_id)
        job = self.job_class.fetch(job_id, connection=self.connection, serializer=self.serializer)
        queue = self.queue_class(queue_name, connection=self.connection, job_class=self.job_class,
                                 serializer=self.serializer, death_penalty_class=self.death_penalty_class)
        execution = Execution(execution_id, job_id, self.connection, worker_name=self.name)
        execution.created_at = created_at
        execution._job = job
        self.executions = {execution.id: execution}
        self.perform_job(job, queue, execution)

    def _monitor(self, job: Job, queue: Any, execution: Execution) -> None:
        """RQ's ``monitor_work_horse``, waiting on the horse's answer instead of its exit."""
        job.started_at = now()
        answer = None
        while self._horse_pid:
            try:
                ready, _, _ = select.select([self._from_horse], [], [], self.job_monitoring_interval)
            except OSError as exc:
                if exc.errno != errno.EINTR:
                    raise
                self.heartbeat()
                continue
            if ready:
                answer = pipes.receive(self._from_horse)
                break
            working_time = (now() - job.started_at).total_seconds()
            timeout = job.timeout or self.queue_class.DEFAULT_TIMEOUT
            if timeout != -1 and working_time > timeout + 60:  # hung beyond its own timeout (RQ's rule)
                self.heartbeat(self.job_monitoring_interval + 60)
                self.kill_horse()
                break
            self.maintain_heartbeats(job, execution)
        self._horse_pid = 0
        self.executions.pop(execution.id, None)
        if answer == AFTER_JOB:  # the job ended; the horse works on (the next dequeue waits for it)
            self._after_work = (job.id, job.timeout or self.queue_class.DEFAULT_TIMEOUT, time.monotonic())
            return
        if answer is not None:
            if answer:  # retired after this job
                self._forget_resident(kill=False)
            return
        self._horse_died(job, queue, execution, *self._forget_resident(kill=False))

    _after_work: tuple[str, float, float] | None = None
    """(job id, its timeout, when it ended) while the horse does that job's after-job work."""

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        self.await_after_job()
        return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)

    def await_after_job(self) -> None:
        """Wait until the horse finished the after-job work of the last job (heartbeating meanwhile); a horse that
        dies doing it is reaped (who waits on its work finds it missing), one that outlasts the job's timeout + 60 s
        is killed."""
        if self._after_work is None:
            return
        job_id, timeout, ended = self._after_work
        self.procline(f"Horse {self.resident_pid} finishing the after-job work of job {job_id}")
        answer = None
        while self.resident_pid:
            ready, _, _ = select.select([self._from_horse], [], [], self.job_monitoring_interval)
            if ready:
                answer = pipes.receive(self._from_horse)
                break
            if timeout != -1 and time.monotonic() - ended > timeout + 60:
                self.log.warning("Worker %s: killing horse %s: the after-job work of job %s outlasted the job's "
                                 "timeout (%s s) + 60 s", self.name, self.resident_pid, job_id, timeout)
                break
            self.heartbeat()
        self._after_work = None
        if answer is None:
            _, status, _ = self._forget_resident(kill=True)
            self.log.warning("Worker %s: work horse ended during the after-job work of job %s (waitpid status %s); "
                             "the steps waiting on that work do it themselves", self.name, job_id, status)
        elif answer:  # retired after the work
            self._forget_resident(kill=False)

    def _forget_resident(self, kill: bool) -> tuple[int | None, int | None, Any]:
        """Close the pipes to the horse (an idle one exits), kill it if asked, and reap it."""
        pid, self.resident_pid = self.resident_pid, 0
        for fd in (self._to_horse, self._from_horse):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._to_horse = self._from_horse = -1
        if not pid:
            return None, None, None
        if kill:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            return os.wait4(pid, 0)
        return None, None, None

    def _horse_died(self, job: Job, queue: Any, execution: Execution, retpid: int | None, ret_val: int | None,
                    rusage: Any) -> None:
        """The horse ended during the job: what RQ's ``monitor_work_horse`` does for a dead horse."""
        try:
            job_status = job.get_status()
        except Exception:
            return  # the job completed and its ttl expired
        if self._stopped_job_id == job.id:
            self._handle_stopped_job(job, queue, execution)
        elif job_status not in (JobStatus.FINISHED, JobStatus.FAILED):
            job.ended_at = now()
            signal_msg = f" (signal {os.WTERMSIG(ret_val)})" if ret_val and os.WIFSIGNALED(ret_val) else ""
            exc_string = f"Work-horse terminated unexpectedly; waitpid returned {ret_val}{signal_msg}; "
            self.log.warning("Worker %s: job %s failed (%s)", self.name, job.id, exc_string)
            self.handle_work_horse_killed(job, retpid, ret_val, rusage)
            self.handle_job_failure(job, queue=queue, exc_string=exc_string, execution=execution)

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """RQ's heartbeat in one round trip (it sends three commands one by one), and not again within
        :data:`HEARTBEAT_GAP` seconds of the last plain one (RQ beats before and after every dequeue and after
        every job)."""
        if pipeline is not None:
            super().heartbeat(timeout, pipeline)
            return
        last = self.last_heartbeat
        if timeout is None and last is not None and (now() - last).total_seconds() < HEARTBEAT_GAP:
            return
        with self.connection.pipeline(transaction=False) as pipe:
            super().heartbeat(timeout, pipe)
            pipe.execute()

    def set_state(self, state: str, pipeline: Any = None) -> None:
        """RQ's, without the write when the worker is in that state already (RQ sets ``idle`` twice per job)."""
        if pipeline is None and state == self._state and state == WorkerStatus.IDLE:
            return
        super().set_state(state, pipeline)

    def stop_resident(self) -> bool:
        """Kill the horse, busy or idle, and reap it; whether it was running a job."""
        busy = bool(self._horse_pid)
        self._forget_resident(kill=True)
        self._horse_pid = 0
        return busy

    def teardown(self) -> None:
        if not self.is_horse and self.resident_pid and not self._horse_pid:
            self._forget_resident(kill=False)  # idle: it reads the closed pipe and exits
        super().teardown()
