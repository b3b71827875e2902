"""The status aggregator: every step and the whole run, from RQ's jobs and ifcflow's own records.

One round trip (a server-side script) reads all steps. The reader also repairs what RQ leaves undone (see
:mod:`ifcflow.propagate`): dependents of failed steps are skipped, vanished jobs are reported lost, and jobs of
dead workers are failed, so a run always reaches a true terminal state.
"""

from __future__ import annotations

import pickle
import time
import zlib
from base64 import b64decode
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, Field
from redis import Redis

from . import store
from .plan import Plan, PlannedStep
from .states import RunState, StepState

_FIELDS = ("status", "enqueued_at", "started_at", "ended_at", "worker_name", "meta", "retries_left")
_RQ_STATES = {
    "created": StepState.PENDING, "deferred": StepState.PENDING, "queued": StepState.QUEUED,
    "scheduled": StepState.QUEUED, "ready_to_enqueue": StepState.QUEUED, "rate_limited": StepState.QUEUED,
    "started": StepState.RUNNING, "finished": StepState.SUCCEEDED, "failed": StepState.FAILED,
    "stopped": StepState.CANCELED, "canceled": StepState.CANCELED,
}


_NEEDS_CARE = frozenset({StepState.FAILED, StepState.SKIPPED, StepState.CANCELED, StepState.RUNNING})


def _needs_care(step: StepStatus) -> bool:
    """Failed, skipped, canceled or running steps may need repairs; so do queued ones never pushed to a queue
    (RQ's ``ready_to_enqueue``: RQ concedes a contended enqueue and leaves it to maintenance, minutes later)."""
    return step.status in _NEEDS_CARE or (step.status == StepState.QUEUED and step.enqueued_at is None)


class StepStatus(BaseModel):
    status: StepState
    service: str
    queue: str
    job_id: str
    needs: list[str] = Field(default_factory=list)
    worker: str | None = None
    enqueued_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    duration: float | None = Field(default=None, description="seconds from start to end (or to now)")
    attempt: int = 0
    attempts: int = 1
    progress: dict[str, Any] | None = None
    outputs: dict[str, str] = Field(default_factory=dict, description="planned output paths (written on success)")
    result: dict[str, Any] | None = Field(default=None, description="the step's result document on success")
    error: str | None = Field(default=None, description="why it failed, was skipped or canceled")
    errors: list[str] = Field(default_factory=list, description="the error of every failed attempt")
    traceback: str | None = None


class RunStatus(BaseModel):
    """The JSON status document: a stable contract, also served by the HTTP API."""

    run_id: str
    pipeline: str
    file: str
    status: RunState
    created_at: str
    ended_at: str | None = None
    out_dir: str
    counts: dict[str, int]
    steps: dict[str, StepStatus]

    @property
    def terminal(self) -> bool:
        return self.status.terminal


def _iso(raw: bytes | None) -> str | None:
    if not raw:
        return None
    text = raw.decode()
    return text if text.endswith("Z") or "+" in text else text + "Z"


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start:
        return None
    begin = datetime.fromisoformat(start.replace("Z", "+00:00"))
    finish = datetime.fromisoformat(end.replace("Z", "+00:00")) if end else datetime.now(timezone.utc)
    return round((finish - begin).total_seconds(), 3)


def error_summary(exc_string: str | None) -> str | None:
    """The exception's message from a traceback: ``StepError: x`` -> ``x``, ``KeyError: 'a'`` stays."""
    if not exc_string:
        return None
    lines = [line for line in exc_string.strip().splitlines() if line.strip()]
    last = lines[-1].strip() if lines else exc_string
    head, sep, message = last.partition(": ")
    if sep and " " not in head:
        name = head.rsplit(".", 1)[-1]
        return message if name == "StepError" else f"{name}: {message}"
    return last


def _results(entries: list[Any]) -> tuple[Any, str | None]:
    """(return value, exc string) of the newest result in an ``rq:results:<id>`` stream."""
    if not entries:
        return None, None
    payload = _pairs(entries[0][1])
    if entries[0][0] == b"compacted":  # the return value kept in the job hash (see ifcflow.compact)
        return pickle.loads(payload[b"result"]), None
    value = payload.get(b"return_value")
    exc = payload.get(b"exc_string")
    returned = pickle.loads(b64decode(value)) if value else None
    return returned, zlib.decompress(b64decode(exc)).decode() if exc else None


