"""The history database over HTTP: ``GET /history``, ``GET /lineage/{key-or-sha256}``, ``GET /audit``.

Paths in answers are named relative to the data folder (``uploads/arch.ifc``, ``output/runs/<run>/<step>/x``); a
recorded path outside the data folder (a local run's) is given by its file name only. The server records every
request's actor (``api:key#N``, N the position of the key in ``IFCFLOW_API_KEYS``; ``api:anonymous`` without keys)
and drains the history outbox into ``$IFCFLOW_DATABASE_URL`` or ``<data>/history.sqlite``.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from ..engine import outbox, store
from ..engine.states import RunState
from ..errors import IfcflowError
from ..history import database as history
from ..history import lineage
from . import answers, objects, paths
from .auth import require_key
from .settings import Settings

router = APIRouter(dependencies=[Depends(require_key)], tags=["history"])
AGE = r"^\d{1,6}[smhdwy]$"
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:@#-]{0,199}$"


def install(app: FastAPI, settings: Settings) -> None:
    """Routes, the actor of each request, and this server's history database (where its reconcile loop drains)."""
    outbox.configure(app.state.conn, history.url_for(settings.data))
    app.include_router(router, responses=answers.of_router(router))  # every error answer documented
    app.add_middleware(Actor, keys=settings.api_keys)


class Actor:
    """Pure ASGI middleware: every request acts as ``api:key#N`` (or ``api:anonymous``) for the audit trail."""

    def __init__(self, app: ASGIApp, keys: tuple[str, ...]):
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"x-api-key")
            outbox.set_actor(self.name(given.decode("latin-1") if given else None))
        await self.app(scope, receive, send)

    def name(self, key: str | None) -> str:
        if key:
            for index, candidate in enumerate(self.keys, 1):
                if hmac.compare_digest(key.encode(), candidate.encode()):
                    return f"api:key#{index}"
        return "api:anonymous"


def _url(request: Request) -> str:
    settings: Settings = request.app.state.settings
    return history.url_for(settings.data)


def _relative(request: Request, path: str | None) -> str | None:
    if not path:
        return None
    if path.startswith("s3://"):  # an object of the store names no server path
        return path
    data = os.path.realpath(request.app.state.settings.data)
    real = os.path.realpath(path)
    return os.path.relpath(real, data) if real.startswith(data.rstrip("/") + "/") else Path(path).name


async def _query(func: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return await run_in_threadpool(func, *args, **kwargs)
    except history.HistoryUnavailable as exc:
        raise HTTPException(503, str(exc)) from None
    except IfcflowError as exc:
        raise HTTPException(404 if "not in the history" in str(exc) else 400, str(exc)) from None


def _behind(request: Request) -> int | None:
    try:
        return outbox.behind(request.app.state.conn)
    except Exception:  # noqa: BLE001 - the history answers without Redis
        return None


@router.get("/history")
async def history_list(request: Request, pipeline: str | None = Query(None, pattern=NAME),
                       since: str | None = Query(None, pattern=AGE, description="e.g. 30d, 12h, 2y"),
                       state: RunState | None = None, limit: int = Query(50, ge=1, le=1000)) -> dict[str, Any]:
    """Recorded runs, newest first (they outlive Redis); ``behind``: records still waiting in the outbox."""
    after = lineage.ago(lineage.since_seconds(since)) if since else None
    rows = await _query(lineage.runs_list, _url(request), pipeline=pipeline, since=after,
                        state=state.value if state else None, limit=limit)
    for row in rows:
        row["file"] = _relative(request, row["file"])
        row["out_dir"] = _relative(request, row["out_dir"])
        for entry in row["inputs"].values():
            entry["path"] = _relative(request, entry.get("path"))
    return {"runs": rows, "behind": _behind(request)}


@router.get("/lineage/{target:path}")
async def lineage_of(request: Request, target: str, direction: Literal["up", "down", "both"] = "both",
                     depth: int = Query(20, ge=1, le=lineage.MAX_DEPTH)) -> dict[str, Any]:
    """What produced a file and from what, and what was derived from it. ``target``: a sha256, or a path in the
    data folder (``output/...``, ``uploads/...``). Each step says whether its run is still in Redis
    (``run_exists``: its status and page exist; null when Redis cannot be asked)."""
    if not lineage.SHA256.match(target):
        settings = request.app.state.settings
        real = paths.data_file(settings.data, target, "target")
        s3 = objects.store(settings)
        if s3 is not None:  # an S3 store: the history names the object by its URL
            target = s3.describe(objects.data_key(settings, real))
        else:
            found = await run_in_threadpool(outbox.describe, real) if real.is_file() else None
            target = found["sha256"] if found else str(real)
    doc = await _query(lineage.lineage, _url(request), target, direction, depth)
    doc["target"] = _relative(request, doc["target"]) if "/" in doc["target"] else doc["target"]
    for entry in doc["files"]:
        entry["paths"] = sorted({p for p in (_relative(request, p) for p in entry["paths"]) if p})
    kept = await run_in_threadpool(_kept, request, sorted({step["run_id"] for step in doc["steps"]}))
    for step in doc["steps"]:
        step["run_exists"] = kept.get(step["run_id"])
    return doc


def _kept(request: Request, run_ids: list[str]) -> dict[str, bool | None]:
    """Which runs Redis still has (their page and status exist); None for each when Redis cannot say."""
    try:
        with request.app.state.conn.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.exists(store.run_key(run_id))
            return {run_id: bool(found) for run_id, found in zip(run_ids, pipe.execute(), strict=True)}
    except Exception:  # noqa: BLE001 - the lineage answers without Redis
        return dict.fromkeys(run_ids)


@router.get("/audit")
async def audit_list(request: Request, since: str | None = Query(None, pattern=AGE),
                     event: str | None = Query(None, pattern=r"^[a-z][a-z-]{0,39}$"),
                     run_id: str | None = Query(None, pattern=NAME),
                     limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    """Who did what and when: submit, cancel, retry, schedule-fire, worker-lost, job-lost, killed."""
    after = lineage.ago(lineage.since_seconds(since)) if since else None
    rows = await _query(lineage.audit_list, _url(request), since=after, event=event, run_id=run_id, limit=limit)
    return {"events": rows}


async def upload_facts(request: Request, path: Path, sha256: str | None = None) -> dict[str, Any]:
    """An upload's sha256 (computed while it arrived, when given), and whether (and in which runs) the history
    already knows its contents."""
    found = {"sha256": sha256} if sha256 else await run_in_threadpool(outbox.describe, path)
    if not found:
        return {}
    try:
        runs = await run_in_threadpool(lineage.runs_using, _url(request), found["sha256"])
    except Exception:  # noqa: BLE001 - the upload is stored; the history may be down
        return {"sha256": found["sha256"]}
    return {"sha256": found["sha256"], "known": bool(runs), "runs": runs}
