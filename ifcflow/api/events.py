"""``GET /runs/{run_id}/events``: Server-Sent Events, not polling, for clients (``stream`` serves batches too).

The server's event feed (:mod:`ifcflow.api.feed`) re-reads a run's status (one Redis round trip, a server-side
script) when a worker announces a change of it on Redis pub/sub, or every few seconds when nothing was announced;
every connection that follows the same run shares that read. A connection gets a ``status`` event whenever the
document changed (step states, progress, attempts; not the running steps' ever-growing durations), then ``end``
with the final document. A comment line every 15 s keeps proxies from closing an idle stream.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from ..engine.status import RunStatus
from . import results
from .auth import require_key
from .feed import Feed
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


class Document(Protocol):
    """A status document an event stream follows (a run's or a batch's)."""

    @property
    def terminal(self) -> bool: ...

    def model_dump_json(self) -> str: ...


D = TypeVar("D", bound=Document)


async def stream(request: Request, key: str, read: Callable[[], D], seen_as: Callable[[D], str],
                 interval: float) -> AsyncIterator[bytes]:
    """``status`` whenever ``seen_as(read())`` changes, then ``end``; ``key`` names what is followed (a run id,
    ``batch:<id>``), so connections following the same thing share one read per change."""
    feed: Feed = request.app.state.feed
    topic = feed.join(key, read, seen_as, interval)
    try:
        yield b"retry: 1000\n\n"
        seen = 0
        while True:
            got = await topic.next(seen, KEEPALIVE)
            if got is None:
                if await request.is_disconnected():
                    return
                yield b": keep-alive\n\n"
                continue
            seen, (status, framed) = got
            yield framed  # built once per change for every connection (with ``end`` when it is the last)
            if status.terminal:
                return
    finally:
        feed.leave(topic)


@router.get("/runs/{run_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def events(request: Request, run_id: str) -> StreamingResponse:
    """Server-Sent Events: ``status`` (the status document) on every change, then ``end`` (the final one)."""
    reader = await run_in_threadpool(reader_for, request.app.state.conn, run_id)
    settings = request.app.state.settings

    def read() -> RunStatus:  # as GET /runs/{id}: no server path
        return results.public_status(reader.read(), settings.data, settings.pipelines)

    return respond(stream(request, run_id, read, fingerprint, settings.events_interval))


def respond(frames: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(frames, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
