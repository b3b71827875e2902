"""Progress during long library calls: a small forked process keeps a running step's status moving.

A step's body reports progress between library calls, but one call can take minutes on a big model (opening it,
a quantity take-off, writing it), and some of them (ifcopenshell's ``file.write``) hold the GIL throughout, so a
thread of the work horse could not report meanwhile. So when a step starts, its work horse forks a ticker (about
2 ms; it only sleeps and talks to Redis). Every ``IFCFLOW_PROGRESS_INTERVAL`` seconds (default 5; 0 turns it off)
the ticker reads the job's ``meta``; when the step has not reported for that long it rewrites the progress message
as ``<phase> (running for <N> s)`` (``phase``, ``elapsed`` and ``at`` are added to the progress document) and
announces the run's change, so ``ifcflow status``, ``GET /runs/{id}``, the live view and the page's SSE see a new
note at least every interval.

- The write is a WATCH/MULTI on the job hash: when the step saves its own progress meanwhile, the tick is dropped.
- It ends when the step's body returns or fails (the horse closes a pipe and reaps it, before it records errors or
  the final progress), when the horse dies (RQ kills the horse's process group, the ticker's too; and the ticker
  checks its parent every tick), and on any error of its own (a status note is never worth failing a step for).
"""

from __future__ import annotations

import os
import select
import signal
import time
from typing import Any

from redis import ConnectionPool, Redis, WatchError
from rq.job import Job

from ifcflow.engine import changes

ENV = "IFCFLOW_PROGRESS_INTERVAL"
DEFAULT = 5.0
STOP_WAIT = 2.0
"""Seconds a step's end waits for its ticker to exit before killing it."""


def interval() -> float:
    """Seconds between ticks (``IFCFLOW_PROGRESS_INTERVAL``, default 5); 0 or less: no ticker."""
    raw = os.environ.get(ENV, "").strip()
    try:
        return float(raw) if raw else DEFAULT
    except ValueError:
        return DEFAULT


class Ticker:
    """The ticker process of one step: ``start()`` when the body begins, ``stop()`` when it ends (idempotent)."""

    def __init__(self, job: Job, run_id: str):
        self.job = job
        self.run_id = run_id
        self.pid: int | None = None
        self.pipe: int | None = None

    def start(self) -> Ticker:
        every = interval()
        if every <= 0 or self.pid is not None:
            return self
        pool = self.job.connection.connection_pool
        settings = (pool.connection_class, dict(pool.connection_kwargs))
        began, parent = time.monotonic(), os.getpid()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the ticker: never returns into the work horse's code
            code = 0
            try:
                os.close(write)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                _loop(read, settings, self.job, self.run_id, every, began, parent)
            except BaseException:  # noqa: BLE001 - a note is never worth more than ending quietly
                code = 1
            finally:
                os._exit(code)
        os.close(read)
        self.pid, self.pipe = pid, write
        return self

    def stop(self) -> None:
        if self.pid is None or self.pipe is None:
            return
        os.close(self.pipe)  # the ticker sees end of file at once and exits
        deadline = time.monotonic() + STOP_WAIT
        try:
            while os.waitpid(self.pid, os.WNOHANG) == (0, 0):
                if time.monotonic() > deadline:  # stuck (e.g. in a Redis call): never hold the step up for it
                    os.kill(self.pid, signal.SIGKILL)
                    os.waitpid(self.pid, 0)
                    break
                time.sleep(0.001)
        except (ChildProcessError, ProcessLookupError):
            pass
        self.pid = self.pipe = None


def _loop(read: int, settings: tuple[Any, dict[str, Any]], job: Job, run_id: str, every: float, began: float,
          parent: int) -> None:
    connection_class, kwargs = settings
    conn = Redis(connection_pool=ConnectionPool(connection_class=connection_class, **kwargs))
    while True:
        ready, _, _ = select.select([read], [], [], every)
        if ready or os.getppid() != parent:
            return
        if tick(conn, job, every, time.monotonic() - began):
            changes.publish(conn, run_id)


def tick(conn: Redis, job: Job, every: float, elapsed: float) -> bool:
    """Rewrite the job's progress note unless the step reported within ``every`` seconds; True if written."""
    with conn.pipeline() as pipe:
        try:
            pipe.watch(job.key)
            raw = pipe.hget(job.key, "meta")
            meta = job.serializer.loads(raw) if isinstance(raw, bytes) and raw else {}
            if not isinstance(meta, dict):
                return False
            found = meta.get("progress")
            progress: dict[str, Any] = found if isinstance(found, dict) else {}
            now = time.time()
            if now - float(progress.get("at") or 0.0) < every * 0.9:
                return False  # the step itself reported lately
            phase = str(progress.get("phase") or progress.get("message") or "running")
            seconds = round(elapsed)
            meta["progress"] = {"done": progress.get("done", 0), "total": progress.get("total"),
                                "percent": progress.get("percent"), "phase": phase,
                                "message": f"{phase} (running for {seconds} s)", "elapsed": seconds, "at": now}
            pipe.multi()
            pipe.hset(job.key, "meta", job.serializer.dumps(meta))
            pipe.execute()
        except WatchError:  # the step saved its own progress meanwhile: it is newer
            return False
    return True
