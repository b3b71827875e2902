"""Pipelines over HTTP: ``POST /runs`` and the run's status, cancel, retry, reports and outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import yaml
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from redis import Redis

from ..engine import control, staging, store
from ..engine.status import RunStatus, StatusReader
from ..errors import RunNotFound
from ..views.report import render
from . import objects, paths, results, submission
from .auth import require_key
from .problems import unprocessable
from .settings import Settings

router = APIRouter(dependencies=[Depends(require_key)], tags=["runs"])
MAX_OFFSET = 10**12
"""Paging offsets stay far below Redis's 64-bit indexes (ZREVRANGE refuses bigger ones)."""


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pipeline: str | dict[str, Any] | None = Field(None, description="the pipeline: YAML text or the same as JSON")
    file: str | None = Field(None, description="or: a pipeline file in the server's pipelines folder")
    inputs: dict[str, str] = Field(default_factory=dict, description="input overrides: names in uploads/")
    webhook: str | None = Field(None, description="POST the final status document here when the run ends")


class Started(BaseModel):
    run_id: str
    status_url: str
    events_url: str
    steps: dict[str, str]


class RunSummary(BaseModel):
    run_id: str
    pipeline: str
    status: str
    created_at: str
    ended_at: str | None = None
    counts: dict[str, int]


class RunList(BaseModel):
    runs: list[RunSummary]
    total: int
    offset: int
    limit: int


class CommittedPipeline(BaseModel):
    file: str
    name: str | None = None
    inputs: dict[str, str] = Field(default_factory=dict)
    problem: str | None = Field(default=None, description="why the file cannot be read, if it cannot")


class Canceled(BaseModel):
    run_id: str
    canceled: list[str]


class Retried(BaseModel):
    run_id: str
    steps: list[str]


def reader_for(conn: Redis, run_id: str) -> StatusReader:
    try:
        return StatusReader(conn, run_id)
    except RunNotFound:
        raise HTTPException(404, f"Run {run_id} not found; list runs with GET /runs") from None


def pipeline_source(settings: Settings, body: RunRequest) -> tuple[str, Path, str, tuple[Path, ...]]:
    """(text, folder its relative paths resolve in, file name for messages, folders it may read)."""
    if (body.pipeline is None) == (body.file is None):
        raise unprocessable("give exactly one of 'pipeline' (YAML text or object) and 'file' (a name in the "
                            "pipelines folder)", "pipeline")
    if body.file is not None:
        path = paths.committed_pipeline(settings.pipelines, body.file)
        if not path.is_file():
            raise HTTPException(404, f"no pipeline {body.file!r} in the pipelines folder; committed pipelines: "
                                + ", ".join(sorted(p.name for p in settings.pipelines.glob("*.y*ml"))))
        return path.read_text(encoding="utf-8"), path.parent, path.name, (settings.data, settings.pipelines)
    text = body.pipeline if isinstance(body.pipeline, str) else json.dumps(body.pipeline, indent=1)
    return text, settings.uploads, "pipeline.yaml", (settings.data,)


@router.post("/runs", status_code=202, response_model=Started)
def start_run(request: Request, body: RunRequest) -> Started:
    """Check, plan and enqueue a pipeline (all or nothing). A bad pipeline is a 422 with ``file:line:col``
    messages and nothing is written to Redis."""
    settings: Settings = request.app.state.settings
    text, base, name, roots = pipeline_source(settings, body)
    plan = submission.plan_text(settings, text, base, body.inputs, name, roots)
    submission.start(request.app.state.conn, settings, plan, body.webhook)
    return Started(run_id=plan.run_id, status_url=f"/runs/{plan.run_id}", events_url=f"/runs/{plan.run_id}/events",
                   steps={s.id: s.job_id for s in plan.steps})


