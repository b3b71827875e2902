"""Schedules: a pipeline (or a batch over globs) started on a cron expression, stored in Redis.

Plain functions (``add``, ``remove``, ``get``, ``listing``, ``fire``, ``run_now``) serve the CLI, the scheduler
(:mod:`ifcflow.batches.scheduler`) and the HTTP API alike.

At every fire the pipeline file is read and checked again and the globs are expanded again; a broken file, an
input gone missing or a glob matching nothing makes that fire ``failed`` with the reason (recorded in the history,
shown by ``ifcflow schedule list``, sent to the webhook): the scheduler itself never stops on it.

Overlap, when the previous run (or batch) of the schedule has not ended: ``skip`` (default; the fire is recorded
``skipped``), ``queue`` (the fire waits and starts when the previous one ends; one waiting fire at most) or
``allow`` (start anyway).

Keys: ``ifcflow:schedules`` hash name -> JSON spec; ``ifcflow:schedule:<name>:history`` list of fire records, newest
first (50 kept); ``ifcflow:schedule:<name>:queued`` a waiting fire; ``ifcflow:schedule:<name>:tick:<ts>`` the
once-per-tick lock (``SET NX``, kept a day).
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis import Redis
from rq.exceptions import StopRequested

from ..engine import outbox, runner, store, webhooks
from ..errors import IfcflowError
from ..pipeline import document
from ..pipeline.spec import NAME_PATTERN
from . import batch

SCHEDULES = "ifcflow:schedules"
HISTORY = 50
log = logging.getLogger(__name__)


class ScheduleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, max_length=64)
    pipeline: str = Field(description="absolute path of the pipeline file, read again at every fire")
    cron: str = Field(description="5 fields (minute hour day month weekday) or 6 (plus seconds), local time")
    inputs: dict[str, str] = Field(default_factory=dict, description="input overrides (absolute paths)")
    each: dict[str, str] = Field(default_factory=dict, description="batch globs (absolute), expanded at each fire")
    webhook: str | None = None
    webhook_allow: list[str] | None = Field(default=None, description="destinations allowed when sending (the "
                                            "server's IFCFLOW_WEBHOOK_ALLOW for schedules added over HTTP; "
                                            "None: any, for the terminal)")
    overlap: Literal["skip", "queue", "allow"] = "skip"
    out: str = Field(description="folder for run outputs")
    ttl: int = store.DEFAULT_TTL
    created_at: str = ""
    paused: bool = Field(default=False, description="a paused schedule does not fire on its ticks (firing it now still works)")


class Fire(BaseModel):
    """One fire of a schedule: when, and what came of it."""

    tick: str
    at: str
    outcome: Literal["started", "failed", "skipped", "queued"]
    id: str | None = Field(default=None, description="run id, or batch id when the schedule runs a batch")
    kind: Literal["run", "batch"] | None = None
    reason: str | None = None


def _key(name: str, what: str) -> str:
    return f"ifcflow:schedule:{name}:{what}"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


SECONDS_LAST = ("6 fields put seconds LAST here (croniter: minute hour day month weekday second), unlike "
                "Quartz/Spring which put them first")


def check_cron(cron: str) -> list[float]:
    """Refuse a cron that is not one, never fires (30 February) or reads like seconds-first; return its next 3 fires.
    The one check of the CLI, the HTTP API and the scheduler (a stored record failing it is skipped, not fired)."""
    fields = cron.split()
    hint = ""
    if len(fields) == 6:
        hint = (f"; {SECONDS_LAST}: for every 20 seconds write '* * * * * */20', for 02:30:00 daily '30 2 * * * 0'")
    if len(fields) not in (5, 6) or not croniter.is_valid(cron):
        raise IfcflowError(f"--cron {cron!r} is not a cron expression; write 5 fields (minute hour day month "
                           f"weekday), e.g. '0 2 * * *' for 02:00 every night, or 6 with seconds last{hint}")
    if len(fields) == 6 and fields[5] == "*" and any(f != "*" for f in fields[:5]):
        raise IfcflowError(f"--cron {cron!r} would fire every second of the minutes it names{hint}; to mean it, "
                           "write the seconds field as 0-59")
    try:
        return next_fires(cron, 3)
    except ValueError as exc:  # croniter's CroniterBadDateError: a date that never comes
        raise IfcflowError(f"--cron {cron!r} never fires ({exc}); check the day and month fields (e.g. 30 February "
                           "does not exist)") from None


def next_fire(cron: str, after: float | None = None) -> float:
    """The next tick of ``cron`` after ``after`` (default now), local time, as a timestamp."""
    return next_fires(cron, 1, after)[0]


def next_fires(cron: str, count: int, after: float | None = None) -> list[float]:
    """The next ``count`` ticks of ``cron`` after ``after`` (default now), local time, as timestamps."""
    it = croniter(cron, datetime.fromtimestamp(after if after is not None else time.time()))
    return [float(it.get_next(float)) for _ in range(count)]


def add(conn: Redis, spec: ScheduleSpec, replace: bool = False) -> ScheduleSpec:
    """Check and store a schedule (the pipeline must load now; inputs and globs are checked at each fire)."""
    check_cron(spec.cron)
    if spec.webhook:
        webhooks.check_url(spec.webhook, None if spec.webhook_allow is None else tuple(spec.webhook_allow))
    document.load(spec.pipeline, spec.inputs, check_files=False)
    spec = spec.model_copy(update={"created_at": spec.created_at or datetime.now(UTC).isoformat()})
    if not conn.hsetnx(SCHEDULES, spec.name, spec.model_dump_json()) and not replace:
        raise IfcflowError(f"a schedule named '{spec.name}' exists; remove it first (ifcflow schedule remove "
                           f"{spec.name}) or choose another name")
    if replace:
        conn.hset(SCHEDULES, spec.name, spec.model_dump_json())
    return spec


def remove(conn: Redis, name: str) -> None:
    if not conn.hdel(SCHEDULES, name):
        raise IfcflowError(f"no schedule named '{name}'; list them with: ifcflow schedule list")
    conn.delete(_key(name, "history"), _key(name, "queued"), _key(name, "live"))


def pause(conn: Redis, name: str, paused: bool = True) -> ScheduleSpec:
    """Pause (or resume) a schedule: schedulers skip a paused schedule's ticks from their next poll on; its
    history, waiting fire and ``run_now`` are unaffected."""
    spec = get(conn, name).model_copy(update={"paused": paused})
    conn.hset(SCHEDULES, name, spec.model_dump_json())
    log.info("schedule %s %s", name, "paused" if paused else "resumed")
    return spec


def get(conn: Redis, name: str) -> ScheduleSpec:
    raw = conn.hget(SCHEDULES, name)
    if raw is None:
        raise IfcflowError(f"no schedule named '{name}'; list them with: ifcflow schedule list")
    try:
        return ScheduleSpec.model_validate_json(raw)
    except ValidationError as exc:
        raise IfcflowError(f"schedule '{name}' cannot be read ({exc.errors()[0]['msg']}); remove it (ifcflow "
                           f"schedule remove {name}) and add it again") from None


def all_specs(conn: Redis) -> dict[str, ScheduleSpec]:
    """The stored schedules that can be read and computed (see :func:`read_all` for the others)."""
    return read_all(conn)[0]


def read_all(conn: Redis) -> tuple[dict[str, ScheduleSpec], dict[str, str]]:
    """Every stored schedule: the good ones by name, and per broken record (not JSON, a wrong field, a cron that
    never fires) why it is skipped; one broken record never hides or stops the others."""
    raw: dict[bytes, bytes] = conn.hgetall(SCHEDULES)  # type: ignore[assignment]
    good: dict[str, ScheduleSpec] = {}
    broken: dict[str, str] = {}
    for key, value in sorted(raw.items()):
        name = key.decode(errors="replace")
        try:
            spec = ScheduleSpec.model_validate_json(value)
            check_cron(spec.cron)
            good[name] = spec
        except IfcflowError as exc:
            broken[name] = f"{str(exc).replace('--cron', 'cron')}; skipped: fix it or remove it (ifcflow schedule " \
                           f"remove {name})"
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "record"
            broken[name] = f"unreadable record ({where}: {first['msg']}); skipped: remove it (ifcflow schedule " \
                           f"remove {name}) and add it again"
    return good, broken


def history(conn: Redis, name: str, limit: int = HISTORY) -> list[Fire]:
    raw: list[bytes] = conn.lrange(_key(name, "history"), 0, limit - 1)  # type: ignore[assignment]
    return [Fire.model_validate_json(r) for r in raw]


def _state(conn: Redis, fire: Fire) -> str | None:
    """The current state of a started fire's run or batch (None when it expired)."""
    from ..engine.status import StatusReader
    from . import batch_status

    try:
        if fire.kind == "batch":
            return batch_status.read(conn, fire.id or "", errors=False).status.value
        return StatusReader(conn, fire.id or "").fetch().status.value
    except IfcflowError:
        return None


