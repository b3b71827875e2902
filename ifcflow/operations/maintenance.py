"""The original system's maintenance tasks without writing Python: queue depths, workers, emptying, pruning."""

from __future__ import annotations

from typing import Any

from redis import Redis
from rq import Queue, Worker

from ..engine import lifetimes
from ..errors import IfcflowError
from ..services import QUEUES
from .worker import services_of


def queues(conn: Redis) -> list[dict[str, Any]]:
    """Per queue: queued, started, deferred, scheduled and failed jobs, and the workers listening to it."""
    workers = Worker.all(connection=conn)
    names = list(QUEUES) + sorted({q.name for q in Queue.all(connection=conn)} - set(QUEUES))
    rows = []
    for name in names:
        queue = Queue(name, connection=conn)
        rows.append({
            "queue": name, "queued": queue.count, "started": queue.started_job_registry.count,
            "deferred": queue.deferred_job_registry.count, "scheduled": queue.scheduled_job_registry.count,
            "failed": queue.failed_job_registry.count,
            "workers": sum(1 for w in workers if name in w.queue_names()),
        })
    return rows


def empty(conn: Redis, name: str) -> int:
    """Remove every queued job of queue ``name``; their steps will be reported lost. Returns how many."""
    if name not in {q.name for q in Queue.all(connection=conn)} | set(QUEUES):
        raise IfcflowError(f"no queue '{name}'; queues: {', '.join(QUEUES)}")
    queue = Queue(name, connection=conn)
    count = queue.count
    queue.empty()
    return count


def workers(conn: Redis) -> list[dict[str, Any]]:
    rows = []
    for worker in Worker.all(connection=conn):
        job = worker.get_current_job_id()
        rows.append({
            "name": worker.name, "state": worker.get_state(), "queues": worker.queue_names(),
            "current_job": job, "hostname": worker.hostname, "pid": worker.pid,
            "last_heartbeat": worker.last_heartbeat.isoformat() if worker.last_heartbeat else None,
            "successful_jobs": worker.successful_job_count, "failed_jobs": worker.failed_job_count,
            "services": services_of(conn, worker.key),
        })
    return rows


def prune(conn: Redis, older_than: int, dry_run: bool = False) -> list[str]:
    """Delete ended runs created more than ``older_than`` seconds ago, and ended batches as old (see
    :func:`ifcflow.engine.lifetimes.prune`)."""
    return lifetimes.prune(conn, older_than, dry_run)
