"""Applying :mod:`ifcflow.policy` to Redis: what RQ never does by itself.

RQ leaves the dependents of a failed, stopped or canceled job ``deferred`` forever, forgets jobs whose worker
was killed until its maintenance runs, and cannot tell a vanished job from a finished one. This module skips and
cancels dependents (recording why), releases steps that must run anyway, fails the jobs of dead workers and
reports vanished jobs as lost. It runs on the failing job's side and from the status reader.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from redis import Redis
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import ReadyJobRegistry, StartedJobRegistry

from . import policy, store
from .plan import Plan
from .states import StepState
from .status import RunStatus

LOST = "lost: its job vanished from Redis (expired, deleted, or Redis restarted without persistence)"
_WAITING = {JobStatus.DEFERRED, JobStatus.QUEUED, JobStatus.CREATED, JobStatus.SCHEDULED}


def apply(conn: Redis, plan: Plan, decisions: list[policy.Decision]) -> None:
    """Carry out skip and release decisions. Safe to run concurrently from several processes."""
    skips = {d.step: ("skipped", d.reason) for d in decisions if d.action == "skip"}
    store.record_steps(conn, plan.run_id, skips)
    for decision in decisions:
        step = plan.step(decision.step)
        try:
            job = Job.fetch(step.job_id, connection=conn)
        except NoSuchJobError:
            continue
        if decision.action == "skip" and job.get_status(refresh=False) in _WAITING:
            try:
                job.cancel()
            except InvalidJobOperation:
                pass
        elif decision.action == "release":
            release(conn, plan, job)


def release(conn: Redis, plan: Plan, job: Job) -> None:
    """Enqueue a deferred job whose needs ended in states RQ does not count as met (once, whoever calls)."""
    if job.get_status() != JobStatus.DEFERRED:
        return
    if not conn.hsetnx(store.run_key(plan.run_id), f"released:{job.id}", time.time()):
        return
    for parent in job._dependency_ids:  # so no parent's completion can enqueue it a second time
        conn.srem(Job.dependents_key_for(parent), job.id)
    conn.delete(job.dependencies_key)
    conn.hdel(job.key, "dependency_ids", "dependency_id")
    job._dependency_ids = []
    # enqueue_job() would re-check the needs (a canceled one never counts as met); _enqueue_job() does not,
    # and moves the job out of the deferred registry itself.
    Queue(job.origin, connection=conn)._enqueue_job(job)


def states_of(status: RunStatus) -> tuple[dict[str, StepState], dict[str, str]]:
    states = {step_id: s.status for step_id, s in status.steps.items()}
    causes = {step_id: s.error or "" for step_id, s in status.steps.items() if s.status == StepState.SKIPPED}
    return states, causes


def after_step(conn: Redis, plan: Plan, status: RunStatus, ended: Mapping[str, StepState]) -> None:
    """Called on the worker when a step ends (before RQ records it): skip what can no longer run, release
    what must run although a need was skipped."""
    states, causes = states_of(status)
    states.update(ended)
    apply(conn, plan, policy.decide(plan.steps, states, causes))


def repair(conn: Redis, plan: Plan, status: RunStatus) -> bool:
    """Bring Redis in line with what the status shows; True when anything was changed."""
    changed = False
    lost = {sid: ("failed", LOST) for sid, s in status.steps.items() if s.status == StepState.FAILED and s.error == "lost"}
    if lost:
        store.record_steps(conn, plan.run_id, lost)
        changed = True
    if _fail_dead(conn, plan, status):
        return True
    if any(s.status == StepState.QUEUED and s.enqueued_at is None for s in status.steps.values()):
        changed |= bool(drain_ready(conn, {s.queue for s in plan.steps}))
    states, causes = states_of(status)
    vanished = frozenset(sid for sid, s in status.steps.items() if (s.error or "").startswith("lost"))
    decisions = policy.decide(plan.steps, states, causes, vanished)
    if decisions:
        apply(conn, plan, decisions)
        changed = True
    return changed


def drain_ready(conn: Redis, queues: set[str] | tuple[str, ...]) -> int:
    """Push jobs RQ left in its ready registries onto their queues (RQ's own recovery, run now)."""
    return sum(len(ReadyJobRegistry(name, connection=conn).cleanup()) for name in queues)


def _fail_dead(conn: Redis, plan: Plan, status: RunStatus) -> bool:
    """Fail (or retry) running steps whose worker stopped heart-beating, using RQ's own registry cleanup."""
    running = {s.job_id: s for s in status.steps.values() if s.status == StepState.RUNNING}
    if not running:
        return False
    now = time.time()
    handled = False
    for queue in {s.queue for s in running.values()}:
        registry = StartedJobRegistry(queue, connection=conn)
        expired = [j for j in registry.get_expired_job_ids(now) if j in running]
        if not expired:
            continue
        registry.cleanup(now)
        for job_id in expired:
            step = running[job_id]
            step_id = job_id[len(plan.run_id) + 1:]
            if Job.fetch(job_id, connection=conn).get_status() == JobStatus.FAILED:
                who = f"worker {step.worker}" if step.worker else "its worker"
                store.record_steps(conn, plan.run_id, {step_id: ("failed", f"{who} died while running the step")})
        handled = True
    return handled
