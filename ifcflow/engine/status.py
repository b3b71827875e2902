"""The status aggregator: every step and the whole run, from RQ's jobs and ifcflow's own records. Read-only.

One round trip (a read-only server-side script, see :mod:`ifcflow.engine.rqstore`) reads all steps. Reading never
writes: what RQ leaves undone (dependents of failed steps, vanished jobs, dead workers) is repaired by
:mod:`ifcflow.engine.reconcile`, under a per-run lock; until then the document already shows the truth (a vanished job
reads "failed: lost" at once). Many clients may poll one run: they cost one script call each, and they race
with nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field
from redis import Redis

from ..pipeline.plan import Plan, PlannedStep
from . import rqstore, store
from .states import RunState, StepState

_RQ_STATES = {
    "created": StepState.PENDING, "deferred": StepState.PENDING, "queued": StepState.QUEUED,
    "scheduled": StepState.QUEUED, "ready_to_enqueue": StepState.QUEUED, "rate_limited": StepState.QUEUED,
    "started": StepState.RUNNING, "finished": StepState.SUCCEEDED, "failed": StepState.FAILED,
    "stopped": StepState.CANCELED, "canceled": StepState.CANCELED,
}
LOST = "lost: its job vanished from Redis (expired, deleted, or Redis restarted without persistence)"
EXPIRED = "expired: its job's records were removed after the retention period; the state is the one recorded " \
          "when the run ended"
FAILING = "failing"
"""A job's ``meta`` key: the ``started_at`` of an attempt that failed for good, written by the step as it fails,
before RQ marks the job failed (a retried job starts again with another ``started_at``)."""
FAILING_TRACEBACK = "failing_traceback"
"""A job's ``meta`` key: the traceback of that attempt, shown until RQ records its own."""


def unknown_status(raw: str) -> str:
    return (f"unknown RQ job status '{raw}': ifcflow follows RQ {rqstore.RQ_VERSION} (see ifcflow/engine/rqstore.py); "
            "install the RQ version pinned in pyproject.toml")


class StepStatus(BaseModel):
    status: StepState
    service: str
    queue: str
    job_id: str
    needs: list[str] = Field(default_factory=list)
    after: list[str] = Field(default_factory=list, description=(
        "steps it starts after whatever their outcome (a clash step after the glb step whose geometry pass "
        "serves it)"))
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
    expired: bool = Field(default=False, description="its RQ job expired after the run ended; state as recorded")
    detail: str | None = Field(default=None, description="what the read noticed that no record says yet: the "
                               "step's worker stopped answering, or no worker listens on its queue (and what to do)")

    @property
    def message(self) -> str | None:
        """Why it failed, was skipped or canceled; else its result's summary ("3 clashes in 1 clash set")."""
        return self.error or (str((self.result or {}).get("message") or "") or None)


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

    @property
    def outputs(self) -> dict[str, dict[str, str]]:
        """step id -> output name -> path, of the steps that succeeded (or were served from the cache)."""
        return {step_id: step.outputs for step_id, step in self.steps.items()
                if step.status in (StepState.SUCCEEDED, StepState.CACHED)}


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start:
        return None
    begin = datetime.fromisoformat(start.replace("Z", "+00:00"))
    finish = datetime.fromisoformat(end.replace("Z", "+00:00")) if end else datetime.now(UTC)
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


def _succeeded(returned: Any) -> bool:
    """True unless the job returned a document saying it did not run (skipped or canceled at start)."""
    return not (isinstance(returned, dict) and (returned.get("skipped") or returned.get("canceled")))


def step_state(rq_status: str | None, record: dict[str, Any] | None, final: dict[str, Any] | None, *,
               returned: Any = None, cached: bool = False,
               exc_string: str | None = None) -> tuple[StepState, str | None, bool]:
    """(state, error, expired) of one step: THE state computation, for run status, batch rows, reports and the UI.

    ``rq_status`` is its RQ job's status (None: the job hash is gone), ``record`` ifcflow's record of the step,
    ``final`` the step's entry in the run's ``final`` record (written when the run ended: authoritative, so a run
    reads the same after its jobs were compacted, expired or pruned), ``returned`` the job's return value when
    known, ``cached`` whether it was served from the cache (a reader that skips results sees :data:`cache.MARK`).
    """
    if final:
        expired = rq_status is None
        return StepState(final["status"]), final.get("error") or (EXPIRED if expired and not record else None), \
            expired and not record
    if rq_status is None:
        if record:
            return StepState(record["status"]), record["reason"], False
        return StepState.FAILED, "lost", False
    if rq_status not in _RQ_STATES:
        return StepState.PENDING, unknown_status(rq_status), False
    state = _RQ_STATES[rq_status]
    error = None
    if record and (state in (StepState.FAILED, StepState.CANCELED)
                   or (state == StepState.SUCCEEDED and not _succeeded(returned))):
        state, error = StepState(record["status"]), record["reason"] or None
    elif state == StepState.SUCCEEDED and not _succeeded(returned) and isinstance(returned, dict):
        state = StepState.CANCELED if returned.get("canceled") else StepState.SKIPPED
        error = returned.get("message")
    if state == StepState.SUCCEEDED and (cached or (isinstance(returned, dict) and returned.get("cached"))):
        state = StepState.CACHED  # served from the cache; result["cached_from"] names the run
    if state == StepState.FAILED and error is None:
        error = error_summary(exc_string) or "failed"
    return state, error, False


