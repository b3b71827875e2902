"""Property: random DAGs with random failures and policies always end with every step in the state the rules
give (computed here independently of ifcflow's policy module), and nothing is left deferred in RQ."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis
from rq.registry import DeferredJobRegistry

from ifcflow.embedded import EmbeddedRedis
from ifcflow.services import QUEUES

from .conftest import run_pipeline
from .factories import tiny_model


@st.composite
def dags(draw: st.DrawFn) -> list[dict[str, object]]:
    count = draw(st.integers(min_value=1, max_value=50))
    steps = []
    for i in range(count):
        needs = sorted(draw(st.sets(st.integers(min_value=0, max_value=i - 1), max_size=3))) if i else []
        steps.append({
            "id": f"s{i}", "needs": [f"s{n}" for n in needs], "fails": draw(st.booleans()) and draw(st.booleans()),
            "if": draw(st.sampled_from(["success()", "success()", "failure()", "always()"])),
            "on_failure": draw(st.sampled_from(["stop", "stop", "continue"])),
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
                                      tmp_path_factory: "object") -> None:
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
