"""Run-end hooks: what must happen exactly once when a run ends (write status.json, send a webhook, ...).

How a run end is observed: whoever reconciles the run (:func:`ifcflow.engine.reconcile.run`, under the per-run lock) and
finds every step ended sets the run's ``ended_at`` with HSETNX. The one caller whose HSETNX wins calls
:func:`run_ended` once with the final status document; every callback registered with :func:`on_run_end` runs
then, in registration order, in that process. The run stays in the live set (``ifcflow:live``) until the
callbacks returned, so a process that dies in between leaves the run to the next reconcile pass, which calls them
again: at least once across crashes, exactly once otherwise.

``ifcflow retry`` makes an ended run live again (it removes ``ended_at`` and adds the run back to the live set),
so the same run can end, and call the hooks, once more.

Callbacks must be quick (enqueue an RQ job for slow work such as HTTP deliveries) and must not raise; an exception
is logged and does not stop the others. Register at import time of a module, and name that module in
:data:`HOOK_MODULES` so every reconciling process (``ifcflow worker``, ``ifcflow reconcile``, the API server)
imports it::

    from ifcflow.engine import events

    @events.on_run_end
    def write_status_file(conn, status): ...
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from redis import Redis

if TYPE_CHECKING:
    from ..pipeline.plan import PlannedStep
    from .status import RunStatus

RunEndCallback = Callable[[Redis, "RunStatus"], None]
StepEndCallback = Callable[[Redis, str, "PlannedStep", dict[str, Any], float], None]
TickCallback = Callable[[Redis], None]
HOOK_MODULES: tuple[str, ...] = ("ifcflow.engine.outbox",)
"""Modules that register run-end callbacks when imported (loaded before the first run end is announced)."""

log = logging.getLogger(__name__)
_loaded = False


def _webhook(conn: Redis, status: RunStatus) -> None:
    """Built in: enqueue the run's webhook delivery, when it has one (see :mod:`ifcflow.engine.webhooks`)."""
    from .webhooks import on_run_end as deliver

    deliver(conn, status.run_id, status)


def _status_file(conn: Redis, status: RunStatus) -> None:
    """Built in: write the final document as ``status.json`` into the run folder (detached runs included), so a
    run can be looked at without Redis (see :mod:`ifcflow.engine.runfolder`). A folder this process cannot write is
    logged, not fatal: the client that follows a run writes it too."""
    from .runfolder import write_status
    from .store import STORAGE_FIELD, run_record

    if STORAGE_FIELD in run_record(conn, status.run_id):  # kept in object storage: the run folder is the submitter's
        return  # (ifcflow run writes it there when the run ends; workers write nowhere outside their own folders)
    try:
        write_status(status)
    except OSError as exc:
        log.warning("cannot write status.json of run %s into %s: %s", status.run_id, status.out_dir, exc)


_callbacks: list[RunEndCallback] = [_status_file, _webhook]


def on_run_end(callback: RunEndCallback) -> RunEndCallback:
    """Register ``callback(conn, status)`` to run once per run end (usable as a decorator)."""
    if callback not in _callbacks:
        _callbacks.append(callback)
    return callback


def remove(callback: RunEndCallback) -> None:
    if callback in _callbacks:
        _callbacks.remove(callback)


def _load_hook_modules() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in HOOK_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a broken hook module must not stop runs from ending
            log.exception("cannot import run-end hook module %s", name)


def run_ended(conn: Redis, status: RunStatus, record: dict[str, Any] | None = None) -> None:
    """Call every registered callback with the final document (see the module docstring for when). ``record``:
    the run's record as the caller just read and wrote it, which the callbacks read with
    :func:`ifcflow.engine.store.run_record` instead of reading it again each."""
    from .store import ending

    _load_hook_modules()
    with ending(status.run_id, record):
        for callback in list(_callbacks):
            try:
                callback(conn, status)
            except Exception:  # noqa: BLE001 - one hook's failure must not hide the others
                log.exception("run-end hook %s failed for run %s", getattr(callback, "__name__", callback),
                              status.run_id)


_step_callbacks: list[StepEndCallback] = []
_tick_callbacks: list[TickCallback] = []


def on_step_end(callback: StepEndCallback) -> StepEndCallback:
    """Register ``callback(conn, run_id, planned_step, result, seconds)``: called in a step's job when the step
    succeeded (or was served from the cache), before RQ records its end (at least once: a retried job calls it
    again). Same rules as :func:`on_run_end`."""
    if callback not in _step_callbacks:
        _step_callbacks.append(callback)
    return callback


def step_ended(conn: Redis, run_id: str, step: PlannedStep, result: dict[str, Any], seconds: float) -> None:
    _load_hook_modules()
    for callback in list(_step_callbacks):
        try:
            callback(conn, run_id, step, result, seconds)
        except Exception:  # noqa: BLE001 - bookkeeping never fails a step
            log.exception("step-end hook %s failed for run %s", getattr(callback, "__name__", callback), run_id)


def on_tick(callback: TickCallback) -> TickCallback:
    """Register ``callback(conn)``: called by the reconcile loop once per interval (in one process per Redis)."""
    if callback not in _tick_callbacks:
        _tick_callbacks.append(callback)
    return callback


def ticked(conn: Redis) -> None:
    _load_hook_modules()
    for callback in list(_tick_callbacks):
        try:
            callback(conn)
        except Exception:  # noqa: BLE001
            log.exception("tick hook %s failed", getattr(callback, "__name__", callback))
