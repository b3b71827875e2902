"""Progress during long library calls: a small forked process keeps a running step's status moving.

A step's body reports progress between library calls, but one call can take minutes on a big model (opening it,
a quantity take-off, writing it), and some of them (ifcopenshell's ``file.write``) hold the GIL throughout, so a
thread of the work horse could not report meanwhile. So a work horse forks a ticker process (it only sleeps and
talks to Redis). Every ``IFCFLOW_PROGRESS_INTERVAL`` seconds (default 5; 0 turns it off) of a running step the
ticker reads the job's ``meta``; when the step has not reported for that long it rewrites the progress message
as ``<phase> (running for <N> s)`` (``phase``, ``elapsed`` and ``at`` are added to the progress document) and
announces the run's change, so ``ifcflow status``, ``GET /runs/{id}``, the live view and the page's SSE see a new
note at least every interval.

- **One ticker per work horse** (:func:`per_horse`, called by ``ifcflow worker`` in each horse it starts): forked
  at the horse's first step and fed each step's start and end over a pipe (a few microseconds per step, where a
  fork per step cost a fork and a reap). Elsewhere (a plain ``rq worker``, a step run in the caller's process) a
  ticker is forked per step and reaped at its end, as before.
- The write is a WATCH/MULTI on the job hash: when the step saves its own progress meanwhile, the tick is dropped,
  and a job no longer ``started`` is not ticked; so a tick still in flight when the step ends can never overwrite
  what the step records at its end.
- It stops ticking a step when the step's body returns or fails (before the step records its errors or its final
  progress). It dies with its horse: it sees the pipe close when the horse exits, checks its parent every tick (and
  every few seconds while idle), and RQ's or the worker's kill of the horse's process group kills it too. Any error
  of its own ends it quietly (a status note is never worth failing a step for; the next step forks a fresh one).
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
from ifcflow.operations import pipes

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


IDLE_CHECK = 5.0
"""Seconds between an idle resident ticker's checks that its horse is still alive."""


class Ticker:
    """The ticking of one step: ``start()`` when the body begins, ``stop()`` when it ends (idempotent)."""

    def __init__(self, job: Job, run_id: str):
        self.job = job
        self.run_id = run_id
        self.pid: int | None = None
        self.pipe: int | None = None
        self.resident = False

    def start(self) -> Ticker:
        every = interval()
        if every <= 0 or self.pid is not None or self.resident:
            return self
        began = time.monotonic()
        if _horse == os.getpid():
            self.resident = _resident_send(self.job, ("start", self.job.key, self.run_id, every, began,
                                                      self.job.serializer))
            if self.resident:
                return self
        read, write = os.pipe()
        self.pid = _fork(read, write, _settings(self.job), _step_loop, (self.job.key, self.job.serializer,
                                                                        self.run_id, every, began))
        os.close(read)
        self.pipe = write
        return self

    def stop(self) -> None:
        if self.resident:
            self.resident = False
            _resident_send(self.job, ("stop",), fork=False)
            return
        if self.pid is None or self.pipe is None:
            return
        os.close(self.pipe)  # the ticker sees end of file at once and exits
        _reap(self.pid, STOP_WAIT)
        self.pid = self.pipe = None


_horse = 0
"""The pid of the work horse that keeps one ticker for all its steps (see :func:`per_horse`)."""
_ticker: tuple[int, int, int] | None = None
"""The resident ticker: (its pid, the write end of its pipe, the pid of the horse that forked it)."""


def per_horse() -> None:
    """This process is a work horse that runs many steps: keep one ticker for all of them (forked at its first
    step). ``ifcflow worker`` calls it in each horse it starts."""
    global _horse
    _horse = os.getpid()


def _resident_send(job: Job, message: tuple[Any, ...], fork: bool = True) -> bool:
    """Send ``message`` to this horse's ticker (forked first if there is none, or it died); False when it
    cannot be sent (the step then gets a ticker of its own)."""
    global _ticker
    for _attempt in range(2):
        if _ticker is None or _ticker[2] != os.getpid():  # (none yet, or the one of the process this was forked from)
            if not fork:
                return False
            read, write = os.pipe()
            pid = _fork(read, write, _settings(job), _resident_loop, ())
            os.close(read)
            os.set_blocking(write, False)  # a ticker stuck in a Redis call never blocks the horse
            _ticker = (pid, write, os.getpid())
        try:
            os.write(_ticker[1], pipes.frame(message))
            return True
        except OSError:  # it died (or is stuck with a full pipe): reap it, fork a fresh one
            pid, write, _ = _ticker
            _ticker = None
            os.close(write)
            _reap(pid, 0.0)
    return False