def _succeeded(returned: Any) -> bool:
    """True unless the job returned a document saying it did not run (skipped or canceled at start)."""
    return not (isinstance(returned, dict) and (returned.get("skipped") or returned.get("canceled")))


def _step(planned: PlannedStep, job: list[bytes | None], results: list[Any], record: dict[str, Any] | None,
          with_traceback: bool) -> StepStatus:
    status_raw, enqueued, started, ended, worker, meta_raw, retries_left = (list(job) + [None] * 7)[:7]
    meta: dict[str, Any] = pickle.loads(meta_raw) if meta_raw else {}
    returned, exc = _results(results)
    state = _RQ_STATES.get(status_raw.decode(), StepState.PENDING) if status_raw else None
    error = None
    if state is None:
        state, error = (StepState(record["status"]), record["reason"]) if record else (StepState.FAILED, "lost")
    elif record and (state in (StepState.FAILED, StepState.CANCELED)
                     or (state == StepState.SUCCEEDED and not _succeeded(returned))):
        state, error = StepState(record["status"]), record["reason"] or None
    elif state == StepState.SUCCEEDED and not _succeeded(returned) and isinstance(returned, dict):
        state = StepState.CANCELED if returned.get("canceled") else StepState.SKIPPED
        error = returned.get("message")
    if state == StepState.SUCCEEDED and isinstance(returned, dict) and returned.get("cached"):
        state = StepState.CACHED  # served from the cache; result["cached_from"] names the run
    if state == StepState.FAILED and error is None:
        error = error_summary(exc) or "failed"
    start, end = _iso(started), _iso(ended)
    running = state == StepState.RUNNING
    ok = state in (StepState.SUCCEEDED, StepState.CACHED)
    attempts_done = len(meta.get("errors", [])) + (1 if running or ok else 0)
    return _built(StepStatus, dict(  # values are built here, already of the right types
        status=state, service=planned.service, queue=planned.queue, job_id=planned.job_id, needs=planned.needs,
        worker=worker.decode() if worker else None, enqueued_at=_iso(enqueued), started_at=start,
        ended_at=None if running else end, duration=_seconds(start, None if running else end) if start else None,
        attempt=attempts_done, attempts=planned.attempts, progress=meta.get("progress"),
        outputs=planned.outputs, result=returned if ok and isinstance(returned, dict) else None,
        error=error, errors=list(meta.get("errors", [])), traceback=exc if with_traceback else None,
    ))


def _built(cls: type[StepStatus], values: dict[str, Any]) -> StepStatus:
    """``cls.model_construct(**values)`` for values that set every field, without its per-field overhead
    (it matters at 1,000 steps per poll)."""
    obj = cls.__new__(cls)
    object.__setattr__(obj, "__dict__", values)
    object.__setattr__(obj, "__pydantic_fields_set__", set(values))
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


def run_state(plan: Plan, steps: dict[str, StepStatus], canceled: bool) -> RunState:
    states = [s.status for s in steps.values()]
    if not all(s.terminal for s in states):
        if canceled:
            return RunState.RUNNING
        started = any(s not in (StepState.PENDING, StepState.QUEUED) for s in states)
        return RunState.RUNNING if started else RunState.QUEUED
    if canceled:
        return RunState.CANCELED
    failed = [step for step in plan.steps if steps[step.id].status == StepState.FAILED]
    if any(step.on_failure != "continue" for step in failed):
        return RunState.FAILED
    if any(s == StepState.CANCELED for s in states):
        return RunState.CANCELED
    return RunState.SUCCEEDED_WITH_FAILURES if failed else RunState.SUCCEEDED


