"""The HTTP API against a real uvicorn server, a private redis-server and real worker processes, driven with
httpx as a client of the original system would drive it (upload -> submit -> poll -> download)."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis

from ifcflow.standalone.embedded import EmbeddedRedis
from tests.apiserver import ApiServer, stream_events
from tests.factories import tiny_model, wall_name_ids, walls_model

KEY = "test-key-1"
SECRET = "webhook-secret"
LIMIT = 2_000_000


class Env:
    def __init__(self, api: ApiServer, redis: Redis, data: Path, models: Path, redis_url: str):
        self.api = api
        self.redis = redis
        self.data = data
        self.models = models
        self.redis_url = redis_url
        self.client = httpx.Client(base_url=api.url, headers={"X-API-Key": KEY}, timeout=30)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("api")
    data, models, pipelines = root / "data", root / "models", root / "pipelines"
    for folder in (models, pipelines):
        folder.mkdir()
    walls_model(models / "walls.ifc")
    walls_model(models / "walls2.ifc", walls=2)
    tiny_model(models / "tiny.ifc")
    wall_name_ids(models / "rules.ids")
    (pipelines / "two.yaml").write_text(TWO_STEPS)
    settings = {"IFCFLOW_API_KEYS": f"other-key,{KEY}", "IFCFLOW_WEBHOOK_ALLOW": "127.0.0.1/32:*,hooks.example",
                "IFCFLOW_WEBHOOK_SECRET": SECRET, "IFCFLOW_MAX_UPLOAD": str(LIMIT),
                "IFCFLOW_PIPELINES": str(pipelines)}
    with EmbeddedRedis() as server, ApiServer(server.url, data, settings, workers=2) as api:
        redis = Redis.from_url(server.url)
        yield Env(api, redis, data, models, server.url)
        redis.close()


def upload(env: Env, name: str, kind: str = "ifc", as_name: str | None = None) -> dict[str, Any]:
    with (env.models / name).open("rb") as handle:
        answer = env.client.post(f"/upload/{kind}", files={"file": (as_name or name, handle)})
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def wait_job(env: Env, job_id: str, timeout: float = 90) -> dict[str, Any]:
    """Poll as the original's clients do (with backoff) until the job ended."""
    deadline, delay = time.monotonic() + timeout, 0.1
    while time.monotonic() < deadline:
        answer = env.client.get(f"/jobs/{job_id}/status")
        assert answer.status_code == 200, answer.text
        doc = answer.json()
        if doc["status"] in ("finished", "failed", "canceled", "stopped"):
            return doc  # type: ignore[no-any-return]
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)
    raise AssertionError(f"job {job_id} did not end: {doc}")


def download(env: Env, file_path: str) -> bytes:
    link = env.client.post("/create_download_link", json={"file_path": file_path})
    assert link.status_code == 200, link.text
    token = link.json()["download_token"]
    assert link.json()["preview_url"].endswith(f"/preview/{token}")
    answer = env.client.get(f"/download/{token}")
    assert answer.status_code == 200
    return answer.content


