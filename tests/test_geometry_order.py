"""Tessellate once without holding a worker: the planner orders a clash step after the glb step whose geometry
pass serves it (``after``: ordering only, whatever the glb step's outcome), so on two real ``ifcflow worker``s the
second worker takes other work (here the csv step) while the glb step makes the pass, instead of a clash step that
would only wait for it."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import yaml
from redis import Redis

from ifcflow.engine import control, reconcile, runner, status
from ifcflow.engine.states import StepState
from ifcflow.pipeline import document
from ifcflow.pipeline.plan import plan
from ifcflow.standalone.embedded import EmbeddedRedis
from tests.conftest import shared_ifc, work
from tests.processes import kill_tree, start_worker
from tests.test_geometry_after_job import when
from tests.test_geometry_share import CLASH_SETS, data

CLASH = {"uses": "ifcclash", "with": {"clash_sets": CLASH_SETS, "output": "clashes.json"}}
GLB = {"uses": "ifcconvert", "with": {"input": "model.ifc", "output": "model.glb", "threads": 1}}
CSV = {"uses": "ifccsv", "with": {"ifc": "model.ifc", "query": "IfcWall", "attributes": ["Name"],
                                  "output": "walls.csv"}}


def write(folder: Path, steps: dict[str, object], model: str = "duplex.ifc") -> Path:
    shutil.copyfile(shared_ifc(model), folder / "model.ifc")
    path = folder / "order.yml"
    path.write_text(yaml.safe_dump({"version": 1, "name": "order", "defaults": {"cache": False}, "steps": steps},
                                   sort_keys=False))
    return path


def test_the_planner_orders_a_served_clash_step_after_its_glb_step(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # the file lists the clash step first: the plan puts the glb step before it
    planned = plan(document.load(write(tmp_path, {"clash": CLASH, "glb": GLB, "csv": CSV})), out_root=tmp_path)
    assert [s.id for s in planned.steps] == ["glb", "clash", "csv"]
    assert {s.id: s.after for s in planned.steps} == {"glb": [], "clash": ["glb"], "csv": []}
    # a glb step downstream of the clash step: no ordering (it would be a cycle); the clash step makes the pass
    late = plan(document.load(write(tmp_path, {"clash": CLASH, "glb": {**GLB, "needs": ["clash"]}})),
                out_root=tmp_path)
    assert {s.id: s.after for s in late.steps} == {"clash": [], "glb": []}
    # a glb step that cannot share (world coordinates change the shapes): none
    world = {**GLB, "with": {**GLB["with"], "use_world_coords": True}}  # type: ignore[dict-item]
    assert all(not s.after for s in plan(document.load(write(tmp_path, {"glb": world, "clash": CLASH})),
                                         out_root=tmp_path).steps)
    # a glb step that waits for something the clash step does not (a need, or a condition): no ordering, so the
    # clash step is never held back by it; it makes the pass itself if it starts first
    gated = plan(document.load(write(tmp_path, {"check": CSV, "glb": {**GLB, "needs": ["check"]}, "clash": CLASH})),
                 out_root=tmp_path)
    assert all(not s.after for s in gated.steps)
    conditional = plan(document.load(write(tmp_path, {"glb": {**GLB, "if": "always()"}, "clash": CLASH})),
                       out_root=tmp_path)
    assert all(not s.after for s in conditional.steps)
    # ... but one whose needs the clash step waits for too: ordered
    both = plan(document.load(write(tmp_path, {"check": CSV, "glb": {**GLB, "needs": ["check"]},
                                               "clash": {**CLASH, "needs": ["check"]}})), out_root=tmp_path)
    assert both.step("clash").after == ["glb"]
    monkeypatch.setenv("IFCFLOW_SHARE_GEOMETRY", "0")  # sharing off: each tessellates alone, side by side
    assert all(not s.after for s in plan(document.load(write(tmp_path, {"glb": GLB, "clash": CLASH})),
                                         out_root=tmp_path).steps)


@pytest.mark.slow
def test_a_second_worker_takes_other_work_while_the_glb_step_makes_the_pass(redis_server: EmbeddedRedis,
                                                                          conn: Redis, tmp_path: Path) -> None:
    pipeline = write(tmp_path, {"glb": GLB, "clash": CLASH, "csv": CSV})
    workers = [start_worker(redis_server.url, f"order-{i}-{time.monotonic_ns()}", "--preload",
                            "ifcconvert,ifcclash,ifccsv") for i in range(2)]
    try:
        planned = runner.start(conn, pipeline, out=tmp_path / "runs")  # two idle workers: glb and csv start at once
        deadline = time.monotonic() + 300
        while not (found := status.read(conn, planned.run_id)).terminal and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        for worker in workers:
            kill_tree(worker)
    steps = found.steps
    assert all(s.status == StepState.SUCCEEDED for s in steps.values()), {k: s.error for k, s in steps.items()}
    assert data(steps["glb"])["shared_geometry"] and data(steps["clash"])["shared_geometry"]  # still one pass
    assert when(steps["clash"].started_at) >= when(steps["glb"].ended_at)
    assert when(steps["csv"].started_at) < when(steps["glb"].ended_at)  # the other worker was free for it
    assert steps["clash"].worker != steps["csv"].worker or when(steps["csv"].ended_at) <= when(
        steps["clash"].started_at)


def test_a_failed_glb_step_still_lets_its_clash_step_run_and_a_skipped_one_releases_it(conn: Redis,
                                                                                        tmp_path: Path) -> None:
    # the glb step fails at run time (its model was damaged after the run was checked): the clash step, ordered
    # after it only, still runs (and fails on its own over the same file), rather than waiting forever
    planned = runner.start(conn, write(tmp_path, {"glb": GLB, "clash": CLASH}), out=tmp_path / "runs")
    assert planned.step("clash").after == ["glb"]
    (tmp_path / "model.ifc").write_text("ISO-10303-21;\nHEADER;\nENDSEC;\nDATA;\n#1=IFCWALL(;\nENDSEC;\n")
    work(conn)
    reconcile.run(conn, planned.run_id)
    first = status.read(conn, planned.run_id)
    assert first.steps["glb"].status == StepState.FAILED
    assert first.steps["clash"].status == StepState.FAILED and first.steps["clash"].started_at is not None
    assert "upstream" not in (first.steps["clash"].error or "")
    # a glb step skipped (its need failed): RQ never starts the dependents of a canceled job; the reconciler
    # releases the clash step (it runs whatever its need did: always())
    shutil.copyfile(shared_ifc("duplex.ifc"), tmp_path / "other.ifc")
    gate = {**CSV, "with": {**CSV["with"], "ifc": "other.ifc", "output": "gate.csv"}}  # type: ignore[dict-item]
    skipped = write(tmp_path, {"gate": gate, "glb": {**GLB, "needs": ["gate"]},
                               "clash": {**CLASH, "needs": ["gate"], "if": "always()"}})
    second = runner.start(conn, skipped, out=tmp_path / "runs")
    assert second.step("clash").after == ["glb"]
    (tmp_path / "other.ifc").write_text("ISO-10303-21;\nHEADER;\nENDSEC;\nDATA;\n#1=IFCWALL(;\nENDSEC;\n")
    work(conn)
    reconcile.run(conn, second.run_id)
    work(conn)
    done = status.read(conn, second.run_id)
    assert done.steps["gate"].status == StepState.FAILED
    assert done.steps["glb"].status == StepState.SKIPPED
    assert done.steps["clash"].status == StepState.SUCCEEDED, done.steps["clash"].error
    assert data(done.steps["clash"])["shared_geometry"]  # it made the pass itself (nothing else would)
    assert control.retry(conn, second.run_id, "clash") == ["clash"]  # a retry alone does not wait on glb
    work(conn)
    assert status.read(conn, second.run_id).steps["clash"].status == StepState.SUCCEEDED


def test_a_held_clash_step_is_released_by_whichever_of_its_needs_and_after_steps_ends_last(tmp_path: Path) -> None:
    """A ``failure()`` clash step further down is held (RQ never starts it; the reconciler releases it). Its glb
    step's job must reconcile at its end like its needs' jobs do, or under plain ``rq worker``s (no periodic pass)
    a glb step ending last would leave it waiting."""
    from ifcflow.engine import enqueue

    steps = {"a": CSV, "b": {**CSV, "needs": ["a"], "with": {**CSV["with"], "output": "b.csv"}},  # type: ignore[dict-item]
             "glb": GLB, "clash": {**CLASH, "needs": ["b"], "if": "failure()"}}
    planned = plan(document.load(write(tmp_path, steps)), out_root=tmp_path)
    assert planned.step("clash").after == ["glb"]
    wiring = enqueue.Wiring(planned)
    assert "clash" in wiring.held and {"b", "glb"} <= wiring.decides


def test_a_plan_without_ordering_is_stored_as_the_release_before_it_wrote_it(tmp_path: Path) -> None:
    """``after`` goes into a step's job and the stored plan only when set: workers and readers of the release
    before it (``extra="forbid"``) still run and read every plan without shared geometry during a rolling update."""
    import json

    from ifcflow.engine import store

    plain = plan(document.load(write(tmp_path, {"glb": GLB, "csv": CSV})), out_root=tmp_path)
    assert all("after" not in s.wire() for s in plain.steps)
    assert all("after" not in s for s in json.loads(plain.wire_json())["steps"])
    assert store.unpack_plan(store.pack_plan(plain)) == plain
    shared = plan(document.load(write(tmp_path, {"glb": GLB, "clash": CLASH, "csv": CSV})), out_root=tmp_path)
    assert [("after" in s.wire()) for s in shared.steps] == [False, True, False]
    assert store.unpack_plan(store.pack_plan(shared)) == shared
