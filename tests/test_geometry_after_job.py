"""Tessellate once, on a real ``ifcflow worker`` (a resident work horse): the glb step ends once its glb is written and
its horse runs the shared pass's clash query after the job (ifcflow/operations/horse.py ``after_job``), before the
worker takes its next job; the clash step reads what that query wrote: the same glb bytes and the same clashes as the
pass run inside the glb step (an in-process worker has no resident horse, so there the query runs in the step)."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

from redis import Redis

from ifcflow.engine import control, reconcile, runner, status
from ifcflow.engine.states import StepState
from ifcflow.standalone.embedded import EmbeddedRedis
from tests.conftest import shared_ifc, work
from tests.servers import spawn, stop
from tests.test_geometry_share import clashes, data, run, same_clashes, write_pipeline


def when(value: object) -> float:
    return value.timestamp() if isinstance(value, datetime) else datetime.fromisoformat(str(value)).timestamp()


def test_the_clash_query_runs_after_the_glb_job_in_its_horse(redis_server: EmbeddedRedis, conn: Redis,
                                                               tmp_path: Path) -> None:
    folder = tmp_path / "resident"
    folder.mkdir()
    planned = runner.start(conn, write_pipeline(folder, shared_ifc("duplex.ifc")), None, out=folder / "runs")
    log = tmp_path / "worker.log"
    worker = spawn([sys.executable, "-m", "ifcflow", "worker", "--redis", redis_server.url, "--burst", "--preload",
                    "ifcconvert,ifcclash", "ifcconvert", "ifcclash"], log)  # the glb step first: it makes the pass
    try:
        assert worker.wait(timeout=600) == 0, log.read_text()
    finally:
        stop(worker)
    reconcile.sweep(conn)
    resident = status.read(conn, planned.run_id, with_traceback=True)
    for step in resident.steps.values():
        assert step.status == StepState.SUCCEEDED, step.error
    assert data(resident.steps["glb"])["shared_geometry"] and data(resident.steps["clash"])["shared_geometry"]
    assert f"after-job work of job {planned.run_id}-glb done" in log.read_text()
    product = next((folder / "runs").glob("*/.geometry/*/clash-*.json"))
    assert when(resident.steps["glb"].ended_at) < product.stat().st_mtime  # the glb step did not carry the query
    assert when(resident.steps["clash"].started_at) >= product.stat().st_mtime - 0.05
    (tmp_path / "inline").mkdir()
    inline = run(conn, tmp_path / "inline")  # in-process worker: the query inside the glb step, as before
    assert Path(resident.steps["glb"].outputs["model"]).read_bytes() == \
        Path(inline.steps["glb"].outputs["model"]).read_bytes()
    found = clashes(Path(resident.steps["clash"].outputs["report"]))
    same_clashes(found, clashes(Path(inline.steps["clash"].outputs["report"])))
    assert data(resident.steps["clash"])["clash_sets"] == data(inline.steps["clash"])["clash_sets"]
    assert len(found["all"]) > 100


def test_a_clash_step_whose_product_is_missing_runs_alone(conn: Redis, tmp_path: Path) -> None:
    """What a clash step finds when the horse doing the query died: the pass's glb is there, its product is not."""
    first = run(conn, tmp_path)
    report = clashes(Path(first.steps["clash"].outputs["report"]))
    for product in (tmp_path / "runs").glob("*/.geometry/*/clash-*.json"):
        product.unlink()
    assert control.retry(conn, first.run_id, "clash") == ["clash"]
    work(conn)
    again = status.read(conn, first.run_id).steps["clash"]
    assert again.status == StepState.SUCCEEDED, again.error
    assert not data(again)["shared_geometry"]
    same_clashes(clashes(Path(again.outputs["report"])), report)
