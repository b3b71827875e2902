"""From a pipeline file to a submitted run: load, check, plan, enqueue (the ``ifcflow run`` path, minus waiting)."""

from __future__ import annotations

import os
from pathlib import Path

from redis import Redis

from ..pipeline import document
from ..pipeline.plan import Plan, plan
from . import enqueue, store


def start(conn: Redis, file: str | Path, inputs: dict[str, str] | None = None, out: str | Path = "ifcflow-runs",
          run_id: str | None = None, ttl: int = store.DEFAULT_TTL) -> Plan:
    """Check ``file``, plan it and enqueue the run; raises PipelineError (nothing enqueued) on bad input. With a
    remote store configured (``IFCFLOW_STORAGE=s3://...``) the inputs are uploaded and pinned first."""
    doc = document.load(file, inputs)
    planned = plan(doc, run_id=run_id, out_root=out)
    enqueue.submit(conn, planned, ttl=ttl, record=pins([planned]).get(planned.run_id))
    return planned


def pins(plans: list[Plan]) -> dict[str, dict[str, str]]:
    """Per run id, the run record field pinning its inputs in the configured remote store ({} for a folder)."""
    if not os.environ.get("IFCFLOW_STORAGE", "").strip():  # a folder by default: paths used in place (no boto3)
        return {}
    from .staging import pin_inputs
    from .storage import configured

    storage = configured()
    return {p.run_id: pin_inputs(storage, p) for p in plans} if storage.remote else {}