def cli_run(env: Env, tmp_path: Path, service: str, options: dict[str, Any]) -> Path:
    """The same step run by ``ifcflow run`` (same Redis and workers); returns its run folder."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(json.dumps({"version": 1, "name": "same", "steps": {"s": {"uses": service, "with": options}}}))
    done = subprocess.run([sys.executable, "-m", "ifcflow", "run", str(pipeline), "--redis", env.redis_url, "--out",
                           str(tmp_path / "runs"), "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return Path(json.loads(done.stdout)["out_dir"]) / "s"


def test_original_client_unchanged_and_same_output_as_ifcflow_run(env: Env, tmp_path: Path) -> None:
    up = upload(env, "walls.ifc")
    assert up["file_path"] == "/uploads/walls.ifc" and (env.data / "uploads" / "walls.ifc").is_file()
    answer = env.client.post("/ifcconvert", json={"input_filename": "walls.ifc", "output_filename": "walls.obj",
                                                  "y_up": True, "input_version_id": "v7", "threads": 1})
    assert answer.status_code == 200 and set(answer.json()) == {"job_id"}
    job = wait_job(env, answer.json()["job_id"])
    assert job["status"] == "finished", job
    assert job["result"]["success"] is True
    assert "y_up" in job["result"]["message"] and "input_version_id" in job["result"]["message"]
    assert job["execution_time_seconds"] >= 0 and job["created_at"] and job["ended_at"]
    assert (env.data / "output" / "converted" / "walls.obj").is_file()
    served = download(env, "/output/converted/walls.obj")
    same = cli_run(env, tmp_path, "ifcconvert", {"input": str(env.models / "walls.ifc"), "output": "walls.obj",
                                                           "threads": 1})  # one thread: a stable element order
    def geometry(obj: bytes) -> list[bytes]:  # the header comment carries a timestamp
        return [line for line in obj.splitlines() if not line.startswith(b"#")]

    assert geometry(served) == geometry((same / "walls.obj").read_bytes()) and len(geometry(served)) > 20

    answer = env.client.post("/ifc2json", json={"filename": "walls.ifc", "output_filename": "walls.json"})
    job = wait_job(env, answer.json()["job_id"])
    assert job["status"] == "finished", job
    served = download(env, "output/json/walls.json")
    same = cli_run(env, tmp_path / "b", "ifc2json", {"ifc": str(env.models / "walls.ifc"), "output": "walls.json"})
    assert served == (same / "walls.json").read_bytes()


def test_every_original_job_endpoint(env: Env) -> None:
    for name in ("walls.ifc", "walls2.ifc", "tiny.ifc"):
        upload(env, name)
    upload(env, "rules.ids", "ids")
    requests = {
        "/ifccsv": ({"filename": "walls.ifc", "output_filename": "walls.csv", "query": "IfcWall", "null": "?",
                     "include_global_id": False}, "csv/walls.csv"),
        "/ifcclash": ({"clash_sets": [{"name": "self", "a": [{"file": "walls.ifc"}], "b": [{"file": "walls.ifc"}]}],
                       "output_filename": "clash.json"}, "clash/clash.json"),
        "/ifctester": ({"ifc_filename": "tiny.ifc", "ids_filename": "rules.ids", "output_filename": "ids.json"},
                       "ids/ids.json"),
        "/ifcdiff": ({"old_file": "walls.ifc", "new_file": "walls2.ifc"}, "diff/diff.json"),
        "/calculate-qtos": ({"input_file": "walls.ifc", "output_file": "walls_qto.ifc"}, "qto/walls_qto.ifc"),
        "/patch/execute": ({"input_file": "tiny.ifc", "output_file": "tiny_x.ifc", "recipe": "ExtractElements",
                            "arguments": ["IfcWall"]}, "patch/tiny_x.ifc"),
    }
    receiver = Receiver()
    requests["/patch/execute"][0]["webhook"] = receiver.url
    jobs = {}
    for endpoint, (body, _) in requests.items():
        answer = env.client.post(endpoint, json=body)
        assert answer.status_code == 200, (endpoint, answer.text)
        jobs[endpoint] = answer.json()["job_id"]
    for endpoint, (_, output) in requests.items():
        job = wait_job(env, jobs[endpoint])
        assert job["status"] == "finished", (endpoint, job)
        assert (env.data / "output" / output).is_file(), endpoint
    assert "include_global_id" in wait_job(env, jobs["/ifccsv"])["result"]["message"]
    table = (env.data / "output" / "csv" / "walls.csv").read_text()
    upload_csv = env.client.post("/upload/csv", files={"file": ("walls.csv", table.encode())})
    assert upload_csv.status_code == 200
    answer = env.client.post("/ifccsv/import", json={"ifc_filename": "walls.ifc", "csv_filename": "walls.csv",
                                                     "output_filename": "walls_edit.ifc"})
    assert wait_job(env, answer.json()["job_id"])["status"] == "finished"
    assert (env.data / "output" / "ifc_updated" / "walls_edit.ifc").is_file()
    deadline = time.monotonic() + 30
    while len(receiver.requests) < 2 and time.monotonic() < deadline:  # the first attempt gets a 500
        time.sleep(0.1)
    receiver.server.shutdown()
    headers, delivered = receiver.requests[-1]
    assert headers["X-Ifcflow-Signature"] == "sha256=" + hmac.new(SECRET.encode(), delivered, hashlib.sha256).hexdigest()
    assert json.loads(delivered)["steps"]["ifcpatch"]["job_id"] == jobs["/patch/execute"]
    recipes = env.client.post("/patch/recipes/list", json={})
    assert recipes.status_code == 200
    names = {r["name"] for r in recipes.json()["recipes"]}
    assert {"ExtractElements", "Optimise"} <= names and recipes.json()["total_count"] == len(names)


TWO_STEPS = """\
version: 1
name: two
inputs: {model: tiny.ifc}
steps:
  patch: {uses: ifcpatch, with: {ifc: "${{ inputs.model }}", recipe: ExtractElements, arguments: [IfcWall]}}
  json: {uses: ifc2json, with: {ifc: "${{ steps.patch.outputs.model }}"}}
