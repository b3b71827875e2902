"""A batch's records in Redis (what both submitting and reading a batch need; see :mod:`ifcflow.batch`).

Keys: ``ifcflow:batch:<id>`` hash (``record`` JSON, ``control`` JSON, ``released`` count, ``canceled``,
``ended_at``), ``ifcflow:batch:<id>:ended`` set of ended sub-runs, ``ifcflow:batches`` sorted set by creation time;
every sub-run's record has ``batch``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from redis import Redis

from .errors import IfcflowError

BATCHES = "ifcflow:batches"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubRun(Strict):
    run_id: str
    label: str
    """The file (or files, for a matrix) this sub-run is for, as the user wrote them."""
    inputs: dict[str, str]


class TemplateStep(Strict):
    id: str
    on_failure: str = "stop"


class BatchRecord(Strict):
    batch_id: str
    pipeline: str
    file: str
    created_at: str
    out_dir: str
    ttl: int
    window: int = 0
    """Sub-runs released at a time; 0: twice the registered workers (at least 2)."""
    each: dict[str, str]
    steps: list[TemplateStep]
    runs: list[SubRun]


def sub_run_id(batch_id: str, index: int, total: int) -> str:
    """``<batch id>-<index>``, the index zero-padded to the width of the last one (so ids sort by index)."""
    return f"{batch_id}-{index:0{len(str(total - 1))}d}"


class Control(Strict):
    """The part of a batch record that releasing sub-runs needs (small: read after every job of the batch)."""

    batch_id: str
    total: int
    window: int
    ttl: int
    steps: list[TemplateStep]

    def run_id(self, index: int) -> str:
        return sub_run_id(self.batch_id, index, self.total)


class BatchNotFound(IfcflowError):
    def __init__(self, batch_id: str):
        super().__init__(f"no batch '{batch_id}' on this Redis; batches expire with their runs' results")


def key(batch_id: str) -> str:
    return f"ifcflow:batch:{batch_id}"


def ended_key(batch_id: str) -> str:
    return f"ifcflow:batch:{batch_id}:ended"


def exists(conn: Redis, batch_id: str) -> bool:
    return bool(conn.exists(key(batch_id)))


def load(conn: Redis, batch_id: str) -> BatchRecord:
    raw = conn.hget(key(batch_id), "record")
    if raw is None:
        raise BatchNotFound(batch_id)
    return BatchRecord.model_validate_json(raw)
