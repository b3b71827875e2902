"""The HTTP API with an S3 store (a real SeaweedFS, real Redis, real ``ifcflow worker`` processes): uploads go into
the bucket, runs over HTTP pin their inputs and run on workers that share no folder with the server, outputs come
back through a presigned redirect (followed to SeaweedFS) or streamed through the server."""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from ifcflow.api.objects import downloads_mode
from ifcflow.errors import IfcflowError
from ifcflow.standalone.embedded import EmbeddedRedis
from tests.apiserver import ApiServer
from tests.factories import wall_name_ids, walls_model
from tests.s3server import SeaweedS3
from tests.servers import spawn, stop

PIPELINE = """version: 1
name: s3http
inputs: {model: tower.ifc}
steps:
  qto: {uses: ifc5d, with: {ifc: "${{ inputs.model }}", rules: IFC4QtoBaseQuantities, query: IfcWall}}
  json: {uses: ifc2json, with: {ifc: "${{ steps.qto.outputs.model }}", output: model.json}}
"""
"""qto runs on one worker (queue ifc5d), json on the other (ifc2json) and reads qto's output from the store."""


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def deployment(s3_server: SeaweedS3, redis_server: EmbeddedRedis, tmp_path: Path,
               request: pytest.FixtureRequest) -> Iterator[tuple[ApiServer, dict[str, str]]]:
    """An API server on ``tmp_path/server/data`` and two workers, each in a folder of its own (no IFCFLOW_DATA,
    their own cache), all on one bucket prefix; downloads as redirects, signed for the store's own address."""
    env = {**s3_server.env(request.node.name[:40]), "IFCFLOW_S3_DOWNLOADS": "redirect",
           "IFCFLOW_S3_PUBLIC_ENDPOINT": s3_server.endpoint, "IFCFLOW_REDIS_URL": redis_server.url}
    workers = []
    with ApiServer(redis_server.url, tmp_path / "server" / "data", env=env, workers=0,
                   log=tmp_path / "server" / "api.log") as api:
        try:
            for name, queues in (("a", ["ifc5d"]), ("b", ["ifc2json", "ifctester", "default"])):
                home = tmp_path / f"worker-{name}"
                home.mkdir()
                worker_env = {k: v for k, v in {**os.environ, **env}.items() if k != "IFCFLOW_DATA"}
                worker_env["IFCFLOW_WORKER_CACHE"] = str(home / "cache")
                workers.append(spawn([sys.executable, "-m", "ifcflow", "worker", *queues, "--quiet", "--name",
                                      f"s3http-{name}-{os.getpid()}"], home / "worker.log", env=worker_env, cwd=home))
            yield api, env
        finally:
            for worker in workers:
                stop(worker)


def wait_run(client: httpx.Client, run_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = client.get(f"/runs/{run_id}").json()
        if status["status"] not in ("queued", "running"):
            return status
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} did not end: {status}")


