"""Record lifetimes (ifcflow/engine/lifetimes.py) on a real redis-server with real RQ workers: TTL on first end, revive on
retry, batch end (canceled batches included), the window on a batch retry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from rq.job import Job

from ifcflow.batches import batch, batch_status, lifecycle
from ifcflow.engine import control, reconcile, rqstore, runner, status, store
from ifcflow.engine.states import RunState, StepState
from ifcflow.operations import maintenance

from .conftest import work
from .factories import tiny_model, wall_name_ids, write_pipeline
from .test_batch import PIPELINE
from .test_batch import work as work_advancing

KEPT = """\
    version: 1
    name: kept
    steps:
      ok: {uses: ifcpatch, with: {ifc: arch.ifc, recipe: Optimise}}
      bad: {uses: ifcpatch, with: {ifc: arch.ifc, recipe: NoSuchRecipe}}
    """


@pytest.fixture()
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tiny_model(tmp_path / "arch.ifc")
    wall_name_ids(tmp_path / "rules.ids", attribute="Name")
    models = tmp_path / "models"
    models.mkdir()
    for name, walls in (("a.ifc", 1), ("b.ifc", 2), ("c.ifc", 3), ("d.ifc", 1)):
        tiny_model(models / name, walls=walls)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_retry_revives_every_record_of_the_run_kept_steps_jobs_included(conn: Redis, folder: Path) -> None:
    planned = runner.start(conn, write_pipeline(folder, KEPT), out=folder / "runs", ttl=600)
    work(conn)
    kept = planned.step("ok").job_id
    assert 0 < conn.ttl(f"rq:job:{kept}") <= 600  # ended: everything expires together
    assert control.retry(conn, planned.run_id, ttl=600) == ["bad"]
    # live again: nothing of it expires, the job of the step the retry keeps included
    gates = [f"rq:job:{g}" for g in store.gate_ids(conn, planned.run_id) if not g.endswith("-hold")]  # (no holds)
    for key in (store.run_key(planned.run_id), f"rq:job:{kept}", *gates):
        assert conn.ttl(key) == -1, key
    work(conn)
    result = status.read(conn, planned.run_id)
    assert result.steps["ok"].status == StepState.SUCCEEDED and result.status == RunState.FAILED
    assert 0 < conn.ttl(f"rq:job:{kept}") <= 600 and 0 < conn.ttl(store.run_key(planned.run_id)) <= 600


def _opened(conn: Redis, run_ids: list[str]) -> list[str]:
    """The sub-runs whose latest gate is open."""
    return [r for r in run_ids if rqstore.job_status(conn, store.latest_gate_id(conn, r)) == "finished"]


def test_canceled_batch_with_never_released_runs_ends_and_its_retry_keeps_the_window(conn: Redis,
                                                                                   folder: Path) -> None:
    record = batch.start(conn, write_pipeline(folder, PIPELINE), each={"arch": "models/*.ifc"},
                         out=folder / "runs", window=1, ttl=600)
    run_ids = [r.run_id for r in record.runs]
    assert len(lifecycle.cancel(conn, record.batch_id)) == 4  # 1 released, 3 never released
    work(conn)
    lifecycle.advance(conn, record.batch_id)
    assert conn.hget(batch.key(record.batch_id), "ended_at") is not None  # it ended...
    assert 0 < conn.ttl(batch.key(record.batch_id)) <= 600  # ... and expires with its runs
    assert batch_status.read(conn, record.batch_id).status == RunState.CANCELED
    retried = lifecycle.retry(conn, record.batch_id)
    assert sorted(retried) == run_ids
    assert conn.ttl(batch.key(record.batch_id)) == -1 and conn.hget(batch.key(record.batch_id), "ended_at") is None
    assert len(_opened(conn, run_ids)) == 1  # the window (1), not all four at once
    work_advancing(conn)  # ifcflow's worker opens the next gate as each sub-run ends
    done = batch_status.read(conn, record.batch_id)
    assert done.status == RunState.SUCCEEDED and len(_opened(conn, run_ids)) == 4
    assert conn.hget(batch.key(record.batch_id), "ended_at") is not None
    assert maintenance.prune(conn, older_than=-1)  # ended: prune takes the batch and its runs
    assert not batch.exists(conn, record.batch_id)
    assert not Job.exists(store.gate_id(run_ids[0]), connection=conn)


def test_a_failed_step_reads_failed_as_soon_as_its_dependents_are_skipped(conn: Redis, folder: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The failing step skips its dependents before RQ marks its job failed; a status read in between (the run page
    live, here right after the skip, in the job's own process) must not show it running beside them."""
    gated = """\
        version: 1
        name: gated
        steps:
          bad: {uses: ifcpatch, with: {ifc: arch.ifc, recipe: NoSuchRecipe}}
          after: {uses: ifc2json, needs: [bad], with: {ifc: arch.ifc}}
        """
    planned = runner.start(conn, write_pipeline(folder, gated), out=folder / "runs")
    seen: list[tuple[str, str, int]] = []
    real = reconcile.run

    def run_and_look(*args: Any, **kwargs: Any) -> Any:
        done = real(*args, **kwargs)
        now = status.read(conn, planned.run_id)
        seen.append((now.steps["bad"].status.value, now.steps["after"].status.value, now.steps["bad"].attempt))
        return done

    monkeypatch.setattr(reconcile, "run", run_and_look)
    work(conn)
    assert seen and seen[0] == ("failed", "skipped", 1), seen
    assert Job.fetch(planned.step("bad").job_id, connection=conn).get_status() == "failed"
