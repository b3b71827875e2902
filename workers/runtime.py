"""What every step job does around its service: condition check, atomic outputs, progress, results, failure.

A service module defines ``body(options, outputs, progress) -> Outcome`` and exposes ``run = step(body)``;
RQ calls ``workers.<service>.run(step=..., run_id=...)``.

- Outputs are written into a private temporary folder inside the step's run folder and moved into place only
  when the body returns, so a failed step leaves no half-written file.
- Progress goes to ``job.meta["progress"]`` (at most a few writes a second, each with its time ``at``); during
  long library calls a ticker process (:mod:`workers.ticker`) rewrites the note every few seconds.
- When the step ends badly (final failure, skipped at start) or some steps of the run were skipped, the run is
  reconciled at once from here, with this step's state as it is about to be recorded (see
  :mod:`ifcflow.engine.reconcile`); ``ifcflow worker`` reconciles again once RQ has recorded it.
"""

from __future__ import annotations

import os
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from redis import Redis
from rq import get_current_job
from rq.job import Job
from rq.timeouts import JobTimeoutException

from ifcflow.engine import cache, events, policy, reconcile, staging, store
from ifcflow.engine.enqueue import DECIDES, LEAF
from ifcflow.engine.states import StepState
from ifcflow.engine.status import FAILING, FAILING_TRACEBACK, StatusReader
from ifcflow.errors import StepError, StorageError
from ifcflow.pipeline import durations
from ifcflow.pipeline.plan import PlannedStep
from ifcflow.services import SERVICES, Options

from .ticker import Ticker

O = TypeVar("O", bound=Options)  # noqa: E741 - O for Options, as in the signatures
UNDECIDED_WAIT = 10.0
"""Seconds a step whose condition is not decided yet waits for its needs' ends to be recorded, then fails."""


PHASES = 10
"""A progress call with a ``total`` up to this names one of a few phases: never throttled."""


@dataclass
class Outcome:
    """What a service body returns: a one-line message and small data (counts, not reports)."""

    message: str
    data: dict[str, Any] = field(default_factory=dict)


class Progress:
    """``progress(done, total, message)``: stored in ``job.meta['progress']``, throttled to one write per
    ``interval``, except a call that names a phase (``total`` of at most :data:`PHASES`, e.g. ``(1, 4,
    "quantifying")``) or ``force``: those are always written, so the status names the phase the step is in."""

    def __init__(self, job: Job | None, interval: float = 0.5):
        self.job = job
        self.interval = interval
        self.last = 0.0

    def __call__(self, done: float, total: float | None = None, message: str = "", force: bool = False) -> None:
        if self.job is None:
            return
        now = time.monotonic()
        if not force and now - self.last < self.interval and (total is None or total > PHASES):
            return
        self.last = now
        percent = round(100.0 * done / total, 1) if total else None
        self.job.meta["progress"] = {"done": done, "total": total, "percent": percent, "message": message,
                                     "at": time.time()}
        self.job.save_meta()


Body = Callable[[Any, dict[str, Path], Progress], Outcome]


def step(body: Body) -> Callable[..., dict[str, Any]]:
    """Wrap a service body into the RQ job function ``run(step, run_id)``."""

    def run(step: dict[str, Any], run_id: str) -> dict[str, Any]:
        return execute(body, PlannedStep.model_validate(step), run_id)

    run.__doc__ = body.__doc__
    run.__module__ = body.__module__
    return run


