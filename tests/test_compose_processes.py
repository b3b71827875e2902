"""compose.yaml, proven without Docker: every service's command runs as a local process (see tests/composelocal.py)
and together they run a committed pipeline end to end through the API, with ``worker`` scaled to 2, files in a
real SeaweedFS (the ``s3`` service, its bucket made by ``s3-init``) and no folder shared between api and workers."""

from __future__ import annotations

import hashlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.config import Config
from redis import Redis
from rq import Worker

from .composelocal import LocalCompose
from .conftest import ROOT
from .factories import walls_model
from .servers import get_json, wait_http

KEY = "compose-test-key"
@pytest.fixture()
def deployment(tmp_path: Path) -> Iterator[LocalCompose]:
    compose = LocalCompose(ROOT, tmp_path, {"IFCFLOW_API_KEYS": KEY, "IFCFLOW_S3_SECRET_KEY": "compose-test-secret"})
    try:
        yield compose
    finally:
        compose.stop_all()


def wait_workers(conn: Redis, count: int, timeout: float = 60.0) -> list[Worker]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = Worker.all(connection=conn)
        if len(workers) >= count:
            return workers
        time.sleep(0.2)
    raise AssertionError(f"{count} workers did not register within {timeout:.0f}s")


def test_compose_commands_run_a_pipeline_end_to_end(deployment: LocalCompose, tmp_path: Path) -> None:
    redis = deployment.start("redis")[0]
    conn = Redis(port=deployment.port("redis", 6379))
    deadline = time.monotonic() + 20
    while redis.poll() is None and time.monotonic() < deadline:
        try:
            if conn.ping():
                break
        except Exception:
            time.sleep(0.1)
    assert conn.config_get("appendonly")["appendonly"] == "yes"  # the compose command's persistence

    deployment.start("s3")
    init = deployment.start("s3-init")[0]  # one shot: the bucket, versioning on
    assert init.wait(timeout=60) == 0, deployment.logs()
    env = deployment.environment("api")
    bucket = boto3.client("s3", endpoint_url=env["IFCFLOW_S3_ENDPOINT"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1",
                          config=Config(s3={"addressing_style": "path"}))
    assert bucket.get_bucket_versioning(Bucket="ifcflow")["Status"] == "Enabled"

    others = set(deployment.spec["services"]) - {"redis", "s3", "s3-init"}
    assert others == {"api", "worker", "worker-clash", "dashboard", "scheduler"}
    assert not deployment.mounts("worker") and not deployment.mounts("worker-clash")  # only Redis and the bucket
    for service in sorted(others):
        deployment.start(service, replicas=2 if service == "worker" else 1)  # docker compose up --scale worker=2

    api = f"http://127.0.0.1:{deployment.port('api', 8000)}"
    wait_http(f"{api}/health", deployment.processes["api"][0], tmp_path / "api-1.log")
    check = deployment.healthcheck("api")
    assert check is not None and subprocess.run(check, timeout=30).returncode == 0, deployment.logs()

    workers = wait_workers(conn, 3)
    general = [w for w in workers if "default" in w.queue_names()]
    clash = [w for w in workers if w.queue_names() == ["ifcclash"]]
    assert len(general) == 2 and len(clash) == 1, [w.queue_names() for w in workers]
    assert {"ifc5d", "ifccsv", "ifcclash"} <= set(general[0].queue_names())

    headers = {"X-API-Key": KEY}
    model = walls_model(tmp_path / "tower.ifc", walls=6)
    with httpx.Client(base_url=api, headers=headers, timeout=30) as client:
        with model.open("rb") as upload:
            assert client.post("/upload/ifc", files={"file": ("tower.ifc", upload)}).status_code == 200
        started = client.post("/runs", json={"file": "quantities.yaml", "inputs": {"model": "tower.ifc"}})
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]
        status = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = client.get(f"/runs/{run_id}").json()
            if status["status"] not in ("queued", "running"):
                break
            time.sleep(0.3)
        assert status["status"] == "succeeded", (status, deployment.logs())
        table = client.get(f"/runs/{run_id}/outputs/table/table")  # streamed: the store is private here
        assert table.status_code == 200 and table.content[:2] == b"PK"
        health = client.get("/health").json()
        assert health["services"]["default_queue"] == "healthy", health

    data = deployment.volumes["ifcflow-data"]
    table_path = status["steps"]["table"]["outputs"]["table"]  # over HTTP: relative to the data folder
    assert not Path(table_path).is_absolute() and not (Path(data) / table_path).exists()  # not on the api's disk...
    stored = status["steps"]["table"]["result"]["objects"]["table"]
    body = bucket.get_object(Bucket="ifcflow", Key=f"data/{stored['key']}")["Body"].read()  # ...but in the bucket
    assert body == table.content and hashlib.sha256(body).hexdigest() == stored["sha256"]
    assert {s["worker"] for s in status["steps"].values()} <= {w.name for w in general}

    dashboard = f"http://127.0.0.1:{deployment.port('dashboard', 9181)}"
    wait_http(f"{dashboard}/0/data/queues.json", deployment.processes["dashboard"][0], tmp_path / "dashboard-1.log")
    listed = get_json(f"{dashboard}/0/data/workers.json")["workers"]
    assert len(listed) == 3
    assert set(deployment.processes) == {"redis", "s3", "s3-init", *others}
    for service, processes in deployment.processes.items():
        for process in processes if service != "s3-init" else []:  # every service still up, the scheduler included
            assert process.poll() is None, (service, deployment.logs())
