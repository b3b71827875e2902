"""Turning a plan into RQ jobs chained with ``depends_on``, all or nothing.

Measured on rq 3.0 and designed around: RQ's own enqueue of a dependent job checks whether its parents have
finished and treats a parent it cannot see yet (for instance one still buffered in the same Redis pipeline) as
finished. ifcflow never asks: every job is written already *deferred*, behind a start gate that is not released,
so nothing can run early; all of it goes in one transaction (all or nothing), and the gate opens last.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis import Redis
from redis.client import Pipeline as RedisPipeline
from redis.exceptions import WatchError
from rq import Queue, Retry
from rq.job import Dependency, Job, JobStatus
from rq.registry import DeferredJobRegistry
from rq.utils import now, utcformat

from ..errors import RunExists
from ..pipeline.plan import Plan, PlannedStep
from . import outbox, policy, rqstore, store

DECIDES = "ifcflow_decides"
"""Job meta flag: a held step needs this one, so its end must be seen by the reconciler at once."""
LEAF = "ifcflow_leaf"
"""Job meta flag: no step waits for this one, so its end releases nothing (its job need not look)."""
BATCH = "ifcflow_batch"
"""Job meta: the batch of the job's run (its worker advances that batch when the job ends)."""


def gate() -> None:  # pragma: no cover - never executed: the gate is released by the client
    """Placeholder function of a run's start gate job."""


def submit(conn: Redis, plan: Plan, ttl: int = store.DEFAULT_TTL, only: set[str] | None = None,
           gate_name: str = "start", record: dict[str, str] | None = None, release: int | None = None) -> None:
    """Enqueue every step of ``plan`` (or the steps in ``only``, for a retry) and release them at once.

    All jobs are written deferred behind an unreleased start gate, in one MULTI/EXEC transaction with the run
    record: nothing can run before the gate opens, so RQ's "is the parent finished?" check (which treats a parent
    not yet written as finished) is never consulted, and a failure before EXEC writes nothing at all. If opening
    the gate fails, everything created is deleted again.

    A run of one step has nothing to wait for: it is written already queued, in the same transaction, without a
    gate (a third of the work; the HTTP API's single-job requests are such runs).
    """
    steps = [s for s in plan.steps if only is None or s.id in only]
    if only is None and len(steps) == 1:
        _submit_one(conn, plan, steps[0], ttl, record)
        return
    submit_many(conn, [plan], ttl, only=only, gate_name=gate_name, record=record, release=release)


def submit_many(conn: Redis, plans: list[Plan], ttl: int = store.DEFAULT_TTL, *, only: set[str] | None = None,
                gate_name: str = "start", release: int | None = None, record: dict[str, str] | None = None,
                extra: Callable[[RedisPipeline], None] | None = None, meta: dict[str, Any] | None = None) -> None:
    """Several runs in ONE transaction (a batch): every run behind its own start gate (one-step runs too); the
    gates of the first ``release`` runs (all when None) are opened after EXEC, the others stay closed until
    opened with :func:`open_gate`. ``record`` adds fields to every run record, ``extra`` its own writes (e.g. the
    batch record) to the same transaction, ``meta`` entries to every step job's meta (e.g. :data:`BATCH`)."""
    queues: dict[str, Queue] = {}
    made: list[tuple[Plan, list[Job], list[Job]]] = []  # (plan, [start gate, hold?], step jobs)
    for plan in plans:
        steps = [s for s in plan.steps if only is None or s.id in only]
        start = _gate(conn, plan, gate_name, ttl)
        wiring = Wiring(plan)
        hold = _gate(conn, plan, f"{gate_name}-hold", ttl) if wiring.held & {s.id for s in steps} else None
        jobs = []
        for step in steps:
            queue = queues.setdefault(step.queue, Queue(step.queue, connection=conn))
            options = job_options(plan, step, ttl, start.id, only, wiring=wiring, hold=hold.id if hold else None)
            options["meta"].update(meta or {})
            jobs.append(queue.create_job(step.func, kwargs={"step": step.wire(), "run_id": plan.run_id},
                                         status=JobStatus.DEFERRED, **options))
        made.append((plan, [start, *([hold] if hold else [])], jobs))
    with conn.pipeline(transaction=True) as pipe:
        if only is None:  # a new run never overwrites an existing one (or its jobs)
            refuse_existing(pipe, [plan.run_id for plan, _, _ in made])
        for plan, gates, jobs in made:
            for gate_job in gates:
                gate_job.save(pipeline=pipe)
            if only is None:
                store.save_run(pipe, plan, ttl, record)
                outbox.push(pipe, outbox.submitted(plan, record, conn))  # history: recorded with the run, or not at all
            for job in jobs:
                job.register_dependency(pipeline=pipe)
                job.save(pipeline=pipe)
        for queue in queues.values():
            pipe.sadd(queue.redis_queues_keys, queue.key)
        if extra is not None:
            extra(pipe)
        try:
            pipe.execute()
        except WatchError:
            raise RunExists(", ".join(plan.run_id for plan, _, _ in made)) from None
    try:
        for _, gates, _ in made[:release]:
            open_gate(conn, gates[0])
    except BaseException:
        for plan, gates, jobs in made:
            rollback(conn, plan.run_id if only is None else None, [*(g.id for g in gates), *(j.id for j in jobs)])
        raise


