"""From a pipeline file to a submitted run: load, check, plan, enqueue (the ``ifcflow run`` path, minus waiting)."""

from __future__ import annotations

from pathlib import Path

from redis import Redis

from . import document, enqueue, store
from .plan import Plan, plan


def start(conn: Redis, file: str | Path, inputs: dict[str, str] | None = None, out: str | Path = "ifcflow-runs",
          run_id: str | None = None, ttl: int = store.DEFAULT_TTL) -> Plan:
    """Check ``file``, plan it and enqueue the run; raises PipelineError (nothing enqueued) on bad input."""
    doc = document.load(file, inputs)
    planned = plan(doc, run_id=run_id, out_root=out)
    enqueue.submit(conn, planned, ttl=ttl)
    return planned
