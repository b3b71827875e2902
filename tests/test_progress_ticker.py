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
