"""Run changes announced on Redis pub/sub, so followers wake when something happened instead of polling.

Whoever changes what a run's status shows publishes the run id on :data:`CHANNEL`: a work horse when its job
starts, a worker when a job ended (after reconciling the run, which may end it or release a batch's next runs),
a reconcile pass that repaired or ended a run, a cancel. Followers (``ifcflow run``'s live view, the API server's
event streams) subscribe once and re-read a run's status when its id comes by. Pub/sub delivers at most once and
only to connected subscribers, so every follower also re-reads on a slow timer: a lost message delays an update,
never hangs a client. Publishing is best effort: it never fails the change it announces.
"""

from __future__ import annotations

import logging
import time

from redis import Redis
from redis.client import PubSub
from redis.exceptions import RedisError

CHANNEL = "ifcflow:changes"
BUSY_FIELD = "ifcflow_busy"
"""Field of an ``ifcflow worker``'s RQ worker hash naming the job whose end it has not finished handling (logging
it, reconciling its run): followers may see the step end before that, and a local run stops its workers only
once none has it (:meth:`ifcflow.standalone.local.LocalCluster.finished`)."""
log = logging.getLogger(__name__)


def publish(conn: Redis, run_id: str | bytes | None) -> None:
    """Announce that ``run_id``'s status may have changed (no-op for None; Redis errors are only logged)."""
    if not run_id:
        return
    try:
        conn.publish(CHANNEL, run_id)
    except RedisError as exc:
        log.debug("could not announce a change of run %r: %s", run_id, exc)


def decode(message: dict[str, object] | None) -> str | None:
    """The run id of a pub/sub ``message`` on :data:`CHANNEL`, or None (subscribe confirmations, other data)."""
    if not message or message.get("type") != "message":
        return None
    data = message.get("data")
    return data.decode() if isinstance(data, bytes) else str(data) if data is not None else None


class Waiter:
    """Sleep until ``run_id`` is announced (or the delay passes): ``Waiter(conn, run_id).sleep(2.0)``.

    Subscribes at construction, so an announcement made between a status read and the next ``sleep`` is not
    missed. Falls back to a plain sleep when Redis refuses pub/sub.
    """

    def __init__(self, conn: Redis, run_id: str):
        self.run_id = run_id
        self.pubsub: PubSub | None = None
        try:
            self.pubsub = conn.pubsub(ignore_subscribe_messages=True)
            self.pubsub.subscribe(CHANNEL)
        except RedisError:
            self.close()

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.pubsub is None:
                time.sleep(left)
                return
            try:
                if decode(self.pubsub.get_message(timeout=left)) == self.run_id:
                    return
            except RedisError:
                self.close()

    def close(self) -> None:
        if self.pubsub is not None:
            try:
                self.pubsub.close()
            except RedisError:
                pass
        self.pubsub = None
