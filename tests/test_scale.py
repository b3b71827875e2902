"""What a long pipeline costs in RQ (issue 15 item 5): dependencies and Redis memory linear in the steps and needs
(a long ``if: failure()`` chain no longer waits on every ancestor), with its semantics kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis import Redis

from ifcflow.engine import enqueue, rqstore, status, store
from ifcflow.pipeline import document, plan

from .conftest import work
from .factories import tiny_model


def failure_chain(steps: int, first_fails: bool = False, model: str = "tiny.ifc") -> str:
    """``s0`` then ``s1`` .. ``s<n-1>``, each ``if: failure()`` and needing the one before."""
    lines = ["version: 1", "name: chain", "steps:"]
    recipe = "NoSuchRecipe" if first_fails else "Optimise"
    lines.append(f"  s0: {{uses: ifcpatch, with: {{ifc: {model}, recipe: {recipe}}}}}")
    for i in range(1, steps):
        lines.append(f"  s{i}: {{uses: ifcpatch, needs: [s{i - 1}], if: failure(), "
                     f"with: {{ifc: {model}, recipe: Optimise}}}}")
    return "\n".join(lines) + "\n"


def dependency_counts(conn: Redis, planned: plan.Plan) -> dict[str, int]:
    return {s.id: int(conn.scard(rqstore.dependencies_key(s.job_id))) for s in planned.steps}


def test_a_failure_chain_waits_in_rq_on_its_direct_needs_only(conn: Redis, tmp_path: Path) -> None:
    """300 steps: each job has at most its needs plus a gate as RQ dependencies (before: every ancestor, 44,850
    dependency records and a quadratic enqueue), and the run's records grow linearly."""
    tiny_model(tmp_path / "tiny.ifc", walls=1)
    (tmp_path / "p.yaml").write_text(failure_chain(300))
    planned = plan.plan(document.load(tmp_path / "p.yaml"), out_root=tmp_path / "runs")
    before = conn.info("memory")["used_memory"]
    enqueue.submit(conn, planned)
    grown = conn.info("memory")["used_memory"] - before
    counts = dependency_counts(conn, planned)
    assert counts["s0"] == 1 and counts["s1"] == 1  # the start gate; s0 (s1's only upstream step)
    assert all(counts[s.id] <= len(s.needs) + 1 for s in planned.steps), counts
    assert sum(counts.values()) < 2 * len(planned.steps)
    hold = store.gate_id(planned.run_id, "start-hold")
    assert conn.scard(f"rq:job:{hold}:dependents") == 298  # s2 .. s299 are released by the reconciler
    assert grown < 5_000_000, f"Redis grew by {grown:,} bytes for 300 steps"


@pytest.mark.parametrize("first_fails", [True, False])
def test_a_held_failure_chain_runs_or_skips_under_plain_rq_workers(conn: Redis, tmp_path: Path,
                                                                   first_fails: bool) -> None:
    """The held steps are released (or skipped) by the reconciler as each need ends, with RQ's own worker."""
    tiny_model(tmp_path / "tiny.ifc", walls=1)
    (tmp_path / "p.yaml").write_text(failure_chain(6, first_fails))
    planned = plan.plan(document.load(tmp_path / "p.yaml"), out_root=tmp_path / "runs")
    enqueue.submit(conn, planned)
    work(conn)
    result = status.read(conn, planned.run_id)
    states = {sid: s.status.value for sid, s in result.steps.items()}
    if first_fails:
        assert states == {"s0": "failed", **{f"s{i}": "succeeded" for i in range(1, 6)}}
    else:
        assert states == {"s0": "succeeded", **{f"s{i}": "skipped" for i in range(1, 6)}}
        assert result.steps["s5"].error == "condition failure() is false: no upstream step failed"
    assert result.terminal




def test_a_retry_holds_its_failure_steps_behind_a_hold_of_its_own(conn: Redis, tmp_path: Path) -> None:
    """Retrying the failed first step re-runs the chain: its held steps wait on the retry's own hold gate (the
    first one may have expired with the run) and are released again by the reconciler."""
    from ifcflow.engine import control

    tiny_model(tmp_path / "tiny.ifc", walls=1)
    (tmp_path / "p.yaml").write_text(failure_chain(4, first_fails=True))
    planned = plan.plan(document.load(tmp_path / "p.yaml"), out_root=tmp_path / "runs")
    enqueue.submit(conn, planned)
    work(conn)
    assert control.retry(conn, planned.run_id, step="s0") == ["s0", "s1", "s2", "s3"]
    hold = store.gate_id(planned.run_id, "retry1-hold")
    assert conn.smembers(f"rq:job:{hold}:dependents") == {f"{planned.run_id}-s2".encode(), f"{planned.run_id}-s3".encode()}
    work(conn)
    result = status.read(conn, planned.run_id)
    assert {sid: s.status.value for sid, s in result.steps.items()} == {
        "s0": "failed", "s1": "succeeded", "s2": "succeeded", "s3": "succeeded"}
    assert result.terminal and result.steps["s3"].attempt == 1
