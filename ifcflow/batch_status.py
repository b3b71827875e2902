"""A batch's status: a row per sub-run (its file, state, failed step, duration) and the batch's state.

Read-only. Every sub-run of a batch has the same steps, so one server-side script reads, per sub-run, the run
record's ``canceled``, ifcflow's step records and each step job's status and times (no results, no metadata): a
batch of 500 runs x 3 steps is one round trip. The error text of failed sub-runs is read from their full status.

The batch's state: ``queued``/``running`` until every sub-run ended; then ``canceled`` when it was canceled,
``failed`` when any sub-run failed, ``canceled`` when any was canceled, ``succeeded_with_failures`` when any
ended so, and ``succeeded`` only when every sub-run succeeded.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field
from redis import Redis

from . import batch_record as batches
from .states import RunState, StepState
from .status import StatusReader

_RQ = {
    b"created": StepState.PENDING, b"deferred": StepState.PENDING, b"queued": StepState.QUEUED,
    b"scheduled": StepState.QUEUED, b"ready_to_enqueue": StepState.QUEUED, b"rate_limited": StepState.QUEUED,
    b"started": StepState.RUNNING, b"finished": StepState.SUCCEEDED, b"failed": StepState.FAILED,
    b"stopped": StepState.CANCELED, b"canceled": StepState.CANCELED,
}

_READ = """
local n = tonumber(ARGV[1])
local out = {}
for r = n + 2, #ARGV do
  local run = ARGV[r]
  out[#out + 1] = redis.call('HGET', 'ifcflow:run:' .. run, 'canceled') or ''
  out[#out + 1] = redis.call('HGETALL', 'ifcflow:run:' .. run .. ':steps')
  for s = 2, n + 1 do
    out[#out + 1] = redis.call('HMGET', 'rq:job:' .. run .. '-' .. ARGV[s], 'status', 'started_at', 'ended_at',
                               'ifcflow_cached')
  end
end
return out
"""


class BatchRun(BaseModel):
    run_id: str
    label: str
    inputs: dict[str, str]
    status: RunState
    failed_step: str | None = None
    error: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    duration: float | None = Field(default=None, description="seconds from its first step's start to its end")
    steps: dict[str, StepState] = Field(default_factory=dict)


class BatchStatus(BaseModel):
    """The JSON status document of a batch (``ifcflow status BATCH --json``; ``GET /batches/{id}``)."""

    batch_id: str
    pipeline: str
    file: str
    status: RunState
    created_at: str
    ended_at: str | None = None
    out_dir: str
    released: int = Field(description="sub-runs released to the queues so far (the fairness window)")
    counts: dict[str, int] = Field(description="sub-runs per state")
    runs: list[BatchRun]

    @property
    def terminal(self) -> bool:
        return self.status.terminal


def _iso(raw: bytes | None) -> str | None:
    if not raw:
        return None
    text = raw.decode()
    return text if text.endswith("Z") or "+" in text else text + "Z"


def _parse(at: str) -> datetime:
    return datetime.fromisoformat(at.replace("Z", "+00:00"))


def _step_state(job: list[Any], record: dict[str, Any] | None) -> StepState:
    state = _RQ.get(job[0], StepState.PENDING) if job[0] else None
    if state is None:  # the job vanished: what ifcflow recorded, else lost
        return StepState(record["status"]) if record else StepState.FAILED
    if record and state in (StepState.FAILED, StepState.CANCELED, StepState.SUCCEEDED):
        return StepState(record["status"])  # skipped/canceled at start, dead worker, canceled by user
    return StepState.CACHED if state == StepState.SUCCEEDED and job[3] else state  # (cache.MARK)


def run_state(states: dict[str, StepState], on_failure: dict[str, str], canceled: bool) -> RunState:
    """The run's state from its steps' states (as :func:`ifcflow.status.run_state`)."""
    if not all(s.terminal for s in states.values()):
        if canceled:
            return RunState.RUNNING
        started = any(s not in (StepState.PENDING, StepState.QUEUED) for s in states.values())
        return RunState.RUNNING if started else RunState.QUEUED
    if canceled:
        return RunState.CANCELED
    failed = [sid for sid, s in states.items() if s == StepState.FAILED]
    if any(on_failure.get(sid) != "continue" for sid in failed):
        return RunState.FAILED
    if any(s == StepState.CANCELED for s in states.values()):
        return RunState.CANCELED
    return RunState.SUCCEEDED_WITH_FAILURES if failed else RunState.SUCCEEDED


def _rows(conn: Redis, steps: list[batches.TemplateStep], run_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Per sub-run: step states, run state, first start and last end (one round trip)."""
    import json

    step_ids = [s.id for s in steps]
    on_failure = {s.id: s.on_failure for s in steps}
    reply: list[Any] = conn.register_script(_READ)(args=[len(step_ids), *step_ids, *run_ids]) if run_ids else []
    width = 2 + len(step_ids)
    rows: dict[str, dict[str, Any]] = {}
    for index, run_id in enumerate(run_ids):
        chunk = reply[index * width:(index + 1) * width]
        flat = chunk[1]
        records = {k.decode(): json.loads(v) for k, v in zip(flat[::2], flat[1::2])}
        states = {sid: _step_state(job, records.get(sid)) for sid, job in zip(step_ids, chunk[2:])}
        starts = [t for t in (_iso(job[1]) for job in chunk[2:]) if t]
        ends = [t for t in (_iso(job[2]) for job in chunk[2:]) if t]
        rows[run_id] = {"states": states, "status": run_state(states, on_failure, bool(chunk[0])),
                        "started_at": min(starts) if starts else None, "ended_at": max(ends) if ends else None}
    return rows


def run_states(conn: Redis, steps: list[batches.TemplateStep], run_ids: list[str]) -> dict[str, RunState]:
    """The state of each run in ``run_ids`` (all runs of one batch, whose steps are ``steps``)."""
    return {run_id: row["status"] for run_id, row in _rows(conn, steps, run_ids).items()}


def read(conn: Redis, batch_id: str, errors: bool = True) -> BatchStatus:
    """The batch's status document; ``errors`` reads the failing step's error of each failed sub-run."""
    record = batches.load(conn, batch_id)
    raw = conn.hmget(batches.key(batch_id), "released", "canceled")
    rows = _rows(conn, record.steps, [r.run_id for r in record.runs])
    now = datetime.now(UTC)
    runs = []
    for sub in record.runs:
        row = rows[sub.run_id]
        state: RunState = row["status"]
        ended = row["ended_at"] if state.terminal else None
        start = row["started_at"]
        duration = round(((_parse(ended) if ended else now) - _parse(start)).total_seconds(), 3) if start else None
        failed = next((sid for sid, s in row["states"].items() if s == StepState.FAILED), None)
        runs.append(BatchRun(run_id=sub.run_id, label=sub.label, inputs=sub.inputs, status=state,
                             failed_step=failed, started_at=start, ended_at=ended, duration=duration,
                             steps=row["states"]))
    if errors:
        for run in runs:
            if run.failed_step:
                step = StatusReader(conn, run.run_id).fetch().steps.get(run.failed_step)
                run.error = step.error if step else None
    counts = {s.value: 0 for s in RunState}
    for run in runs:
        counts[run.status.value] += 1
    state = batch_state([r.status for r in runs], raw[1] is not None)
    ends = [r.ended_at for r in runs if r.ended_at]
    return BatchStatus(batch_id=batch_id, pipeline=record.pipeline, file=record.file, status=state,
                       created_at=record.created_at, ended_at=max(ends) if ends and state.terminal else None,
                       out_dir=record.out_dir, released=int(raw[0] or 0), counts=counts, runs=runs)


def batch_state(states: list[RunState], canceled: bool) -> RunState:
    if not all(s.terminal for s in states):
        return RunState.QUEUED if all(s == RunState.QUEUED for s in states) and not canceled else RunState.RUNNING
    if canceled:
        return RunState.CANCELED
    for worst in (RunState.FAILED, RunState.CANCELED, RunState.SUCCEEDED_WITH_FAILURES):
        if worst in states:
            return worst
    return RunState.SUCCEEDED
