"""Everything that reads RQ's storage directly or calls RQ's private API, in one place. Follows **RQ 3.0**.

ifcflow reads a whole run in one server-side script instead of one ``Job.fetch`` per step (1,000 steps in
one round trip), and repairs what RQ leaves undone with a few of RQ's internals. Both depend on how RQ 3.0 lays
out its keys, so they live here, and ``tests/test_rqstore.py`` compares the bulk read field by field with
``Job.fetch`` / ``Result.fetch_latest`` on every job state; a new RQ release must pass it before the pin in
pyproject.toml (``rq>=3.0,<3.1``) moves.

What is relied on:
- ``rq:job:<id>`` hash fields ``status``, ``enqueued_at``, ``started_at``, ``ended_at``, ``worker_name``,
  ``meta`` (serialized with the job's serializer), ``retries_left``, ``dependency_ids``;
- ``rq:results:<id>`` stream, newest entry last, decoded by RQ's own ``Result.restore``;
- ``rq:job::<id>:dependencies`` (sic) / ``rq:job:<id>:dependents`` sets, the ``rq:wip:<queue>`` (started) and
  ``rq:ready:<queue>`` registries and their per-queue cleaning lock (``Queue.acquire_maintenance_lock``), the
  ``rq:workers:<queue>`` sets of registered workers;
- ``Queue._enqueue_job`` (enqueue without re-checking dependencies) and ``Job._dependency_ids``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from hashlib import sha1
from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import NoScriptError, ResponseError, WatchError
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import ReadyJobRegistry, StartedJobRegistry
from rq.results import Result
from rq.serializers import resolve_serializer
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

RQ_VERSION = "3.0"
FIELDS = ("status", "enqueued_at", "started_at", "ended_at", "worker_name", "meta", "retries_left")
KNOWN_STATUSES = frozenset(s.value for s in JobStatus)
WAITING = frozenset({JobStatus.DEFERRED, JobStatus.QUEUED, JobStatus.CREATED, JobStatus.SCHEDULED})

# KEYS: two hashes to return whole (the run record, its step records), then job ids. Read-only commands only
# (runs as EVAL_RO where the server has it, so a read-only ACL user can call it).
_READ_ALL = """
local out = {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
for i = 3, #KEYS do
  local id = KEYS[i]
  local state = redis.call('HGET', 'rq:job:' .. id, 'status')
  local job = {state}
  if state == 'deferred' or state == 'created' then
    job = {state}  -- waiting: nothing else to report, keep the reply small
  elseif state then
    job = redis.call('HMGET', 'rq:job:' .. id, unpack(ARGV))
  end
  out[#out + 1] = job
  if job[1] == 'finished' or job[1] == 'failed' then
    local results = redis.call('XREVRANGE', 'rq:results:' .. id, '+', '-', 'COUNT', 1)
    if #results == 0 and job[1] == 'finished' then  -- compacted when its run ended (ifcflow.engine.compact)
      local kept = redis.call('HGET', 'rq:job:' .. id, 'result')
      if kept then results = {{'compacted', {'result', kept}}} end
    end
    out[#out + 1] = results
  else
    out[#out + 1] = {}
  end
end
return out
"""


@dataclass
class JobView:
    """What ifcflow reads of one RQ job; ``status`` None means the job hash does not exist."""

    status: str | None
    enqueued_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    worker_name: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    retries_left: int | None = None
    return_value: Any = None
    exc_string: str | None = None


def _text(raw: bytes | None) -> str | None:
    return raw.decode() if raw else None


def _iso(raw: bytes | None) -> str | None:
    """RQ writes UTC times without a zone ("...T10:00:00.123456Z" or without Z); always end with Z."""
    text = _text(raw)
    if text is None:
        return None
    return text if text.endswith("Z") or "+" in text else text + "Z"


class BulkReader:
    """Reads records and many jobs in one round trip with one server-side, read-only script."""

    def __init__(self, conn: Redis, serializer: Any = None):
        self.conn = conn
        self.serializer = resolve_serializer(serializer)
        self.sha: str | None = None
        self._read_only = True

    def read(self, hashes: tuple[str, str], job_ids: list[str]) -> tuple[dict[bytes, bytes], dict[bytes, bytes],
                                                                        list[JobView]]:
        first, second, raw = self.read_raw(hashes, job_ids)
        return first, second, [self.decode(job_id, job, results) for job_id, (job, results) in zip(job_ids, raw)]

    def read_raw(self, hashes: tuple[str, str], job_ids: list[str]) -> tuple[dict[bytes, bytes], dict[bytes, bytes],
                                                                            list[tuple[list[Any], list[Any]]]]:
        """The two hashes, and per job its raw reply (decode with :meth:`decode`; equal replies decode equal)."""
        replies = self._call([*hashes, *job_ids], list(FIELDS))
        raw = [(replies[2 + 2 * i], replies[3 + 2 * i]) for i in range(len(job_ids))]
        return _pairs(replies[0]), _pairs(replies[1]), raw

    def decode(self, job_id: str, raw: list[Any], results: list[Any]) -> JobView:
        return self._job(job_id, raw, results)

    def _call(self, keys: list[str], args: list[str]) -> list[Any]:
        if self.sha is None:
            self.sha = sha1(_READ_ALL.encode()).hexdigest()
        ro = "EVALSHA_RO" if self._read_only else "EVALSHA"
        try:
            return self.conn.execute_command(ro, self.sha, len(keys), *keys, *args)
        except NoScriptError:  # first call on this server: EVAL caches the script for the next EVALSHA
            return self.conn.execute_command("EVAL_RO" if self._read_only else "EVAL", _READ_ALL, len(keys), *keys,
                                             *args)
        except ResponseError as exc:
            text = str(exc)
            if self._read_only and "unknown command" in text.lower():  # Redis before 7: no *_RO variants
                self._read_only = False
                return self._call(keys, args)
            raise

    def _job(self, job_id: str, raw: list[bytes | None], results: list[Any]) -> JobView:
        if len(raw) == 1:  # absent, or waiting (deferred, created): the script returned the status only
            return JobView(status=_text(raw[0]))
        status_raw, enqueued, started, ended, worker, meta_raw, retries = raw
        view = JobView(status=_text(status_raw), enqueued_at=_iso(enqueued), started_at=_iso(started),
                       ended_at=_iso(ended), worker_name=_text(worker),
                       meta=self.serializer.loads(meta_raw) if meta_raw else {},
                       retries_left=int(retries) if retries else None)
        if results and results[0][0] == b"compacted":  # the return value kept in the job hash (ifcflow.engine.compact)
            view.return_value = self.serializer.loads(_pairs(results[0][1])[b"result"])
        elif results:
            result_id, payload = results[0]
            restored = Result.restore(job_id, result_id.decode(), _pairs(payload), connection=self.conn,
                                      serializer=self.serializer)
            view.return_value, view.exc_string = restored.return_value, restored.exc_string
        return view


def _pairs(flat: list[Any]) -> dict[Any, Any]:
    if isinstance(flat, dict):  # RESP3 replies are already maps
        return flat
    return dict(zip(flat[::2], flat[1::2]))


def results_key(job_id: str) -> str:
    return f"rq:results:{job_id}"


def job_keys(job_id: str) -> list[str]:
    """Every key RQ keeps for one job (hash, results, dependency and dependent sets)."""
    return [f"rq:job:{job_id}", results_key(job_id), dependencies_key(job_id), Job.dependents_key_for(job_id)]


def dependencies_key(job_id: str) -> str:
    """RQ 3.0 names a job's dependency set ``rq:job::<id>:dependencies`` (prefix ``rq:job:`` plus ``:``)."""
    return f"{Job.redis_job_namespace_prefix}:{job_id}:dependencies"


def expire_jobs(conn: Redis | Pipeline, job_ids: list[str], ttl: int) -> None:
    """Let every key of these jobs expire in ``ttl`` seconds (RQ never expires canceled jobs or dependency sets);
    queued in ``conn`` when it is a pipeline (the caller executes it)."""
    if isinstance(conn, Pipeline):
        for job_id in job_ids:
            for key in job_keys(job_id):
                conn.expire(key, ttl)
        return
    with conn.pipeline(transaction=False) as pipe:
        expire_jobs(pipe, job_ids, ttl)
        pipe.execute()


def persist_jobs(conn: Redis, job_ids: list[str]) -> None:
    """Remove the expiry of every key of these jobs (a retried run keeps them until it ends again)."""
    with conn.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            for key in job_keys(job_id):
                pipe.persist(key)
        pipe.execute()


def delete_jobs(conn: Redis, job_ids: list[str]) -> None:
    """Delete jobs with everything RQ keeps for them (registries included)."""
    for job_id in job_ids:
        try:
            Job.fetch(job_id, connection=conn).delete(remove_from_queue=True)
        except Exception:  # noqa: BLE001 - already gone, or unreadable: the raw keys go below
            pass
        conn.delete(*job_keys(job_id))


def cancel_waiting(conn: Redis, job_id: str) -> bool:
    """Cancel a job that is still waiting (deferred, queued, scheduled); False when it is not waiting."""
    try:
        job = Job.fetch(job_id, connection=conn)
    except Exception:  # noqa: BLE001 - vanished
        return False
    if job.get_status(refresh=False) not in WAITING:
        return False
    try:
        job.cancel()
    except Exception:  # noqa: BLE001 - it started or ended meanwhile
        return False
    return True


def release(conn: Redis, job_id: str) -> bool:
    """Enqueue a deferred job without re-checking its needs (RQ never counts a canceled need as met).

    One WATCH/MULTI/EXEC transaction: the job leaves its parents' dependents sets (so no parent's end can enqueue
    it again), loses its dependency records and is pushed onto its queue, or nothing happens at all. Returns
    False when the job is not deferred (any more), so calling it again is harmless.
    """
    job = Job.fetch(job_id, connection=conn)
    with conn.pipeline() as pipe:
        parents = list(job._dependency_ids)
        try:
            pipe.watch(job.key, *(Job.dependents_key_for(p) for p in parents))
            if _text(pipe.hget(job.key, "status")) != JobStatus.DEFERRED.value:  # type: ignore[arg-type]
                return False
            pipe.multi()
            for parent in parents:
                pipe.srem(Job.dependents_key_for(parent), job.id)
            pipe.delete(job.dependencies_key)
            pipe.hdel(job.key, "dependency_ids", "dependency_id")
            job._dependency_ids = []
            Queue(job.origin, connection=conn)._enqueue_job(job, pipeline=pipe)
            pipe.execute()
        except WatchError:
            return False
    return True


def drain_ready(conn: Redis, queues: set[str] | tuple[str, ...] | list[str]) -> int:
    """Push jobs RQ left in its ready registries onto their queues (RQ's own recovery, run now, under RQ's
    per-queue cleaning lock; a queue whose lock another process holds is left to that process)."""
    moved = 0
    names = list(queues)
    with conn.pipeline(transaction=False) as pipe:  # one round trip: after every job, most queues have none
        for name in names:
            pipe.exists(ReadyJobRegistry(name, connection=conn).key)
        present = pipe.execute()
    for name in (n for n, found in zip(names, present, strict=True) if found):
        queue = Queue(name, connection=conn)
        if queue.acquire_maintenance_lock():
            try:
                moved += len(ReadyJobRegistry(name, connection=conn).cleanup())
            finally:
                queue.release_maintenance_lock()
    return moved


def expired_started(conn: Redis, queue: str, job_ids: set[str], now: float) -> list[str]:
    """Those of ``job_ids`` whose worker stopped heart-beating (expired in the queue's started registry)."""
    return [j for j in StartedJobRegistry(queue, connection=conn).get_expired_job_ids(now) if j in job_ids]


def fail_abandoned(conn: Redis, queue: str, now: float) -> bool:
    """RQ's started-registry cleanup for one queue (fail or retry abandoned jobs), under RQ's cleaning lock.
    False when another process holds the lock (it is cleaning the same registry)."""
    rq_queue = Queue(queue, connection=conn)
    if not rq_queue.acquire_maintenance_lock():
        return False
    try:
        StartedJobRegistry(queue, connection=conn).cleanup(now)
    finally:
        rq_queue.release_maintenance_lock()
    return True


@dataclass
class Liveness:
    """What RQ's registries say about the workers of some steps (read-only; see :func:`liveness`)."""

    stalled: set[str] = field(default_factory=set)
    """Started jobs whose worker's heartbeat expired (in their queue's started registry)."""
    heartbeats: dict[str, str] = field(default_factory=dict)
    """Job id -> the job's last heartbeat (RQ's ``last_heartbeat`` field)."""
    unserved: set[str] = field(default_factory=set)
    """Queues no live worker listens to (none registered for the queue, or every registered one's key expired)."""


def liveness(conn: Redis, started: dict[str, str], queues: set[str], now: float) -> Liveness:
    """For ``started`` (job id -> queue): which stalled; for ``queues``: which have no live worker. Reads only
    (RQ's ``rq:wip:<queue>`` registries, ``rq:workers:<queue>`` sets and worker keys), two round trips at most."""
    found = Liveness()
    run_queues, wait_queues = sorted(set(started.values())), sorted(queues)
    with conn.pipeline(transaction=False) as pipe:
        for queue in run_queues:
            pipe.zrangebyscore(StartedJobRegistry(queue, connection=conn).key, 0, now)
        for job_id in started:
            pipe.hget(f"rq:job:{job_id}", "last_heartbeat")
        for queue in wait_queues:
            pipe.smembers(WORKERS_BY_QUEUE_KEY % queue)
        replies = pipe.execute()
    for entries in replies[:len(run_queues)]:
        found.stalled |= {raw.decode().rsplit(":", 1)[0] for raw in entries} & set(started)
    beats = replies[len(run_queues):len(run_queues) + len(started)]
    found.heartbeats = {job_id: beat.decode() for job_id, beat in zip(started, beats) if beat}
    members = dict(zip(wait_queues, replies[len(run_queues) + len(started):]))
    keys = sorted({key for names in members.values() for key in names})
    alive: set[bytes] = set()
    if keys:
        with conn.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.exists(key)
            alive = {key for key, there in zip(keys, pipe.execute()) if there}
    found.unserved = {queue for queue, names in members.items() if not set(names) & alive}
    return found


def orphan_keys(conn: Redis, run_id: str) -> list[bytes]:
    """RQ keys of a run's jobs (``rq:job:<run_id>-*``, ``rq:results:<run_id>-*``), found without its record."""
    escaped = "".join(f"\\{c}" if c in "*?[]\\" else c for c in run_id)
    found: list[bytes] = []
    for pattern in (f"rq:job:{escaped}-*", f"rq:job::{escaped}-*", f"rq:results:{escaped}-*"):
        found.extend(conn.scan_iter(match=pattern, count=1000))
    return found


def job_status(conn: Redis, job_id: str) -> str | None:
    raw = conn.hget(f"rq:job:{job_id}", "status")
    return _text(raw)  # type: ignore[arg-type]
