"""The FastAPI application: ``create_app(settings)``; ``ifcflow serve`` runs it on uvicorn."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from redis import Redis
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..engine import connection, reconcile
from ..engine.webhooks import WebhookRejected
from ..errors import IfcflowError, NotAllowed, PipelineError, RunNotFound
from . import (
    answers,
    batches,
    downloads,
    events,
    fetch,
    health,
    history,
    jobs,
    limits,
    objects,
    original,
    preview,
    runs,
    schedules,
    ui,
    uibatches,
    uilineage,
    uischedules,
    uploads,
)
from .docs import install as install_docs
from .feed import Feed
from .guard import Guard
from .paths import UnsafePath
from .problems import public
from .settings import Settings
from .watcher import Watcher


def _scrub(request: Request, detail: Any) -> Any:
    """An answer's detail with the server's absolute paths relative to the data (or pipelines) folder."""
    settings: Settings = request.app.state.settings
    roots = (settings.data, settings.pipelines)
    if isinstance(detail, str):
        return public(detail, roots)
    if isinstance(detail, list):
        return [{**d, "msg": public(d["msg"], roots)} if isinstance(d, dict) and isinstance(d.get("msg"), str) else d
                for d in detail]
    return detail


def _errors(app: FastAPI) -> None:
    """Every error is JSON ``{"detail": ...}`` with the right status; bad input is never a 500; messages name
    paths relative to the data folder, never the server's own layout."""

    @app.exception_handler(PipelineError)
    async def pipeline_error(request: Request, exc: PipelineError) -> JSONResponse:
        detail = [{"loc": ["body", _scrub(request, p.file), p.line, p.col], "msg": _scrub(request, str(p)),
                   "type": "pipeline"} for p in exc.problems]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(NotAllowed)
    async def not_allowed(request: Request, exc: NotAllowed) -> JSONResponse:
        return JSONResponse({"detail": [{"loc": ["body"], "msg": str(exc), "type": "not_allowed"}]}, status_code=422)

    @app.exception_handler(UnsafePath)
    async def unsafe(request: Request, exc: UnsafePath) -> JSONResponse:
        return JSONResponse({"detail": _scrub(request, str(exc))}, status_code=400)

    @app.exception_handler(WebhookRejected)
    async def webhook_rejected(request: Request, exc: WebhookRejected) -> JSONResponse:
        return JSONResponse({"detail": [{"loc": ["body", "webhook"], "msg": str(exc), "type": "webhook"}]},
                            status_code=422)

    @app.exception_handler(RunNotFound)
    async def not_found(request: Request, exc: RunNotFound) -> JSONResponse:
        return JSONResponse({"detail": _scrub(request, str(exc))}, status_code=404)

    @app.exception_handler(IfcflowError)
    async def ifcflow_error(request: Request, exc: IfcflowError) -> JSONResponse:
        return JSONResponse({"detail": _scrub(request, str(exc))}, status_code=409)

    @app.exception_handler(RedisError)
    async def redis_down(request: Request, exc: RedisError) -> JSONResponse:
        return JSONResponse({"detail": f"Redis is unavailable ({type(exc).__name__}); try again shortly"},
                            status_code=503)

    @app.exception_handler(UnicodeError)
    async def bad_text(request: Request, exc: UnicodeError) -> JSONResponse:
        return JSONResponse({"detail": f"the request is not valid UTF-8 ({exc})"}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:  # Allow: every method of the path (Starlette names only the first route's)
            allow = ", ".join(answers.methods_of(request.app, request.url.path))
            return JSONResponse({"detail": f"method {request.method} is not allowed here"}, status_code=405,
                                headers={"Allow": allow or (exc.headers or {}).get("Allow", "")})
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            return JSONResponse({"detail": "the request body cannot be read: malformed, or JSON nested too deeply; "
                                 "send the JSON object the endpoint's schema shows (/docs)"}, status_code=400)
        detail = _scrub(request, exc.detail)
        if detail != exc.detail:
            return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        return JSONResponse({"detail": detail}, status_code=422)


def create_app(settings: Settings, conn: Redis | None = None) -> FastAPI:
    """The API on ``settings`` (data folder, Redis, keys); ``conn`` overrides the Redis client (tests)."""
    settings.prepare()
    if objects.store(settings) is not None:
        objects.downloads_mode()  # a wrong IFCFLOW_S3_DOWNLOADS stops the server at start, in one line
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
            app.state.feed.stop()

    keyed = bool(settings.api_keys)  # then /docs and /openapi.json need the key like the rest (api/docs.py)
    app = FastAPI(title="ifcflow", version="0.1.0", lifespan=lifespan, docs_url=None if keyed else "/docs",
                  redoc_url=None if keyed else "/redoc", openapi_url=None if keyed else "/openapi.json", description=(
        "Pipelines of IfcOpenShell tools on RQ. The original IFC Pipeline gateway's endpoints, unchanged, plus "
        "pipelines (/runs), batches over many models (/batches), schedules (/schedules), live events (SSE) and signed "
        "webhooks. Send X-API-Key (IFCFLOW_API_KEYS)."))
    app.add_middleware(Guard, allowed_hosts=settings.allowed_hosts)  # foreign Host, cross-site writes
    app.state.settings = settings
    app.state.conn = client
    app.state.feed = Feed(client)  # run changes announced on pub/sub, fanned out to the event streams
    _errors(app)
    for module in (health, original, jobs, uploads, downloads, preview, fetch, runs, events, batches, schedules):
        app.include_router(module.router, responses=answers.of_router(module.router))  # every error answer documented
    app.include_router(preview.keyed, responses=answers.of_router(preview.keyed))
    ui.install(app)  # the web page under /ui (issue 11)
    app.include_router(uibatches.router)
    app.include_router(uischedules.router)
    app.include_router(uilineage.router)  # a file's lineage graph (issue 19)
    if keyed:
        install_docs(app)
    limits.install(app)  # body size, steps per pipeline, runs per batch (IFCFLOW_MAX_*)
    history.install(app, settings)  # GET /history, /lineage, /audit; the actor of each request (issue 19)
    return app
