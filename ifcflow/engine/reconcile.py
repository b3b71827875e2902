"""The reconciler: the one place that repairs a run, so its status stays true and every run ends.

RQ leaves the dependents of a failed, stopped or canceled job ``deferred`` forever, notices a killed worker's job
only in its own maintenance (every 10 minutes), concedes contended dependent enqueues to that maintenance, and
cannot tell a vanished job from a finished one. A pass of :func:`run` over one run, under the run's lock
(:mod:`ifcflow.engine.lock`), brings Redis in line with :mod:`ifcflow.engine.policy`:

- vanished jobs are recorded "failed: lost";
- jobs of dead workers (started, heartbeat expired) are failed or retried by RQ's own started-registry cleanup,
  under RQ's per-queue cleaning lock, and recorded with "worker X died";
- jobs RQ left in its ready registries are pushed onto their queues;
- waiting steps that can no longer run are skipped (recorded, their job canceled); steps that must run although
  a need was skipped or canceled are released (enqueued in one transaction);
- a run whose steps all ended is ended once (:func:`ifcflow.engine.events.run_ended`).

Every action is idempotent; the lock makes concurrent callers take turns, and a caller that finds the lock taken
marks the run dirty so the holder passes again. Callers: the worker after each job ends (and the job itself, for
plain ``rq worker``s), a periodic :func:`loop` in ``ifcflow worker``, ``ifcflow reconcile [--loop]``, and any
long-running ifcflow process (the API server runs :func:`loop` in a thread). Status reads never repair.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping

from redis import Redis
from redis.exceptions import RedisError
from rq.job import Job, JobStatus

from ..errors import RunNotFound
from ..pipeline.plan import Plan
from . import changes, events, lifetimes, packs, policy, rqstore, store
from .lock import LEASE, dirty_key, exclusive, lock_key
from .states import StepState
from .status import LOST, RunStatus, StatusReader

log = logging.getLogger(__name__)
INTERVAL = 5.0
"""Seconds between two periodic passes over the live runs."""
WAIT = 5.0
"""Seconds a caller that must see its own change through (a job that just ended) waits for the lock."""
_TICK = "ifcflow:reconcile:tick"


def run(conn: Redis, run_id: str, *, ended: Mapping[str, StepState] | None = None, wait: float = WAIT,
        plan: Plan | None = None, announce: bool = True) -> RunStatus | None:
    """One reconcile pass over ``run_id``; returns the status it left, or None when another process holds the
    lock (the run is then marked dirty and that process passes again) or the run is gone.

    ``ended`` overrides the state of steps whose job is ending right now (called from inside the job, before RQ
    records its end); a run is never ended from such a pass. ``announce=False``: the caller announces the run's
    change itself once it is done (the worker after a job, whatever the pass changed).
    """

    def one_pass() -> RunStatus | None:
        try:
            reader = _reader(conn, run_id, plan)
        except RunNotFound:
            store.forget_live(conn, run_id)
            return None
        return _pass(conn, reader, ended or {}, announce)

    # (take the lock or mark the run dirty: one round trip; let go unless marked meanwhile: one)
    passes = exclusive(conn, lock_key(run_id), one_pass, wait=wait, lease=LEASE, dirty=dirty_key(run_id))
    return passes[-1] if passes else None


_readers: OrderedDict[tuple[int, str], StatusReader] = OrderedDict()
_READERS = 128


def _reader(conn: Redis, run_id: str, plan: Plan | None) -> StatusReader:
    """A reader per (connection, run), kept for the next pass (its plan is loaded once, unchanged steps are not
    decoded again); the least recently used go beyond :data:`_READERS`."""
    key = (id(conn), run_id)
    reader = _readers.get(key)
    if reader is None or reader.conn is not conn:
        reader = _readers[key] = StatusReader(conn, run_id, plan, notes=False)  # (it acts; notes are for people)
        while len(_readers) > _READERS:
            _readers.popitem(last=False)
    _readers.move_to_end(key)
    return reader


def _pass(conn: Redis, reader: StatusReader, ended: Mapping[str, StepState], announce: bool = True) -> RunStatus:
    status = reader.fetch()
    changed = False
    if reader.record.get(packs.FIELD) and not ended:  # a batch's sub-run run by a pack: did its pack end early?
        waiting = {s.id: s for s in reader.plan.steps
                   if status.steps[s.id].status in (StepState.QUEUED, StepState.RUNNING)}
        if waiting and packs.repair(conn, reader.run_id, waiting, "canceled" in reader.record):
            changed = True
            status = reader.fetch()
    for _ in range(5):  # each repair can make the next one possible (a dead worker's step fails, ...)
        unknown = [sid for sid, s in status.steps.items() if (s.error or "").startswith("unknown RQ job status")]
        if unknown:
            log.error("run %s: not repairing, steps %s have an unknown RQ status", reader.run_id, unknown)
            return status
        if not repair(conn, reader.plan, status, ended):
            break
        changed = True
        status = reader.fetch()
    if status.terminal and not ended:
        changed |= end(conn, reader, status)
    if changed and announce:
        changes.publish(conn, reader.run_id)
    return status


def repair(conn: Redis, plan: Plan, status: RunStatus, ended: Mapping[str, StepState] | None = None) -> bool:
    """Bring Redis in line with the status (the caller holds the run's lock); True when anything changed."""
    lost = {sid: ("failed", LOST) for sid, s in status.steps.items() if s.status == StepState.FAILED and s.error == "lost"}
    if lost:
        store.record_steps(conn, plan.run_id, lost)
    if fail_dead(conn, plan, status):
        return True
    changed = bool(lost)
    if any(s.status == StepState.QUEUED and s.enqueued_at is None for s in status.steps.values()):
        changed |= bool(rqstore.drain_ready(conn, sorted({s.queue for s in plan.steps})))
    states, causes = states_of(status)
    states.update(ended or {})
    vanished = frozenset(sid for sid, s in status.steps.items() if (s.error or "").startswith("lost"))
    return apply(conn, plan, policy.decide(plan.steps, states, causes, vanished)) or changed


def states_of(status: RunStatus) -> tuple[dict[str, StepState], dict[str, str]]:
    states = {step_id: s.status for step_id, s in status.steps.items()}
    causes = {step_id: s.error or "" for step_id, s in status.steps.items() if s.status == StepState.SKIPPED}
    return states, causes


def apply(conn: Redis, plan: Plan, decisions: list[policy.Decision]) -> bool:
    """Carry out skip and release decisions; True when a job was canceled or released."""
    store.record_steps(conn, plan.run_id, {d.step: ("skipped", d.reason) for d in decisions if d.action == "skip"})
    changed = False
    jobs = {s.id: s.job_id for s in plan.steps}  # (Plan.step is a search: a cascade may decide every step)
    for decision in decisions:
        job_id = jobs[decision.step]
        if decision.action == "skip":
            changed |= rqstore.cancel_waiting(conn, job_id)
        elif decision.action == "release" and rqstore.job_status(conn, job_id) == "deferred":
            changed |= rqstore.release(conn, job_id)
    return changed


def fail_dead(conn: Redis, plan: Plan, status: RunStatus) -> bool:
    """Fail (or retry) running steps whose worker stopped heart-beating; True when any was handled."""
    running = {s.job_id: (sid, s) for sid, s in status.steps.items() if s.status == StepState.RUNNING}
    if not running:
        return False
    now = time.time()
    handled = False
    for queue in sorted({s.queue for _, s in running.values()}):
        expired = rqstore.expired_started(conn, queue, set(running), now)
        if not expired or not rqstore.fail_abandoned(conn, queue, now):
            continue
        for job_id in expired:
            step_id, step = running[job_id]
            if rqstore.job_status(conn, job_id) == "failed":
                who = f"worker {step.worker}" if step.worker else "its worker"
                store.record_steps(conn, plan.run_id, {step_id: ("failed", f"{who} died while running the step")})
        handled = True
    return handled


def end(conn: Redis, reader: StatusReader, status: RunStatus) -> bool:
    """End a run whose steps all ended: once, whoever observes it first. True when this call ended it."""
    run_id = reader.run_id
    record = reader.record
    if "ended_at" in record:
        if conn.sismember(store.LIVE, run_id):  # ended, but the hooks did not finish (the process died)
            events.run_ended(conn, status)
            store.forget_live(conn, run_id)
        return False
    ttl = int(record.get("ttl", store.DEFAULT_TTL))
    final = {sid: {"status": s.status.value, "error": s.error} for sid, s in status.steps.items()}
    at = time.time()
    retries = int(record.get("retries") or 0)
    if not lifetimes.end_run(conn, run_id, [s.job_id for s in reader.plan.steps], ttl, final, reader.plan,
                             retries, at, jobs=not (record.get(packs.FIELD) and not retries)):
        return False
    events.run_ended(conn, status, {**record, "ended_at": repr(at), "final": json.dumps(final)})  # (as stored now)
    store.forget_live(conn, run_id)
    return True


def pending_runs(conn: Redis) -> list[str]:
    """Runs that have not ended yet (or whose end hooks have not finished)."""
    return store.live_runs(conn)


def sweep(conn: Redis) -> int:
    """One pass over every live run; returns how many were visited."""
    visited = 0
    runs = pending_runs(conn)
    closed = behind_closed_gates(conn, runs)  # a batch's waiting sub-runs: nothing of theirs can have run
    for run_id in (r for r in runs if r not in closed):
        try:
            run(conn, run_id, wait=0.0)
        except RedisError:
            raise
        except Exception:  # noqa: BLE001 - one broken run must not stop the others
            log.exception("could not reconcile run %s", run_id)
        visited += 1
    return visited


def behind_closed_gates(conn: Redis, run_ids: list[str]) -> set[str]:
    """Those of ``run_ids`` not released yet: their start gate was never opened, they were never retried nor
    canceled, so none of their jobs can have run (a batch's sub-runs waiting for the window). One round trip."""
    with conn.pipeline(transaction=False) as pipe:
        for run_id in run_ids:
            pipe.hget(Job.key_for(store.gate_id(run_id)), "status")
            pipe.hmget(store.run_key(run_id), "retries", "canceled", packs.FIELD)
        replies = pipe.execute()
    gates = dict(zip(run_ids, replies[::2], strict=True))
    fields = dict(zip(run_ids, replies[1::2], strict=True))
    packed = {run_id: found[2].decode() for run_id, found in fields.items() if found[2] and gates[run_id] is None}
    if packed:  # a pack's members: behind the pack's gate
        with conn.pipeline(transaction=False) as pipe:
            for pack in packed.values():
                pipe.hget(Job.key_for(store.gate_id(pack)), "status")
            gates.update(zip(packed, pipe.execute(), strict=True))
    finished = JobStatus.FINISHED.value.encode()
    return {run_id for run_id in run_ids if gates[run_id] is not None and gates[run_id] != finished
            and fields[run_id][0] is None and fields[run_id][1] is None}


def claim_tick(conn: Redis, interval: float) -> bool:
    """True for one process per ``interval`` among all that loop against this Redis."""
    return bool(conn.set(_TICK, 1, nx=True, px=max(1, int(interval * 1000 * 0.9))))


def loop(conn: Redis, interval: float = INTERVAL, stop_event: threading.Event | None = None) -> None:
    """Sweep the live runs every ``interval`` seconds until ``stop_event`` is set (for a background thread).

    Several processes may loop against one Redis: each interval one of them sweeps. Redis errors are logged and
    retried at the next interval, so a Redis restart does not end the loop.
    """
    stop = stop_event or threading.Event()
    while not stop.is_set():
        try:
            if claim_tick(conn, interval):
                sweep(conn)
            events.ticked(conn)  # every looping process (e.g. drains the history outbox when it has a database)
        except RedisError as exc:
            log.warning("reconcile pass failed (Redis: %s); retrying in %.0f s", exc, interval)
        except Exception:  # noqa: BLE001 - keep looping: a background thread must not die silently
            log.exception("reconcile pass failed; retrying in %.0f s", interval)
        stop.wait(interval)
