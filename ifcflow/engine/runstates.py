"""The state of many runs of the same steps in one round trip (a batch's sub-runs). Read-only.

Every sub-run of a batch has the same steps, so one server-side script reads, per run, its record's ``canceled``
and ``final``, ifcflow's step records and each step job's status and times (no results, no metadata): 500 runs x 3
steps is one round trip. The states come from the one computation of :mod:`ifcflow.engine.status`
(:func:`~ifcflow.engine.status.step_state`, :func:`~ifcflow.engine.status.state_of_run`), so a batch row always says what the
run's own status says; a run's ``final`` record (written when it ended) is authoritative.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis import Redis

from .states import RunState, StepState
from .status import state_of_run, step_state

_READ = """
local n = tonumber(ARGV[1])
local out = {}
for r = n + 2, #ARGV do
  local run = ARGV[r]
  local record = redis.call('HMGET', 'ifcflow:run:' .. run, 'canceled', 'final', 'created_at')
  record[4] = redis.call('SISMEMBER', 'ifcflow:live', run)
  record[5] = redis.call('EXISTS', 'ifcflow:run:' .. run .. ':lock')
  out[#out + 1] = record
  out[#out + 1] = redis.call('HGETALL', 'ifcflow:run:' .. run .. ':steps')
  for s = 2, n + 1 do
    out[#out + 1] = redis.call('HMGET', 'rq:job:' .. run .. '-' .. ARGV[s], 'status', 'started_at', 'ended_at',
                               'ifcflow_cached')
  end
end
return out
"""


@dataclass
class RunRow:
    """One run as a batch shows it."""

    status: RunState
    steps: dict[str, StepState] = field(default_factory=dict)
    errors: dict[str, str | None] = field(default_factory=dict)
    started_at: str | None = None
    ended_at: str | None = None
    exists: bool = True
    """False when the run's record is gone (pruned or expired)."""
    recorded: bool = False
    """The run's end is recorded (its ``final``) and its end hooks have run (it left the live set): nothing is
    left for a reconcile pass to do."""
    busy: bool = False
    """A reconcile pass holds the run's lock right now (when read): whoever holds it ends the run if it is over,
    and a worker advances the run's batch after its pass."""

    @property
    def failed_step(self) -> str | None:
        return next((sid for sid, s in self.steps.items() if s == StepState.FAILED), None)

    def dump(self) -> str:
        return json.dumps({"status": self.status.value, "steps": {k: v.value for k, v in self.steps.items()},
                           "errors": self.errors, "started_at": self.started_at, "ended_at": self.ended_at})

    @classmethod
    def load(cls, raw: bytes | str) -> RunRow:
        data = json.loads(raw)
        return cls(status=RunState(data["status"]), steps={k: StepState(v) for k, v in data["steps"].items()},
                   errors=data.get("errors", {}), started_at=data.get("started_at"), ended_at=data.get("ended_at"))


def _iso(raw: bytes | None) -> str | None:
    if not raw:
        return None
    text = raw.decode()
    return text if text.endswith("Z") or "+" in text else text + "Z"


def _row(step_ids: list[str], on_failure: dict[str, str], chunk: list[Any]) -> RunRow:
    canceled, final_raw, created, live, locked = chunk[0]
    flat = chunk[1]
    records = {k.decode(): json.loads(v) for k, v in zip(flat[::2], flat[1::2])}
    final: dict[str, Any] = json.loads(final_raw) if final_raw else {}
    states: dict[str, StepState] = {}
    errors: dict[str, str | None] = {}
    for sid, job in zip(step_ids, chunk[2:]):
        status = job[0].decode() if job[0] else None
        states[sid], errors[sid], _ = step_state(status, records.get(sid), final.get(sid), cached=bool(job[3]))
    starts = [t for t in (_iso(job[1]) for job in chunk[2:]) if t]
    ends = [t for t in (_iso(job[2]) for job in chunk[2:]) if t]
    state = state_of_run(states, on_failure, bool(canceled))
    return RunRow(status=state, steps=states, errors=errors, started_at=min(starts) if starts else None,
                  ended_at=max(ends) if ends and state.terminal else None, exists=created is not None,
                  recorded=bool(final_raw) and not live, busy=bool(locked))


def rows(conn: Redis, steps: Sequence[tuple[str, str]], run_ids: list[str]) -> dict[str, RunRow]:
    """Per run of ``run_ids`` (whose steps are ``(step id, on_failure)`` pairs): its row, in one round trip."""
    step_ids = [sid for sid, _ in steps]
    on_failure = dict(steps)
    reply: list[Any] = conn.register_script(_READ)(args=[len(step_ids), *step_ids, *run_ids]) if run_ids else []
    width = 2 + len(step_ids)
    return {run_id: _row(step_ids, on_failure, reply[index * width:(index + 1) * width])
            for index, run_id in enumerate(run_ids)}
