"""``GET /runs/{run_id}/events``: Server-Sent Events, not polling, for clients (``stream`` serves batches too).

One loop per connection reads the run's status (one Redis round trip, a server-side script) every
``events_interval`` (50 ms; at least twice the read's own time, so a 1,000-step run costs a connection at most a
third of a core) and sends a ``status`` event whenever the document changed (step states, progress,
attempts; not the running steps' ever-growing durations), then ``end`` with the final document. A comment line
every 15 s keeps proxies from closing an idle stream.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from ..status import RunStatus
from .auth import require_key
from .runs import reader_for

router = APIRouter(dependencies=[Depends(require_key)], tags=["runs"])
KEEPALIVE = 15.0


def fingerprint(status: RunStatus) -> str:
    """What a client sees change: the document without the running steps' durations."""
    doc: dict[str, Any] = status.model_dump(mode="json")
    for step in doc["steps"].values():
        if step["status"] == "running":
            step["duration"] = None
    return json.dumps(doc, sort_keys=True)


def frame(event: str, data: str) -> bytes:
    return f"event: {event}\ndata: {data}\n\n".encode()


class Document(Protocol):
    """A status document an event stream follows (a run's or a batch's)."""

    @property
    def terminal(self) -> bool: ...

    def model_dump_json(self) -> str: ...


D = TypeVar("D", bound=Document)


async def stream(request: Request, read: Callable[[], D], seen_as: Callable[[D], str],
                 interval: float) -> AsyncIterator[bytes]:
    """``status`` whenever ``seen_as(read())`` changes, then ``end``; ``read`` runs in the thread pool."""
    last = None
    quiet_since = time.monotonic()
    yield b"retry: 1000\n\n"
    while True:
        began = time.monotonic()
        status = await run_in_threadpool(read)
        spent = time.monotonic() - began
        seen = seen_as(status)
        if seen != last:
            last = seen
            quiet_since = time.monotonic()
            yield frame("status", status.model_dump_json())
        if status.terminal:
            yield frame("end", status.model_dump_json())
            return
        if time.monotonic() - quiet_since > KEEPALIVE:
            quiet_since = time.monotonic()
            yield b": keep-alive\n\n"
        if await request.is_disconnected():
            return
        await asyncio.sleep(max(interval, 2 * spent))  # a big run's read (25 ms at 1,000 steps) costs at most 1/3


@router.get("/runs/{run_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def events(request: Request, run_id: str) -> StreamingResponse:
    """Server-Sent Events: ``status`` (the status document) on every change, then ``end`` (the final one)."""
    reader = await run_in_threadpool(reader_for, request.app.state.conn, run_id)
    return respond(stream(request, reader.read, fingerprint, request.app.state.settings.events_interval))


def respond(frames: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(frames, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
