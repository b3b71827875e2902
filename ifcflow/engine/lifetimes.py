"""Record lifetimes, in one place: how long a run's and a batch's records live in Redis, and who ends them.

- **First end** (:func:`end_run`): a run whose steps all ended gets ``ended_at`` (HSETNX: once, whoever observes
  it first) and ``final`` (each step's state and error: authoritative from then on), its finished jobs are
  compacted (:mod:`ifcflow.engine.compact`), and every record of it (run record, step records, every step job and gate,
  their results and dependency sets) expires ``ttl`` seconds later, together.
- **Revive** (:func:`revive`, on retry): the run is live again; EVERY record of it loses its expiry, the jobs of
  the steps the retry keeps included, so nothing the run still shows expires before it ends once more.
- **Batch end** (:func:`end_batch`): when each sub-run ended (a canceled batch's never-released sub-runs
  included), the batch gets ``ended_at`` once and its keys expire with its sub-runs' TTL; :func:`revive_batch`
  on a batch retry.
- **Prune** (:func:`prune`): ``ifcflow prune`` deletes ended runs and ended batches older than a cutoff; a
  sub-run of a batch that has not ended is kept (its batch reads it until it notes its end).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from redis import Redis

from ..errors import IfcflowError
from . import compact, rqstore, store
from .status import StatusReader

if TYPE_CHECKING:
    from ..pipeline.plan import Plan


_END = """
if redis.call('HSETNX', KEYS[1], 'ended_at', ARGV[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'final', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
"""
"""The first end of a run, in one step: ``ended_at`` once, the final states, the expiry of its two records."""


def end_run(conn: Redis, run_id: str, job_ids: list[str], ttl: int,
            final: dict[str, dict[str, str | None]], plan: Plan | None = None, retries: int | None = None,
            at: float | None = None, jobs: bool = True) -> bool:
    """Record the end of run ``run_id`` (whose step jobs are ``job_ids``) and start its TTL; True for the one
    caller that ended it. A caller that read the ``plan`` and the record's ``retries`` passes them: the end then
    takes three round trips (end, compaction's read, its writes with every job's expiry). ``at``: the time to
    record as ``ended_at`` (now by default). ``jobs=False``: the run has no RQ job nor gate (a batch's sub-run that
    a pack ran, never retried): nothing to compact or expire but its two records."""
    ended_at = repr(time.time() if at is None else at)
    if not conn.register_script(_END)(keys=[store.run_key(run_id), store.steps_key(run_id)],
                                      args=[ended_at, json.dumps(final), ttl]):
        return False
    if not jobs:
        return True
    gates = store.gate_ids(conn, run_id) if retries is None else store.gate_ids_of(run_id, retries)
    compact.compact(conn, run_id, plan, gates,  # only what status and reports read is kept
                    also=lambda pipe: rqstore.expire_jobs(pipe, job_ids + gates, ttl))
    return True


def revive(conn: Redis, run_id: str, job_ids: list[str]) -> None:
    """A retried run is live again: every record of it (``job_ids``: all its step jobs) is kept until it ends."""
    conn.hdel(store.run_key(run_id), "ended_at", "final")
    conn.persist(store.run_key(run_id))
    conn.persist(store.steps_key(run_id))
    rqstore.persist_jobs(conn, job_ids + store.gate_ids(conn, run_id))
    conn.sadd(store.LIVE, run_id)


def end_batch(conn: Redis, batch_id: str, ttl: int) -> bool:
    """Mark the batch ended (once) and let its records expire in ``ttl`` seconds; True for the caller that did."""
    if not conn.hsetnx(store.batch_key(batch_id), "ended_at", time.time()):
        return False
    for key in store.batch_keys(batch_id):
        conn.expire(key, ttl)
    return True


def revive_batch(conn: Redis, batch_id: str) -> None:
    """A retried batch is live again: it keeps its records until it ends once more."""
    conn.hdel(store.batch_key(batch_id), "canceled", "ended_at")
    for key in store.batch_keys(batch_id):
        conn.persist(key)


def _in_live_batch(conn: Redis, run_id: str) -> bool:
    raw: bytes | None = conn.hget(store.run_key(run_id), "batch")  # type: ignore[assignment]
    if raw is None:
        return False
    batch_id = raw.decode()
    return bool(conn.exists(store.batch_key(batch_id))) and not conn.hexists(store.batch_key(batch_id), "ended_at")


def prune(conn: Redis, older_than: int, dry_run: bool = False) -> list[str]:
    """Delete ended runs created more than ``older_than`` seconds ago (records, jobs, results), then ended
    batches as old. A sub-run of a batch that has not ended is kept. A run whose record is already gone has its
    leftover RQ keys (found by job id prefix) deleted too."""
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
        if not dry_run:
            rqstore.delete_jobs(conn, [s.job_id for s in reader.plan.steps] + store.gate_ids(conn, run_id))
            store.delete_run(conn, run_id)
    return pruned + prune_batches(conn, cutoff, dry_run)


def prune_batches(conn: Redis, cutoff: float, dry_run: bool = False) -> list[str]:
    """Delete the records of ended batches created before ``cutoff`` (a timestamp)."""
    pruned = []
    old: list[bytes] = conn.zrangebyscore(store.BATCHES, 0, cutoff)  # type: ignore[assignment]
    for raw in old:
        batch_id = raw.decode()
        if not conn.exists(store.batch_key(batch_id)):
            conn.zrem(store.BATCHES, batch_id)
        elif conn.hexists(store.batch_key(batch_id), "ended_at"):
            pruned.append(batch_id)
            if not dry_run:
                conn.delete(*store.batch_keys(batch_id))
                conn.zrem(store.BATCHES, batch_id)
    return pruned
