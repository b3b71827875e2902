"""The FastAPI application: ``create_app(settings)``; ``ifcflow serve`` runs it on uvicorn."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis import Redis
from redis.exceptions import RedisError

from .. import connection, reconcile
from ..errors import IfcflowError, PipelineError, RunNotFound
from . import batches, events, health, history, jobs, original, runs, schedules, ui, uploads
from .paths import UnsafePath
from .settings import Settings
from .watcher import Watcher
from .webhook import WebhookRejected


def _errors(app: FastAPI) -> None:
    """Every error is JSON ``{"detail": ...}`` with the right status; bad input is never a 500."""

    @app.exception_handler(PipelineError)
    async def pipeline_error(request: Request, exc: PipelineError) -> JSONResponse:
        detail = [{"loc": ["body", p.file, p.line, p.col], "msg": str(p), "type": "pipeline"} for p in exc.problems]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(UnsafePath)
    async def unsafe(request: Request, exc: UnsafePath) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(WebhookRejected)
    async def webhook_rejected(request: Request, exc: WebhookRejected) -> JSONResponse:
        return JSONResponse({"detail": [{"loc": ["body", "webhook"], "msg": str(exc), "type": "webhook"}]},
                            status_code=422)

    @app.exception_handler(RunNotFound)
    async def not_found(request: Request, exc: RunNotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(IfcflowError)
    async def ifcflow_error(request: Request, exc: IfcflowError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(RedisError)
    async def redis_down(request: Request, exc: RedisError) -> JSONResponse:
        return JSONResponse({"detail": f"Redis is unavailable ({type(exc).__name__}); try again shortly"},
                            status_code=503)

    @app.exception_handler(UnicodeError)
    async def bad_text(request: Request, exc: UnicodeError) -> JSONResponse:
        return JSONResponse({"detail": f"the request is not valid UTF-8 ({exc})"}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        return JSONResponse({"detail": detail}, status_code=422)


def create_app(settings: Settings, conn: Redis | None = None) -> FastAPI:
    """The API on ``settings`` (data folder, Redis, keys); ``conn`` overrides the Redis client (tests)."""
    settings.prepare()
    client = conn or connection.connect(settings.redis_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # the reconcile loop repairs and ends every run (run-end hooks: the webhook) even with plain rq workers;
        # the watcher advances the batches submitted here
        stop = threading.Event()
        loop = threading.Thread(target=reconcile.loop, args=(client, settings.watch_interval, stop),
                                name="ifcflow-reconcile", daemon=True)
        loop.start()
        watcher = Watcher(client, settings.watch_interval)
        watcher.start()
        try:
            yield
        finally:
            stop.set()
            watcher.stop()

    app = FastAPI(title="ifcflow", version="0.1.0", lifespan=lifespan, description=(
        "Pipelines of IfcOpenShell tools on RQ. The original IFC Pipeline gateway's endpoints, unchanged, plus "
        "pipelines (/runs), batches over many models (/batches), schedules (/schedules), live events (SSE) and signed "
        "webhooks. Send X-API-Key (IFCFLOW_API_KEYS)."))
    app.state.settings = settings
    app.state.conn = client
    _errors(app)
    for module in (health, original, jobs, uploads, runs, events, batches, schedules):
        app.include_router(module.router)
    ui.install(app)  # the web page under /ui (issue 11)
    history.install(app, settings)  # GET /history, /lineage, /audit; the actor of each request (issue 19)
    return app
