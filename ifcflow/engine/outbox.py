"""Recording history without ever stopping a run: records go to an outbox in Redis, then into the database.

Who writes records (each a small JSON document, see :func:`ifcflow.history.database.apply`):

- a submission (:mod:`ifcflow.engine.enqueue`, in the same transaction as the run record): the run (pipeline and its
  sha256, inputs with sha256 and size, the actor) and a ``submit`` audit event;
- a step's job when it succeeds (the step-end hook, :func:`ifcflow.engine.events.step_ended`): service, library versions,
  options hash (the cache key), host, duration, and every input and output file with its sha256 and size;
- the reconciler when a run ends (the run-end hook, once per end): the run's state and the final state, worker,
  duration and error of every step, plus ``worker-lost`` / ``job-lost`` / ``killed`` audit events;
- cancel, retry and schedule fires: audit events with their actor.

The outbox is a Redis stream (``ifcflow:history:outbox``) read through a consumer group, so several drainers (every
worker, ``ifcflow reconcile --loop`` and the API server tick, see :func:`tick`) never lose a record: a record is
deleted only after the database committed it, and one a crashed drainer had read is claimed again after
:data:`CLAIM_IDLE_MS`. Writing twice is harmless (idempotent upserts). While the database is unreachable the
records wait in Redis; ``ifcflow history`` shows how many (:func:`behind`).

With no database anywhere (nobody drains), the outbox would grow with every run: it keeps the newest
:func:`cap` records (``IFCFLOW_OUTBOX_MAX``, default 100,000, about 80 MB; ``XADD MAXLEN ~``) and drops the oldest,
and ``ifcflow history`` says so (:func:`full`).
"""

from __future__ import annotations

import contextvars
import getpass
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redis import Redis
from redis.client import Pipeline as RedisPipeline
from redis.exceptions import ResponseError

from ..errors import IfcflowError
from . import events, store

if TYPE_CHECKING:
    from ..pipeline.plan import Plan, PlannedStep
    from .status import RunStatus

STREAM = "ifcflow:history:outbox"
GROUP = "history"
CLAIM_IDLE_MS = 60_000
"""A record read by a drainer that did not acknowledge it within this time is drained again by another."""
BATCH = 500
MAX_ENV = "IFCFLOW_OUTBOX_MAX"
DEFAULT_MAX = 100_000
log = logging.getLogger(__name__)
_actor: contextvars.ContextVar[tuple[str, str | None] | None] = contextvars.ContextVar("ifcflow_actor", default=None)
_urls: dict[int, str] = {}
_warned = 0.0


# -- who acts ---------------------------------------------------------------------------------------------------

@contextmanager
def acting(actor: str, schedule: str | None = None) -> Iterator[None]:
    """Record what happens inside as done by ``actor`` (``api:key#1``, ``schedule:nightly``, ...)."""
    token = _actor.set((actor, schedule))
    try:
        yield
    finally:
        _actor.reset(token)


def set_actor(actor: str) -> None:
    """Set the actor for the rest of the current context (a request)."""
    _actor.set((actor, None))


def actor() -> tuple[str, str | None]:
    """(actor, schedule name) of the current context; a local user by default."""
    found = _actor.get()
    if found is not None:
        return found
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"local:{user}@{socket.gethostname()}", None


# -- file facts -------------------------------------------------------------------------------------------------

def describe(path: str | Path, name: str | None = None, conn: Redis | None = None) -> dict[str, Any] | None:
    """``{path, sha256, size[, name]}`` of a file (its hash is remembered while the file is unchanged: with ``conn``,
    in Redis, for the other processes that describe it: :func:`ifcflow.engine.cache.sha256`)."""
    try:
        from .cache import sha256

        resolved = os.path.realpath(path)
        stat = os.stat(resolved)
        entry: dict[str, Any] = {"path": resolved, "size": stat.st_size,
                                 "sha256": sha256(resolved, conn)}
    except OSError:
        return None
    if name:
        entry["name"] = name
    return entry


def _object(facts: Mapping[str, Any], name: str | None = None) -> dict[str, Any]:
    """A stored object as a file of the history: its URL (``s3://bucket/prefix/key``) as the path, its key, sha256,
    size and version id."""
    entry = {"path": facts["url"], "key": facts["key"], "sha256": facts["sha256"], "size": facts.get("size"),
             "version_id": facts.get("version_id")}
    return {**entry, "name": name} if name else entry


