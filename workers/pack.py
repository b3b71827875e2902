"""A pack job: the sub-runs of a batch it holds, one after the other (see :mod:`ifcflow.engine.packs`).

For each member: one script claims it (its step record still ``queued`` in this pack: it becomes ``running``,
unless its run was canceled: then ``canceled``) and reads where its files are kept; the step runs through the
usual runtime (atomic outputs, cache, history record) under its own timeout; its record gets the outcome; the
reconciler ends its run (final state, ``status.json``, history, announcement). A member's failure is its own: the
pack goes on with the next. Only the work horse dying ends the pack early; its worker then salvages it.
"""

from __future__ import annotations

import importlib
import signal
import time
import traceback
from typing import Any

from redis import Redis
from rq import get_current_job
from rq.job import Job
from rq.timeouts import JobTimeoutException, UnixSignalDeathPenalty
from rq.utils import now, utcformat

from ifcflow.engine import packs, reconcile, staging, store
from ifcflow.errors import StepError
from ifcflow.pipeline.plan import PlannedStep
from ifcflow.services import SERVICES

from .runtime import execute

_CLAIM = """
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then return {0} end
local record = cjson.decode(raw)
if record['status'] ~= 'queued' or record['pack'] ~= ARGV[2] then return {0} end
local run = redis.call('HMGET', KEYS[1], 'canceled', 'storage', 'plan')
if run[1] then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
  return {2}
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return {1, run[2] or false, run[3] or false}
"""
"""Claim a member: 0 not this pack's to run (canceled, retried or moved meanwhile), 2 its run was canceled (its
record says so now), 1 claimed (``running``; the run's storage field follows)."""


def run(members: list[list[Any]]) -> dict[str, Any]:
    """The job function of a pack: ``members`` are ``[run id, step]`` pairs."""
    job = get_current_job()
    assert job is not None, "a pack runs as an RQ job"
    counts = {"succeeded": 0, "failed": 0, "skipped": 0}
    for run_id, step in members:
        counts[_member(job, run_id, PlannedStep.model_validate(step))] += 1
    message = ", ".join(f"{n} {what}" for what, n in counts.items() if n) or "nothing to run"
    return {"success": True, "message": f"{len(members)} files: {message}", "data": counts, "outputs": {}}


def _member(job: Job, run_id: str, planned: PlannedStep) -> str:
    conn: Redis = job.connection
    began = utcformat(now())
    worker = job.worker_name
    running = packs.record("running", job.id, started_at=began, worker=worker)
    canceled = packs.record("canceled", job.id, reason="canceled by user", ended_at=began)
    answer = conn.register_script(_CLAIM)(keys=[store.run_key(run_id), store.steps_key(run_id)],
                                          args=[planned.id, job.id, running, canceled])
    if answer[0] != 1:
        if answer[0] == 2:
            reconcile.run(conn, run_id)
        return "skipped"
    stored = answer[1].decode() if isinstance(answer[1], bytes) else answer[1]
    state, fields = "failed", dict[str, Any]()
    try:
        result = _perform(conn, run_id, planned, staging.from_field(stored) if stored else None)
        state = "cached" if result.get("cached_from") else "succeeded"
        fields = {"result": result}
    except BaseException as exc:  # noqa: BLE001 - a member's failure is its own; the pack goes on
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        fields = {"reason": _message(exc), "errors": [_message(exc)]}
        if not isinstance(exc, StepError):
            fields["traceback"] = "".join(traceback.format_exception(exc))
    conn.hset(store.steps_key(run_id), planned.id, packs.record(
        state, job.id, started_at=began, worker=worker, ended_at=utcformat(now()), **fields))
    reconcile.run(conn, run_id, plan=store.unpack_plan(answer[2]) if answer[2] else None)
    return "succeeded" if state != "failed" else "failed"


def _perform(conn: Redis, run_id: str, planned: PlannedStep, files: staging.RunFiles | None) -> dict[str, Any]:
    """The member's step under its own timeout; the pack's own alarm (its timeout) is set again afterwards."""
    service = SERVICES[planned.service]
    module_name, _, _ = service.func.rpartition(".")
    try:
        body = importlib.import_module(module_name).body
    except ImportError as exc:
        raise StepError(f"service {service.name} is not available on this worker: {exc} (install ifcflow with "
                        "its dependencies there: pip install ifcflow)") from None
    left = signal.alarm(0)
    started = time.monotonic()
    try:
        with UnixSignalDeathPenalty(planned.timeout, JobTimeoutException):
            return execute(body, planned, run_id, files=files, conn=conn)
    finally:
        if left:
            signal.alarm(max(1, left - int(time.monotonic() - started)))


def _message(exc: BaseException) -> str:
    if isinstance(exc, StepError):
        return str(exc)
    return "".join(traceback.format_exception_only(exc)).strip()

