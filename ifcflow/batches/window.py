"""How many sub-runs of a batch are kept released at once (the batch window)."""

from __future__ import annotations

import time

from redis import Redis
from rq import Worker

WORKERS_SEEN = 2.0
"""Seconds a count of registered workers is reused for a batch window (a batch's advance runs after every job)."""
_workers_seen: dict[int, tuple[float, int]] = {}


def window_size(conn: Redis, window: int) -> int:
    """Sub-runs to keep released: ``window``, or (0) twice the workers registered (counted at most every
    :data:`WORKERS_SEEN` s per connection pool), at least 2."""
    if window:
        return window
    pool, at = id(conn.connection_pool), time.monotonic()
    seen = _workers_seen.get(pool)
    if seen is None or at - seen[0] > WORKERS_SEEN:
        seen = _workers_seen[pool] = (at, Worker.count(connection=conn))
    return max(2, 2 * seen[1])