def _gate(conn: Redis, plan: Plan, name: str, ttl: int) -> Job:
    """A gate job (never run): ``start`` is opened once the run is written, a ``-hold`` never."""
    return Job.create(gate, id=store.gate_id(plan.run_id, name), connection=conn, status=JobStatus.CREATED,
                      origin="default", result_ttl=ttl, failure_ttl=ttl,
                      description=f"{plan.pipeline}: {name} gate of run {plan.run_id}")


_OPEN = """
local gate, deps = KEYS[1], KEYS[2]
local status = redis.call('HGET', gate, 'status')
if not status then return -1 end
if status == 'finished' then return 0 end
local ids = redis.call('SMEMBERS', deps)
local origins = {}
for i, id in ipairs(ids) do
  local job = ARGV[1] .. id
  local f = redis.call('HMGET', job, 'status', 'origin', 'ttl', 'rate_limit_key', 'timeout', 'enqueue_at_front',
                      'enqueue_at_front_on_retry')
  if f[1] ~= 'deferred' or not f[2] or f[3] or f[4] or not f[5] then return -1 end
  if (f[6] and f[6] ~= '0') or (f[7] and f[7] ~= '0') then return -1 end
  local parents = redis.call('SMEMBERS', ARGV[2] .. id .. ARGV[3])
  if #parents ~= 1 or parents[1] ~= ARGV[8] then return -1 end
  origins[i] = f[2]
end
for i, id in ipairs(ids) do
  redis.call('HSET', ARGV[1] .. id, 'status', 'queued', 'enqueued_at', ARGV[7])
  redis.call('ZREM', ARGV[4] .. origins[i], id)
  redis.call('RPUSH', ARGV[5] .. origins[i], id)
  redis.call('SADD', ARGV[6], ARGV[5] .. origins[i])
end
redis.call('HSET', gate, 'status', 'finished')
redis.call('DEL', deps)
return 1 + #ids
"""
"""Open a gate whose dependents are all the simple case (deferred, waiting on this gate alone, with a timeout, no
TTL, rate limit or front-of-queue flag) in one atomic step, writing what RQ's ``enqueue_dependents`` leaves behind
for them: status ``queued`` and ``enqueued_at``, out of the queue's deferred registry, pushed onto the queue, the
queue in ``rq:queues`` (as RQ's ``enqueue_job`` does; RQ's ready registry is entered and left within its own
calls); then the gate ``finished`` and its dependents set gone (see :func:`open_simple`)."""


def open_gate(conn: Redis, start: Job | str) -> None:
    """Release the steps waiting on a start gate (a job or its id; idempotent: an opened gate is left alone).

    The common case (see ``_OPEN``) is one script, atomic against other workers opening the same gate; anything
    else goes through RQ's own ``enqueue_dependents``."""
    gate_id = start if isinstance(start, str) else start.id
    if open_simple(conn, gate_id) >= 0:
        return
    job = Job.fetch(gate_id, connection=conn) if isinstance(start, str) else start
    if job.get_status(refresh=False) == JobStatus.FINISHED:
        return
    job.set_status(JobStatus.FINISHED)
    Queue("default", connection=conn).enqueue_dependents(job)


def open_simple(conn: Redis, gate_id: str) -> int:
    """Run ``_OPEN`` on gate ``gate_id``: 0 already open, -1 not the simple case (nothing written), else 1 + the
    number of jobs released."""
    dep_prefix, dep_suffix = rqstore.dependencies_key("\n").split("\n")
    args = [Job.redis_job_namespace_prefix, dep_prefix, dep_suffix, DeferredJobRegistry.key_template.format(""),
            Queue.redis_queue_namespace_prefix, Queue.redis_queues_keys, utcformat(now()), gate_id]
    return int(conn.register_script(_OPEN)(keys=[Job.key_for(gate_id), Job.dependents_key_for(gate_id)], args=args))


