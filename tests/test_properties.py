"""Property: random DAGs with random failures and policies always end with every step in the state the rules
give (computed here independently of ifcflow's policy module), and nothing is left deferred in RQ: in-process,
and on two queues with real forked ``ifcflow worker`` processes, so interleavings happen
(``IFCFLOW_PROPERTY_EXAMPLES``, default 10; run 100 locally)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis
from rq.registry import DeferredJobRegistry

from ifcflow.engine import runner, status, store
from ifcflow.services import QUEUES
from ifcflow.standalone.embedded import EmbeddedRedis

from .conftest import run_pipeline
from .factories import tiny_model, wall_name_ids
from .test_reliability import Workers


@st.composite
def dags(draw: st.DrawFn, most: int = 50) -> list[dict[str, object]]:
    count = draw(st.integers(min_value=1, max_value=most))
    steps = []
    for i in range(count):
        needs = sorted(draw(st.sets(st.integers(min_value=0, max_value=i - 1), max_size=3))) if i else []
        steps.append({
            "id": f"s{i}", "needs": [f"s{n}" for n in needs], "fails": draw(st.booleans()) and draw(st.booleans()),
            "if": draw(st.sampled_from(["success()", "success()", "failure()", "always()"])),
            "on_failure": draw(st.sampled_from(["stop", "stop", "continue"])),
            "queue": draw(st.sampled_from(["default", "ifctester"])),
        })
    return steps


def expected(steps: list[dict[str, object]]) -> dict[str, str]:
    state: dict[str, str] = {}
    by_id = {s["id"]: s for s in steps}

    def failed_upstream(step: dict[str, object]) -> bool:
        todo, seen = list(step["needs"]), set()  # type: ignore[call-overload]
        while todo:
            need = todo.pop()
            if need in seen:
                continue
            seen.add(need)
            if state[need] == "failed":
                return True
            todo.extend(by_id[need]["needs"])  # type: ignore[arg-type]
        return False

    for step in steps:
        needs: list[str] = step["needs"]  # type: ignore[assignment]
        if step["if"] == "always()":
            runs = True
        elif step["if"] == "failure()":
            runs = failed_upstream(step)
        else:
            runs = all(state[n] == "succeeded" or (state[n] == "failed" and by_id[n]["on_failure"] == "continue")
                       for n in needs)
        state[str(step["id"])] = ("failed" if step["fails"] else "succeeded") if runs else "skipped"
    return state


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=dags())
def test_random_dags_end_consistently(steps: list[dict[str, object]], redis_server: EmbeddedRedis,
                                      tmp_path_factory: object) -> None:
    folder: Path = tmp_path_factory.mktemp("dag")  # type: ignore[attr-defined]
    tiny_model(folder / "m.ifc", walls=1)
    lines = ["version: 1", "name: random", "steps:"]
    for s in steps:
        recipe = "NoSuchRecipe" if s["fails"] else "Optimise"
        lines.append(f"  {s['id']}: {{uses: ifcpatch, needs: [{', '.join(s['needs'])}], if: '{s['if']}', "  # type: ignore[arg-type]
                     f"on_failure: {s['on_failure']}, with: {{ifc: m.ifc, recipe: {recipe}}}}}")
    (folder / "p.yaml").write_text("\n".join(lines) + "\n")
    conn = Redis.from_url(redis_server.url)
    conn.flushdb()
    result = run_pipeline(conn, folder / "p.yaml", folder / "runs")
    actual = {sid: s.status.value for sid, s in result.steps.items()}
    assert actual == expected(steps)
    assert result.terminal
    for queue in QUEUES:
        assert DeferredJobRegistry(queue, connection=conn).get_job_ids() == []
    conn.flushdb()


def step_line(s: dict[str, object]) -> str:
    """ifcpatch on ``default`` or ifctester on ``ifctester``; failing ones use a missing recipe / a failing gate."""
    head = (f"  {s['id']}: {{needs: [{', '.join(s['needs'])}], if: '{s['if']}', "  # type: ignore[arg-type]
            f"on_failure: {s['on_failure']}, ")
    if s["queue"] == "ifctester":
        return head + f"uses: ifctester, with: {{ifc: m.ifc, ids: rules.ids, gate: {str(bool(s['fails'])).lower()}}}}}"
    return head + f"uses: ifcpatch, with: {{ifc: m.ifc, recipe: {'NoSuchRecipe' if s['fails'] else 'Optimise'}}}}}"


EXAMPLES = int(os.environ.get("IFCFLOW_PROPERTY_EXAMPLES", "10"))


@pytest.fixture()
def forked(redis_server: EmbeddedRedis, conn: Redis) -> Iterator[Workers]:
    """Two real ``ifcflow worker`` processes (each forks a work horse per job) on every queue."""
    procs = Workers(redis_server.url, count=2)
    yield procs
    procs.stop()


@pytest.mark.timeout(120 + 30 * EXAMPLES)  # each example runs for real: up to 20 steps on two forked workers
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=dags(most=20))
def test_random_dags_on_forked_workers(steps: list[dict[str, object]], redis_server: EmbeddedRedis,
                                       forked: Workers, tmp_path_factory: object) -> None:
    folder: Path = tmp_path_factory.mktemp("dag")  # type: ignore[attr-defined]
    tiny_model(folder / "m.ifc", walls=1)
    wall_name_ids(folder / "rules.ids")
    lines = ["version: 1", "name: forked", "steps:", *(step_line(s) for s in steps)]
    (folder / "p.yaml").write_text("\n".join(lines) + "\n")
    conn = Redis.from_url(redis_server.url)
    planned = runner.start(conn, folder / "p.yaml", out=folder / "runs")
    deadline = time.monotonic() + 30 + 3 * len(steps)
    result = status.read(conn, planned.run_id)
    while not result.terminal and time.monotonic() < deadline:  # the workers alone drive the run to its end
        time.sleep(0.2)
        result = status.read(conn, planned.run_id)
    actual = {sid: s.status.value for sid, s in result.steps.items()}
    assert actual == expected(steps)
    assert result.terminal
    for queue in QUEUES:
        assert DeferredJobRegistry(queue, connection=conn).get_job_ids() == []
    for step in planned.steps:
        assert conn.xlen(f"rq:results:{step.job_id}") <= 1, step.id  # no step ran twice
    deadline = time.monotonic() + 15  # the workers also ended the run (its end hooks ran), with no repairing reader
    while conn.sismember(store.LIVE, planned.run_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert conn.hexists(store.run_key(planned.run_id), "ended_at")
    assert not conn.sismember(store.LIVE, planned.run_id)
