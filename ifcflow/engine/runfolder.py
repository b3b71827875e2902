"""Run folders as a record: ``<out>/<run_id>/status.json`` holds a run's final status document.

A local run's private Redis is gone when the command ends; the run folder stays. ``ifcflow status``, ``runs``
and ``report`` read run folders (``./ifcflow-runs`` or ``--out``) when no Redis is configured.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from pydantic import ValidationError

from ..errors import IfcflowError
from .status import RunStatus

STATUS_FILE = "status.json"
DEFAULT_ROOT = Path("ifcflow-runs")


def status_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / STATUS_FILE


def write_status(status: RunStatus, reason: str | None = None) -> Path:
    """Write ``status`` as ``status.json`` into its run folder (``status.out_dir``), atomically; returns the path.

    ``reason`` says why a run ended early ("timeout", "interrupted"); it is the document's ``reason`` key.
    """
    folder = Path(status.out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    document = status.model_dump(mode="json", exclude={"steps": {"__all__": {"traceback"}}})
    if reason:
        document["reason"] = reason
    text = json.dumps(document, indent=2)
    handle, tmp = tempfile.mkstemp(prefix=".status-", suffix=".json", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text + "\n")
        os.replace(tmp, folder / STATUS_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return folder / STATUS_FILE


def _load(path: Path) -> RunStatus:
    try:
        return RunStatus.model_validate_json(path.read_bytes())
    except (OSError, ValidationError, ValueError) as exc:
        raise IfcflowError(f"cannot read {path}: {str(exc).splitlines()[0]}; the file is damaged or from "
                           "another version of ifcflow") from None


def read_status(root: Path, run_id: str) -> RunStatus:
    """The recorded status of run ``run_id`` under ``root``; a clear error when there is none."""
    folder = root / run_id
    path = folder / STATUS_FILE
    if path.is_file():
        return _load(path)
    inside = sorted(root.glob(f"*/{run_id}/{STATUS_FILE}")) if root.is_dir() and "/" not in run_id else []
    if inside:  # a sub-run of a batch: <root>/<batch_id>/<run_id>/
        return _load(inside[0])
    if folder.is_dir():
        raise IfcflowError(f"run folder {folder} has no {STATUS_FILE}: the run is still going on (in another "
                           "terminal), or its command was killed before it could write one")
    known = [s.run_id for s in recent(root, 5)]
    hint = f" Recent runs there: {', '.join(known)}." if known else ""
    raise IfcflowError(f"no run '{run_id}' in {root} (no Redis is configured, so ifcflow reads run folders). "
                       f"Pass the folder the run wrote to with --out, or the Redis it ran on with --redis.{hint}")


def recent(root: Path, limit: int = 20) -> list[RunStatus]:
    """Recorded runs under ``root``, newest first (unreadable records are left out)."""
    found = []
    paths = [*root.glob(f"*/{STATUS_FILE}"), *root.glob(f"*/*/{STATUS_FILE}")] if root.is_dir() else []
    for path in paths:  # runs, and batches' sub-runs
        try:
            found.append(_load(path))
        except IfcflowError:
            continue
    found.sort(key=lambda s: s.created_at, reverse=True)
    return found[:limit]
