"""Batches over HTTP: ``POST /batches`` (one run of a pipeline per file a glob matches) and the batch's status,
cancel, retry, reports and live events.

The library does the work (:func:`ifcflow.batches.batch.prepare` plans, :func:`ifcflow.batches.batch.submit` enqueues all or
nothing); this module adds what a server must enforce before any file is opened: ``each`` globs are names
relative to ``uploads/`` (as inputs are), a glob and every file it matches lie in the data folder (symlinks
followed), every other path the sub-runs read lies in the data folder and every output in ``<data>/output/``.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from redis import Redis

from ..batches import batch, batch_report, batch_status, globs, lifecycle
from ..batches.batch_status import BatchStatus
from ..errors import IfcflowError, PipelineError
from ..pipeline import document
from ..pipeline.plan import Plan
from ..pipeline.plan import plan as make_plan
from . import events, limits, objects, paths, results, submission
from .auth import require_key
from .problems import unprocessable
from .runs import MAX_OFFSET, MEDIA, RunRequest, pipeline_source
from .settings import Settings
from .watcher import WATCHED_BATCHES

router = APIRouter(dependencies=[Depends(require_key)], tags=["batches"])
GLOB_CHARS = frozenset("*?[")


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pipeline: str | dict[str, Any] | None = Field(None, description="the pipeline: YAML text or the same as JSON")
    file: str | None = Field(None, description="or: a pipeline file in the server's pipelines folder")
    inputs: dict[str, str] = Field(default_factory=dict, description="input overrides: names in uploads/")
    each: dict[str, str] = Field(default_factory=dict, description="input -> glob relative to uploads/ (e.g. "
                                 "'project/**/*.ifc'): one run per matching file, the product for several")
    max_runs: int = Field(batch.DEFAULT_MAX_RUNS, ge=1, le=100_000, description=(
        "refuse a bigger batch (422); at most the server's IFCFLOW_MAX_BATCH_RUNS (default 1,000)"))


class BatchStarted(BaseModel):
    batch_id: str
    status_url: str
    events_url: str
    runs: dict[str, str] = Field(description="file (relative to uploads/; 'a=x, b=y' for a matrix) -> run id")


class BatchSummary(BaseModel):
    batch_id: str
    pipeline: str
    status: str
    created_at: str
    ended_at: str | None = None
    runs: int
    counts: dict[str, int]


class BatchList(BaseModel):
    batches: list[BatchSummary]
    total: int
    offset: int
    limit: int


class BatchCanceled(BaseModel):
    batch_id: str
    canceled: list[str] = Field(description="the sub-runs that had not ended")


class BatchRetried(BaseModel):
    batch_id: str
    runs: dict[str, list[str]] = Field(description="run id -> steps re-enqueued")


def read_status(conn: Redis, batch_id: str, errors: bool = True) -> BatchStatus:
    try:
        return batch_status.read(conn, batch_id, errors=errors)
    except batch.BatchNotFound:
        raise HTTPException(404, f"Batch {batch_id} not found; list batches with GET /batches") from None


def public_status(status: BatchStatus, settings: Settings) -> BatchStatus:
    """A batch's document as served: paths relative to the data folder (a committed pipeline by its name)."""
    return BatchStatus.model_validate(results.public_document(status.model_dump(mode="json"), settings.data,
                                                              settings.pipelines))


def vet_glob(roots: tuple[Path, ...], pattern: str, what: str) -> None:
    """An absolute glob must not climb (``..``), must be cheap to expand (422: see :func:`ifcflow.globs.check`) and
    its fixed folder part must lie in ``roots``."""
    try:
        globs.check(pattern)
    except globs.GlobError as exc:
        raise unprocessable(f"{what}: {exc}", *what.split(".")) from None
    parts = PurePosixPath(pattern).parts
    if ".." in parts:
        raise paths.UnsafePath(f"{what}: {pattern!r} contains '..'; globs must stay inside the data folder")
    wild = next((i for i, part in enumerate(parts) if GLOB_CHARS & set(part)), len(parts))
    if not paths.check_within(roots, str(PurePosixPath(*parts[:wild])), what):
        raise paths.UnsafePath(f"{what}: {pattern!r} is outside the data folder; give a glob relative to uploads/")


def _patterns(settings: Settings, body: BatchRequest, doc: document.Document,
              roots: tuple[Path, ...]) -> tuple[dict[str, str], dict[str, str]]:
    """(the request's globs made absolute, every glob of the batch: those plus the pipeline's ``for_each``)."""
    undeclared = [name for name in body.each if name not in doc.pipeline.inputs]
    if undeclared:
        raise unprocessable(f"each names input(s) {', '.join(undeclared)} not declared in the pipeline's 'inputs:' "
                            f"(declared: {', '.join(doc.pipeline.inputs) or 'none'})", "each", undeclared[0])
    asked = {}
    for name, pattern in body.each.items():
        written = pattern[len("/uploads/"):] if pattern.startswith("/uploads/") else pattern
        asked[name] = str(settings.uploads / paths.relative(written, f"each.{name}"))
    every = {**{name: doc.inputs[name] for name in doc.pipeline.for_each if name not in asked}, **asked}
    if not every:
        raise unprocessable("a batch needs 'each': {input: glob relative to uploads/}, or a pipeline with "
                            "'for_each:'", "each")
    for name, pattern in every.items():
        vet_glob(roots, pattern, f"each.{name}")
    return asked, every


