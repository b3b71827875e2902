"""A worker missing a service's dependency fails that service's steps in plain words, and says so up front."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis import Redis

from ifcflow.engine import runner, status
from ifcflow.engine.states import RunState, StepState
from ifcflow.standalone.embedded import EmbeddedRedis
from ifcflow.views import report

from .factories import tiny_model, write_pipeline
from .processes import kill_tree

PIPELINE = """\
    version: 1
    name: convert
    steps:
      glb: {uses: ifcconvert, with: {input: arch.ifc, output: arch.glb}}
      after: {uses: ifcpatch, needs: [glb], with: {ifc: arch.ifc, recipe: Optimise}}
      json: {uses: ifc2json, with: {ifc: arch.ifc}}
    """
HINT = "(install ifcflow with its dependencies there: pip install ifcflow)"


@pytest.fixture()
def broken_env(tmp_path: Path) -> dict[str, str]:
    """An environment in which ``import pygltflib`` fails as it does where the package is not installed."""
    shadow = tmp_path / "shadow" / "pygltflib"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'pygltflib'\", name='pygltflib')\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(shadow.parent), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _expect_unavailable(result: status.RunStatus, worker: str) -> None:
    glb = result.steps["glb"]
    assert glb.status == StepState.FAILED
    assert glb.error == f"service ifcconvert is not available on worker {worker}: No module named 'pygltflib' {HINT}"
    assert result.steps["after"].status == StepState.SKIPPED
    assert result.steps["json"].status == StepState.SUCCEEDED
    assert result.status == RunState.FAILED


def test_ifcflow_worker_names_the_missing_dependency(conn: Redis, tmp_path: Path, redis_server: EmbeddedRedis,
                                                    broken_env: dict[str, str]) -> None:
    tiny_model(tmp_path / "arch.ifc")
    planned = runner.start(conn, write_pipeline(tmp_path, PIPELINE), out=tmp_path / "runs")
    name = f"w-{time.monotonic_ns()}"
    worker = subprocess.Popen([sys.executable, "-m", "ifcflow", "worker", "--redis", redis_server.url, "--name", name],
                              env=broken_env, start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        reader = status.StatusReader(conn, planned.run_id)
        deadline = time.monotonic() + 120
        while not (result := reader.read()).terminal and time.monotonic() < deadline:
            time.sleep(0.2)
        _expect_unavailable(result, name)
        listed = subprocess.run([sys.executable, "-m", "ifcflow", "workers", "--redis", redis_server.url, "--json"],
                                capture_output=True, text=True, timeout=60, check=True)
        row = next(r for r in json.loads(listed.stdout) if r["name"] == name)
        assert row["services"]["unavailable"] == {"ifcconvert": "No module named 'pygltflib'"}
        assert "ifc2json" in row["services"]["available"] and "ifcconvert" not in row["services"]["available"]
        text = subprocess.run([sys.executable, "-m", "ifcflow", "workers", "--redis", redis_server.url],
                              capture_output=True, text=True, timeout=60, check=True).stdout
        assert "NOT available: ifcconvert (No module named 'pygltflib')" in text
    finally:
        kill_tree(worker)
    shown = subprocess.run([sys.executable, "-m", "ifcflow", "status", planned.run_id, "--redis", redis_server.url],
                           capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "300"})
    assert f"service ifcconvert is not available on worker {name}: No module named 'pygltflib'" in shown.stderr
    junit = report.render(status.read(conn, planned.run_id), "junit")
    assert "service ifcconvert is not available on worker" in junit
    document = json.loads(status.read(conn, planned.run_id).model_dump_json())
    assert "No module named 'pygltflib'" in document["steps"]["glb"]["error"]


def test_plain_rq_worker_names_the_missing_dependency(conn: Redis, tmp_path: Path, redis_server: EmbeddedRedis,
                                                     broken_env: dict[str, str]) -> None:
    tiny_model(tmp_path / "arch.ifc")
    planned = runner.start(conn, write_pipeline(tmp_path, PIPELINE), out=tmp_path / "runs")
    name = f"rq-{time.monotonic_ns()}"
    for queues in (["ifcconvert", "ifc2json"], ["default"]):
        subprocess.run([sys.executable, "-m", "rq.cli", "worker", *queues, "--burst", "--url", redis_server.url,
                        "--name", name], env=broken_env, check=True, capture_output=True, timeout=120)
    _expect_unavailable(status.read(conn, planned.run_id), name)


def test_every_service_loads_in_this_install() -> None:
    """Every declared dependency is installed: a fresh install (as CI makes) can run every service."""
    from ifcflow.operations.worker import preload

    assert preload() == {}