"""

FAILING = """\
version: 1
name: failing
steps:
  bad: {uses: ifcpatch, with: {ifc: tiny.ifc, recipe: ExtractElements, arguments: ['IfcWall[[[']}}
  after: {uses: ifc2json, needs: [bad], with: {ifc: tiny.ifc}}
"""


def test_skipped_step_reads_canceled_with_reason_and_failed_job_requeues(env: Env) -> None:
    upload(env, "tiny.ifc")
    started = env.client.post("/runs", json={"pipeline": FAILING})
    assert started.status_code == 202, started.text
    steps = started.json()["steps"]
    failed = wait_job(env, steps["bad"])
    assert failed["status"] == "failed" and "ExtractElements" in failed["error"], failed
    assert "Traceback" not in failed["error"] and "Traceback" in failed["traceback"]
    skipped = wait_job(env, steps["after"])
    assert skipped["status"] == "canceled" and skipped["skipped"] is True
    assert "bad" in skipped["reason"]
    assert env.client.post(f"/jobs/{steps['after']}/requeue").status_code == 200
    again = wait_job(env, steps["bad"])
    assert again["status"] == "failed"
    assert env.client.post(f"/runs/{started.json()['run_id']}/retry", params={"step": "nope"}).status_code == 404
    assert env.client.post("/jobs/nope/requeue").status_code == 404
    assert env.client.get("/jobs/nope/status").json() == {"detail": "Job nope not found"}


class Receiver:
    """A webhook destination: answers 500 to the first POST, then 200; records every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append((dict(self.headers), body))
                self.send_response(500 if len(outer.requests) == 1 else 200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def events(env: Env, run_id: str) -> list[tuple[str, dict[str, Any]]]:
    return stream_events(env.client, f"/runs/{run_id}/events")


def test_pipeline_with_live_events_and_signed_webhook(env: Env) -> None:
    upload(env, "tiny.ifc")
    receiver = Receiver()
    started = env.client.post("/runs", json={"file": "two.yaml", "inputs": {"model": "tiny.ifc"},
                                             "webhook": receiver.url})
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    seen = events(env, run_id)
    names = [name for name, _ in seen]
    assert names[-1] == "end" and names.count("end") == 1 and "status" in names
    states = [doc["steps"]["json"]["status"] for name, doc in seen if name == "status"]
    assert states[-1] == "succeeded" and len(set(states)) >= 2  # it was seen change
    final = seen[-1][1]
    assert final["status"] == "succeeded"
    assert env.client.get(f"/runs/{run_id}").json()["status"] == "succeeded"
    json_out = env.client.get(f"/runs/{run_id}/outputs/json/json")
    assert json_out.status_code == 200 and json_out.json()
    report = env.client.get(f"/runs/{run_id}/report", params={"format": "junit"})
    assert report.status_code == 200 and "<testsuite" in report.text
    assert run_id in [r["run_id"] for r in env.client.get("/runs").json()["runs"]]
    assert env.client.get("/pipelines").json() == [{"file": "two.yaml", "name": "two", "inputs": {"model": "tiny.ifc"},
                                                    "problem": None}]
    deadline = time.monotonic() + 30
    while len(receiver.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)  # any duplicate delivery would arrive now
    receiver.server.shutdown()
    assert len(receiver.requests) == 2  # one failed attempt (500), retried once, then never again
    headers, body = receiver.requests[-1]
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Ifcflow-Signature"] == expected
    delivered = json.loads(body)
    assert delivered["run_id"] == run_id and delivered["status"] == "succeeded"


def counts(env: Env) -> tuple[frozenset[bytes], frozenset[bytes]]:
    """Job hashes and runs on the server (sets: earlier tests' runs may be compacted meanwhile)."""
    jobs = frozenset(k for k in env.redis.scan_iter("rq:job:*") if k.count(b":") == 2)
    return jobs, frozenset(env.redis.zrange("ifcflow:runs", 0, -1))  # type: ignore[arg-type]


def test_keys_bad_input_and_unsafe_webhooks_enqueue_nothing(env: Env) -> None:
    before = counts(env)
    body = {"input_filename": "walls.ifc", "output_filename": "x.glb"}
    anonymous = httpx.post(f"{env.api.url}/ifcconvert", json=body)
    assert anonymous.status_code == 401 and "X-API-Key" in anonymous.json()["detail"]
    wrong = httpx.post(f"{env.api.url}/runs", json={"pipeline": TWO_STEPS}, headers={"X-API-Key": "nope"})
    assert wrong.status_code == 403
    assert httpx.get(f"{env.api.url}/runs/x", headers={"X-API-Key": KEY + "x"}).status_code == 403
    assert httpx.get(f"{env.api.url}/health").status_code == 200
    assert env.client.post("/ifcconvert", json={**body, "bogus": 1}).status_code == 422
    missing = env.client.post("/ifcconvert", json={**body, "input_filename": "absent.ifc"})
    assert missing.status_code == 404 and missing.json()["detail"] == "Input file not found: absent.ifc"
    bad = env.client.post("/runs", json={"pipeline": "version: 1\nname: x\nsteps:\n  a: {uses: ifcconvrt}\n"})
    assert bad.status_code == 422
    message = bad.json()["detail"][0]["msg"]
    assert "pipeline.yaml:4:" in message and "ifcconvert" in message  # line:col and "did you mean"
    for hook in ("http://10.0.0.1/x", "http://localhost/x", "ftp://127.0.0.1/x", "http://user:pw@127.0.0.1/"):
        refused = env.client.post("/ifcconvert", json={**body, "webhook": hook})
        assert refused.status_code == 422, hook
    assert env.client.post("/runs", json={"pipeline": TWO_STEPS, "file": "two.yaml"}).status_code == 422
    assert not (counts(env)[0] - before[0]) and not (counts(env)[1] - before[1])


def test_upload_limit_and_stripped_names(env: Env) -> None:
    big = b"ISO-10303-21;\n" + b"x" * (LIMIT + 10)
    answer = env.client.post("/upload/ifc", files={"file": ("big.ifc", big)})
    assert answer.status_code == 413
    assert not (env.data / "uploads" / "big.ifc").exists()
    assert not list((env.data / "uploads").glob(".upload-*"))
    answer = env.client.post("/upload/ifc", files={"file": ("some/dir/named.ifc", b"ISO-10303-21;\n")})
    assert answer.status_code == 200 and answer.json()["file_path"] == "/uploads/named.ifc"
    assert env.client.post("/upload/ifc", files={"file": ("x.txt", b"x")}).status_code == 400
    assert env.client.post("/upload/exe", files={"file": ("x.ifc", b"x")}).status_code == 400


def test_serve_refuses_a_public_address_without_keys(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "ifcflow", "serve", "--host", "0.0.0.0", "--data", str(tmp_path),
                           "--redis", "redis://127.0.0.1:1/0"], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 2 and "IFCFLOW_API_KEYS" in done.stderr


def test_detached_cli_run_with_webhook_is_delivered_by_the_servers_watcher(env: Env, tmp_path: Path) -> None:
    """``ifcflow run --detach --webhook`` returns at once; the API server observes the end and delivers."""
    receiver = Receiver()
    receiver.requests.append(({}, b""))  # answer the real delivery with 200 at once
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(json.dumps({"version": 1, "name": "detached", "steps": {
        "s": {"uses": "ifc2json", "with": {"ifc": str(env.models / "tiny.ifc")}}}}))
    done = subprocess.run([sys.executable, "-m", "ifcflow", "run", str(pipeline), "--redis", env.redis_url, "--out",
                           str(tmp_path / "runs"), "--detach", "--webhook", receiver.url],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip().splitlines()[-1]
    deadline = time.monotonic() + 30
    while len(receiver.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    receiver.server.shutdown()
    assert len(receiver.requests) == 2
    assert json.loads(receiver.requests[1][1])["run_id"] == run_id


def test_one_step_runs_keep_their_record_in_their_own_run_folder(env: Env) -> None:
    """Issue 15.11: a user's output named status.json is not overwritten by the run's record."""
    upload(env, "walls.ifc")
    answer = env.client.post("/ifc2json", json={"filename": "walls.ifc", "output_filename": "status.json"})
    job_id = answer.json()["job_id"]
    assert wait_job(env, job_id)["status"] == "finished"
    run_id = job_id.removesuffix("-ifc2json")
    record = env.data / "output" / "runs" / run_id / "status.json"
    deadline = time.monotonic() + 30
    while not record.is_file() and time.monotonic() < deadline:  # written when the run's end is observed
        time.sleep(0.2)
    assert json.loads(record.read_text())["run_id"] == run_id
    time.sleep(1)
    output = json.loads((env.data / "output" / "json" / "status.json").read_text())
    assert "run_id" not in output and output  # the ifcJSON the client asked for, not a status document