def _epoch(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


# -- records ----------------------------------------------------------------------------------------------------

def audit(event: str, *, run_id: str | None = None, batch_id: str | None = None, detail: Mapping[str, Any] | None
          = None, key: str | None = None, who: str | None = None, schedule: str | None = None) -> dict[str, Any]:
    name, acting_for = actor()
    schedule = schedule or acting_for
    return {"kind": "audit", "key": key or f"{event}:{run_id or batch_id or ''}:{uuid.uuid4().hex}", "event": event,
            "actor": who or name, "at": time.time(), "run_id": run_id, "batch_id": batch_id, "schedule": schedule,
            "detail": dict(detail or {})}


def submitted(plan: Plan, record: Mapping[str, str] | None = None, conn: Redis | None = None) -> list[dict[str, Any]]:
    """The run and its ``submit`` audit event, as known at submission (inputs pinned in a store by their objects:
    the run ``record``'s ``storage`` field)."""
    who, schedule = actor()
    pipeline_file = describe(plan.file, conn=conn) if plan.file and os.path.isfile(plan.file) else None
    pinned: dict[str, dict[str, Any]] = {}
    if (record or {}).get("storage"):  # (staging imports boto3: only for a run kept in a store)
        from .staging import pinned_facts

        pinned = pinned_facts((record or {})["storage"])
    inputs = {name: _object(pinned[path]) if path in pinned else describe(path, conn=conn) or {"path": path}
              for name, path in plan.inputs.items()}
    run = {"kind": "run", "run_id": plan.run_id, "at": time.time(), "pipeline": plan.pipeline, "file": plan.file,
           "pipeline_sha256": pipeline_file["sha256"] if pipeline_file else None, "actor": who, "inputs": inputs,
           "state": "queued", "created_at": _epoch(plan.created_at), "schedule": schedule, "out_dir": plan.out_dir}
    return [run, audit("submit", run_id=plan.run_id, key=f"submit:{plan.run_id}",
                       detail={"pipeline": plan.pipeline, "steps": len(plan.steps)})]


def step_succeeded(run_id: str, planned: PlannedStep, result: Mapping[str, Any], seconds: float,
                   conn: Redis | None = None) -> dict[str, Any]:
    """A step's record with its input and output files (made in the job, where the files are)."""
    from ..services import SERVICES
    from ..services.base import InputFile, file_options
    from .cache import versions

    options = SERVICES[planned.service].options.model_validate(planned.options)
    if isinstance(result.get("objects"), dict):  # a run kept in S3: its files are objects, not worker-local copies
        inputs = [_object(facts, sub) for sub, facts in (result.get("input_objects") or {}).items()]
        outputs = [_object(facts, name) for name, facts in result["objects"].items()]
    else:
        inputs = [entry for sub, marker, value in file_options(options) if isinstance(marker, InputFile)
                  if (entry := describe(value, ".".join(map(str, sub)), conn))]
        outputs = [entry for name, path in (result.get("outputs") or {}).items() if (entry := describe(path, name, conn))]
    now = time.time()
    return {"kind": "step", "run_id": run_id, "step_id": planned.id, "at": now, "service": planned.service,
            "versions": versions(planned.service), "options_hash": _options_hash(planned, options, conn),
            "state": "cached" if result.get("cached") else "succeeded", "host": socket.gethostname(),
            "started_at": now - seconds, "ended_at": now, "duration": round(seconds, 3), "inputs": inputs,
            "outputs": outputs}


def _options_hash(planned: PlannedStep, options: Any, conn: Redis | None = None) -> str | None:
    """The step's cache key (:func:`ifcflow.engine.cache.key`), with input hashes remembered while files are unchanged
    (a step end does not read its inputs twice)."""
    import copy
    import hashlib

    from ..services.base import InputFile, OutputFile, file_options
    from .cache import _set, versions

    data = copy.deepcopy(planned.options)
    workdir = Path(planned.workdir)
    for sub, marker, value in file_options(options):
        if isinstance(marker, InputFile):
            entry = describe(value, conn=conn) if os.path.isfile(value) else None
            if entry is None:
                return None
            _set(data, sub, "sha256:" + entry["sha256"])
        elif isinstance(marker, OutputFile):
            path = Path(value)
            _set(data, sub, str(path.relative_to(workdir)) if path.is_relative_to(workdir) else value)
    document = {"service": planned.service, "versions": versions(planned.service), "options": data}
    return hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


LOSSES = (("died", "worker-lost"), ("lost", "job-lost"), ("terminated unexpectedly", "killed"),
          ("timed out", "killed"))
"""Step errors that make an audit event: (text in the error, event)."""


def run_finished(conn: Redis, status: RunStatus) -> list[dict[str, Any]]:
    """The run's end: its state, every step's final state, and audit events for lost and killed steps."""
    now = time.time()
    batch_id = store.run_record(conn, status.run_id).get("batch")
    records: list[dict[str, Any]] = [{
        "kind": "run", "run_id": status.run_id, "at": now, "pipeline": status.pipeline, "file": status.file,
        "state": status.status.value, "created_at": _epoch(status.created_at), "out_dir": status.out_dir,
        "ended_at": _epoch(status.ended_at) or now, "batch_id": batch_id}]
    for step_id, step in status.steps.items():
        records.append({"kind": "step", "run_id": status.run_id, "step_id": step_id, "at": now,
                        "service": step.service, "state": step.status.value, "worker": step.worker,
                        "started_at": _epoch(step.started_at), "ended_at": _epoch(step.ended_at),
                        "duration": step.duration, "error": step.error})
        for error in [step.error or "", *step.errors]:  # one event per step and attempt
            event = next((name for needle, name in LOSSES if needle in error.lower()), None)
            if event:
                records.append(audit(event, run_id=status.run_id, who=step.worker or "reconciler",
                                     key=f"{event}:{status.run_id}:{step_id}:{step.started_at or step.ended_at}",
                                     detail={"step": step_id, "error": error, "worker": step.worker}))
                break
    return records


# -- the outbox -------------------------------------------------------------------------------------------------

def cap() -> int:
    """How many records the outbox keeps at most (the oldest are dropped beyond it): ``$IFCFLOW_OUTBOX_MAX``."""
    value = os.environ.get(MAX_ENV, "").strip()
    if not value:
        return DEFAULT_MAX
    try:
        wanted = int(value)
    except ValueError:
        wanted = 0
    if wanted < 1:
        log.warning("%s=%r is not a positive whole number; keeping at most %d records", MAX_ENV, value, DEFAULT_MAX)
        return DEFAULT_MAX
    return wanted


def push(conn: Redis | RedisPipeline, records: list[dict[str, Any]]) -> None:
    """Append records to the outbox (inside the caller's transaction when ``conn`` is a pipeline), keeping at most
    about :func:`cap` records (Redis trims whole nodes: never fewer)."""
    limit = cap()
    for record in records:
        conn.xadd(STREAM, {"r": json.dumps(record, separators=(",", ":"))}, maxlen=limit, approximate=True)


def record(conn: Redis, records: list[dict[str, Any]]) -> None:
    """Append records; a Redis error is logged, never raised (history must not stop a run)."""
    try:
        with conn.pipeline(transaction=False) as pipe:  # one round trip for a run's end and its steps
            push(pipe, records)
            pipe.execute()
    except Exception:
        log.exception("could not write %d history record(s) to the outbox", len(records))


_DROP_EMPTY = "if redis.call('XLEN', KEYS[1]) == 0 then return redis.call('DEL', KEYS[1]) end return 0"


def withdraw(conn: Redis, run_id: str, scan: int = 10_000) -> int:
    """Remove a rolled-back submission's records (it never existed) from the newest ``scan`` outbox entries; an
    outbox left empty is deleted (atomically: a record pushed meanwhile stays). Returns how many were removed."""
    entries: Any = conn.xrevrange(STREAM, count=scan)
    ids = [entry_id for entry_id, fields in entries
           if fields and json.loads(fields[b"r"]).get("run_id") == run_id]
    removed = int(conn.xdel(STREAM, *ids)) if ids else 0
    conn.eval(_DROP_EMPTY, 1, STREAM)
    return removed


def behind(conn: Redis) -> int:
    """Records not yet in the database."""
    return int(conn.xlen(STREAM))


def full(waiting: int) -> bool:
    """Whether an outbox holding ``waiting`` records is at its cap: older records are being dropped."""
    return waiting >= cap()


def _group(conn: Redis) -> None:
    try:
        conn.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def drain(conn: Redis, url: str, limit: int | None = None) -> int:
    """Move outbox records into the database at ``url``; returns how many. Raises when the database fails (the
    records stay in the outbox)."""
    _group(conn)
    consumer = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
    done = 0
    while limit is None or done < limit:
        entries = _read(conn, consumer, "0")  # what this drainer read before and could not write
        if not entries:
            claimed = conn.xautoclaim(STREAM, GROUP, consumer, CLAIM_IDLE_MS, "0-0", count=BATCH)
            entries = [(entry_id, fields) for entry_id, fields in (claimed[1] if claimed else []) if fields]
        if not entries:
            entries = _read(conn, consumer, ">")
        if not entries:
            return done
        from ..history import database as history

        ids = [entry_id for entry_id, _ in entries]
        try:
            history.apply(url, (json.loads(fields[b"r"]) for _, fields in entries))
        except Exception:
            history.dispose(url)  # a database dropped and created again is migrated again at the next drain
            _release(conn, consumer, ids)
            raise
        with conn.pipeline(transaction=True) as pipe:
            pipe.xack(STREAM, GROUP, *ids)
            pipe.xdel(STREAM, *ids)
            pipe.execute()
        done += len(ids)
    return done


def _release(conn: Redis, consumer: str, ids: list[Any]) -> None:
    """Records this drainer read but could not write: mark them idle for :data:`CLAIM_IDLE_MS` already, so the next
    drain of any process or thread claims them at once (else they wait for this thread's next drain, or a minute)."""
    try:
        conn.xclaim(STREAM, GROUP, consumer, 0, ids, idle=CLAIM_IDLE_MS, justid=True)
    except Exception:  # noqa: BLE001 - then they are claimed after CLAIM_IDLE_MS, as from a drainer that died
        log.debug("could not release %d outbox records", len(ids), exc_info=True)


def _read(conn: Redis, consumer: str, start: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
    read: Any = conn.xreadgroup(GROUP, consumer, {STREAM: start}, count=BATCH)
    if isinstance(read, dict):  # RESP3
        read = list(read.items())
    # an entry read before and trimmed away since by the cap (see push) comes back without fields: skipped here,
    # and XAUTOCLAIM (in drain) drops it from the pending list
    return [(entry_id, fields) for entry_id, fields in (read[0][1] if read else []) if fields]


def configure(conn: Redis, url: str | None) -> None:
    """Drain what is recorded through ``conn`` into ``url`` (the API server: its data folder's database; None:
    ``$IFCFLOW_DATABASE_URL`` or nothing). Per connection, so servers in one process keep their databases apart."""
    if url is None:
        _urls.pop(id(conn), None)
    else:
        _urls[id(conn)] = url


def configured(conn: Redis | None = None) -> str | None:
    return (_urls.get(id(conn)) if conn is not None else None) or os.environ.get("IFCFLOW_DATABASE_URL",
                                                                                 "").strip() or None


def settle(conn: Redis, url: str | None = None) -> int:
    """Drain into ``url`` (or the configured database) now; failures are logged; returns how many."""
    global _warned
    target = url or configured(conn)
    if target is None:
        return 0
    try:
        return drain(conn, target)
    except (IfcflowError, Exception) as exc:  # noqa: BLE001 - the database may be down: records wait in Redis
        if time.monotonic() - _warned > 60:
            _warned = time.monotonic()
            log.warning("history database not written (%s); %s records wait in the outbox", exc, _safe_len(conn))
        return 0


def _safe_len(conn: Redis) -> str:
    try:
        return str(behind(conn))
    except Exception:  # noqa: BLE001
        return "some"


@events.on_run_end
def _run_ended(conn: Redis, status: RunStatus) -> None:
    record(conn, run_finished(conn, status))
    settle(conn)


@events.on_step_end
def _step_ended(conn: Redis, run_id: str, planned: PlannedStep, result: dict[str, Any], seconds: float) -> None:
    record(conn, [step_succeeded(run_id, planned, result, seconds, conn)])


@events.on_tick
def tick(conn: Redis) -> None:
    """A reconcile loop's tick: drain into the configured database."""
    settle(conn)