@router.get("/pipelines", response_model=list[CommittedPipeline])
def committed_pipelines(request: Request) -> list[CommittedPipeline]:
    """The pipeline files in the server's pipelines folder (``IFCFLOW_PIPELINES``), for ``POST /runs {"file"}``."""
    settings: Settings = request.app.state.settings
    found = []
    for path in sorted(p for p in settings.pipelines.glob("*.y*ml") if p.suffix in (".yaml", ".yml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            inputs = {str(k): str(v) for k, v in (data.get("inputs") or {}).items()}
            found.append(CommittedPipeline(file=path.name, name=str(data.get("name")), inputs=inputs))
        except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError) as exc:
            found.append(CommittedPipeline(file=path.name, problem=f"{type(exc).__name__}: run ifcflow validate"))
    return found


@router.get("/runs", response_model=RunList)
def list_runs(request: Request, offset: int = Query(0, ge=0, le=MAX_OFFSET),
              limit: int = Query(20, ge=1, le=200)) -> RunList:
    """Runs, newest first, paged."""
    conn: Redis = request.app.state.conn
    ids = [r.decode() for r in conn.zrevrange(store.RUNS, offset, offset + limit - 1)]  # type: ignore[union-attr]
    found = []
    for run_id in ids:
        try:
            status = StatusReader(conn, run_id).read()
        except RunNotFound:
            continue
        found.append(RunSummary(run_id=run_id, pipeline=status.pipeline, status=status.status.value,
                                created_at=status.created_at, ended_at=status.ended_at, counts=status.counts))
    total: int = conn.zcard(store.RUNS)
    return RunList(runs=found, total=total, offset=offset, limit=limit)


@router.get("/runs/{run_id}", response_model=RunStatus)
def run_status(request: Request, run_id: str) -> RunStatus:
    """The run's status document (as ``ifcflow status --json``; paths relative to the data folder)."""
    settings: Settings = request.app.state.settings
    status = reader_for(request.app.state.conn, run_id).read(with_traceback=True)
    return results.public_status(status, settings.data, settings.pipelines)


@router.post("/runs/{run_id}/cancel", response_model=Canceled)
def cancel_run(request: Request, run_id: str) -> Canceled:
    """Stop running steps, cancel waiting ones; the run ends ``canceled``."""
    reader_for(request.app.state.conn, run_id)
    return Canceled(run_id=run_id, canceled=control.cancel(request.app.state.conn, run_id))


@router.post("/runs/{run_id}/retry", response_model=Retried)
def retry_run(request: Request, run_id: str, step: str | None = None) -> Retried:
    """Re-run failed, skipped and canceled steps (or ``step``) and their dependents, in the same run."""
    conn: Redis = request.app.state.conn
    plan = reader_for(conn, run_id).plan
    if step is not None and step not in {s.id for s in plan.steps}:
        raise HTTPException(404, f"run {run_id} has no step {step!r}; steps: {', '.join(s.id for s in plan.steps)}")
    chosen = control.retry(conn, run_id, step=step, ttl=request.app.state.settings.ttl)
    if not chosen:
        raise HTTPException(409, f"nothing to retry in run {run_id}: no step failed, was skipped or canceled, or "
                            "some are still waiting or running")
    submission.watch_again(conn, run_id)
    return Retried(run_id=run_id, steps=chosen)


MEDIA = {"junit": "application/xml", "markdown": "text/markdown; charset=utf-8", "html": "text/html; charset=utf-8"}


@router.get("/runs/{run_id}/report", response_class=Response,
            responses={200: {"content": {m.split(";")[0]: {} for m in MEDIA.values()}}})
def report(request: Request, run_id: str, format: Literal["junit", "markdown", "html"] = "junit") -> Response:
    """JUnit XML, Markdown or a standalone HTML page of the run."""
    status = reader_for(request.app.state.conn, run_id).read()
    base = str(request.base_url).rstrip("/")

    def output_url(step: str, name: str) -> str:
        return f"{base}/runs/{quote(run_id, safe='')}/outputs/{quote(step, safe='')}/{quote(name, safe='')}"

    text = results.public(render(status, format, output_url), request.app.state.settings.data)
    return Response(text, media_type=MEDIA[format])


@router.get("/runs/{run_id}/outputs/{step}/{name}", response_class=FileResponse,
            responses={307: {"description": "with an S3 store: a presigned URL of the output (IFCFLOW_S3_DOWNLOADS)"}})
def output(request: Request, run_id: str, step: str, name: str) -> Response:
    """Download an output of a step (404 until the step wrote it); with an S3 store a 307 redirect to a presigned
    URL, or the object streamed through (``IFCFLOW_S3_DOWNLOADS``)."""
    path, stored = output_file(request, run_id, step, name)
    if stored:
        s3 = objects.store(request.app.state.settings)
        assert s3 is not None
        return objects.serve(s3, objects.data_key(request.app.state.settings, path), filename=path.name)
    if not path.is_file():
        raise HTTPException(404, f"output {name!r} of step {step!r} does not exist (yet)")
    return FileResponse(path, filename=path.name)


def output_file(request: Request, run_id: str, step: str, name: str) -> tuple[Path, bool]:
    """The output's path in the data folder, and whether it is an object of the server's S3 store (a run kept in
    it) rather than a file; 404 for no such step or output."""
    settings: Settings = request.app.state.settings
    reader = reader_for(request.app.state.conn, run_id)
    planned = next((s for s in reader.plan.steps if s.id == step), None)
    if planned is None:
        raise HTTPException(404, f"run {run_id} has no step {step!r}")
    if name not in planned.outputs:
        raise HTTPException(404, f"step {step!r} has no output {name!r}; outputs: {', '.join(planned.outputs)}")
    path = Path(planned.outputs[name])
    if not paths.contained(settings.data, path):
        raise HTTPException(404, f"output {name!r} of step {step!r} does not exist (yet)")
    kept = objects.store(settings) is not None and request.app.state.conn.hexists(store.run_key(run_id), staging.FIELD)
    return path, bool(kept)