def execute(body: Body, planned: PlannedStep, run_id: str, job: Job | None = None,
            files: staging.RunFiles | None = None, *, conn: Redis | None = None) -> dict[str, Any]:
    """Run one step. In its own RQ job (``job``, else the current one); or, given ``conn``, as a member of a pack
    (:mod:`workers.pack`, which checked the run's canceled mark and fetches ``files``): no job of its own, so no
    progress notes, but the cache and the history record as usual."""
    if conn is None:
        job = job or get_current_job()
    began = time.monotonic()
    canceled, stored_in = job.connection.hmget(store.run_key(run_id), "canceled", staging.FIELD) if job else (None, None)
    if job is not None and canceled is not None:
        store.record_steps(job.connection, run_id, {planned.id: ("canceled", "canceled by user")})
        return {"success": False, "canceled": True, "message": "canceled by user", "data": {}, "outputs": {}}
    if job is not None and (planned.needs or planned.condition == "failure()"):
        skipped = _skip_reason(job, planned, run_id)
        if skipped:
            return {"success": False, "skipped": True, "message": skipped, "data": {}, "outputs": {}}
    folder, local = None, planned
    try:  # a run kept in object storage: the step runs on a private local copy of its files (see ifcflow.engine.staging)
        if files is None and stored_in:  # (the run's record, read above with its canceled mark)
            files = staging.from_field(stored_in.decode() if isinstance(stored_in, bytes) else stored_in)
        if files is not None:
            folder = staging.step_folder(files, planned.job_id)
            local = files.localize(planned, folder)
    except (StorageError, StepError, OSError) as exc:  # store unreachable, input missing: fail with the cause
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        error = StepError(f"could not fetch the step's inputs: {exc}")
        if job is not None:
            _failed(job, planned, run_id, error)
        raise error from None
    try:
        return _execute(body, local, planned, run_id, job, files, began, conn or (job.connection if job else None))
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def _execute(body: Body, planned: PlannedStep, logical: PlannedStep, run_id: str, job: Job | None,
             files: staging.RunFiles | None, began: float, conn: Redis | None) -> dict[str, Any]:
    """Run the step on ``planned`` (local paths); ``logical`` is the plan's step (the same unless ``files``)."""
    options = SERVICES[planned.service].options.model_validate(planned.options)
    workdir = Path(planned.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    use_cache = conn is not None and planned.cache and cache.enabled()
    cache_key = cache.key(planned, options, conn) if conn is not None and use_cache else None
    if conn is not None and cache_key and (hit := cache.serve(conn, cache_key, logical, files)) is not None:
        if files is not None:
            hit["input_objects"] = {sub: staging.facts(files.storage, o) for sub, o in files.fetched.items()}
        if job is not None:
            conn.hset(job.key, cache.MARK, hit["cached_from"]["run_id"])
            if _decides(job, run_id):
                _release_waiting(job, planned, run_id)
        events.step_ended(conn, run_id, planned, hit, time.monotonic() - began)
        return hit  # an identical step succeeded before and its outputs are intact: they are linked in, not made
    partial = workdir / f".partial-{job.id if job else logical.job_id}-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    temp = {name: partial / Path(path).relative_to(workdir) for name, path in planned.outputs.items()}
    for path in temp.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    progress = Progress(job)
    ticker = Ticker(job, run_id).start() if job is not None else None
    try:
        try:
            outcome = body(options, temp, progress)
        except JobTimeoutException:
            raise StepError(f"timed out after {durations.format(planned.timeout)}") from None
        finally:
            if ticker is not None:
                ticker.stop()  # before the step records its errors or its final progress
        if files is not None:
            _publish(partial, workdir)
            stored = files.upload(planned, logical)  # every output complete in the store before the result
    except BaseException as exc:
        if isinstance(exc, StepError) and exc.keep_outputs:
            _publish(partial, workdir)
            if files is not None:
                files.upload(planned, logical)
        shutil.rmtree(partial, ignore_errors=True)
        if job is not None:
            _failed(job, planned, run_id, exc)
        raise
    _publish(partial, workdir)
    shutil.rmtree(partial, ignore_errors=True)
    progress(1, 1, "done", force=True)
    if job is not None and _decides(job, run_id):
        _release_waiting(job, planned, run_id)
    if files is not None:
        written = {name: logical.outputs[name] for name in stored}
    else:
        written = {name: path for name, path in planned.outputs.items() if Path(path).exists()}
    result = {"success": True, "message": outcome.message, "data": outcome.data, "outputs": written}
    if files is not None:  # the stored objects (the original's output_key/sha256 over HTTP, the history's lineage)
        result["objects"] = {name: staging.facts(files.storage, obj) for name, obj in stored.items()}
        result["input_objects"] = {sub: staging.facts(files.storage, o) for sub, o in files.fetched.items()}
    if conn is not None and cache_key:
        cache.remember(conn, cache_key, logical, run_id, result, stored if files is not None else None)
    if conn is not None:
        events.step_ended(conn, run_id, planned, result, time.monotonic() - began)
    return result


def _publish(partial: Path, workdir: Path) -> None:
    """Move every finished file into the step folder, keeping sub-folders (rename: atomic on one file system)."""
    for item in sorted(partial.rglob("*")):
        if item.is_file():
            target = workdir / item.relative_to(partial)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(item, target)


def _skip_reason(job: Job, planned: PlannedStep, run_id: str) -> str | None:
    """Evaluate the step's condition against its needs now; record and return the reason to skip, if any.

    RQ starts a step only once every step its condition depends on ended (the reconciler releases held
    ``failure()`` steps: :class:`ifcflow.engine.enqueue.Wiring`), so the condition is decided here; a step released by a
    need that is still recording its own end waits for that (at most :data:`UNDECIDED_WAIT`). Should it stay undecided, the
    step fails with a plain reason rather than run on a guess or block its worker.
    """
    reader = StatusReader(job.connection, run_id)
    by_id = {s.id: s for s in reader.plan.steps}
    deadline = time.monotonic() + UNDECIDED_WAIT
    while True:  # a need that released this step may still be recording its own end (milliseconds)
        states, causes = reconcile.states_of(reader.fetch())
        action, reason = policy.verdict(planned, by_id, states, causes)
        if action != "wait" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if action == "wait":
        waiting = [n for n in planned.needs if not states.get(n, StepState.PENDING).terminal]
        raise StepError(f"started before its condition could be decided (still running upstream: "
                        f"{', '.join(waiting) or 'a step further up'}); retry it with: ifcflow retry {run_id} "
                        f"--step {planned.id}")
    if action != "skip":
        return None
    store.record_steps(job.connection, run_id, {planned.id: ("skipped", reason)})
    # RQ sees this job finish normally; dependents that must now be skipped or released are ours to handle
    reconcile.run(job.connection, run_id, ended={planned.id: StepState.SKIPPED}, plan=reader.plan)
    return reason


def _decides(job: Job, run_id: str) -> bool:
    """Whether this step's end may decide waiting steps RQ will not start: some steps were skipped or canceled,
    or a held ``failure()`` step needs this one (:class:`ifcflow.engine.enqueue.Wiring`)."""
    meta = job.meta or {}
    if meta.get(LEAF):  # nothing waits for this step
        return False
    return bool(meta.get(DECIDES)) or bool(job.connection.hlen(store.steps_key(run_id)))


def _release_waiting(job: Job, planned: PlannedStep, run_id: str) -> None:
    """Release (or skip) dependents RQ never starts by itself, with this step counted as succeeded."""
    try:
        reconcile.run(job.connection, run_id, ended={planned.id: StepState.SUCCEEDED})
    except Exception:
        traceback.print_exc()


def _failed(job: Job, planned: PlannedStep, run_id: str, exc: BaseException) -> None:
    """Remember this attempt's error; on the last attempt, skip what can no longer run."""
    message = str(exc) if isinstance(exc, StepError) else "".join(traceback.format_exception_only(exc)).strip()
    job.meta.setdefault("errors", []).append(message)
    job.meta.pop("progress", None)
    started = None if job.retries_left else job.connection.hget(job.key, "started_at")
    if started:
        # this attempt has failed for good: readers see it failed from now on, though RQ marks the job failed only
        # after the skips below (else a status read in between shows the step running beside skipped dependents)
        job.meta[FAILING] = started.decode() if isinstance(started, bytes) else str(started)
        job.meta[FAILING_TRACEBACK] = "".join(traceback.format_exception(exc))  # (RQ records its own after)
    job.save_meta()
    if job.retries_left:
        return
    try:
        reconcile.run(job.connection, run_id, ended={planned.id: StepState.FAILED})
    except Exception:  # never hide the step's own error behind a bookkeeping one
        traceback.print_exc()
