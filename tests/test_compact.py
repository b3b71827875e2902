"""A finished run is compacted in Redis: status, reports and retry read the same as before."""

from __future__ import annotations

from pathlib import Path

from redis import Redis
from rq import SimpleWorker
from rq.job import Job

from ifcflow.engine import control, reconcile, store
from ifcflow.engine.compact import compact
from ifcflow.engine.runner import start
from ifcflow.engine.states import RunState, StepState
from ifcflow.engine.status import StatusReader
from ifcflow.services import QUEUES
from ifcflow.views import report

from .conftest import work
from .factories import tiny_model, wall_name_ids, write_pipeline

PIPELINE = """\
    version: 1
    name: compacted
    steps:
      patch: {uses: ifcpatch, with: {ifc: arch.ifc, recipe: Optimise}}
      validate: {uses: ifctester, needs: [patch], with: {ifc: "${{ steps.patch.outputs.model }}", ids: rules.ids}}
      after: {uses: ifcpatch, needs: [validate], with: {ifc: arch.ifc, recipe: Optimise, output: after.ifc}}
    """


def test_compacted_run_reads_the_same(conn: Redis, tmp_path: Path) -> None:
    tiny_model(tmp_path / "arch.ifc")
    wall_name_ids(tmp_path / "rules.ids")  # tiny walls have no Description: validate fails
    planned = start(conn, write_pipeline(tmp_path, PIPELINE), out=tmp_path / "runs")
    SimpleWorker(list(QUEUES), connection=conn).work(burst=True, logging_level="WARNING")  # no reconcile pass yet
    reader = StatusReader(conn, planned.run_id)
    before = reader.fetch(with_traceback=True)
    assert [s.status for s in before.steps.values()] == [StepState.SUCCEEDED, StepState.FAILED, StepState.SKIPPED]
    assert conn.exists(f"rq:results:{planned.step('patch').job_id}")
    reconcile.run(conn, planned.run_id)  # the run ends: its records get their expiry, finished jobs are compacted
    patch_id = planned.step("patch").job_id
    assert not conn.exists(f"rq:results:{patch_id}")
    assert conn.exists(f"rq:results:{planned.step('validate').job_id}")  # a failed step keeps its traceback
    after = reader.fetch(with_traceback=True)
    assert after.model_dump() == before.model_dump()
    assert report.junit(after) == report.junit(before) and "Optimise" in report.markdown(after)
    job = Job.fetch(patch_id, connection=conn)  # RQ still reads the compacted job
    assert job.get_status() == "finished"
    assert job.result["message"] == before.steps["patch"].result["message"]  # type: ignore[index]
    compact(conn, planned.run_id)  # idempotent: a second pass changes nothing visible
    assert reader.fetch(with_traceback=True).model_dump() == before.model_dump()
    # a retry of the failed step still works on the compacted run
    wall_name_ids(tmp_path / "rules.ids", attribute="Name")
    assert control.retry(conn, planned.run_id) == ["validate", "after"]
    work(conn)
    final = reader.read()
    assert final.status == RunState.SUCCEEDED
    assert final.steps["patch"].result == before.steps["patch"].result
    assert store.load_plan(conn, planned.run_id) == planned
