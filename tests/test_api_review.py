"""Findings of the security review of the integrated server (each reproduced on a real `ifcflow serve`): server
files are not downloadable, outputs never land in other runs' folders or the preview cache, over-long names and
outputs "inside" a file are 4xx (never a 500), tracebacks name no server folder."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis

from ifcflow.standalone.embedded import EmbeddedRedis
from tests.apiserver import ApiServer
from tests.factories import tiny_model

KEY = "review-key"


class Env:
    def __init__(self, data: Path, api: ApiServer, redis: Redis):
        self.data, self.api, self.redis = data, api, redis
        self.client = httpx.Client(base_url=api.url, headers={"X-API-Key": KEY}, timeout=60)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data = tmp_path_factory.mktemp("review") / "data"
    (data / "uploads").mkdir(parents=True)
    tiny_model(data / "uploads" / "tiny.ifc")
    (data / "history.sqlite").write_bytes(b"SQLite format 3\x00 secret audit")
    (data / "output" / ".preview").mkdir(parents=True)
    (data / "output" / "runs" / "other-run").mkdir(parents=True)
    (data / "output" / "runs" / "other-run" / "status.json").write_text('{"status": "succeeded"}')
    pipelines = data.parent / "pipelines"
    pipelines.mkdir()
    for name in ("config", ".hidden.yaml"):  # not pipelines: their lines must never be echoed in an error
        (pipelines / name).write_text("\turl = https://user:SECRET-TOKEN@github.com/x/y\n")
    (pipelines / "ok.yaml").write_text("version: 1\nname: ok\ninputs: {model: tiny.ifc}\n"
                                       "steps:\n  j: {uses: ifc2json, with: {ifc: \"${{ inputs.model }}\"}}\n")
    env = {"IFCFLOW_API_KEYS": KEY, "IFCFLOW_PIPELINES": str(pipelines)}
    with EmbeddedRedis() as server, ApiServer(server.url, data, env, workers=1) as api:
        redis = Redis.from_url(server.url)
        yield Env(data, api, redis)
        redis.close()


def jobs(env: Env) -> int:
    return len(env.redis.keys("rq:job:*"))


@pytest.mark.parametrize("name", ["history.sqlite", "/history.sqlite", "history.sqlite-wal", "output/.preview/x.glb",
                                  "processes.log", "uploads/.hidden.ifc"])
def test_server_files_beside_the_client_folders_get_no_download_link(env: Env, name: str) -> None:
    answer = env.client.post("/create_download_link", json={"file_path": name})
    assert answer.status_code == 400, answer.text
    assert "uploads/, output/ or examples/" in answer.json()["detail"] or "absolute" in answer.json()["detail"]
    fine = env.client.post("/create_download_link", json={"file_path": "uploads/tiny.ifc"})
    assert fine.status_code == 200 and env.client.get(f"/download/{fine.json()['download_token']}").status_code == 200


@pytest.mark.parametrize(("path", "body"), [
    ("/ifc2json", {"filename": "tiny.ifc", "output_filename": "/output/runs/other-run/status.json"}),
    ("/ifcconvert", {"input_filename": "tiny.ifc", "output_filename": "/output/.preview/abc.glb"}),
    ("/patch/execute", {"input_file": "tiny.ifc", "output_file": "o.ifc", "recipe": "SplitByBuildingStorey",
                        "arguments": ["/output/runs/other-run"]}),
    # a second output field moved the folder under the first one's name (found by the second review)
    ("/ifcconvert", {"input_filename": "tiny.ifc", "output_filename": "/output/x.obj",
                     "log_file": "runs/other-run/status.json"}),
    ("/ifcconvert", {"input_filename": "tiny.ifc", "output_filename": ".preview/abc.glb", "log_file": "/output/l.log"}),
    ("/ifcconvert", {"input_filename": "tiny.ifc", "output_filename": "/output/runs/other-run/x.obj",
                     "log_file": "/output/l.log"}),
])
def test_outputs_never_go_into_other_runs_or_server_caches(env: Env, path: str, body: dict[str, object]) -> None:
    before = jobs(env)
    answer = env.client.post(path, json=body)
    assert answer.status_code == 400, answer.text
    assert "output/runs/" in answer.json()["detail"] or "hidden" in answer.json()["detail"]
    assert jobs(env) == before
    assert (env.data / "output/runs/other-run/status.json").read_text() == '{"status": "succeeded"}'
    assert list((env.data / "output/.preview").iterdir()) == []


@pytest.mark.parametrize(("path", "body"), [
    ("/ifcconvert", {"input_filename": "a" * 300 + ".ifc", "output_filename": "o.glb"}),
    ("/ifcconvert", {"input_filename": "tiny.ifc", "output_filename": "b" * 300 + ".glb"}),
    ("/create_download_link", {"file_path": "uploads/" + "c" * 300}),
    ("/runs", {"file": "d" * 300 + ".yaml"}),
    ("/ifcconvert", {"input_filename": "tiny.ifc", "output_filename": "/uploads/tiny.ifc/x.glb"}),
    ("/ifcconvert", {"input_filename": "tiny.ifc", "output_filename": "/uploads/sub.ifc/x.obj"}),
    ("/ifcconvert", {"input_filename": "tiny.ifc", "output_filename": "/output/a/x.obj", "log_file": "/output/b/l.log"}),
    ("/download-from-url", {"url": "http://[::1/x.ifc"}),
])
def test_over_long_names_and_outputs_inside_a_file_are_4xx_not_500(env: Env, path: str,
                                                                   body: dict[str, object]) -> None:
    answer = env.client.post(path, json=body)
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text)
    assert str(env.data) not in answer.text
    assert not (env.data / "uploads" / "sub.ifc").exists() and not (env.data / "output" / "a").exists()


def test_a_failed_jobs_traceback_names_no_server_folder(env: Env) -> None:
    (env.data / "uploads" / "broken.ifc").write_text("ISO-10303-21;\nHEADER;\nFILE_SCHEMA(('IFC4'));\nENDSEC;\n"
                                                     "DATA;\n#1=IFCWALL($,$,$,$,$,$,$,$,$);\nENDSEC;\n"
                                                     "END-ISO-10303-21;\n")  # opens, then breaks the recipe
    answer = env.client.post("/patch/execute", json={"input_file": "broken.ifc", "output_file": "x.ifc",
                                                      "recipe": "ExtractElements", "arguments": ["IfcWall"]})
    assert answer.status_code == 200, answer.text
    job_id = answer.json()["job_id"]
    deadline = time.monotonic() + 120
    while (status := env.client.get(f"/jobs/{job_id}/status").json())["status"] not in ("failed", "finished"):
        assert time.monotonic() < deadline, status
        time.sleep(0.3)
    assert status["status"] == "failed" and status["traceback"], status
    root = str(Path(__file__).resolve().parent.parent)
    assert root not in status["traceback"] and "/site-packages/" not in status["traceback"], status["traceback"]
    assert 'File "' in status["traceback"]


@pytest.mark.parametrize("name", ["config", ".hidden.yaml", "../pipelines/config", "sub/x.yaml"])
def test_only_pipeline_files_of_the_pipelines_folder_can_be_started(env: Env, name: str) -> None:
    for path, body in (("/runs", {"file": name}), ("/schedules", {"name": "s", "file": name, "cron": "0 * * * *"})):
        answer = env.client.post(path, json=body)
        assert answer.status_code == 400, answer.text
        detail = answer.json()["detail"]
        assert "SECRET-TOKEN" not in answer.text and ("GET /pipelines" in detail or "'..'" in detail), detail


def test_an_upload_over_a_folder_is_a_4xx_and_leaves_nothing(env: Env) -> None:
    """A folder in uploads/ with the upload's name: the rename failed with a 500 and left the temporary file (up to
    IFCFLOW_MAX_UPLOAD bytes each time)."""
    (env.data / "uploads" / "folder.ifc").mkdir()
    before = sorted(p.name for p in (env.data / "uploads").iterdir())
    answer = env.client.post("/upload/ifc", files={"file": ("folder.ifc", (env.data / "uploads" / "tiny.ifc")
                                                           .read_bytes())})
    assert answer.status_code == 400 and "names a folder" in answer.json()["detail"], answer.text
    assert sorted(p.name for p in (env.data / "uploads").iterdir()) == before


def test_batch_and_schedule_answers_name_no_server_folder(env: Env) -> None:
    """Run documents were shown relative to the data folder, batches and schedules carried absolute paths (and the
    schedule the server's webhook allow-list)."""
    started = env.client.post("/batches", json={"file": "ok.yaml", "each": {"model": "tiny*.ifc"}})
    assert started.status_code == 202, started.text
    batch_id = started.json()["batch_id"]
    added = env.client.post("/schedules", json={"name": "nightly", "file": "ok.yaml", "cron": "0 2 * * *"})
    assert added.status_code == 201, added.text
    assert env.client.post("/ui/login", data={"key": KEY, "next": "/ui"}).status_code == 303  # the pages too
    answers = [env.client.get(f"/batches/{batch_id}"), env.client.get("/schedules"), added,
               env.client.get("/schedules/nightly"), env.client.get(f"/ui/batches/{batch_id}"),
               env.client.get("/ui/schedules")]
    root = str(env.data.parent)
    for answer in answers:
        assert answer.status_code in (200, 201), answer.text
        assert root not in answer.text and "webhook_allow" not in answer.text, answer.text
    doc = answers[0].json()
    assert doc["file"] == "ok.yaml" and doc["runs"][0]["label"].endswith("tiny.ifc"), doc
    assert added.json()["pipeline"] == "ok.yaml" and added.json()["out"] == "output/runs", added.json()
    env.client.delete("/schedules/nightly")


@pytest.mark.parametrize(("path", "body"), [
    ("/patch/execute", {"input_file": "tiny.ifc", "output_file": "m.ifc", "recipe": "MergeTasksFromPrevious",
                        "arguments": ["tiny.ifc", "{data}/history.sqlite"]}),
    ("/patch/execute", {"input_file": "tiny.ifc", "output_file": "m.ifc", "recipe": "MergeProjects",
                        "arguments": [["/output/.preview/abc.ifc"]]}),
    ("/ifcconvert", {"input_filename": "/output/.preview/abc.ifc", "output_filename": "x.obj"}),
    ("/ifcconvert", {"input_filename": ".upload-0123", "output_filename": "x.obj"}),
    ("/runs", {"pipeline": "version: 1\nname: p\nsteps:\n  j: {uses: ifc2json, with: {ifc: .upload-0123}}\n"}),
])
def test_steps_never_read_server_files_of_the_data_folder(env: Env, path: str, body: dict[str, object]) -> None:
    """The history database, caches and uploads still arriving are the server's, though inside the data folder."""
    (env.data / "output" / ".preview" / "abc.ifc").write_bytes((env.data / "uploads" / "tiny.ifc").read_bytes())
    (env.data / "uploads" / ".upload-0123").write_bytes((env.data / "uploads" / "tiny.ifc").read_bytes())
    before = jobs(env)
    text = json.dumps(body).replace("{data}", str(env.data))
    answer = env.client.post(path, content=text, headers={"Content-Type": "application/json"})
    assert 400 <= answer.status_code < 500, answer.text
    assert "steps may read" in answer.text, answer.text
    assert jobs(env) == before
