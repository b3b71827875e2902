"""Trimming what a finished run keeps in Redis to what status and reports read (rq 3.0 storage).

RQ keeps each job's result in a stream (``rq:results:<job id>``); a Redis stream costs about 4.7 KB even for one
small entry, more than everything else a finished step keeps. When a run ends (:func:`ifcflow.engine.lifetimes.end_run`,
once per run), every *finished* job of it is compacted:

- its latest return value moves into the job hash's ``result`` field (RQ's own earlier place for it, which
  ``Job.result`` still reads), and the stream is deleted; the status reader reads ``result`` when the stream is
  gone;
- its ``data`` (the pickled call with the whole step document) is replaced by the bare function name: nothing reads
  a finished job's arguments, and ``Job.fetch`` still works; so are empty and dependency fields, and the job's
  dependency and dependents sets.

Failed jobs keep their streams (the tracebacks are in them). A finished step then costs about 2.5 KB instead of
8.5–9.5 KB (see ``bench/README.md``).
"""

from __future__ import annotations

import zlib
from base64 import b64decode
from collections.abc import Callable

from redis import Redis
from redis.client import Pipeline
from rq.job import Job
from rq.serializers import DefaultSerializer

from ..errors import RunNotFound
from ..pipeline.plan import Plan
from . import store

_UNUSED = ("group_id", "success_callback_name", "failure_callback_name", "stopped_callback_name", "last_heartbeat",
           "enqueue_at_front", "allow_dependency_failures", "dependency_id", "dependency_ids")
"""Job hash fields nothing reads once a job finished (RQ restores a job without them)."""


def compact(conn: Redis, run_id: str, plan: Plan | None = None, gates: list[str] | None = None,
            also: Callable[[Pipeline], None] | None = None) -> int:
    """Compact the finished jobs of run ``run_id`` (and its gates); returns how many were compacted. A caller that
    has the ``plan`` and the ``gates`` (job ids) saves reading them; ``also(pipe)`` queues more writes into the
    pipeline of the compaction's writes (one round trip to read, one to write)."""
    if plan is None:
        try:
            plan = store.load_plan(conn, run_id)
        except RunNotFound:
            return 0
    steps = {s.job_id: s.func for s in plan.steps}
    gates = store.gate_ids(conn, run_id) if gates is None else gates
    ids = [*steps, *gates]
    with conn.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(f"rq:job:{job_id}", "status")
            pipe.xrevrange(f"rq:results:{job_id}", count=1)
        replies = pipe.execute()
    done = 0
    with conn.pipeline(transaction=False) as pipe:
        for index, job_id in enumerate(ids):
            status, entries = replies[2 * index], replies[2 * index + 1]
            if status != b"finished":
                continue
            func = steps.get(job_id, "ifcflow.engine.enqueue.gate")
            pipe.hset(f"rq:job:{job_id}", "data", zlib.compress(DefaultSerializer.dumps((func, None, (), {}))))
            value = entries[0][1].get(b"return_value") if entries else None
            if value:
                pipe.hset(f"rq:job:{job_id}", "result", b64decode(value))
            pipe.hdel(f"rq:job:{job_id}", *_UNUSED)
            pipe.delete(f"rq:results:{job_id}", f"{Job.redis_job_namespace_prefix}:{job_id}:dependencies",
                        Job.dependents_key_for(job_id))
            done += 1
        if also is not None:
            also(pipe)
        pipe.execute()
    return done