def listing(conn: Redis) -> list[dict[str, Any]]:
    """Per schedule: its spec, next fire time, and the last fire with the state of what it started."""
    rows = []
    for name, spec in all_specs(conn).items():
        last = next(iter(history(conn, name, 1)), None)
        rows.append({**spec.model_dump(), "next_fire": _iso(next_fire(spec.cron)),
                     "last": None if last is None else {**last.model_dump(),
                                                        "state": _state(conn, last) if last.id else None}})
    return rows


def claim(conn: Redis, name: str, tick: float) -> bool:
    """True for exactly one caller per schedule and tick, whichever scheduler asks first."""
    return bool(conn.set(_key(name, f"tick:{int(tick)}"), os.getpid(), nx=True, ex=86400))


def live_fire(conn: Redis, name: str) -> Fire | None:
    """The schedule's live fire: the last one started, until the scheduler saw its run or batch end (key
    ``ifcflow:schedule:<name>:live``, however many ticks were skipped or queued since)."""
    raw = conn.get(_key(name, "live"))
    return None if raw is None else Fire.model_validate_json(raw)


_FORGET = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def _busy(conn: Redis, name: str) -> Fire | None:
    """The schedule's live fire if its run or batch has not ended."""
    fire = live_fire(conn, name)
    if fire is None:
        return None
    return fire if _state(conn, fire) in ("queued", "running") else None


