"""ifcflow's own records in Redis, beside RQ's jobs: the run (its plan) and per-step decisions.

Keys (all under ``ifcflow:``):
- ``ifcflow:run:<run_id>``: hash with ``plan`` (JSON, compressed: :func:`pack_plan`), ``created_at``,
  ``canceled`` (when cancelled), ``batch`` (for a batch's runs);
- ``ifcflow:run:<run_id>:steps``: hash step id -> JSON ``{status, reason, at}`` for what RQ cannot say
  (skipped steps and why, canceled steps, dead workers);
- ``ifcflow:run:<run_id>:lock`` / ``:dirty``: the per-run lock (see :mod:`ifcflow.engine.lock`);
- ``ifcflow:runs``: sorted set of run ids by creation time;
- ``ifcflow:live``: set of runs that have not ended yet (what the reconciler visits).

When a run ends the record gets ``ended_at`` and ``final`` (JSON step id -> ``{status, error}``), so its status
stays true after its RQ jobs expired. How long records live (TTL on first end, revive on retry, compaction, prune,
batch end) is :mod:`ifcflow.engine.lifetimes`' business.

Batch keys (see :mod:`ifcflow.batches.batch`): ``ifcflow:batch:<id>`` and its ``:ended``, ``:rows`` and ``:held`` keys,
``ifcflow:batches``.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import time
import zlib
from base64 import b64decode, b64encode
from collections.abc import Iterator
from typing import Any

from redis import Redis
from redis.client import Pipeline as RedisPipeline

from ..errors import RunNotFound
from ..pipeline.plan import Plan

RUNS = "ifcflow:runs"
BATCHES = "ifcflow:batches"
LIVE = "ifcflow:live"
STORAGE_FIELD = "storage"
"""Run record field of a run whose files are in object storage (:mod:`ifcflow.engine.staging`); here so a run's end
can check it without importing staging (and boto3, ~0.2 s of every local run's end)."""
DEFAULT_TTL = 7 * 86400
"""How long finished jobs, their results and run records are kept: 7 days."""


def run_key(run_id: str) -> str:
    return f"ifcflow:run:{run_id}"


def steps_key(run_id: str) -> str:
    return f"ifcflow:run:{run_id}:steps"


def save_run(conn: Redis | RedisPipeline, plan: Plan, ttl: int = DEFAULT_TTL,
             extra: dict[str, str] | None = None) -> None:
    """Write the run record (and index it) in one transaction; ``extra`` adds fields (e.g. ``webhook``)."""
    created = time.time()
    own = not isinstance(conn, RedisPipeline)  # (a redis-py Pipeline is also a Redis)
    pipe: RedisPipeline = conn.pipeline() if own else conn  # type: ignore[assignment]
    record: dict[str, str | float | int] = {"plan": pack_plan(plan), "created_at": created, "ttl": ttl}
    record.update(extra or {})
    pipe.hset(run_key(plan.run_id), mapping=record)  # type: ignore[arg-type]
    pipe.zadd(RUNS, {plan.run_id: created})
    pipe.sadd(LIVE, plan.run_id)
    if own:
        pipe.execute()


def batch_key(batch_id: str) -> str:
    return f"ifcflow:batch:{batch_id}"


def batch_keys(batch_id: str) -> list[str]:
    """Every key of a batch: its hash, the set of sub-runs it saw end, their final rows, the retried sub-runs
    waiting for the window."""
    base = batch_key(batch_id)
    return [base, f"{base}:ended", f"{base}:rows", f"{base}:held"]


def live_runs(conn: Redis) -> list[str]:
    found: set[bytes] = conn.smembers(LIVE)  # type: ignore[assignment]
    return sorted(r.decode() for r in found)


def forget_live(conn: Redis, run_id: str) -> None:
    conn.srem(LIVE, run_id)


def gate_id(run_id: str, name: str = "start") -> str:
    """Job id of a run's start gate (``start``) or of a retry's gate (``retry<n>``)."""
    return f"{run_id}--{name}"


def latest_gate_id(conn: Redis, run_id: str) -> str:
    """Job id of the run's newest gate: its start gate, or the gate of its latest retry."""
    retries = int(conn.hget(run_key(run_id), "retries") or 0)
    return gate_id(run_id, f"retry{retries}" if retries else "start")


def gate_ids(conn: Redis, run_id: str) -> list[str]:
    """Job ids of a run's start gate and of the gate of every retry, each followed by its hold (a gate never
    opened, which held ``failure()`` steps wait on: see :class:`ifcflow.engine.enqueue.Wiring`; absent in most runs)."""
    return gate_ids_of(run_id, int(conn.hget(run_key(run_id), "retries") or 0))


def gate_ids_of(run_id: str, retries: int) -> list[str]:
    """:func:`gate_ids` of a run retried ``retries`` times (its record's ``retries``, already read)."""
    names = ["start", *(f"retry{n}" for n in range(1, retries + 1))]
    return [gate_id(run_id, name + hold) for name in names for hold in ("", "-hold")]


def delete_run(conn: Redis, run_id: str) -> None:
    conn.delete(run_key(run_id), steps_key(run_id))
    conn.zrem(RUNS, run_id)
    conn.srem(LIVE, run_id)


def load_plan(conn: Redis, run_id: str) -> Plan:
    raw = conn.hget(run_key(run_id), "plan")
    if raw is None:
        raise RunNotFound(run_id)
    return unpack_plan(raw)


def pack_plan(plan: Plan) -> str:
    """The plan as stored: ``z:`` + base64 of its zlib-compressed JSON (a third of the JSON's size; text, so
    every reader of the run record can still decode it)."""
    return "z:" + b64encode(zlib.compress(plan.wire_json().encode())).decode()


def unpack_plan(raw: bytes | str) -> Plan:
    text = raw.decode() if isinstance(raw, bytes) else raw
    return Plan.model_validate_json(zlib.decompress(b64decode(text[2:])) if text.startswith("z:") else text)


def parse_record(raw: dict[bytes, bytes]) -> dict[str, Any]:
    return {k.decode(): v.decode() for k, v in raw.items()}


_ending: contextvars.ContextVar[tuple[str, dict[str, Any]] | None] = contextvars.ContextVar("ifcflow_ending",
                                                                                            default=None)


@contextlib.contextmanager
def ending(run_id: str, record: dict[str, Any] | None) -> Iterator[None]:
    """While a run's end hooks run (:func:`ifcflow.engine.events.run_ended`): its ``record`` as its ender just read
    and wrote it, for :func:`run_record` (None: read it)."""
    token = _ending.set((run_id, record) if record is not None else None)
    try:
        yield
    finally:
        _ending.reset(token)


def run_record(conn: Redis, run_id: str) -> dict[str, Any]:
    """The record of run ``run_id`` (decoded fields): the one its ender passed while its end hooks run (see
    :func:`ending`), else read now."""
    known = _ending.get()
    if known is not None and known[0] == run_id:
        return known[1]
    return parse_record(conn.hgetall(run_key(run_id)))  # type: ignore[arg-type]


def record_steps(conn: Redis | RedisPipeline, run_id: str, states: dict[str, tuple[str, str]], *,
                 overwrite: bool = False) -> None:
    """Record ``{step: (status, reason)}``; existing records are kept unless ``overwrite``."""
    if not states:
        return
    now = time.time()
    payload = {step: json.dumps({"status": s, "reason": r, "at": now}) for step, (s, r) in states.items()}
    if overwrite:
        conn.hset(steps_key(run_id), mapping=payload)  # type: ignore[arg-type]
    else:
        for step, value in payload.items():
            conn.hsetnx(steps_key(run_id), step, value)


def step_records(raw: dict[bytes, bytes]) -> dict[str, dict[str, Any]]:
    return {k.decode(): json.loads(v) for k, v in raw.items()}


def recent_runs(conn: Redis, limit: int = 20) -> list[str]:
    found: list[bytes] = conn.zrevrange(RUNS, 0, limit - 1)  # type: ignore[assignment]
    return [r.decode() for r in found]
