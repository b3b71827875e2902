"""The public Python API, used only through ``import ifcflow`` and its attributes (as a script or notebook would).

Models come from the public CLI (``ifcflow demo``); runs go to a real ``ifcflow worker`` process on the session's
private redis-server, and to ``ifcflow.local()``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

import ifcflow

from .processes import kill_tree

ROOT = Path(__file__).resolve().parent.parent
JSON_ONLY = """version: 1
name: tojson
inputs: {model: models/arch.ifc}
steps:
  json:
    uses: ifc2json
    with: {ifc: "${{ inputs.model }}", output: model.json}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the committed pipelines and the demo models they read (written by ``ifcflow demo``)."""
    folder = tmp_path_factory.mktemp("project")
    for name in ("coordination.yaml", "publish.yaml"):
        shutil.copy(ROOT / "pipelines" / name, folder / name)
    (folder / "tojson.yaml").write_text(JSON_ONLY)
    subprocess.run([sys.executable, "-m", "ifcflow", "demo", str(folder / "models")], check=True,
                   capture_output=True)
    return folder


@pytest.fixture()
def worker(conn: Redis, redis_server: object, tmp_path: Path) -> Iterator[str]:
    """A real ``ifcflow worker`` process (all queues) on the private Redis; yields the Redis URL."""
    url: str = redis_server.url  # type: ignore[attr-defined]
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "ifcflow", "worker", "--redis", url, "--quiet"],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    try:
        yield url
    finally:
        kill_tree(proc)
        log.close()


def test_import_is_cheap() -> None:
    """``import ifcflow`` loads neither redis, rq, pydantic nor ifcopenshell; the documents load on first use."""
    code = ("import sys, ifcflow; heavy = [m for m in ('redis', 'rq', 'pydantic', 'ifcopenshell') if m in sys.modules]; "
            "print(heavy); ifcflow.RunStatus; print('pydantic' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:2] == ["[]", "True"]


def test_public_names() -> None:
    for name in ifcflow.__all__:
        assert getattr(ifcflow, name) is not None, name
    for error in ("PipelineError", "RedisUnavailable", "RedisLost", "EmbeddedRedisError", "RunNotFound", "RunExists",
                  "RunTimeout", "BatchNotFound", "StepError"):
        assert issubclass(getattr(ifcflow, error), ifcflow.IfcflowError), error


def test_validate_and_plan(project: Path) -> None:
    assert ifcflow.validate(project / "coordination.yaml") == []
    broken = project / "broken.yaml"
    broken.write_text((project / "coordination.yaml").read_text().replace("uses: ifcclash", "uses: ifcclsh"))
    problems = ifcflow.validate(broken)
    assert [(p.file, p.line, p.path) for p in problems] == [(str(broken), 19, "steps.clash.uses")]
    assert "did you mean 'ifcclash'" in problems[0].message and isinstance(problems[0], ifcflow.Problem)
    with pytest.raises(ifcflow.PipelineError) as caught:
        ifcflow.plan(broken)
    assert caught.value.problems == problems and caught.value.exit_code == 2

    other = project / "models" / "mep.ifc"
    plan = ifcflow.plan(project / "coordination.yaml", inputs={"arch": str(other)}, out=project / "runs")
    assert isinstance(plan, ifcflow.Plan)
    # with arch=mep.ifc the clash reads one model, so it starts after the first glb step of that model (which
    # makes the shared geometry pass): arch-glb
    assert [(s.id, s.queue) for s in plan.steps][:3] == [("validate", "ifctester"), ("arch-glb", "ifcconvert"),
                                                         ("clash", "ifcclash")]
    assert plan.step("clash").after == ["arch-glb"] and plan.step("clash").needs == ["validate"]
    assert plan.inputs["arch"] == str(other) and plan.out_dir == str(project / "runs" / plan.run_id)


def test_against_a_real_worker(project: Path, worker: str) -> None:
    """submit -> wait -> status, report, retry; a second run: wait(timeout) raises, cancel ends it."""
    plan = ifcflow.plan(project / "coordination.yaml", out=project / "runs")
    run = ifcflow.submit(plan, redis=worker)
    status = run.wait(timeout=300)
    assert isinstance(status, ifcflow.RunStatus) and status.status == ifcflow.RunState.SUCCEEDED, status.steps
    assert status.steps["clash"].message == "3 clashes in 1 clash set (arch-vs-mep: 3)"
    assert status.steps["clash"].result["data"]["clashes"] == 3  # type: ignore[index]
    assert Path(status.outputs["clash"]["report"]).is_file()

    again = ifcflow.Run(run.id, redis=worker)
    assert again.status().status == ifcflow.RunState.SUCCEEDED
    assert again.retry() == []  # nothing failed
    junit = again.report("junit")
    assert '<testcase classname="coordination.ifcclash" name="clash"' in junit and "<failure" not in junit

    slow = ifcflow.submit(project / "coordination.yaml", redis=worker, out=project / "runs")
    with pytest.raises(ifcflow.RunTimeout) as caught:
        slow.wait(timeout=0.01)
    assert not caught.value.status.terminal  # type: ignore[attr-defined]
    assert slow.cancel()
    ended = slow.wait(timeout=60)
    assert ended.status == ifcflow.RunState.CANCELED
    assert sorted(slow.retry()) == sorted(s for s, step in ended.steps.items()
                                          if step.status == ifcflow.StepState.CANCELED)
    assert slow.wait(timeout=300).status == ifcflow.RunState.SUCCEEDED

    with pytest.raises(ifcflow.RunNotFound):
        ifcflow.Run("no-such-run", redis=worker).status()


def test_batch_against_a_real_worker(project: Path, worker: str) -> None:
    batch = ifcflow.submit_batch(project / "tojson.yaml", each={"model": str(project / "models" / "*.ifc")},
                                 redis=worker, out=project / "runs")
    status = batch.wait(timeout=300)
    assert isinstance(status, ifcflow.BatchStatus) and status.status == ifcflow.RunState.SUCCEEDED
    models = sorted(p.name for p in (project / "models").glob("*.ifc"))
    assert sorted(Path(row.label).name for row in status.runs) == models
    assert [r.status().status for r in batch.runs()] == [ifcflow.RunState.SUCCEEDED] * len(models)
    assert batch.report("junit").count("<testsuite ") == len(models)
    with pytest.raises(ifcflow.BatchNotFound):
        ifcflow.Batch("no-such-batch", redis=worker).status()


def test_no_redis_configured_is_a_clear_error(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IFCFLOW_REDIS_URL", raising=False)
    with pytest.raises(ifcflow.IfcflowError, match="no Redis configured"):
        ifcflow.submit(project / "publish.yaml")
    with pytest.raises(ifcflow.RedisUnavailable, match="cannot reach Redis"):
        ifcflow.submit(project / "publish.yaml", redis="redis://127.0.0.1:1/0")


def test_local_cluster_runs_a_pipeline(project: Path) -> None:
    """``ifcflow.local()``: a private Redis and worker processes, gone when the block ends; the run's status
    stays readable from its run folder."""
    with ifcflow.local(workers=2) as cluster:
        run = cluster.run(project / "publish.yaml", out=project / "local-runs")
        status = run.wait(timeout=300)
    assert status.status == ifcflow.RunState.SUCCEEDED, status.steps
    data = {step_id: (step.result or {}).get("data", {}) for step_id, step in status.steps.items()}
    assert (data["glb"]["elements"], data["json"]["entities"]) == (7, 29)  # the example's headline numbers
    assert all(Path(path).is_file() for outputs in status.outputs.values() for path in outputs.values())
    assert run.status().status == ifcflow.RunState.SUCCEEDED  # from status.json: the private Redis is gone
    assert ifcflow.Run(run.id, out=project / "local-runs").report("markdown").startswith(f"## ifcflow run `{run.id}`")
    with pytest.raises(ifcflow.IfcflowError, match="not running"):
        cluster.run(project / "publish.yaml")
