"""A long step's status keeps moving: during one library call that reports nothing (ifc5d's quantity take-off,
1.5-6 s on duplex.ifc), the work horse's ticker (workers/ticker.py) rewrites the step's progress note every
``IFCFLOW_PROGRESS_INTERVAL`` seconds. A real ``ifcflow worker`` process, a real model, the status document that
``ifcflow status --json``, ``GET /runs/{id}`` and the live view read."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from redis import Redis

from ifcflow.engine import runner, status
from ifcflow.engine.states import StepState
from ifcflow.standalone.embedded import EmbeddedRedis

from .conftest import shared_ifc
from .processes import kill_tree, start_worker


@pytest.mark.slow
def test_a_long_library_call_shows_a_new_progress_note_every_interval(redis_server: EmbeddedRedis, conn: Redis,
                                                                       tmp_path: Path) -> None:
    os.symlink(shared_ifc("duplex.ifc"), tmp_path / "duplex.ifc")
    (tmp_path / "qto.yml").write_text(
        "version: 1\nname: qto\nsteps:\n  qto: {uses: ifc5d, with: {ifc: duplex.ifc, rules: IFC4QtoBaseQuantities, "
        "query: IfcElement, output: qto.ifc, summary: qto.json}}\n")
    proc = start_worker(redis_server.url, f"ticker-{time.monotonic_ns()}", "--preload", "ifc5d",
                        env={"IFCFLOW_PROGRESS_INTERVAL": "0.2"})
    try:
        planned = runner.start(conn, tmp_path / "qto.yml", out=tmp_path / "runs")
        notes: dict[float, str] = {}  # a ticker note's time -> its message
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            step = status.read(conn, planned.run_id).steps["qto"]
            if step.status.terminal:
                break
            progress = step.progress or {}
            message = str(progress.get("message") or "")
            if step.status == StepState.RUNNING and "(running for" in message:
                notes[float(progress["at"])] = message
            time.sleep(0.05)
        final = status.read(conn, planned.run_id).steps["qto"]
    finally:
        kill_tree(proc)
    assert final.status == StepState.SUCCEEDED, final.error
    assert len(notes) >= 2, f"ticker notes seen while the step ran: {notes}"
    assert any(m.startswith("quantifying") for m in notes.values()), notes  # the phase it last reported
    assert (final.progress or {}).get("message") == "done"  # the step's own last word is not overwritten


def test_the_next_tick_is_due_an_interval_after_the_steps_own_last_report(conn: Redis) -> None:
    """A step that reported 1 s ago with a 5 s interval is ticked 4 s later, not 5 (so a note is never nearly
    two intervals old: the 10.1 s gap the big-model bench once saw with the 5 s default)."""
    from rq.job import Job
    from rq.serializers import DefaultSerializer

    from workers import ticker

    job = Job.create(func="builtins.print", connection=conn)
    job.meta["progress"] = {"done": 1, "total": 3, "phase": "writing", "message": "writing", "at": time.time() - 1.0}
    job.save()
    conn.hset(job.key, "status", "started")
    written, wait = ticker.tick(conn, job.key, DefaultSerializer, 5.0, 1.0)
    assert not written and 3.8 < wait < 4.1, wait
    job.meta["progress"]["at"] = time.time() - 6.0
    job.save_meta()
    written, wait = ticker.tick(conn, job.key, DefaultSerializer, 5.0, 6.0)
    assert written and wait == 5.0
    assert Job.fetch(job.id, connection=conn).meta["progress"]["message"] == "writing (running for 6 s)"
    conn.hset(job.key, "status", "finished")
    assert ticker.tick(conn, job.key, DefaultSerializer, 5.0, 7.0) == (False, 5.0)
