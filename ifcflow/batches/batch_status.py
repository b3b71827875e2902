"""A batch's status: a row per sub-run (its file, state, failed step, duration) and the batch's state.

Read-only. The rows come from :func:`ifcflow.batches.batch.run_rows`: the row the batch recorded when a sub-run ended
(so a sub-run pruned or expired later keeps its final state here), else the one state computation of
:mod:`ifcflow.engine.status` over the sub-run's records (:mod:`ifcflow.engine.runstates`, one round trip for all of them).

The batch's state: ``queued``/``running`` until every sub-run ended; then ``canceled`` when it was canceled,
``failed`` when any sub-run failed, ``canceled`` when any was canceled, ``succeeded_with_failures`` when any
ended so, and ``succeeded`` only when every sub-run succeeded.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, Field
from redis import Redis

from ..engine.runstates import RunRow
from ..engine.states import RunState, StepState
from ..engine.status import StatusReader
from . import batch as batches


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


def _parse(at: str) -> datetime:
    return datetime.fromisoformat(at.replace("Z", "+00:00"))


def read(conn: Redis, batch_id: str, errors: bool = True) -> BatchStatus:
    """The batch's status document; ``errors`` reads the failing step's error of each failed sub-run."""
    record = batches.load(conn, batch_id)
    raw = conn.hmget(batches.key(batch_id), "released", "canceled")
    rows = batches.run_rows(conn, batch_id, record.steps, [r.run_id for r in record.runs])
    now = datetime.now(UTC)
    runs = []
    for sub in record.runs:
        row: RunRow = rows[sub.run_id]
        start, ended = row.started_at, row.ended_at
        duration = round(((_parse(ended) if ended else now) - _parse(start)).total_seconds(), 3) if start else None
        failed = row.failed_step
        runs.append(BatchRun(run_id=sub.run_id, label=sub.label, inputs=sub.inputs, status=row.status,
                             failed_step=failed, started_at=start, ended_at=ended, duration=duration,
                             steps=row.steps, error=row.errors.get(failed) if failed else None))
    if errors:  # the full error text (a recorded row or a final record has it already)
        for run in runs:
            if run.failed_step and not run.error and rows[run.run_id].exists:
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