def _state(job: rqstore.JobView, record: dict[str, Any] | None,
           final: dict[str, Any] | None) -> tuple[StepState, str | None, bool]:
    state = step_state(job.status, record, final, returned=job.return_value, exc_string=job.exc_string)
    if state[0] == StepState.RUNNING and job.started_at and job.meta.get(FAILING) == job.started_at:
        errors = job.meta.get("errors") or ["failed"]
        return StepState.FAILED, str(errors[-1]), False  # its last attempt failed; RQ is about to say so
    return state


def _step(planned: PlannedStep, job: rqstore.JobView, record: dict[str, Any] | None, final: dict[str, Any] | None,
          with_traceback: bool) -> StepStatus:
    if job.status is None and record and record.get("pack"):
        return _member(planned, record, final, with_traceback)
    state, error, expired = _state(job, record, final)
    meta = job.meta
    start, end = job.started_at, job.ended_at
    running = state == StepState.RUNNING
    ok = state in (StepState.SUCCEEDED, StepState.CACHED)
    attempts_done = len(meta.get("errors", [])) + (1 if running or ok else 0)
    returned = job.return_value
    return _built(StepStatus, dict(  # values are built here, already of the right types
        status=state, service=planned.service, queue=planned.queue, job_id=planned.job_id, needs=planned.needs,
        after=planned.after,
        worker=job.worker_name, enqueued_at=job.enqueued_at, started_at=start,
        ended_at=None if running else end, duration=_seconds(start, None if running else end) if start else None,
        attempt=attempts_done, attempts=planned.attempts, progress=meta.get("progress"),
        outputs=planned.outputs, result=returned if ok and isinstance(returned, dict) else None,
        error=error, errors=list(meta.get("errors", [])),
        traceback=(job.exc_string or (meta.get(FAILING_TRACEBACK) if state == StepState.FAILED else None))
        if with_traceback else None,
        expired=expired, detail=None,
    ))


