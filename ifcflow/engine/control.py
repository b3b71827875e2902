"""Operator actions on a run: cancel it, or retry what failed (in the same run, keeping what succeeded)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from redis import Redis
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus

from ..errors import IfcflowError
from ..pipeline import graph
from . import changes, enqueue, lifetimes, outbox, reconcile, rqstore, store
from .lock import RunLock
from .states import StepState
from .status import StatusReader

RERUN = (StepState.FAILED, StepState.SKIPPED, StepState.CANCELED)
LOCK_WAIT = 30.0
"""Seconds cancel and retry wait for the run's lock (held for milliseconds by a repair)."""


def cancel(conn: Redis, run_id: str, wait: float = 10.0, reason: str = "canceled by user") -> list[str]:
    """Stop running steps, cancel waiting ones, remove their partial outputs. Returns the steps canceled;
    ``reason`` is their error ("canceled by user", "timeout", ...).

    Done under the run's lock, so it never interleaves with a retry or a repair of the same run.
    """
    reader = StatusReader(conn, run_id)
    canceled: dict[str, tuple[str, str]] = {}
    stopped: list[str] = []
    with RunLock(conn, run_id).held(LOCK_WAIT, "cancel"):
        conn.hset(store.run_key(run_id), "canceled", time.time())
        status = reader.fetch()
        for step_id, step in status.steps.items():
            if step.status.terminal:
                continue
            canceled[step_id] = ("canceled", reason)
            if rqstore.job_status(conn, step.job_id) == JobStatus.STARTED.value:
                try:
                    send_stop_job_command(conn, step.job_id)
                    stopped.append(step.job_id)
                except InvalidJobOperation:
                    pass
            else:
                rqstore.cancel_waiting(conn, step.job_id)
        store.record_steps(conn, run_id, canceled, overwrite=True)
        outbox.record(conn, [outbox.audit("cancel", run_id=run_id, detail={"steps": list(canceled), "reason": reason})])
    changes.publish(conn, run_id)
    _await_stopped(conn, stopped, wait)
    for step_id in canceled:
        planned = reader.plan.step(step_id)  # only this job's partial folders: a folder may be shared (HTTP API)
        for partial in Path(planned.workdir).glob(f".partial-{planned.job_id}-*"):
            shutil.rmtree(partial, ignore_errors=True)
    reconcile.run(conn, run_id)
    return list(canceled)


def _await_stopped(conn: Redis, job_ids: list[str], wait: float) -> None:
    deadline = time.monotonic() + wait
    pending = set(job_ids)
    while pending and time.monotonic() < deadline:
        for job_id in list(pending):
            try:
                if Job.fetch(job_id, connection=conn).get_status() != JobStatus.STARTED:
                    pending.discard(job_id)
            except NoSuchJobError:
                pending.discard(job_id)
        time.sleep(0.05)


def retry(conn: Redis, run_id: str, step: str | None = None, ttl: int = store.DEFAULT_TTL,
          hold: bool = False) -> list[str]:
    """Re-run failed, skipped and canceled steps (or ``step``) and what depends on them, in the same run.

    Succeeded steps and their outputs are kept. While any selected step is still waiting or running the call
    changes nothing, so calling it twice never runs a step twice. Done under the run's lock (never interleaved
    with a cancel or a repair). Returns the steps re-enqueued. ``hold`` leaves the retry's gate closed (a batch
    opens it when its window has room).
    """
    with RunLock(conn, run_id).held(LOCK_WAIT, "retry"):
        reader = StatusReader(conn, run_id)
        status = reader.fetch()
        plan = reader.plan
        if step is not None and step not in status.steps:
            raise IfcflowError(f"run {run_id} has no step '{step}'; steps: {', '.join(status.steps)}")
        roots = [step] if step else [sid for sid, s in status.steps.items() if s.status in RERUN]
        chosen = set(roots) | set(graph.descendants(plan.edges, roots))
        active = [sid for sid in chosen if not status.steps[sid].status.terminal]
        if active or not chosen:
            return []
        rqstore.delete_jobs(conn, [plan.step(sid).job_id for sid in chosen])
        conn.hdel(store.steps_key(run_id), *chosen)
        conn.hdel(store.run_key(run_id), "canceled")
        lifetimes.revive(conn, run_id, [s.job_id for s in plan.steps])
        attempt = conn.hincrby(store.run_key(run_id), "retries", 1)
        enqueue.submit(conn, plan, ttl=ttl, only=chosen, gate_name=f"retry{attempt}", release=0 if hold else None)
        outbox.record(conn, [outbox.audit("retry", run_id=run_id, detail={"steps": sorted(chosen), "attempt": attempt})])
    reconcile.run(conn, run_id, plan=plan)  # what was asked for while we held the lock
    return [s.id for s in plan.steps if s.id in chosen]
