"""Schedules over HTTP (``/schedules``), through :mod:`ifcflow.batches.schedule`'s functions (the CLI's too).

A schedule runs a committed pipeline (a file in the server's pipelines folder) on a cron expression; its inputs
are names in ``uploads/`` and its ``each`` globs are relative to ``uploads/`` (checked like ``POST /batches``'s;
they are expanded again at every fire by ``ifcflow scheduler``). Its runs write under ``<data>/output/runs/``.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from redis import Redis

from ..batches import schedule
from ..batches.schedule import Fire, ScheduleSpec
from ..engine import webhooks as webhook
from ..errors import IfcflowError
from ..pipeline.spec import NAME_PATTERN
from . import paths, results
from .auth import require_key
from .batches import vet_glob
from .problems import unprocessable
from .settings import Settings
from .watcher import WATCHED_BATCHES

router = APIRouter(dependencies=[Depends(require_key)], tags=["schedules"])


class ScheduleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, max_length=64, description="the schedule's name (unique)")
    file: str = Field(description="a pipeline file in the server's pipelines folder (read again at every fire)")
    cron: str = Field(max_length=200, description="5 fields (minute hour day month weekday) or 6 (plus seconds), "
                      "the server's local time; e.g. '0 2 * * *' for 02:00 every night")
    inputs: dict[str, str] = Field(default_factory=dict, description="input overrides: names in uploads/")
    each: dict[str, str] = Field(default_factory=dict, description="input -> glob relative to uploads/: each fire "
                                 "runs a batch over the files it matches then")
    webhook: str | None = Field(None, description="told of failed and skipped fires and of each run's end (host "
                                "must be in IFCFLOW_WEBHOOK_ALLOW)")
    overlap: Literal["skip", "queue", "allow"] = Field("skip", description="when the previous run has not ended")


class LastFire(Fire):
    state: str | None = Field(None, description="the current state of the run or batch it started")


class ScheduleInfo(ScheduleSpec):
    """A schedule as answered: paths relative to the data folder (the pipeline by its name in the pipelines
    folder), without the server's webhook allow-list."""

    webhook_allow: list[str] | None = Field(default=None, exclude=True)
    next_fire: str = Field(description="the next tick (UTC, ISO 8601)")
    last: LastFire | None = None


def _shown(settings: Settings, row: dict[str, Any]) -> ScheduleInfo:
    return ScheduleInfo.model_validate(results.public_document(row, settings.data, settings.pipelines, "pipeline"))


def _info(request: Request, name: str) -> ScheduleInfo:
    for row in schedule.listing(request.app.state.conn):
        if row["name"] == name:
            return _shown(request.app.state.settings, row)
    raise HTTPException(404, f"Schedule {name} not found; list schedules with GET /schedules")


def _spec(settings: Settings, body: ScheduleRequest) -> ScheduleSpec:
    """The stored spec, every path absolute and vetted (400 for a hostile one, 404 for a missing pipeline)."""
    pipeline = paths.committed_pipeline(settings.pipelines, body.file)
    if not pipeline.is_file():
        raise HTTPException(404, f"no pipeline {body.file!r} in the pipelines folder; see GET /pipelines")
    try:
        schedule.check_cron(body.cron)  # the CLI's check: not a cron, never fires, or read as seconds-first
    except IfcflowError as exc:
        raise unprocessable(str(exc).replace("--cron", "cron"), "cron") from None
    inputs = {key: str(paths.input_file(settings.uploads, value, f"inputs.{key}"))
              for key, value in body.inputs.items()}
    each = {}
    for key, pattern in body.each.items():
        written = pattern[len("/uploads/"):] if pattern.startswith("/uploads/") else pattern
        each[key] = str(settings.uploads / paths.relative(written, f"each.{key}"))
        vet_glob((settings.data,), each[key], f"each.{key}")
    hook = webhook.check_url(body.webhook, settings.webhook_allow) if body.webhook else None
    return ScheduleSpec(name=body.name, pipeline=str(pipeline), cron=body.cron, inputs=inputs, each=each,
                        webhook=hook, webhook_allow=list(settings.webhook_allow), overlap=body.overlap,
                        out=str(settings.runs), ttl=settings.ttl)


