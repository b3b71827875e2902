"""What one HTTP request may ask of the server: body size (``IFCFLOW_MAX_BODY``), runs per batch
(``IFCFLOW_MAX_BATCH_RUNS``) and, through :mod:`ifcflow.pipeline.limits`, steps per pipeline (``IFCFLOW_MAX_STEPS``).

:func:`install` reads and checks the three settings when the app is made (a bad value stops ``ifcflow serve``
with what to write) and adds :class:`BodyLimit`, a plain ASGI middleware: a request whose ``Content-Length``
is over the limit is answered 413 before its body is read; a body without a length (chunked) is counted as it
arrives and answered 413 once it passes the limit. Uploads (``/upload/...``, the web page's ``/ui/new`` form)
have their own limit, ``IFCFLOW_MAX_UPLOAD``, and are left to it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..batches import batch
from ..errors import IfcflowError
from ..pipeline import limits

MAX_BODY_ENV = "IFCFLOW_MAX_BODY"
MAX_BODY = 2 * 1024 * 1024
"""Default request body limit: 2 MiB, room for the largest pipeline file (1 MiB, :data:`ifcflow.pipeline.source.MAX_BYTES`)
written out as JSON text."""
MAX_BATCH_RUNS_ENV = "IFCFLOW_MAX_BATCH_RUNS"
MAX_BATCH_RUNS = batch.DEFAULT_MAX_RUNS
"""Default cap on ``max_runs`` of ``POST /batches`` (1,000, the CLI's default)."""
UPLOAD_PATHS = ("/upload/", "/ui/new")


@dataclass(frozen=True)
class Limits:
    max_body: int = MAX_BODY
    max_batch_runs: int = MAX_BATCH_RUNS
    max_steps: int = limits.MAX_STEPS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        env = os.environ if environ is None else environ
        return cls(max_body=_positive(env, MAX_BODY_ENV, MAX_BODY, "a number of bytes"),
                   max_batch_runs=_positive(env, MAX_BATCH_RUNS_ENV, MAX_BATCH_RUNS, "a number of runs"),
                   max_steps=limits.max_steps(env))


def _positive(env: Mapping[str, str], name: str, default: int, what: str) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise IfcflowError(f"{name}={raw!r} is not {what}; set it to a whole number of at least 1 "
                           f"(default {default:,}) or unset it")
    return value


def install(app: FastAPI, environ: Mapping[str, str] | None = None) -> Limits:
    """Read the limits (``app.state.limits``) and add the body limit to ``app``."""
    found = Limits.from_env(environ)
    app.state.limits = found
    app.add_middleware(BodyLimit, limit=found.max_body)
    return found


class BodyLimit:
    """Answer 413 to a request body over ``limit`` bytes (uploads excepted: they have their own limit).

    A body without a length is counted as it is read; passing the limit raises a 413 ``HTTPException`` from the
    read, which FastAPI passes on as it is and answers in its usual JSON shape."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    def detail(self, length: int | None) -> str:
        size = f"{length:,} bytes" if length is not None else f"over {self.limit:,} bytes"
        return (f"the request body is {size}; the limit is {self.limit:,} bytes ({MAX_BODY_ENV}). Send a smaller "
                "pipeline (upload models with POST /upload/... and name them), or ask the server's operator to "
                f"raise {MAX_BODY_ENV}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(UPLOAD_PATHS):
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            await JSONResponse({"detail": self.detail(int(length))}, status_code=413,
                               headers={"connection": "close"})(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise HTTPException(413, self.detail(None))
            return message

        await self.app(scope, counted, send)