_READ_ALL = """
local out = {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
for i = 3, #KEYS do
  local id = KEYS[i]
  local state = redis.call('HGET', 'rq:job:' .. id, 'status')
  local job = {state}
  if state == 'deferred' or state == 'created' then
    job = {state}  -- waiting: nothing else to report, keep the reply small
  elseif state then
    job = redis.call('HMGET', 'rq:job:' .. id, unpack(ARGV))
  end
  out[#out + 1] = job
  if job[1] == 'finished' or job[1] == 'failed' then
    local results = redis.call('XREVRANGE', 'rq:results:' .. id, '+', '-', 'COUNT', 1)
    if #results == 0 and job[1] == 'finished' then  -- compacted when its run ended (ifcflow.compact)
      local kept = redis.call('HGET', 'rq:job:' .. id, 'result')
      if kept then results = {{'compacted', {'result', kept}}} end
    end
    out[#out + 1] = results
  else
    out[#out + 1] = {}
  end
end
return out
"""


def _pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2]))


class StatusReader:
    """Reads a run's status; keeps the plan, so polling costs one round trip (plus repairs when needed)."""

    def __init__(self, conn: Redis, run_id: str, plan: Plan | None = None):
        self.conn = conn
        self.run_id = run_id
        self.plan = plan or store.load_plan(conn, run_id)
        self._script = conn.register_script(_READ_ALL)
        self.record: dict[str, Any] = {}

    def fetch(self, with_traceback: bool = False) -> RunStatus:
        """Read every step in one round trip, one server-side script (no repairs)."""
        keys = [store.run_key(self.run_id), store.steps_key(self.run_id), *(s.job_id for s in self.plan.steps)]
        replies = self._script(keys=keys, args=list(_FIELDS))
        run = store.parse_record(_pairs(replies[0]))
        self.record = run
        records = store.step_records(_pairs(replies[1]))
        steps = {
            step.id: _step(step, replies[2 + 2 * i], replies[3 + 2 * i], records.get(step.id), with_traceback)
            for i, step in enumerate(self.plan.steps)
        }
        state = run_state(self.plan, steps, "canceled" in run)
        ends = [s.ended_at for s in steps.values() if s.ended_at]
        counts = {s.value: 0 for s in StepState}
        for step_status in steps.values():
            counts[step_status.status.value] += 1
        return RunStatus(
            run_id=self.run_id, pipeline=self.plan.pipeline, file=self.plan.file, status=state,
            created_at=self.plan.created_at, ended_at=(max(ends) if ends else None) if state.terminal else None,
            out_dir=self.plan.out_dir, counts=counts, steps=steps,
        )

    def read(self, with_traceback: bool = False, repair: bool = True) -> RunStatus:
        """The run's status, after repairing what RQ leaves undone (when ``repair``)."""
        status = self.fetch(with_traceback)
        if (repair and not status.terminal and any(_needs_care(s) for s in status.steps.values())
                and not self.conn.exists(f"{store.run_key(self.run_id)}:retrying")):
            from .propagate import repair as do_repair

            if do_repair(self.conn, self.plan, status):
                status = self.fetch(with_traceback)
        if repair and status.terminal and self.record and "ended_at" not in self.record:
            if store.finish_run(self.conn, self.run_id, int(self.record.get("ttl", store.DEFAULT_TTL))):
                _run_ended(self.conn, self.run_id, status)
        return status


def _run_ended(conn: Redis, run_id: str, status: RunStatus) -> None:
    """RUN-END HOOK: called once per run end, by the process that recorded it (webhook delivery)."""
    from .api.webhook import on_run_end

    try:
        on_run_end(conn, run_id, status)
    except Exception:  # a notice must never break a status read; the delivery job has its own retries
        import traceback

        traceback.print_exc()


def read(conn: Redis, run_id: str, with_traceback: bool = False) -> RunStatus:
    return StatusReader(conn, run_id).read(with_traceback)


def wait(reader: StatusReader, timeout: float | None = None, on_update: Any = None,
         first_delay: float = 0.05, max_delay: float = 2.0) -> RunStatus:
    """Poll with exponential backoff (capped at ``max_delay``) until the run ends or ``timeout`` passes."""
    delay = first_delay
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        status = reader.read()
        if on_update is not None:
            on_update(status)
        if status.terminal or (deadline is not None and time.monotonic() >= deadline):
            return status
        time.sleep(delay if deadline is None else max(0.0, min(delay, deadline - time.monotonic())))
        delay = min(delay * 1.25, max_delay)