def _settings(job: Job) -> tuple[Any, dict[str, Any]]:
    pool = job.connection.connection_pool
    return pool.connection_class, dict(pool.connection_kwargs)


def _fork(read: int, write: int, settings: tuple[Any, dict[str, Any]], loop: Any, args: tuple[Any, ...]) -> int:
    """Fork a ticker running ``loop(read, conn, parent, *args)``; it never returns into the horse's code."""
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(write)
            # the horse's other descriptors too: its pipe to the worker above all, whose end the worker must see
            # as soon as the horse dies, whatever the ticker is doing then
            os.closerange(3, read)
            os.closerange(read + 1, os.sysconf("SC_OPEN_MAX"))
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            connection_class, kwargs = settings
            conn = Redis(connection_pool=ConnectionPool(connection_class=connection_class, **kwargs))
            loop(read, conn, parent, *args)
        except BaseException:  # noqa: BLE001 - a note is never worth more than ending quietly
            code = 1
        finally:
            os._exit(code)
    return pid


def _reap(pid: int, wait: float) -> None:
    """Wait up to ``wait`` s for ticker ``pid`` to exit, then kill it (stuck, e.g. in a Redis call)."""
    deadline = time.monotonic() + wait
    try:
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() >= deadline:  # never hold the step up for it
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.001)
    except (ChildProcessError, ProcessLookupError):
        pass


def _step_loop(read: int, conn: Redis, parent: int, key: str, serializer: Any, run_id: str, every: float,
               began: float) -> None:
    """A ticker of one step: tick every ``every`` s until the pipe closes."""
    wait = every
    while True:
        ready, _, _ = select.select([read], [], [], wait)
        if ready or os.getppid() != parent:
            return
        written, wait = tick(conn, key, serializer, every, time.monotonic() - began)
        if written:
            changes.publish(conn, run_id)


def _resident_loop(read: int, conn: Redis, parent: int) -> None:
    """The ticker of a horse: tick the step announced by the last ``start`` until its ``stop``; exit when the
    pipe closes (the horse exited) or the horse is gone."""
    step: tuple[Any, ...] | None = None
    due = 0.0
    while True:
        wait = IDLE_CHECK if step is None else max(0.0, due - time.monotonic())
        ready, _, _ = select.select([read], [], [], wait)
        if os.getppid() != parent:
            return
        if ready:
            message = pipes.receive(read)
            if message is None:
                return
            step = message[1:] if message[0] == "start" else None
            if step is not None:
                due = step[3] + step[2]  # began + every
            continue
        if step is not None and time.monotonic() >= due:
            key, run_id, every, began, serializer = step
            written, wait = tick(conn, key, serializer, every, time.monotonic() - began)
            due = time.monotonic() + wait
            if written:
                changes.publish(conn, run_id)


def tick(conn: Redis, key: str, serializer: Any, every: float, elapsed: float) -> tuple[bool, float]:
    """Rewrite the progress note of job hash ``key`` unless the step reported within ``every`` seconds or the job
    is no longer running (a resident ticker learns of a step's end a moment late).

    Returns whether it wrote, and the seconds until the next tick is due: ``every`` after this note, or after the
    step's own last report when that was lately (so a note is at most about ``every`` old, never nearly twice)."""
    with conn.pipeline() as pipe:
        try:
            pipe.watch(key)
            raw, state = pipe.hmget(key, "meta", "status")
            meta = serializer.loads(raw) if isinstance(raw, bytes) and raw else {}
            if not isinstance(meta, dict) or state != b"started":
                return False, every
            found = meta.get("progress")
            progress: dict[str, Any] = found if isinstance(found, dict) else {}
            now = time.time()
            since = now - float(progress.get("at") or 0.0)
            if since < every * 0.9:
                return False, max(every - since, every * 0.1)  # the step itself reported lately
            phase = str(progress.get("phase") or progress.get("message") or "running")
            seconds = round(elapsed)
            meta["progress"] = {"done": progress.get("done", 0), "total": progress.get("total"),
                                "percent": progress.get("percent"), "phase": phase,
                                "message": f"{phase} (running for {seconds} s)", "elapsed": seconds, "at": now}
            pipe.multi()
            pipe.hset(key, "meta", serializer.dumps(meta))
            pipe.execute()
        except WatchError:  # the step saved its own progress meanwhile: it is newer
            return False, every * 0.5
    return True, every