def wait_job(client: httpx.Client, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = client.get(f"/jobs/{job_id}/status").json()
        if answer["status"] in ("finished", "failed", "canceled"):
            return answer
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end")


def test_upload_run_and_download_through_s3(deployment: tuple[ApiServer, dict[str, str]], s3_server: SeaweedS3,
                                            tmp_path: Path) -> None:
    api, env = deployment
    model = walls_model(tmp_path / "tower.ifc", walls=4)
    prefix = env["IFCFLOW_STORAGE"].split("/", 3)[3]
    bucket = s3_server.client()
    with httpx.Client(base_url=api.url, timeout=60) as client:
        uploaded = client.post("/upload/ifc", files={"file": ("tower.ifc", model.read_bytes())}).json()
        assert uploaded["object_key"] == "uploads/tower.ifc" and uploaded["storage"] == "s3"
        assert uploaded["sha256"] == sha(model.read_bytes()) and uploaded["version_id"]  # a versioned bucket
        stored = bucket.get_object(Bucket=s3_server.bucket, Key=f"{prefix}/uploads/tower.ifc")
        assert stored["Body"].read() == model.read_bytes()

        started = client.post("/runs", json={"pipeline": PIPELINE})
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]
        record = api_run_record(api, run_id)
        assert '"key": "uploads/tower.ifc"' in record and uploaded["version_id"] in record  # pinned at submit
        status = wait_run(client, run_id)
        assert status["status"] == "succeeded", (status, (tmp_path / "worker-a" / "worker.log").read_text()[-2000:])
        hosts = {s["worker"] for s in status["steps"].values()}
        assert len(hosts) == 2, hosts  # the two steps ran on the two workers
        # the outputs exist only in the store: nothing was written into the server's data folder
        assert not [p for p in (api.data / "output" / "runs" / run_id).rglob("*.json") if p.name != "status.json"]
        key = f"{prefix}/runs/{run_id}/json/model.json"
        expected = bucket.get_object(Bucket=s3_server.bucket, Key=key)["Body"].read()
        assert expected.startswith(b"{") and status["steps"]["json"]["result"]["objects"]["json"]["sha256"] == sha(expected)

        link = client.get(f"/runs/{run_id}/outputs/json/json")
        assert link.status_code == 307 and link.headers["location"].startswith(s3_server.endpoint + "/")
        fetched = httpx.get(link.headers["location"], timeout=30)  # the presigned URL, straight to SeaweedFS
        assert fetched.status_code == 200 and sha(fetched.content) == sha(expected)

        started = client.post("/batches", json={"pipeline": PIPELINE, "each": {"model": "tow*.ifc"}})
        assert started.status_code == 202, started.text
        batch_id = started.json()["batch_id"]
        for sub_run in started.json()["runs"].values():  # pinned: workers read the object, not the server's copy
            assert '"key": "uploads/tower.ifc"' in api_run_record(api, sub_run)
        deadline = time.monotonic() + 60
        while client.get(f"/batches/{batch_id}").json()["status"] in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.3)
        assert client.get(f"/batches/{batch_id}").json()["status"] == "succeeded"  # sub-runs pinned their inputs

        job = client.post("/ifc2json", json={"filename": "tower.ifc", "output_filename": "tower.json"}).json()
        answer = wait_job(client, job["job_id"])
        assert answer["status"] == "finished", answer
        result = answer["result"]
        assert result["output_key"] == "output/json/tower.json" and result["storage"] == "s3"
        assert result["output_path"] == "/output/json/tower.json"  # the original's form, as clients send it back
        token = client.post("/create_download_link", json={"file_path": result["output_path"]}).json()
        redirect = client.get(f"/download/{token['download_token']}")
        assert redirect.status_code == 307
        body = httpx.get(redirect.headers["location"], timeout=30).content
        assert sha(body) == result["sha256"] and body.startswith(b"{")

        ids = wall_name_ids(tmp_path / "walls.ids")
        client.post("/upload/ids", files={"file": ("walls.ids", ids.read_bytes())}).raise_for_status()
        tested = client.post("/ifctester", json={"ifc_filename": "tower.ifc", "ids_filename": "walls.ids",
                                                 "output_filename": "report.json", "report_type": "json"}).json()
        report = wait_job(client, tested["job_id"])["result"]
        assert report["output_key"] == "output/ids/report.json" and report["report"].startswith("{"), report

        # a missing object is a 404, as a missing file is; an object deleted behind the server's copy too
        missing = client.post("/ifc2json", json={"filename": "nope.ifc", "output_filename": "x.json"})
        assert missing.status_code == 404 and "Input file not found" in missing.text
        client.post("/upload/ifc", files={"file": ("gone.ifc", model.read_bytes())}).raise_for_status()
        bucket.delete_object(Bucket=s3_server.bucket, Key=f"{prefix}/uploads/gone.ifc")
        assert (api.data / "uploads" / "gone.ifc").is_file()  # the server's copy is no input without its object
        gone = client.post("/ifc2json", json={"filename": "gone.ifc", "output_filename": "x.json"})
        assert gone.status_code == 404, gone.text
        assert client.post("/create_download_link", json={"file_path": "output/json/none.json"}).status_code == 404
        assert client.get(f"/runs/{run_id}/outputs/qto/model").status_code == 307

        # keys never come from unchecked text
        for bad in ("uploads/../../etc/passwd", "/etc/passwd", "uploads/%2e%2e/x", "output/.preview/x"):
            refused = client.post("/create_download_link", json={"file_path": bad})
            assert refused.status_code == 400, (bad, refused.text)
        traversal = client.post("/ifc2json", json={"filename": "../../etc/passwd", "output_filename": "x.json"})
        assert traversal.status_code == 400

        lineage = wait_lineage(client, f"output/runs/{run_id}/json/model.json")
        paths = {p for f in lineage["files"] for p in f["paths"]}
        assert f"{env['IFCFLOW_STORAGE']}/uploads/tower.ifc" in paths, lineage  # named by key, not a worker path
        assert not [p for p in paths if str(tmp_path / "worker-") in p], paths


def api_run_record(api: ApiServer, run_id: str) -> str:
    from redis import Redis

    raw = Redis.from_url(api.redis_url, decode_responses=True).hget(f"ifcflow:run:{run_id}", "storage")
    assert isinstance(raw, str)
    return raw


