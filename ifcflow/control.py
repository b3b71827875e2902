"""Operator actions on a run: cancel it, or retry what failed (in the same run, keeping what succeeded)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from redis import Redis
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus

from . import enqueue, graph, store
from .errors import IfcflowError
from .states import StepState
from .status import StatusReader

RERUN = (StepState.FAILED, StepState.SKIPPED, StepState.CANCELED)


def cancel(conn: Redis, run_id: str, wait: float = 10.0, reason: str = "canceled by user") -> list[str]:
    """Stop running steps, cancel waiting ones, remove their partial outputs. Returns the steps canceled;
    ``reason`` is their error ("canceled by user", "timeout", ...)."""
    reader = StatusReader(conn, run_id)
    conn.hset(store.run_key(run_id), "canceled", time.time())
    status = reader.fetch()
    canceled: dict[str, tuple[str, str]] = {}
    stopped: list[str] = []
    for step_id, step in status.steps.items():
        if step.status.terminal:
            continue
        canceled[step_id] = ("canceled", reason)
        try:
            job = Job.fetch(step.job_id, connection=conn)
        except NoSuchJobError:
            continue
        if job.get_status() == JobStatus.STARTED:
            try:
                send_stop_job_command(conn, job.id)
                stopped.append(job.id)
            except InvalidJobOperation:
                pass
        else:
            try:
                job.cancel()
            except InvalidJobOperation:
                pass
    store.record_steps(conn, run_id, canceled, overwrite=True)
    _await_stopped(conn, stopped, wait)
    for step_id in canceled:
        planned = reader.plan.step(step_id)  # only this job's partial folders: a folder may be shared (HTTP API)
        for partial in Path(planned.workdir).glob(f".partial-{planned.job_id}-*"):
            shutil.rmtree(partial, ignore_errors=True)
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


def retry(conn: Redis, run_id: str, step: str | None = None, ttl: int = store.DEFAULT_TTL) -> list[str]:
    """Re-run failed, skipped and canceled steps (or ``step``) and what depends on them, in the same run.

    Succeeded steps and their outputs are kept. While any selected step is still waiting or running the call
    changes nothing, so calling it twice never runs a step twice. Returns the steps re-enqueued.
    """
    lock = f"{store.run_key(run_id)}:retrying"
    if not conn.set(lock, time.time(), nx=True, ex=60):
        raise IfcflowError(f"a retry of run {run_id} is being started by another process; try again shortly")
    try:
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
        for sid in chosen:
            _forget(conn, plan.step(sid).job_id)
        conn.hdel(store.steps_key(run_id), *chosen)
        conn.hdel(store.run_key(run_id), "canceled", "ended_at", *(f"released:{plan.step(s).job_id}" for s in chosen))
        conn.persist(store.run_key(run_id))
        conn.persist(store.steps_key(run_id))
        attempt = conn.hincrby(store.run_key(run_id), "retries", 1)
        enqueue.submit(conn, plan, ttl=ttl, only=chosen, gate_name=f"retry{attempt}")
        conn.hdel(store.steps_key(run_id), *chosen)  # in case a reader recorded them "lost" meanwhile
        return [s.id for s in plan.steps if s.id in chosen]
    finally:
        conn.delete(lock)


def _forget(conn: Redis, job_id: str) -> None:
    try:
        Job.fetch(job_id, connection=conn).delete(remove_from_queue=True)
    except NoSuchJobError:
        pass
    conn.delete(f"rq:results:{job_id}", Job.dependents_key_for(job_id))
