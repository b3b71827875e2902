"""ifcflow's own records in Redis, beside RQ's jobs: the run (its plan) and per-step decisions.

Keys (all under ``ifcflow:``):
- ``ifcflow:run:<run_id>``: hash with ``plan`` (JSON, compressed: :func:`pack_plan`), ``created_at``,
  ``canceled`` (when cancelled), ``batch`` (for a batch's runs);
- ``ifcflow:run:<run_id>:steps``: hash step id -> JSON ``{status, reason, at}`` for what RQ cannot say
  (skipped steps and why, canceled steps, dead workers);
- ``ifcflow:run:<run_id>:lock`` / ``:dirty``: the per-run lock (see :mod:`ifcflow.lock`);
- ``ifcflow:runs``: sorted set of run ids by creation time;
- ``ifcflow:live``: set of runs that have not ended yet (what the reconciler visits).

When a run ends the record gets ``ended_at`` and ``final`` (JSON step id -> ``{status, error}``), so its status
stays true after its RQ jobs expired.
"""

from __future__ import annotations

import json
import time
import zlib
from base64 import b64decode, b64encode
from typing import Any

from redis import Redis
from redis.client import Pipeline as RedisPipeline

from .errors import RunNotFound
from .plan import Plan

RUNS = "ifcflow:runs"
LIVE = "ifcflow:live"
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


def finish_run(conn: Redis, run_id: str, ttl: int, final: dict[str, dict[str, str | None]]) -> bool:
    """Mark the run ended (``ended_at``, ``final`` step states); True for the one caller that did it (which then
    compacts the run's jobs: :func:`ifcflow.compact.compact`).

    Its records then expire, ``ttl`` seconds from now (the caller lets its jobs and gates expire with them). A
    retry makes the run live again (:func:`revive` removes ``ended_at``), so it can end once more.
    """
    if not conn.hsetnx(run_key(run_id), "ended_at", time.time()):
        return False
    conn.hset(run_key(run_id), "final", json.dumps(final))
    conn.expire(run_key(run_id), ttl)
    conn.expire(steps_key(run_id), ttl)
    return True


def revive(conn: Redis | RedisPipeline, run_id: str) -> None:
    """A retried run is live again: it keeps its records until it ends once more."""
    conn.hdel(run_key(run_id), "ended_at", "final")
    conn.persist(run_key(run_id))
    conn.persist(steps_key(run_id))
    conn.sadd(LIVE, run_id)


def live_runs(conn: Redis) -> list[str]:
    found: set[bytes] = conn.smembers(LIVE)  # type: ignore[assignment]
    return sorted(r.decode() for r in found)


def forget_live(conn: Redis, run_id: str) -> None:
    conn.srem(LIVE, run_id)


def gate_id(run_id: str, name: str = "start") -> str:
    """Job id of a run's start gate (``start``) or of a retry's gate (``retry<n>``)."""
    return f"{run_id}--{name}"


def gate_ids(conn: Redis, run_id: str) -> list[str]:
    """Job ids of a run's start gate and of the gate of every retry."""
    retries = int(conn.hget(run_key(run_id), "retries") or 0)
    return [gate_id(run_id), *(gate_id(run_id, f"retry{n}") for n in range(1, retries + 1))]


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
    return "z:" + b64encode(zlib.compress(plan.model_dump_json().encode())).decode()


def unpack_plan(raw: bytes | str) -> Plan:
    text = raw.decode() if isinstance(raw, bytes) else raw
    return Plan.model_validate_json(zlib.decompress(b64decode(text[2:])) if text.startswith("z:") else text)


def parse_record(raw: dict[bytes, bytes]) -> dict[str, Any]:
    return {k.decode(): v.decode() for k, v in raw.items()}


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