def _start(conn: Redis, spec: ScheduleSpec) -> tuple[str, Literal["run", "batch"]]:
    doc = document.load(spec.pipeline, spec.inputs, check_files=not spec.each)
    if spec.each or doc.pipeline.for_each:
        record, plans = batch.prepare(doc, spec.each, spec.out, ttl=spec.ttl)
        batch.submit(conn, record, plans, runner.pins(plans))  # (pinned in a remote store when configured)
        return record.batch_id, "batch"
    return runner.start(conn, spec.pipeline, spec.inputs, out=spec.out, ttl=spec.ttl).run_id, "run"


def fire(conn: Redis, spec: ScheduleSpec, tick: float, *, overlap: bool = True) -> Fire:
    """Start the schedule's pipeline for ``tick`` (after the overlap check unless ``overlap=False``); record the
    outcome and tell the webhook about failures and skips. Never raises for a bad pipeline."""
    busy = _busy(conn, spec.name) if overlap and spec.overlap != "allow" else None
    now = time.time()
    if busy is not None and spec.overlap == "queue":
        queued = conn.set(_key(spec.name, "queued"), json.dumps({"tick": tick}), nx=True)
        result = Fire(tick=_iso(tick), at=_iso(now), outcome="queued" if queued else "skipped",
                      reason=f"previous {busy.kind} {busy.id} has not ended" + ("" if queued else
                                                                               "; a fire already waits"))
    elif busy is not None:
        result = Fire(tick=_iso(tick), at=_iso(now), outcome="skipped",
                      reason=f"previous {busy.kind} {busy.id} has not ended (overlap: skip)")
    else:
        try:
            with outbox.acting(f"schedule:{spec.name}", schedule=spec.name):
                started, kind = _start(conn, spec)
            result = Fire(tick=_iso(tick), at=_iso(now), outcome="started", id=started, kind=kind)
            conn.set(_key(spec.name, "live"), result.model_dump_json(), ex=spec.ttl)  # until it ends
        except StopRequested:  # the scheduler is asked to stop (SIGTERM): not a failure of this fire
            raise
        except Exception as exc:  # a broken file fails this fire, never the scheduler
            reason = str(exc) if isinstance(exc, IfcflowError) else f"{type(exc).__name__}: {exc}"
            result = Fire(tick=_iso(tick), at=_iso(now), outcome="failed", reason=reason)
    outbox.record(conn, [outbox.audit("schedule-fire", run_id=result.id if result.kind == "run" else None,
                                      batch_id=result.id if result.kind == "batch" else None,
                                      who=f"schedule:{spec.name}", schedule=spec.name, detail=result.model_dump())])
    with conn.pipeline() as pipe:
        pipe.lpush(_key(spec.name, "history"), result.model_dump_json())
        pipe.ltrim(_key(spec.name, "history"), 0, HISTORY - 1)
        pipe.execute()
    if spec.webhook and result.outcome in ("failed", "skipped"):
        notify(spec.webhook, {"schedule": spec.name, "event": f"fire_{result.outcome}", "fire": result.model_dump()},
               allow=spec.webhook_allow)
    log.info("schedule %s tick %s: %s %s", spec.name, result.tick, result.outcome, result.id or result.reason or "")
    return result


