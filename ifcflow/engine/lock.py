"""The per-run lock: one process at a time repairs, cancels or retries a run.

``SET key token NX PX ttl`` takes it; only the holder of the token can release it (a server-side
compare-and-delete), so a holder that outlived its lease never deletes a lock someone else took since.
:class:`RunLock` (cancel, retry) waits for it. :func:`exclusive` (a reconcile pass, a batch's advance) waits at
most ``wait`` s (0: not at all) and then leaves a *dirty* mark instead: the holder runs its pass again before it
lets go, so no request is lost; a cancel or retry that finds a mark when it lets go leaves it to its own reconcile
pass that follows.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from redis import Redis

from ..errors import IfcflowError

T = TypeVar("T")

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return redis.call('EXISTS', KEYS[2])
end
return -1
"""
LEASE = 60.0
"""Seconds a lock is held at most when its holder dies (it is released as soon as the holder is done)."""


def _script(conn: Redis, text: str, keys: list[str], args: list[str | int]) -> Any:
    """Run a script by its digest (EVALSHA; loaded once per server), not by sending its text each time."""
    return conn.register_script(text)(keys=keys, args=args)


def lock_key(run_id: str) -> str:
    return f"ifcflow:run:{run_id}:lock"


def dirty_key(run_id: str) -> str:
    return f"ifcflow:run:{run_id}:dirty"


class RunLock:
    """``with RunLock(conn, run_id).held(wait=10, doing="retry"): ...`` or ``acquire()`` / ``release()``."""

    def __init__(self, conn: Redis, run_id: str, lease: float = LEASE):
        self.conn = conn
        self.run_id = run_id
        self.key = lock_key(run_id)
        self.lease_ms = int(lease * 1000)
        self.token = secrets.token_hex(16)
        self.owned = False

    def acquire(self, wait: float = 0.0) -> bool:
        """Take the lock, waiting up to ``wait`` seconds for its holder to let go."""
        deadline = time.monotonic() + wait
        delay = 0.002
        while True:
            if self.conn.set(self.key, self.token, nx=True, px=self.lease_ms):
                self.owned = True
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.1)

    def release(self) -> bool:
        """Let go (only if still ours). Returns True when someone marked the run dirty meanwhile."""
        if not self.owned:
            return False
        self.owned = False
        answer = _script(self.conn, _RELEASE, [self.key, dirty_key(self.run_id)], [self.token])
        return bool(answer == 1)

    def held(self, wait: float, doing: str) -> RunLock:
        """Context manager form; raises :class:`IfcflowError` when the lock stays taken for ``wait`` seconds."""
        if not self.acquire(wait):
            raise IfcflowError(f"run {self.run_id} is busy (another process is repairing, canceling or retrying it); "
                               f"{doing} again in a few seconds")
        return self

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()  # (a pass asked for meanwhile is left to the caller: cancel and retry reconcile afterwards)


_TAKE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('DEL', KEYS[2])
  return 1
end
if ARGV[3] == '1' then
  redis.call('SET', KEYS[2], 1, 'PX', ARGV[2])
end
return 0
"""
"""Take the lock (clearing the dirty mark: this pass covers it) or, when ``ARGV[3]`` is 1, mark it dirty, atomically:
a mark left is always seen by the holder that took the lock before it."""
_LET_GO = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
if redis.call('DEL', KEYS[2]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
redis.call('DEL', KEYS[1])
return 0
"""
"""Release the lock unless it was marked dirty meanwhile; then keep it (a fresh lease), clear the mark, answer 1."""


MOST_PASSES = 100
"""Passes one holder of an :func:`exclusive` lock runs at most; then it lets go, leaving the mark to the next caller
(a pass that marked its own lock would otherwise loop forever)."""


def exclusive(conn: Redis, key: str, work: Callable[[], T], wait: float = 0.0, lease: float = LEASE,
              dirty: str | None = None) -> list[T] | None:
    """Run ``work()`` under the lock ``key``, never waiting longer than ``wait`` s for another holder.

    When the lock stays taken, a *dirty* mark (``dirty``, default ``<key>:dirty``) is left and None returned at
    once: the holder runs ``work()`` again before it lets go (the take and the mark are one atomic step, as are the
    release and the check for a mark), so no request is lost and nobody blocks. Returns the result of every pass
    this caller ran (at most :data:`MOST_PASSES`). A pass that raises lets go (a mark left stays for the next
    caller). Round trips: one to take, one to let go.
    """
    dirty, token, lease_ms = dirty or f"{key}:dirty", secrets.token_hex(16), int(lease * 1000)
    deadline, delay = time.monotonic() + wait, 0.002
    while True:
        last = time.monotonic() >= deadline
        if _script(conn, _TAKE, [key, dirty], [token, lease_ms, int(last)]):
            break
        if last:
            return None  # marked dirty: the holder passes again
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 0.1)
    results: list[T] = []
    try:
        while len(results) < MOST_PASSES - 1:
            results.append(work())
            if _script(conn, _LET_GO, [key, dirty], [token, lease_ms]) != 1:
                return results
        results.append(work())
    except BaseException:
        _script(conn, _RELEASE, [key, dirty], [token])
        raise
    _script(conn, _RELEASE, [key, dirty], [token])  # (a mark left now waits for the next caller)
    return results
