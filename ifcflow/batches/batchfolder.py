"""Batch folders as a record: ``<out>/<batch_id>/batch.json`` holds a batch's final status document, and each
sub-run's folder ``<out>/<batch_id>/<run_id>/status.json`` its own (see :mod:`ifcflow.engine.runfolder`).

A local batch's private Redis is gone when the command ends; ``ifcflow status``, ``report``, ``batches`` and
``retry`` read (and a local retry rewrites) these records when no Redis is configured.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pydantic import ValidationError

from ..engine.states import RunState
from ..errors import IfcflowError
from .batch_status import BatchStatus, batch_state

BATCH_FILE = "batch.json"


def _load(path: Path) -> BatchStatus:
    try:
        return BatchStatus.model_validate_json(path.read_bytes())
    except (OSError, ValidationError, ValueError) as exc:
        raise IfcflowError(f"cannot read {path}: {str(exc).splitlines()[0]}; the file is damaged or from "
                           "another version of ifcflow") from None


def read(root: Path, batch_id: str) -> BatchStatus | None:
    """The batch recorded under ``root``, or None when there is no such batch folder."""
    path = root / batch_id / BATCH_FILE
    return _load(path) if path.is_file() else None


def write(status: BatchStatus) -> Path:
    """Write ``batch.json`` into the batch folder, atomically."""
    folder = Path(status.out_dir)
    handle, tmp = tempfile.mkstemp(prefix=".batch-", suffix=".json", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(status.model_dump_json(indent=2) + "\n")
        os.replace(tmp, folder / BATCH_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return folder / BATCH_FILE


def recent(root: Path, limit: int = 20) -> list[BatchStatus]:
    """Recorded batches under ``root``, newest first (unreadable records are left out)."""
    found = []
    for path in root.glob(f"*/{BATCH_FILE}") if root.is_dir() else []:
        try:
            found.append(_load(path))
        except IfcflowError:
            continue
    found.sort(key=lambda s: s.created_at, reverse=True)
    return found[:limit]


def to_retry(status: BatchStatus) -> list[str]:
    """The sub-runs a retry runs again: those that failed or were canceled."""
    return [r.run_id for r in status.runs if r.status in (RunState.FAILED, RunState.CANCELED)]


def merge(old: BatchStatus, new: BatchStatus) -> BatchStatus:
    """``old`` with the rows of the sub-runs ``new`` ran again replaced, its state and counts recomputed."""
    again = {r.run_id: r for r in new.runs}
    runs = [again.get(r.run_id, r) for r in old.runs]
    counts = {s.value: 0 for s in RunState}
    for run in runs:
        counts[run.status.value] += 1
    state = batch_state([r.status for r in runs], False)
    ends = [r.ended_at for r in runs if r.ended_at]
    return old.model_copy(update={"runs": runs, "counts": counts, "status": state,
                                  "ended_at": max(ends) if ends and state.terminal else None})