def _first_files(settings: Settings, every: dict[str, str], body: BatchRequest,
                 roots: tuple[Path, ...], max_runs: int) -> dict[str, str]:
    """Expand each glob (with the library's expansion, up to ``max_runs + 1`` files: more is refused when the
    batch is planned): 422 naming a glob that matches nothing, 400 for a match outside the data folder (named as
    written under the data folder, never by where it leads). Returns the first file of each, for the probe plan."""
    first = {}
    for name, pattern in every.items():
        files = globs.expand(pattern, limit=max_runs + 1)
        if not files:
            shown = body.each.get(name, pattern)
            raise unprocessable(f"each.{name}: {shown!r} matches no file in uploads/; nothing was enqueued. Upload "
                                "the models first (POST /upload/ifc) or fix the glob ('**' spans folders)",
                                "each", name)
        for file in files:
            if not paths.check_input(settings.data, roots, file, f"each.{name}"):
                written = os.path.relpath(file, settings.data)
                shown = written if not written.startswith("..") else PurePosixPath(file).name
                raise paths.UnsafePath(f"each.{name}: {shown!r} leads outside the data folder (a symlink?); "
                                       "remove it or narrow the glob")
        first[name] = files[0]
    return first


def _probe(settings: Settings, doc: document.Document, first: dict[str, str], roots: tuple[Path, ...]) -> None:
    """Vet every path a sub-run reads or writes on a plan of the first combination, before any file is opened
    (sub-runs differ only in the ``each`` files, vetted one by one)."""
    bound = copy.copy(doc)
    bound.inputs = {**doc.inputs, **first}
    probe: Plan = make_plan(bound, run_id="probe", out_root=settings.runs)
    submission.check_inside(probe, roots, settings.output, settings=settings)


def _label(settings: Settings, sub: batch.SubRun) -> str:
    def shown(path: str) -> str:
        for root in (settings.uploads, settings.data):
            if paths.contained(root, path):
                return os.path.relpath(path, root)
        return path

    if len(sub.inputs) == 1:
        return shown(next(iter(sub.inputs.values())))
    return ", ".join(f"{name}={shown(path)}" for name, path in sub.inputs.items())


def _max_runs(body: BatchRequest, cap: int) -> int:
    """``max_runs`` as asked (422 above the server's cap), else the default within the cap."""
    if "max_runs" not in body.model_fields_set:
        return min(body.max_runs, cap)
    if body.max_runs > cap:
        raise unprocessable(f"max_runs is {body.max_runs:,}; this server allows at most {cap:,} runs per batch "
                            f"({limits.MAX_BATCH_RUNS_ENV}). Ask for fewer (narrow the globs), or ask the "
                            f"server's operator to raise {limits.MAX_BATCH_RUNS_ENV}", "max_runs")
    return body.max_runs


def plan_batch(settings: Settings, body: BatchRequest,
               cap: int = limits.MAX_BATCH_RUNS) -> tuple[batch.BatchRecord, list[Plan]]:
    """Check the pipeline, vet every path and glob, and plan the batch (nothing written to Redis); ``max_runs``
    may be at most ``cap``."""
    max_runs = _max_runs(body, cap)
    asked_for = RunRequest(pipeline=body.pipeline, file=body.file, webhook=None)
    text, base, name, roots = pipeline_source(settings, asked_for)
    overrides = {key: str(paths.input_file(settings.uploads, value, f"inputs.{key}"))
                 for key, value in body.inputs.items()}
    try:
        doc = document.parse(text, base / name, overrides, check_files=False)
        asked, every = _patterns(settings, body, doc, roots)
        _probe(settings, doc, _first_files(settings, every, body, roots, max_runs), roots)
        return batch.prepare(doc, asked, settings.runs, max_runs=max_runs, ttl=settings.ttl)
    except ValueError as exc:  # a path the OS cannot take (NUL byte)
        raise paths.UnsafePath(f"pipeline: a path cannot be used ({exc}); use plain file names") from None
    except (PipelineError, paths.UnsafePath):
        raise
    except IfcflowError as exc:  # more runs than max_runs
        raise unprocessable(str(exc).replace("--max-runs", "max_runs"), "max_runs") from None


