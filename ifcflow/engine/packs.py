"""Packs: several small files of a batch run by one RQ job (the per-job cost of a whole run per tiny file).

A batch of a one-step pipeline over small files (each at most :data:`SMALL` bytes, the step tried once, no
``after``) is cut, in input order, into packs of up to :data:`MAX_FILES` sub-runs. Each sub-run stays an ordinary
run (its own id, record, status document, batch row, ``status.json``, history, cancel and retry); what is shared
is the execution: one RQ job per pack (``<batch>--pack<n>``, on the step's queue, behind its own start gate, which
the batch window opens) runs its members in turn (:mod:`workers.pack`).

A member's step has no RQ job of its own: its state is its step record (``ifcflow:run:<id>:steps``, where ifcflow
already records what RQ cannot say), written by the pack as ``queued`` (with ``pack``: the pack job's id), then
``running`` (``started_at``, ``worker``), then ``succeeded``, ``cached`` or ``failed`` (``result``, ``reason``,
``ended_at``); :func:`ifcflow.engine.status.step_state` reads it like any record. The pack ends each member's run
through the reconciler, as a worker ends any run.

- **A crash** (the work horse dies in a member): the worker fails the pack job; :func:`salvage` records the running
  member failed and puts the members not started into a new pack.
- **A dead worker** (or a pack job gone): :func:`repair`, from every reconcile pass over a member, fails (or,
  if its run was canceled, cancels) a member whose pack ended or vanished without running it.
- **Cancel** records a waiting member canceled at once; the pack skips it. **Retry** gives the step a real RQ job
  (the member record is cleared); it is an ordinary run from then on.

``IFCFLOW_PACK=0`` (where batches are submitted) turns packing off.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis import Redis
from redis.client import Pipeline as RedisPipeline
from redis.exceptions import WatchError
from rq import Queue
from rq.job import Dependency, Job, JobStatus
from rq.utils import now, utcformat

from ..errors import RunExists
from ..pipeline.plan import Plan
from . import enqueue, outbox, rqstore, store

ENV = "IFCFLOW_PACK"
MAX_FILES = 32
"""Sub-runs per pack at most."""
SMALL = 1 << 20
"""Bytes: a batch is packed only when every input file of every sub-run is at most this big (a bigger model gets
a job of its own: its progress notes, its own timeout and worker)."""
FUNC = "workers.dispatch.run_pack"
FIELD = "pack"
"""A member run's record field, and its step record's key: the id of the pack job that runs it."""
META = "ifcflow_pack"
"""Pack job meta flag."""
ROUND, ROOT = "ifcflow_pack_round", "ifcflow_pack_root"
"""A re-pack's meta: how many packs failed before it, and the first pack's id (its own is ``<first>-r<round>``)."""
ENDED = frozenset({"finished", "failed", "stopped", "canceled"})


def enabled() -> bool:
    return os.environ.get(ENV, "").strip().lower() not in ("0", "off", "false", "no")


def size_for(plans: list[Plan], inputs: list[dict[str, str]], window: int) -> int:
    """Sub-runs per pack for a batch of ``plans`` (their files ``inputs``): 1 (no packing) unless each plan is
    one step tried once and every file is small; else enough packs to keep ``window`` workers' worth busy twice
    over, at most :data:`MAX_FILES` sub-runs each."""
    if not enabled() or len(plans) < 2:
        return 1
    for plan in plans[:1]:  # (every sub-run is planned from the same pipeline)
        if len(plan.steps) != 1 or plan.steps[0].attempts != 1 or plan.steps[0].after:
            return 1
    for files in inputs:
        for path in files.values():
            try:
                if Path(path).stat().st_size > SMALL:
                    return 1
            except OSError:
                return 1
    return max(1, min(MAX_FILES, math.ceil(len(plans) / (2 * max(1, window)))))


def pack_id(batch_id: str, index: int, count: int) -> str:
    return f"{batch_id}--pack{index:0{len(str(max(count - 1, 0)))}d}"


def record(status: str, pack: str, **fields: Any) -> str:
    """A member's step record."""
    return json.dumps({"status": status, "reason": fields.pop("reason", None), "at": time.time(), FIELD: pack,
                       **fields})


def _job(conn: Redis, queue: Queue, job_id: str, members: list[Plan], ttl: int, batch_id: str,
         status: JobStatus, depends_on: str | None) -> Job:
    step = members[0].steps[0]
    return queue.create_job(
        FUNC, kwargs={"members": [[plan.run_id, plan.steps[0].wire()] for plan in members]},
        job_id=job_id, status=status, timeout=sum(p.steps[0].timeout for p in members) + 60,
        result_ttl=ttl, failure_ttl=ttl, depends_on=Dependency([depends_on]) if depends_on else None,
        description=f"{members[0].pipeline}/{step.id} ({step.service}): {len(members)} files of batch {batch_id}",
        meta={enqueue.BATCH: batch_id, META: True})


