"""What feeds the server's event streams: one pub/sub subscriber per server, one status read per change.

Workers and reconcile passes announce run changes on :data:`ifcflow.engine.changes.CHANNEL`. One thread per API
server listens and pokes the :class:`Topic` of that run (a batch's topic is poked by any run's change). A topic
is shared by every connection following the same run or batch: one task reads the status (in the thread pool)
when poked, at most once per ``interval``, and hands each changed document to all of them. With no
announcement a topic re-reads every :data:`SAFETY` seconds, so a lost message (pub/sub delivers at most once; a
reconnect loses what came meanwhile) delays an update, never hangs a client. A topic ends with its run, or
when its last connection left.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from fastapi.concurrency import run_in_threadpool
from redis import Redis
from redis.exceptions import RedisError

from ..engine import changes

SAFETY = 5.0
"""Seconds between re-reads of a followed run when nothing was announced."""
log = logging.getLogger("ifcflow.api")


def frame(event: str, data: str) -> bytes:
    return f"event: {event}\ndata: {data}\n\n".encode()


def frames(status: Any) -> bytes:
    """What a follower is sent for ``status``: a ``status`` event, and ``end`` with it when the run ended (one
    write per connection)."""
    text = status.model_dump_json()
    return frame("status", text) + frame("end", text) if status.terminal else frame("status", text)


class Topic:
    """The latest status document of one run (or batch), shared by the connections that follow it."""

    def __init__(self, key: str, read: Callable[[], Any], seen_as: Callable[[Any], str], interval: float):
        self.key, self.read, self.seen_as, self.interval = key, read, seen_as, interval
        self.followers = 0
        self.seq = 0
        self.status: Any = None
        self.error: BaseException | None = None
        self.done = False
        self.poked = asyncio.Event()
        self.changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def next(self, seen: int, timeout: float) -> tuple[int, Any] | None:
        """``(version, (document, its frames))`` after version ``seen`` (waiting up to ``timeout``; None then);
        raises the read's error."""
        while self.seq <= seen and self.error is None:
            try:
                async with asyncio.timeout(timeout):
                    await self.changed.wait()
            except TimeoutError:
                return None
        if self.seq > seen:
            return self.seq, self.status
        assert self.error is not None
        raise self.error

    async def run(self) -> None:
        last = None
        try:
            while self.followers and not self.done:
                self.poked.clear()  # a poke during the read below is kept for the next round
                began = time.monotonic()
                status = await run_in_threadpool(self.read)
                spent = time.monotonic() - began
                seen = self.seen_as(status)
                if seen != last:
                    last = seen
                    self._publish(status)
                if status.terminal:
                    return
                try:
                    await asyncio.wait_for(self.poked.wait(), SAFETY)
                except TimeoutError:
                    pass
                # a big run's read (25 ms at 1,000 steps) takes at most a third of a core, however busy the run
                await asyncio.sleep(max(0.0, max(self.interval, 2 * spent) - (time.monotonic() - began)))
        except Exception as exc:  # e.g. the run expired meanwhile: every follower gets the error
            self.error = exc
            self._wake()
        finally:
            self.done = True

    def _publish(self, status: Any) -> None:
        self.status = status, frames(status)  # serialized and framed once for every follower
        self.seq += 1
        self._wake()

    def _wake(self) -> None:
        woken, self.changed = self.changed, asyncio.Event()
        woken.set()


class Feed:
    """``feed.join(key, read, seen_as, interval)`` ... ``feed.leave(topic)``; one subscriber thread per server."""

    def __init__(self, conn: Redis):
        self.conn = conn
        self.topics: dict[str, Topic] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.stopping = threading.Event()

    def join(self, key: str, read: Callable[[], Any], seen_as: Callable[[Any], str], interval: float) -> Topic:
        self._listen()
        topic = self.topics.get(key)
        if topic is None or topic.done:
            topic = self.topics[key] = Topic(key, read, seen_as, interval)
        topic.followers += 1
        if topic.task is None:
            topic.task = asyncio.get_running_loop().create_task(topic.run())
        return topic

    def leave(self, topic: Topic) -> None:
        topic.followers -= 1
        if topic.followers <= 0:
            topic.poked.set()  # its task sees no followers and ends
            if self.topics.get(topic.key) is topic:
                del self.topics[topic.key]

    def poke(self, run_id: str | None) -> None:
        """In the event loop: a run changed (None: anything may have changed, e.g. after a reconnect)."""
        for key, topic in list(self.topics.items()):
            if run_id is None or key == run_id or key.startswith("batch:"):
                topic.poked.set()

    def _listen(self) -> None:
        if self.thread is None:
            self.loop = asyncio.get_running_loop()
            self.thread = threading.Thread(target=self._subscribe, name="ifcflow-feed", daemon=True)
            self.thread.start()

    def _subscribe(self) -> None:
        """The subscriber thread: forward announcements to the event loop; resubscribe after a lost connection."""
        assert self.loop is not None
        while not self.stopping.is_set():
            pubsub = self.conn.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(changes.CHANNEL)
                self.loop.call_soon_threadsafe(self.poke, None)  # what was announced while not subscribed
                while not self.stopping.is_set():
                    run_id = changes.decode(pubsub.get_message(timeout=1.0))
                    if run_id is not None:
                        self.loop.call_soon_threadsafe(self.poke, run_id)
            except RedisError as exc:
                log.warning("event feed lost Redis (%s); streams re-read every %.0f s until it is back", exc, SAFETY)
                self.stopping.wait(1.0)
            except RuntimeError:  # the event loop closed (server shut down)
                return
            finally:
                try:
                    pubsub.close()
                except RedisError:
                    pass

    def stop(self) -> None:
        self.stopping.set()