def run_now(conn: Redis, name: str) -> Fire:
    """``ifcflow schedule run NAME``: fire now, whatever the overlap policy says."""
    return fire(conn, get(conn, name), time.time(), overlap=False)


def start_queued(conn: Redis, spec: ScheduleSpec) -> Fire | None:
    """Start the waiting fire of an ``overlap: queue`` schedule once the previous run ended."""
    raw = conn.get(_key(spec.name, "queued"))
    if raw is None or _busy(conn, spec.name) is not None:
        return None
    if not conn.delete(_key(spec.name, "queued")):  # another scheduler took it
        return None
    return fire(conn, spec, json.loads(raw)["tick"], overlap=False)


def notify_ended(conn: Redis, spec: ScheduleSpec) -> bool:
    """When the schedule's live fire ended: it is live no more, and its final status goes to the webhook, once."""
    last = live_fire(conn, spec.name)
    state = None if last is None else _state(conn, last)
    if last is None or state in ("queued", "running"):
        return False
    conn.eval(_FORGET, 1, _key(spec.name, "live"), last.model_dump_json())
    if not spec.webhook or state is None:
        return False
    if not conn.set(_key(spec.name, f"notified:{last.id}"), 1, nx=True, ex=spec.ttl):
        return False
    from ..engine.status import StatusReader
    from . import batch_status

    doc = (batch_status.read(conn, last.id or "").model_dump(mode="json") if last.kind == "batch"
           else StatusReader(conn, last.id or "").fetch().model_dump(mode="json"))
    notify(spec.webhook, {"schedule": spec.name, "event": f"{last.kind}_ended", "status": doc},
           allow=spec.webhook_allow)
    return True


def notify(url: str, payload: dict[str, Any], timeout: float = 5.0,
           allow: tuple[str, ...] | list[str] | None = None) -> bool:
    """POST ``payload`` as JSON with the one webhook sender (:func:`ifcflow.engine.webhooks.post`: no redirects, the
    allow-list checked on the resolved address; signed with IFCFLOW_WEBHOOK_SECRET when set); failures are
    logged, never raised."""
    try:
        sent, why = webhooks.send_once(url, payload, None if allow is None else tuple(allow), "ifcflow-scheduler",
                                       timeout)
    except StopRequested:
        raise
    except Exception as exc:  # noqa: BLE001 - a webhook never stops the scheduler
        sent, why = False, f"{type(exc).__name__}: {exc}"
    if not sent:
        log.warning("webhook %s failed: %s", url, why)
    return sent


def spec_from_cli(name: str, pipeline: Path, cron: str, inputs: dict[str, str], each: dict[str, str],
                  webhook: str | None, overlap: str, out: Path, ttl: int) -> ScheduleSpec:
    """A spec with every path made absolute from the current folder (the scheduler runs elsewhere)."""
    return ScheduleSpec(name=name, pipeline=str(pipeline.resolve()), cron=cron,
                        inputs={k: str(Path(v).resolve()) for k, v in inputs.items()},
                        each={k: str(Path(v).absolute()) for k, v in each.items()}, webhook=webhook,
                        overlap=overlap, out=str(out.resolve()), ttl=ttl)  # type: ignore[arg-type]