def _submit_one(conn: Redis, plan: Plan, step: PlannedStep, ttl: int, record: dict[str, str] | None) -> None:
    queue = Queue(step.queue, connection=conn)
    options = job_options(plan, step, ttl, "")
    del options["depends_on"]
    job = queue.create_job(step.func, kwargs={"step": step.wire(), "run_id": plan.run_id},
                           status=JobStatus.QUEUED, **options)
    job.enqueued_at = now()
    with conn.pipeline(transaction=True) as pipe:
        refuse_existing(pipe, [plan.run_id])
        store.save_run(pipe, plan, ttl, record)
        outbox.push(pipe, outbox.submitted(plan, record, conn))
        job.save(pipeline=pipe)
        queue.push_job_id(job.id, pipeline=pipe)
        pipe.sadd(queue.redis_queues_keys, queue.key)
        try:
            pipe.execute()
        except WatchError:
            raise RunExists(plan.run_id) from None


def refuse_existing(pipe: RedisPipeline, run_ids: list[str]) -> None:
    """WATCH the runs' records and raise :class:`RunExists` if one exists; leaves ``pipe`` in MULTI."""
    keys = [store.run_key(r) for r in run_ids]
    pipe.watch(*keys)
    # (one EXISTS for all: a batch's 500 runs in one round trip; which ones only when some do)
    taken = [r for r, key in zip(run_ids, keys) if pipe.exists(key)] if pipe.exists(*keys) else []
    if taken:
        pipe.reset()
        raise RunExists(", ".join(taken))
    pipe.multi()


class Wiring:
    """What every step of one plan waits for in RQ, computed once per plan (linear in steps and needs).

    A step waits for its needs (or, without needs, for the gate); each need is one RQ dependency, so a chain of
    n steps keeps n dependency records, not n²/2. A :func:`~ifcflow.engine.policy.held` ``failure()`` step (one whose
    condition depends on steps above its needs) also waits on the run's *hold*, a gate never opened: RQ never
    starts it, the reconciler releases or skips it once every step its condition depends on ended. The needs of
    held steps are marked (``meta["ifcflow_decides"]``) so their job reconciles the run as soon as it ends, also
    under a plain ``rq worker``.
    """

    def __init__(self, plan: Plan):
        self.by_id = {s.id: s for s in plan.steps}
        self.held = {s.id for s in plan.steps if policy.held(s, self.by_id)}
        # (a held step's needs and ``after`` steps: whichever ends last must let the reconciler release it)
        self.decides = {n for sid in self.held for n in (*self.by_id[sid].needs, *self.by_id[sid].after)}
        self.waited_on = {n for s in plan.steps for n in (*s.needs, *s.after)}


def job_options(plan: Plan, step: PlannedStep, ttl: int, start: str, only: set[str] | None = None, *,
                wiring: Wiring | None = None, hold: str | None = None) -> dict[str, Any]:
    """The RQ options of a step's job: what it waits for, its timeout, retries and records.

    A step waits for its needs and its ``after`` steps (or, without either, for the gate), a held step also for
    ``hold`` (see :class:`Wiring`). In a retry (``only``) a step waits for the gate, its re-enqueued needs and its
    needs that are not re-run (RQ counts those as met once finished; one still running holds it back), and for
    its ``after`` steps only when they are re-run too.
    """
    wiring = wiring or Wiring(plan)
    needs = [wiring.by_id[n].job_id for n in step.needs]
    after = [wiring.by_id[a].job_id for a in step.after if a in wiring.by_id and (only is None or a in only)]
    parents = [start, *needs, *after] if only is not None else ([*needs, *after] or [start])
    if step.id in wiring.held and hold:
        parents.append(hold)
    # (an ``after`` step may fail without holding this one back; its own needs are then checked when it starts)
    tolerant = (step.condition != "success()" or bool(after)
                or any(wiring.by_id[n].on_failure == "continue" for n in step.needs))
    retry = Retry(max=step.attempts - 1, interval=step.backoff or 0) if step.attempts > 1 else None
    meta: dict[str, Any] = {"ifcflow_run": plan.run_id, "ifcflow_step": step.id}
    if step.id in wiring.decides:
        meta[DECIDES] = True
    if step.id not in wiring.waited_on:
        meta[LEAF] = True
    return {
        "job_id": step.job_id,
        "depends_on": Dependency(parents, allow_failure=tolerant),
        "timeout": step.timeout,
        "result_ttl": ttl,
        "failure_ttl": ttl,
        "retry": retry,
        "description": f"{plan.pipeline}/{step.id} ({step.service}) run {plan.run_id}",
        "meta": meta,
    }


def rollback(conn: Redis, run_id: str | None, job_ids: list[str]) -> None:
    """Delete the jobs created so far (and the run record), so a failed start leaves nothing behind."""
    rqstore.delete_jobs(conn, list(reversed(job_ids)))
    if run_id is not None:
        store.delete_run(conn, run_id)
        outbox.withdraw(conn, run_id)
