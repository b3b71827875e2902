"""The original system's maintenance tasks without writing Python: queue depths, workers, emptying, pruning."""

from __future__ import annotations

import time
from typing import Any

from redis import Redis
from rq import Queue, Worker

from . import rqstore, store
from .errors import IfcflowError
from .services import QUEUES
from .status import StatusReader
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


def _in_live_batch(conn: Redis, run_id: str) -> bool:
    """A sub-run of a batch that has not ended: kept until the batch ends (the batch reads it until then, and
    records its final row when it notes its end)."""
    from .batch import key

    raw: bytes | None = conn.hget(store.run_key(run_id), "batch")  # type: ignore[assignment]
    if raw is None:
        return False
    batch_id = raw.decode()
    return bool(conn.exists(key(batch_id))) and not conn.hexists(key(batch_id), "ended_at")


def prune(conn: Redis, older_than: int, dry_run: bool = False) -> list[str]:
    """Delete finished runs created more than ``older_than`` seconds ago: run records, jobs and results (and
    finished batches' records: their runs are runs like any other).

    A finished sub-run of a batch that has not ended is kept (pruned with its batch). A run whose record is already
    gone has its leftover RQ keys (found by job id prefix) deleted too.
    """
    cutoff = time.time() - older_than
    pruned = []
    old: list[bytes] = conn.zrangebyscore(store.RUNS, 0, cutoff)  # type: ignore[assignment]
    for raw in old:
        run_id = raw.decode()
        try:
            reader = StatusReader(conn, run_id)
        except IfcflowError:
            leftovers = rqstore.orphan_keys(conn, run_id)
            if leftovers:
                pruned.append(run_id)
            if not dry_run:
                if leftovers:
                    conn.delete(*leftovers)
                store.delete_run(conn, run_id)
            continue
        if not reader.read().terminal or _in_live_batch(conn, run_id):
            continue
        pruned.append(run_id)
        if dry_run:
            continue
        rqstore.delete_jobs(conn, [s.job_id for s in reader.plan.steps] + store.gate_ids(conn, run_id))
        store.delete_run(conn, run_id)
    from .batch import prune as prune_batches

    return pruned + prune_batches(conn, cutoff, dry_run)