def wait_lineage(client: httpx.Client, target: str, timeout: float = 30) -> dict[str, Any]:
    """The lineage once the outbox was drained into the server's history (its reconcile loop ticks)."""
    deadline = time.monotonic() + timeout
    answer = None
    while time.monotonic() < deadline:
        answer = client.get(f"/lineage/{target}", params={"direction": "up"})
        if answer.status_code == 200 and len(answer.json()["files"]) >= 3:
            return dict(answer.json())
        time.sleep(0.5)
    raise AssertionError(f"no lineage of {target}: {answer.text if answer else None}")


def test_downloads_stream_through_a_private_store(s3_server: SeaweedS3, redis_server: EmbeddedRedis,
                                                  tmp_path: Path) -> None:
    """``IFCFLOW_S3_DOWNLOADS=stream``: the server sends the object's bytes itself (clients never see the store)."""
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "s3http.yaml").write_text(PIPELINE)
    env = {**s3_server.env("stream-mode"), "IFCFLOW_S3_DOWNLOADS": "stream", "IFCFLOW_PIPELINES": str(pipelines),
           "IFCFLOW_DOWNLOAD_ALLOW": "127.0.0.1:*"}
    model = walls_model(tmp_path / "m.ifc", walls=2)
    with ApiServer(redis_server.url, tmp_path / "data", env=env, workers=0) as api, \
            httpx.Client(base_url=api.url, timeout=60) as client:
        uploaded = client.post("/upload/ifc", files={"file": ("m.ifc", model.read_bytes())}).json()
        (api.data / "uploads" / "m.ifc").unlink()  # the server's copy is not what is served
        token = client.post("/create_download_link", json={"file_path": "/uploads/m.ifc"}).json()["download_token"]
        streamed = client.get(f"/download/{token}")
        assert streamed.status_code == 200 and streamed.content == model.read_bytes()
        assert streamed.headers["x-checksum-sha256"] == uploaded["sha256"]
        assert 'filename="m.ifc"' in streamed.headers["content-disposition"]
        s3_server.client().delete_object(Bucket=s3_server.bucket, Key="stream-mode/uploads/m.ifc")
        assert client.get(f"/download/{token}").status_code == 404

        # the web page's new-run form: its upload goes into the store too, and the run pins it
        posted = client.post("/ui/new", data={"pipeline": "s3http.yaml"}, headers={"Origin": api.url},
                             files={"upload:model": ("page.ifc", model.read_bytes())})
        assert posted.status_code == 303, posted.text
        head = s3_server.client().head_object(Bucket=s3_server.bucket, Key="stream-mode/uploads/page.ifc")
        assert head["Metadata"]["sha256"] == sha(model.read_bytes())
        run_id = posted.headers["location"].rsplit("/", 1)[-1]
        assert '"key": "uploads/page.ifc"' in api_run_record(api, run_id)

        # a file fetched from an allowed URL is an upload like any other: in the store
        files = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(tmp_path)))
        threading.Thread(target=files.serve_forever, daemon=True).start()
        try:
            fetched = client.post("/download-from-url", json={
                "url": f"http://127.0.0.1:{files.server_address[1]}/m.ifc", "output_filename": "fetched.ifc"})
        finally:
            files.shutdown()
            files.server_close()
        assert fetched.status_code == 200, fetched.text
        stored = s3_server.client().get_object(Bucket=s3_server.bucket, Key="stream-mode/uploads/fetched.ifc")
        assert stored["Body"].read() == model.read_bytes()


@pytest.mark.parametrize(("environ", "mode"), [
    ({}, "redirect"),  # AWS: clients reach it
    ({"IFCFLOW_S3_ENDPOINT": "http://s3:8333"}, "stream"),  # an in-cluster address is no address for clients
    ({"IFCFLOW_S3_ENDPOINT": "http://s3:8333", "IFCFLOW_S3_PUBLIC_ENDPOINT": "https://s3.example.com"}, "redirect"),
    ({"IFCFLOW_S3_ENDPOINT": "http://s3:8333", "IFCFLOW_S3_DOWNLOADS": "redirect"}, "redirect"),
    ({"IFCFLOW_S3_DOWNLOADS": "Stream"}, "stream"),
])
def test_download_mode_default_and_setting(environ: dict[str, str], mode: str) -> None:
    assert downloads_mode(environ) == mode


def test_a_wrong_download_mode_is_refused() -> None:
    with pytest.raises(IfcflowError, match="IFCFLOW_S3_DOWNLOADS='proxy': use redirect, stream or auto"):
        downloads_mode({"IFCFLOW_S3_DOWNLOADS": "proxy"})
