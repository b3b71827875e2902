"""Shared test steps: running pipelines past the client's checks and expecting the worker to refuse them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis import Redis

from ifcflow.engine import enqueue, status
from ifcflow.engine.states import StepState
from ifcflow.pipeline import document
from ifcflow.pipeline.plan import plan
from tests.conftest import shared_ifc, work
from tests.factories import walls_model


def succeeded(run: status.RunStatus, step_id: str) -> Any:
    """The step ``step_id`` of ``run``, after asserting that it succeeded."""
    step = run.steps[step_id]
    assert step.status == StepState.SUCCEEDED, (step.error, step.traceback)
    return step


def bad_inputs(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """Step id -> (input path, fragment of the expected error): not IFC, truncated, IFC4X3_RC2, missing."""
    good = walls_model(tmp_path / "walls.ifc", walls=1).read_bytes()
    (tmp_path / "cut.ifc").write_bytes(good[: len(good) // 2])
    (tmp_path / "text.ifc").write_text("hello, not a model")
    return {
        "text": (str(tmp_path / "text.ifc"), "not an IFC-SPF file"),
        "cut": (str(tmp_path / "cut.ifc"), "truncated"),
        "draft": (str(shared_ifc("KIT-Simple-Road-Test-Web-IFC4x3_RC2.ifc")), "IFC4X3_RC2"),
        "missing": (str(tmp_path / "missing.ifc"), "does not exist"),
    }


def run_unchecked(conn: Redis, pipeline: Path, out_root: Path) -> status.RunStatus:
    """Load, plan, submit and work ``pipeline`` without the client's file checks (as if files changed after
    submission), so the worker is the one to find what is wrong."""
    planned = plan(document.load(pipeline, check_files=False), out_root=out_root)
    enqueue.submit(conn, planned)
    work(conn)
    return status.read(conn, planned.run_id)


def assert_bad_inputs_fail(conn: Redis, tmp_path: Path, write_pipeline: Callable[[Path, dict[str, Any]], Path],
                           input_key: str, suffix: str, forbid_traceback: bool = True) -> None:
    """One step per ``bad_inputs`` case, with ``{input_key: path, "output": "<id>.<suffix>"}``, run unchecked:
    each fails with its fragment in the error (and no traceback there, if ``forbid_traceback``) and writes no
    output."""
    cases = bad_inputs(tmp_path)
    steps = {key: {input_key: path, "output": f"{key}.{suffix}"} for key, (path, _) in cases.items()}
    result = run_unchecked(conn, write_pipeline(tmp_path, steps), tmp_path / "runs")
    for key, (_, fragment) in cases.items():
        step = result.steps[key]
        assert step.status == StepState.FAILED, key
        assert step.error is not None and fragment in step.error, (key, step.error)
        if forbid_traceback:
            assert "Traceback" not in step.error
        assert not list((tmp_path / "runs").rglob(f"{key}.{suffix}")), key
