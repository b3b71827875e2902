"""A background loop of the API server that observes the end of runs with a webhook, and drives batches.

A run's end is recorded by the reconciler (``ifcflow/engine/reconcile.py``; the server also runs its loop); the runs
this server watches (``ifcflow:api:watched``) get a pass every ``interval`` seconds until they end.

A batch submitted over HTTP (``ifcflow:api:watched-batches``) is advanced as ``ifcflow run --each`` advances the
batches it follows (:func:`ifcflow.batches.lifecycle.advance` with ``repair``): its next sub-runs are released as runs end
even with plain ``rq worker``s (``ifcflow worker``s release them themselves), until the batch ended.
"""

from __future__ import annotations

import logging
import threading

from redis import Redis

from ..batches import batch, lifecycle
from ..engine import reconcile
from ..engine.webhooks import WATCHED
from ..errors import RunNotFound

log = logging.getLogger("ifcflow.api")
WATCHED_BATCHES = "ifcflow:api:watched-batches"


def sweep(conn: Redis) -> None:
    """Read every watched run once; forget those that ended (their end hook has run) or vanished."""
    members: set[bytes] = conn.smembers(WATCHED)  # type: ignore[assignment]
    for raw in members:
        run_id = raw.decode()
        try:  # a pass of the reconciler ends the run (and calls its hooks) once it is over
            status = reconcile.run(conn, run_id, wait=0.0)
            if status is not None and status.terminal:
                conn.srem(WATCHED, run_id)
            elif status is None and not conn.exists(f"ifcflow:run:{run_id}"):
                conn.srem(WATCHED, run_id)
        except RunNotFound:
            conn.srem(WATCHED, run_id)
    batches: set[bytes] = conn.smembers(WATCHED_BATCHES)  # type: ignore[assignment]
    for raw in batches:
        batch_id = raw.decode()
        lifecycle.advance(conn, batch_id, repair=True)
        if conn.hget(batch.key(batch_id), "ended_at") is not None or not batch.exists(conn, batch_id):
            conn.srem(WATCHED_BATCHES, batch_id)


class Watcher(threading.Thread):
    def __init__(self, conn: Redis, interval: float):
        super().__init__(name="ifcflow-watcher", daemon=True)
        self.conn = conn
        self.interval = interval
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                sweep(self.conn)
            except Exception:  # Redis restarting, a corrupt record...: log and keep watching
                log.exception("watcher sweep failed")

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)