def _member(planned: PlannedStep, record: dict[str, Any], final: dict[str, Any] | None,
            with_traceback: bool) -> StepStatus:
    """A step run by a batch's pack (no RQ job of its own, see :mod:`ifcflow.engine.packs`): its record says all."""
    state, error, _ = step_state(None, record, final)
    running = state == StepState.RUNNING
    start, end = record.get("started_at"), None if running else record.get("ended_at")
    returned = record.get("result")
    ok = state in (StepState.SUCCEEDED, StepState.CACHED)
    return _built(StepStatus, dict(
        status=state, service=planned.service, queue=planned.queue, job_id=planned.job_id, needs=planned.needs,
        after=planned.after, worker=record.get("worker"), enqueued_at=record.get("enqueued_at"), started_at=start,
        ended_at=end, duration=_seconds(start, end) if start else None,
        attempt=1 if start else 0, attempts=planned.attempts, progress=None, outputs=planned.outputs,
        result=returned if ok and isinstance(returned, dict) else None, error=error,
        errors=list(record.get("errors") or []), traceback=record.get("traceback") if with_traceback else None,
        expired=False, detail=None,
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
    return state_of_run({sid: s.status for sid, s in steps.items()}, {s.id: s.on_failure for s in plan.steps},
                        canceled)


def state_of_run(states: Mapping[str, StepState], on_failure: Mapping[str, str], canceled: bool) -> RunState:
    """THE run state from its steps' states (for run status and batch rows alike)."""
    values = list(states.values())
    if not all(s.terminal for s in values):
        if canceled:
            return RunState.RUNNING
        started = any(s not in (StepState.PENDING, StepState.QUEUED) for s in values)
        return RunState.RUNNING if started else RunState.QUEUED
    if canceled:
        return RunState.CANCELED
    failed = [sid for sid, s in states.items() if s == StepState.FAILED]
    if any(on_failure.get(sid, "stop") != "continue" for sid in failed):
        return RunState.FAILED
    if any(s == StepState.CANCELED for s in values):
        return RunState.CANCELED
    return RunState.SUCCEEDED_WITH_FAILURES if failed else RunState.SUCCEEDED


def with_notes(conn: Redis, steps: dict[str, StepStatus], now: float | None = None,
               unserved: bool = True) -> dict[str, StepStatus]:
    """``steps`` with the :attr:`StepStatus.detail` of those that run on a worker that stopped answering, or wait
    in a queue no worker listens to (read-only: the reconciler acts on the first, a started worker on the second;
    ``unserved=False`` leaves the second out: a local run's own workers listen on every queue once started)."""
    running = {s.job_id: s.queue for s in steps.values() if s.status == StepState.RUNNING}
    waiting = {s.queue for s in steps.values() if s.status == StepState.QUEUED} if unserved else set()
    if not running and not waiting:
        return steps
    moment = time.time() if now is None else now
    seen = rqstore.liveness(conn, running, waiting, moment)
    noted = dict(steps)
    for step_id, step in steps.items():
        detail = None
        if step.status == StepState.RUNNING and step.job_id in seen.stalled:
            beat = seen.heartbeats.get(step.job_id) or step.started_at
            ago = f" {_seconds(beat, None):.0f} s ago" if beat else ""
            detail = (f"worker {step.worker or '?'} stopped answering{ago}; a worker or `ifcflow reconcile` will "
                      "fail or retry it")
        elif step.status == StepState.QUEUED and step.queue in seen.unserved:
            detail = f"no worker listens on queue {step.queue}; start one: ifcflow worker {step.queue}"
        if detail:
            noted[step_id] = step.model_copy(update={"detail": detail})
    return noted


class StatusReader:
    """Reads a run's status; keeps the plan, so polling costs one round trip. Never writes."""

    def __init__(self, conn: Redis, run_id: str, plan: Plan | None = None, notes: bool = True,
                 unserved: bool = True):
        self.conn = conn
        self.notes = notes
        """Add each unfinished step's :attr:`StepStatus.detail` (a second read when a step waits or runs)."""
        self.unserved = unserved
        """Note queued steps no worker listens for (False in a local run: its workers are starting)."""
        self.run_id = run_id
        self.plan = plan or store.load_plan(conn, run_id)
        self._bulk = rqstore.BulkReader(conn)
        self._job_ids = [s.job_id for s in self.plan.steps]
        self._cache: dict[str, tuple[Any, StepStatus]] = {}
        self.record: dict[str, Any] = {}

    def fetch(self, with_traceback: bool = False) -> RunStatus:
        """Read every step in one round trip, one read-only server-side script."""
        run_raw, steps_raw, raw = self._bulk.read_raw((store.run_key(self.run_id), store.steps_key(self.run_id)),
                                                      self._job_ids)
        run = store.parse_record(run_raw)
        self.record = run
        records = store.step_records(steps_raw)
        final: dict[str, Any] = json.loads(run["final"]) if run.get("final") else {}
        steps = {}
        cache = self._cache
        for step, (job, results) in zip(self.plan.steps, raw):
            # a poller re-reads mostly unchanged steps: equal raw replies give equal documents (but a running
            # step's duration grows)
            key = (job, results[0][0] if results else None, steps_raw.get(step.id.encode()), run.get("final"),
                   with_traceback)
            hit = cache.get(step.id)
            if hit is not None and hit[0] == key:
                steps[step.id] = hit[1]
                continue
            built = _step(step, self._bulk.decode(step.job_id, job, results), records.get(step.id),
                          final.get(step.id), with_traceback)
            steps[step.id] = built
            if built.status != StepState.RUNNING:
                cache[step.id] = (key, built)
        if self.notes:
            steps = with_notes(self.conn, steps, unserved=self.unserved)
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

    def read(self, with_traceback: bool = False) -> RunStatus:
        """The run's status (the same as :meth:`fetch`; kept for callers that poll)."""
        return self.fetch(with_traceback)


def read(conn: Redis, run_id: str, with_traceback: bool = False) -> RunStatus:
    return StatusReader(conn, run_id).read(with_traceback)


def wait(reader: StatusReader, timeout: float | None = None, on_update: Any = None,
         first_delay: float = 0.05, max_delay: float = 2.0, sleep: Any = time.sleep) -> RunStatus:
    """Poll with exponential backoff (capped at ``max_delay``) until the run ends or ``timeout`` passes.

    ``sleep(seconds)`` may return early (``ifcflow.engine.changes.Waiter.sleep`` does when the run is announced)."""
    delay = first_delay
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        status = reader.read()
        if on_update is not None:
            on_update(status)
        if status.terminal or (deadline is not None and time.monotonic() >= deadline):
            return status
        sleep(delay if deadline is None else max(0.0, min(delay, deadline - time.monotonic())))
        delay = min(delay * 1.25, max_delay)