def submit(conn: Redis, batch_id: str, plans: list[Plan], size: int, ttl: int, release: int,
           fields: dict[str, dict[str, str]], extra: Callable[[RedisPipeline], None]) -> None:
    """Every member run, its ``queued`` step record and every pack (deferred behind its gate) in ONE transaction,
    with ``extra`` (the batch record); then the gates of the first ``release`` packs are opened."""
    count = math.ceil(len(plans) / size)
    queue = Queue(plans[0].steps[0].queue, connection=conn)
    packs = []
    for index in range(count):
        members = plans[index * size:(index + 1) * size]
        job_id = pack_id(batch_id, index, count)
        gate = Job.create(enqueue.gate, id=store.gate_id(job_id), connection=conn, status=JobStatus.CREATED,
                          origin="default", result_ttl=ttl, failure_ttl=ttl, description=f"gate of pack {job_id}")
        packs.append((job_id, members, gate, _job(conn, queue, job_id, members, ttl, batch_id, JobStatus.DEFERRED,
                                                  gate.id)))
    stamp = utcformat(now())
    with conn.pipeline(transaction=True) as pipe:
        enqueue.refuse_existing(pipe, [plan.run_id for plan in plans])
        for job_id, members, gate, job in packs:
            for plan in members:
                added = {FIELD: job_id, **fields.get(plan.run_id, {})}
                store.save_run(pipe, plan, ttl, added)
                pipe.hset(store.steps_key(plan.run_id), plan.steps[0].id, record("queued", job_id, enqueued_at=stamp))
                outbox.push(pipe, outbox.submitted(plan, added, conn))
            gate.save(pipeline=pipe)
            job.register_dependency(pipeline=pipe)
            job.save(pipeline=pipe)
        pipe.sadd(queue.redis_queues_keys, queue.key)
        extra(pipe)
        try:
            pipe.execute()
        except WatchError:
            raise RunExists(", ".join(plan.run_id for plan in plans)) from None
    for job_id, _, _, _ in packs[:release]:
        enqueue.open_gate(conn, store.gate_id(job_id))


def job_ids(batch_id: str, total: int, size: int) -> list[str]:
    """The pack jobs of a batch and their gates (for their expiry with the batch)."""
    count = math.ceil(total / size)
    ids = [pack_id(batch_id, index, count) for index in range(count)]
    return ids + [store.gate_id(job_id) for job_id in ids]


def members_of(job: Job) -> list[tuple[str, dict[str, Any]]]:
    return [(run_id, step) for run_id, step in job.kwargs.get("members", [])]


def salvage(conn: Redis, job: Job, why: str) -> list[str]:
    """A pack job failed (its work horse died): the member it was running fails with ``why``, the members it had
    not started go into a new pack (queued at once). Returns the members failed (the caller reconciles them: their
    runs end)."""
    members = members_of(job)
    with conn.pipeline(transaction=False) as pipe:
        for run_id, step in members:
            pipe.hget(store.steps_key(run_id), step["id"])
        raw = pipe.execute()
    waiting: list[tuple[str, dict[str, Any]]] = []
    failed: list[str] = []
    for (run_id, step), found in zip(members, raw, strict=True):
        current = json.loads(found) if found else {}
        if current.get(FIELD) != job.id:
            continue  # canceled, retried or moved meanwhile
        if current.get("status") == "running":
            conn.hset(store.steps_key(run_id), step["id"], record(
                "failed", job.id, reason=why, started_at=current.get("started_at"),
                worker=current.get("worker"), ended_at=utcformat(now())))
            failed.append(run_id)
        elif current.get("status") == "queued":
            waiting.append((run_id, step))
    if waiting:
        _repack(conn, job, waiting)
    return failed


def _repack(conn: Redis, job: Job, waiting: list[tuple[str, dict[str, Any]]]) -> None:
    again = int((job.meta or {}).get(ROUND, 0)) + 1
    new_id = f"{(job.meta or {}).get(ROOT, job.id)}-r{again}"
    queue = Queue(job.origin, connection=conn)
    successor = queue.create_job(
        FUNC, kwargs={"members": [[run_id, step] for run_id, step in waiting]}, job_id=new_id,
        status=JobStatus.QUEUED, timeout=int(job.timeout) if job.timeout else None, result_ttl=job.result_ttl, failure_ttl=job.failure_ttl,
        description=f"{job.description} (the files not started when {job.id} failed)",
        meta={**(job.meta or {}), ROUND: again, ROOT: (job.meta or {}).get(ROOT, job.id)})
    successor.enqueued_at = now()
    stamp = utcformat(now())
    with conn.pipeline(transaction=True) as pipe:
        for run_id, step in waiting:
            pipe.hset(store.steps_key(run_id), step["id"], record("queued", new_id, enqueued_at=stamp))
            pipe.hset(store.run_key(run_id), FIELD, new_id)
        successor.save(pipeline=pipe)
        queue.push_job_id(successor.id, pipeline=pipe)
        pipe.execute()


def repair(conn: Redis, run_id: str, steps: dict[str, Any], canceled: bool) -> bool:
    """Members of ``steps`` (step id -> its status, not ended) whose pack job ended or vanished without running
    them fail (or are canceled, in a canceled run); a pack whose worker stopped heart-beating is failed first, by
    RQ's own cleanup. True when anything was recorded."""
    raw: dict[bytes, bytes] = conn.hgetall(store.steps_key(run_id))  # type: ignore[assignment]
    records = store.step_records(raw)
    changed = False
    for step_id, step in steps.items():
        current = records.get(step_id) or {}
        job_id = current.get(FIELD)
        if not job_id or current.get("status") not in ("queued", "running"):
            continue
        state = rqstore.job_status(conn, job_id)
        if state == JobStatus.STARTED.value:
            expired = rqstore.expired_started(conn, step.queue, {job_id}, time.time())
            if expired and rqstore.fail_abandoned(conn, step.queue, time.time()):
                state = rqstore.job_status(conn, job_id)
        if state is not None and state not in ENDED:
            continue
        if canceled:
            verdict, why = "canceled", "canceled by user"
        elif current.get("status") == "running":
            verdict, why = "failed", f"its worker died while running this file (pack {job_id})"
        else:
            verdict, why = "failed", (f"its pack {job_id} ended ({state or 'vanished'}) before running this file; "
                                      f"retry it: ifcflow retry {run_id}")
        conn.hset(store.steps_key(run_id), step_id, record(verdict, job_id, reason=why,
                                                          started_at=current.get("started_at"),
                                                          ended_at=utcformat(now())))
        changed = True
    return changed
