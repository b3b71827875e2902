"""``GET /jobs/{job_id}/status`` and ``POST /jobs/{job_id}/requeue`` in the original shape, for every ifcflow
step job (pipeline steps included): RQ's status words, with ifcflow's truth about skipped and canceled steps."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job

from ..engine import control, store
from ..engine.states import StepState
from ..engine.status import StatusReader, StepStatus
from . import objects, results, submission
from .auth import require_key

router = APIRouter(dependencies=[Depends(require_key)], tags=["original"])

RQ_WORDS = {
    StepState.PENDING: "deferred", StepState.QUEUED: "queued", StepState.RUNNING: "started",
    StepState.SUCCEEDED: "finished", StepState.CACHED: "finished", StepState.FAILED: "failed",
    StepState.SKIPPED: "canceled",
    StepState.CANCELED: "canceled",
}
REQUEUABLE = (StepState.FAILED, StepState.CANCELED, StepState.SKIPPED)


class JobStatusResponse(BaseModel):
    job_id: str
    status: str
    result: dict[str, Any] | None = None
    error: str | None = None
    traceback: str | None = None
    progress: dict[str, Any] | None = None
    execution_time_seconds: float | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    skipped: bool | None = None
    reason: str | None = None
    run_id: str | None = None
    step: str | None = None


class Requeued(BaseModel):
    job_id: str
    status: str
    requeued: bool


def _fetch(conn: Redis, job_id: str) -> Job:
    try:
        return Job.fetch(job_id, connection=conn)
    except NoSuchJobError:
        raise HTTPException(404, f"Job {job_id} not found") from None
    except Exception:  # an unreadable or foreign hash under rq:job:<id>
        raise HTTPException(404, f"Job {job_id} not found") from None


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _step_answer(job: Job, step: StepStatus, notes: list[str], data: Path,
                 options: dict[str, Any]) -> JobStatusResponse:
    result = step.result
    if result is not None:
        result = results.answer(result, step.service, options, step.outputs, data)
    if result is not None and notes:
        result = dict(result)
        result["message"] = (f"{result.get('message', '')} (accepted but not honoured by ifcflow: "
                             f"{', '.join(notes)})").strip()
        result["ignored_fields"] = notes
    answer = JobStatusResponse(
        job_id=job.id, status=RQ_WORDS[step.status], result=result, progress=step.progress,
        created_at=_utc(job.created_at), started_at=_parse(step.started_at), ended_at=_parse(step.ended_at),
        execution_time_seconds=step.duration if step.ended_at else None,
        run_id=job.meta.get("ifcflow_run"), step=job.meta.get("ifcflow_step"),
    )
    if step.status == StepState.FAILED:  # the clean message, as /runs/{id} gives it; the traceback on its own
        answer.error = results.public(step.error or "failed", data)
        answer.traceback = results.public(step.traceback, data) if step.traceback else None
    if step.status in (StepState.SKIPPED, StepState.CANCELED):
        answer.skipped = step.status == StepState.SKIPPED
        answer.reason = step.error
    return answer


def _plain_answer(job: Job) -> JobStatusResponse:
    status = job.get_status(refresh=False)
    answer = JobStatusResponse(job_id=job.id, status=str(status.value if status else "unknown"),
                               progress=job.meta.get("progress"), created_at=_utc(job.created_at),
                               started_at=_utc(job.started_at), ended_at=_utc(job.ended_at))
    if job.started_at and job.ended_at:
        answer.execution_time_seconds = (job.ended_at - job.started_at).total_seconds()
    if answer.status == "finished":
        value = job.return_value(refresh=False)
        answer.result = value if isinstance(value, dict) else {"value": value}
    elif answer.status == "failed":
        answer.error = job.exc_info
    return answer


def read(conn: Redis, job_id: str, data: Path) -> JobStatusResponse:
    job = _fetch(conn, job_id)
    run_id, step_id = job.meta.get("ifcflow_run"), job.meta.get("ifcflow_step")
    if not run_id or not step_id:
        return _plain_answer(job)
    reader = StatusReader(conn, run_id, notes=False)  # the answer has no step notes: not their second round trip
    status = reader.read(with_traceback=True)
    options = next((s.options for s in reader.plan.steps if s.id == step_id), {})
    return _step_answer(job, status.steps[step_id], submission.notes_of(reader.record), data, options)


@router.get("/jobs/{job_id}/status", response_model=None, responses={200: {"model": JobStatusResponse}})
def job_status(request: Request, job_id: str) -> JSONResponse:
    """A job's status in the original shape; a step skipped because an upstream step failed reads
    ``"status": "canceled"``, ``"skipped": true`` and the reason."""
    settings = request.app.state.settings
    answer = read(request.app.state.conn, job_id, settings.data)
    found = answer.result or {}
    s3 = objects.store(settings) if found.get("storage") == "s3" and "report" not in found else None
    if s3 is not None and found.get("report_type") in ("html", "json", "txt") and found.get("output_key"):
        text = objects.read_text(s3, str(found["output_key"]), results.REPORT_LIMIT)  # ifctester's report text
        if text is not None:
            found["report"] = text
    return JSONResponse(answer.model_dump(mode="json", exclude_none=True))


@router.post("/jobs/{job_id}/requeue", response_model=Requeued)
def requeue(request: Request, job_id: str) -> Requeued:
    """Run a failed, stopped, canceled or skipped step again (and what depends on it), in the same run."""
    conn: Redis = request.app.state.conn
    job = _fetch(conn, job_id)
    run_id, step_id = job.meta.get("ifcflow_run"), job.meta.get("ifcflow_step")
    if not run_id or not step_id:
        raise HTTPException(400, f"Job {job_id} is not an ifcflow step; only ifcflow step jobs can be requeued")
    step = StatusReader(conn, run_id).read().steps[step_id]
    if step.status not in REQUEUABLE:
        raise HTTPException(400, f"Job {job_id} is {RQ_WORDS[step.status]}; only failed or stopped jobs can be "
                            "requeued")
    chosen = control.retry(conn, run_id, step=step_id, ttl=int(conn.hget(store.run_key(run_id), "ttl") or store.DEFAULT_TTL))
    if not chosen:
        raise HTTPException(409, f"Job {job_id} could not be requeued now: a step of its run is still waiting or "
                            "running; try again when it ended")
    submission.watch_again(conn, run_id)
    return Requeued(job_id=job_id, status="queued", requeued=True)