@router.get("/schedules", response_model=list[ScheduleInfo])
def list_schedules(request: Request) -> list[ScheduleInfo]:
    """Every schedule with its next fire time and its last fire (run or batch id, outcome, current state)."""
    return [_shown(request.app.state.settings, row) for row in schedule.listing(request.app.state.conn)]


@router.post("/schedules", status_code=201, response_model=ScheduleInfo)
def add_schedule(request: Request, body: ScheduleRequest) -> ScheduleInfo:
    """Add a schedule (409 when the name is taken). The pipeline must be valid now; its input files and globs are
    checked at every fire (a failed fire is recorded and sent to the webhook)."""
    conn: Redis = request.app.state.conn
    spec = _spec(request.app.state.settings, body)
    if conn.hexists(schedule.SCHEDULES, spec.name):
        raise HTTPException(409, f"a schedule named '{spec.name}' exists; DELETE /schedules/{spec.name} first or "
                            "choose another name")
    schedule.add(conn, spec)
    return _info(request, spec.name)


@router.get("/schedules/{name}", response_model=ScheduleInfo)
def get_schedule(request: Request, name: str) -> ScheduleInfo:
    """One schedule, with its next fire time and its last fire."""
    return _info(request, name)


@router.get("/schedules/{name}/history", response_model=list[Fire])
def schedule_history(request: Request, name: str) -> list[Fire]:
    """The schedule's fires, newest first (the last 50)."""
    conn: Redis = request.app.state.conn
    _info(request, name)
    return [Fire.model_validate(results.public(fire.model_dump(), request.app.state.settings.data))
            for fire in schedule.history(conn, name)]


@router.delete("/schedules/{name}", status_code=204, response_class=Response)
def remove_schedule(request: Request, name: str) -> Response:
    """Remove a schedule and its history (runs it started are kept)."""
    conn: Redis = request.app.state.conn
    if not conn.hexists(schedule.SCHEDULES, name):
        raise HTTPException(404, f"Schedule {name} not found; list schedules with GET /schedules")
    schedule.remove(conn, name)
    return Response(status_code=204)


@router.post("/schedules/{name}/pause", response_model=ScheduleInfo)
def pause_schedule(request: Request, name: str) -> ScheduleInfo:
    """Pause a schedule: its ticks pass unfired until it is resumed (firing it now still works)."""
    return _paused(request, name, True)


@router.post("/schedules/{name}/resume", response_model=ScheduleInfo)
def resume_schedule(request: Request, name: str) -> ScheduleInfo:
    """Resume a paused schedule: it fires again from its next tick."""
    return _paused(request, name, False)


def _paused(request: Request, name: str, paused: bool) -> ScheduleInfo:
    conn: Redis = request.app.state.conn
    if not conn.hexists(schedule.SCHEDULES, name):
        raise HTTPException(404, f"Schedule {name} not found; list schedules with GET /schedules")
    schedule.pause(conn, name, paused)
    return _info(request, name)


@router.post("/schedules/{name}/run", response_model=Fire)
def fire_now(request: Request, name: str) -> Fire:
    """Fire now, whatever the overlap policy says. The answer is the fire's record: ``started`` with the run (or
    batch) id, or ``failed`` with the reason (a pipeline file that broke since it was added, a glob matching
    nothing)."""
    conn: Redis = request.app.state.conn
    if not conn.hexists(schedule.SCHEDULES, name):
        raise HTTPException(404, f"Schedule {name} not found; list schedules with GET /schedules")
    fired = schedule.run_now(conn, name)
    if fired.kind == "batch" and fired.id:
        conn.sadd(WATCHED_BATCHES, fired.id)  # driven by this server as the batches it was sent
    return fired
