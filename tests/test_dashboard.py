"""``ifcflow dashboard``: the real rq-dashboard on a test Redis shows ifcflow jobs by pipeline and step."""

from __future__ import annotations

import base64
import os
import pickle
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from ifcflow.engine import runner
from ifcflow.standalone.embedded import EmbeddedRedis

from .conftest import work
from .factories import tiny_model, write_pipeline
from .servers import free_port, get_json, spawn, stop, wait_http

PIPELINE = """\
    version: 1
    name: handover
    inputs: {arch: arch.ifc}
    steps:
      json: {uses: ifc2json, with: {ifc: "${{ inputs.arch }}", output: arch.json}}
      slim: {uses: ifcpatch, needs: [json], with: {ifc: "${{ inputs.arch }}", recipe: Optimise}}
    """


@pytest.fixture()
def dashboard(redis_server: EmbeddedRedis, conn: Redis, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = tmp_path / "dashboard.log"
    ifcflow = shutil.which("ifcflow", path=str(Path(sys.executable).parent)) or "ifcflow"
    process = spawn([ifcflow, "dashboard", "--redis", redis_server.url, "--port", str(port)], log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/0/data/queues.json", process, log)
        yield base
    finally:
        stop(process)


def test_dashboard_shows_ifcflow_jobs_by_pipeline_and_step(conn: Redis, dashboard: str, tmp_path: Path) -> None:
    tiny_model(tmp_path / "arch.ifc")
    planned = runner.start(conn, write_pipeline(tmp_path, PIPELINE), out=tmp_path / "runs")
    json_step, slim_step = planned.step("json"), planned.step("slim")

    queues = {q["name"]: q["count"] for q in get_json(f"{dashboard}/0/data/queues.json")["queues"]}
    assert queues["ifc2json"] == 1

    listed = get_json(f"{dashboard}/0/data/jobs/ifc2json/queued/8/asc/1.json")["jobs"]
    assert [(j["id"], j["description"]) for j in listed] == [
        (json_step.job_id, f"handover/json (ifc2json) run {planned.run_id}")]

    waiting = get_json(f"{dashboard}/0/data/job/{slim_step.job_id}.json")
    assert waiting["description"] == f"handover/slim (ifcpatch) run {planned.run_id}"
    assert waiting["status"] == "deferred" and waiting["depends_on"] == [json_step.job_id]
    with urllib.request.urlopen(f"{dashboard}/0/view/job/{slim_step.job_id}", timeout=10) as page:
        assert slim_step.job_id in page.read().decode()

    work(conn)
    done = get_json(f"{dashboard}/0/data/job/{json_step.job_id}.json")
    assert done["status"] == "finished" and done["origin"] == "ifc2json"
    assert done["result"]["success"] is True

    # a finished job whose result lives in its hash (RQ's older place; compacted runs keep it there) shows it too
    stream = f"rq:results:{json_step.job_id}"
    conn.hset(f"rq:job:{json_step.job_id}", "result", pickle.dumps({"success": True, "message": "kept"}))
    conn.delete(stream)
    assert get_json(f"{dashboard}/0/data/job/{json_step.job_id}.json")["result"]["message"] == "kept"


@pytest.mark.parametrize("args, message", [
    (["--redis", "redis://127.0.0.1:1/0"], "cannot reach Redis at redis://127.0.0.1:1/0"),
    (["--redis", "redis://127.0.0.1:1/0", "--username", "ops"], "--username needs --password"),
])
def test_dashboard_bad_setup_is_one_clear_error(args: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "ifcflow", "dashboard", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "IFCFLOW_REDIS_URL": "", "RQ_DASHBOARD_PASSWORD": ""})
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_dashboard_basic_auth(redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "dashboard.log"
    process = spawn([sys.executable, "-m", "ifcflow", "dashboard", "--redis", redis_server.url, "--port", str(port),
                     "--username", "ops"], log, env={"RQ_DASHBOARD_PASSWORD": "s3cret"})
    base = f"http://127.0.0.1:{port}/0/data/queues.json"
    try:
        wait_http(base, process, log)
        with pytest.raises(urllib.error.HTTPError) as refused:
            get_json(base)
        assert refused.value.code == 401
        token = base64.b64encode(b"ops:s3cret").decode()
        assert "queues" in get_json(base, headers={"Authorization": f"Basic {token}"})
    finally:
        stop(process)