@router.post("/batches", status_code=202, response_model=BatchStarted)
def start_batch(request: Request, body: BatchRequest) -> BatchStarted:
    """One run of the pipeline per file each glob matches (the product for several globs), all enqueued in one
    all-or-nothing submission. A bad pipeline or a glob matching nothing is a 422, a hostile glob a 400: nothing is
    written to Redis."""
    settings: Settings = request.app.state.settings
    record, plans = plan_batch(settings, body, request.app.state.limits.max_batch_runs)
    pins = {plan.run_id: objects.pins(settings, plan) for plan in plans} if objects.store(settings) else None
    batch.submit(request.app.state.conn, record, plans, pins)  # (an S3 store: every sub-run's inputs pinned)
    request.app.state.conn.sadd(WATCHED_BATCHES, record.batch_id)  # released as runs end, even by plain rq workers
    return BatchStarted(batch_id=record.batch_id, status_url=f"/batches/{record.batch_id}",
                        events_url=f"/batches/{record.batch_id}/events",
                        runs={_label(settings, sub): sub.run_id for sub in record.runs})


@router.get("/batches", response_model=BatchList)
def list_batches(request: Request, offset: int = Query(0, ge=0, le=MAX_OFFSET),
                 limit: int = Query(20, ge=1, le=200)) -> BatchList:
    """Batches, newest first, paged."""
    conn: Redis = request.app.state.conn
    ids: list[bytes] = conn.zrevrange(batch.BATCHES, offset, offset + limit - 1)  # type: ignore[assignment]
    found = []
    for raw in ids:
        try:
            status = batch_status.read(conn, raw.decode(), errors=False)
        except batch.BatchNotFound:  # expired with its runs
            continue
        found.append(BatchSummary(batch_id=status.batch_id, pipeline=status.pipeline, status=status.status.value,
                                  created_at=status.created_at, ended_at=status.ended_at, runs=len(status.runs),
                                  counts=status.counts))
    total: int = conn.zcard(batch.BATCHES)
    return BatchList(batches=found, total=total, offset=offset, limit=limit)


@router.get("/batches/{batch_id}", response_model=BatchStatus)
def batch_document(request: Request, batch_id: str) -> BatchStatus:
    """The batch's status document (as ``ifcflow status BATCH --json``): a row per file and the batch's state."""
    return public_status(read_status(request.app.state.conn, batch_id), request.app.state.settings)


@router.post("/batches/{batch_id}/cancel", response_model=BatchCanceled)
def cancel_batch(request: Request, batch_id: str) -> BatchCanceled:
    """Cancel every sub-run that has not ended; no further one starts. The batch ends ``canceled``."""
    conn: Redis = request.app.state.conn
    read_status(conn, batch_id, errors=False)
    return BatchCanceled(batch_id=batch_id, canceled=lifecycle.cancel(conn, batch_id))


@router.post("/batches/{batch_id}/retry", response_model=BatchRetried)
def retry_batch(request: Request, batch_id: str) -> BatchRetried:
    """Re-run only the failed files' failed, skipped and canceled steps (succeeded files are left alone)."""
    conn: Redis = request.app.state.conn
    read_status(conn, batch_id, errors=False)
    retried = lifecycle.retry(conn, batch_id)
    if not retried:
        raise HTTPException(409, f"nothing to retry in batch {batch_id}: no file's run failed or was canceled, or "
                            "they are still going")
    conn.sadd(WATCHED_BATCHES, batch_id)
    return BatchRetried(batch_id=batch_id, runs=retried)


@router.get("/batches/{batch_id}/report", response_class=Response,
            responses={200: {"content": {m.split(";")[0]: {} for m in MEDIA.values()}}})
def batch_report_page(request: Request, batch_id: str,
                      format: Literal["junit", "markdown", "html"] = "junit") -> Response:
    """JUnit XML (one test suite per file), Markdown or a standalone HTML page of the batch."""
    conn: Redis = request.app.state.conn
    return Response(batch_report.render(conn, read_status(conn, batch_id), format), media_type=MEDIA[format])


def fingerprint(status: BatchStatus) -> str:
    """What a client sees change: the document without the unfinished sub-runs' growing durations."""
    doc = status.model_copy(update={"runs": [r if r.status.terminal else r.model_copy(update={"duration": None})
                                             for r in status.runs]})
    return doc.model_dump_json()


@router.get("/batches/{batch_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def batch_events(request: Request, batch_id: str) -> StreamingResponse:
    """Server-Sent Events: ``status`` (the batch's document) on every change, then ``end`` (the final one)."""
    conn: Redis = request.app.state.conn
    await run_in_threadpool(read_status, conn, batch_id, False)

    def read() -> BatchStatus:
        return public_status(batch_status.read(conn, batch_id), request.app.state.settings)

    return events.respond(events.stream(request, f"batch:{batch_id}", read, fingerprint,
                                        request.app.state.settings.events_interval))
