"""The original system's real clients (its n8n "Getting Started" workflows) against a real ``ifcflow serve``, a
private redis-server and a real worker: the calls as the workflows send them, and what the next node reads.
Also the allow-list of IfcPatch recipes and their arguments over HTTP (issue 15 item 1)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ifcopenshell
import pytest
from redis import Redis

from ifcflow.embedded import EmbeddedRedis
from tests.apiserver import ApiServer
from tests.conftest import shared_ifc
from tests.factories import tiny_model, wall_name_ids, walls_model

KEY = "clients-key"


class Env:
    def __init__(self, root: Path, data: Path, outside: Path, api: ApiServer, redis: Redis):
        self.root, self.data, self.outside, self.api, self.redis = root, data, outside, api, redis
        self.client = httpx.Client(base_url=api.url, headers={"X-API-Key": KEY}, timeout=60)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("clients")
    data, outside = root / "data", root / "outside"
    for folder in (data / "uploads", data / "examples", outside):
        folder.mkdir(parents=True)
    tiny_model(data / "uploads" / "tiny.ifc")
    walls_model(data / "uploads" / "walls.ifc")
    shutil.copy(shared_ifc("duplex.ifc"), data / "examples" / "Building-Architecture.ifc")
    wall_name_ids(data / "examples" / "IDS-example.ids")
    tiny_model(outside / "outside.ifc")
    with EmbeddedRedis() as server, ApiServer(server.url, data, {"IFCFLOW_API_KEYS": KEY}, workers=1) as api:
        redis = Redis.from_url(server.url)
        yield Env(root, data, outside, api, redis)
        redis.close()


def wait_job(env: Env, job_id: str, timeout: float = 180) -> dict[str, Any]:
    """The workflows' "wait for job" loop: poll /jobs/{id}/status until it ended."""
    deadline = time.monotonic() + timeout
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        answer = env.client.get(f"/jobs/{job_id}/status")
        assert answer.status_code == 200, answer.text
        doc = answer.json()
        if doc["status"] in ("finished", "failed", "canceled", "stopped"):
            return doc
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not end: {doc}")


def patch(env: Env, recipe: str, arguments: list[Any], input_file: str = "tiny.ifc",
          output_file: str = "o.ifc") -> httpx.Response:
    return env.client.post("/patch/execute", json={"input_file": input_file, "output_file": output_file,
                                                   "recipe": recipe, "arguments": arguments, "use_custom": True})


def run_pipeline(env: Env, recipe: str, arguments: list[Any]) -> httpx.Response:
    pipeline = {"version": 1, "name": "p", "inputs": {"model": "tiny.ifc"},
                "steps": {"s": {"uses": "ifcpatch", "with": {"ifc": "${{ inputs.model }}", "recipe": recipe,
                                                              "arguments": arguments}}}}
    return env.client.post("/runs", json={"pipeline": pipeline})


# --- A: recipe arguments stay inside the data folder (issue 15 item 1) -------------------------------------------

def test_recipe_arguments_cannot_name_paths_outside_the_data_folder(env: Env) -> None:
    elsewhere = env.root / "elsewhere"
    outside_model = str(env.outside / "outside.ifc")
    refused = [
        patch(env, "SplitByBuildingStorey", [str(elsewhere)]),
        patch(env, "SplitByBuildingStorey", ["../../elsewhere"]),
        patch(env, "MergeProjects", [[outside_model]]),
        patch(env, "MergeProjects", [["/uploads/../../outside/outside.ifc"]]),
        run_pipeline(env, "MergeProjects", [[outside_model]]),
        run_pipeline(env, "SplitByBuildingStorey", [str(elsewhere)]),
    ]
    for answer in refused:
        assert answer.status_code == 400, answer.text
        assert "arguments[0]" in answer.json()["detail"], answer.text
    assert not elsewhere.exists()
    assert not env.redis.keys("rq:job:*")


def test_recipes_not_on_the_allow_list_are_refused_with_what_is_allowed(env: Env) -> None:
    for answer in (patch(env, "Ifc2Sql", ["MySQL", "db.example.com", "root", "pw", "x"]),
                   patch(env, "NoSuchRecipe", []), run_pipeline(env, "Ifc2Sql", ["SQLite"]),
                   patch(env, "ExtractElements", [{"path": "/etc/passwd"}]),
                   patch(env, "ExtractElements", ["IfcWall", True, "extra"]),
                   patch(env, "SetColorBySelector", ["not json"])):
        assert answer.status_code == 422, answer.text
        detail = answer.json()["detail"]
        assert "ifcpatch recipe" in detail and ("Allowed recipes" in detail or "argument" in detail), detail
    assert "MergeProjects" in patch(env, "Ifc2Sql", []).json()["detail"]
    assert not env.redis.keys("rq:job:*")


def test_path_arguments_resolve_inside_the_data_folder_and_run(env: Env) -> None:
    merged = patch(env, "MergeProjects", [["/uploads/walls.ifc", "tiny.ifc"]], output_file="merged.ifc")
    assert merged.status_code == 200, merged.text
    split = patch(env, "SplitByBuildingStorey", ["storeys"], input_file="/examples/Building-Architecture.ifc")
    assert split.status_code == 200, split.text
    assert wait_job(env, merged.json()["job_id"])["status"] == "finished"
    model = ifcopenshell.open(str(env.data / "output" / "patch" / "merged.ifc"))
    assert len(model.by_type("IfcWall")) == 3 + 3 + 3  # the input and both merged models
    wait_job(env, split.json()["job_id"])
    storeys = sorted(p.name for p in (env.data / "output" / "patch" / "storeys").glob("*.ifc"))
    assert storeys, "SplitByBuildingStorey wrote nothing into output/patch/storeys/"


# --- B: the original's absolute paths map onto the data folder (issue 21 item 1) ---------------------------------

def test_original_absolute_paths_map_onto_the_data_folder(env: Env) -> None:
    assert (env.data / "examples").is_dir()
    tested = env.client.post("/ifctester", json={
        "ifc_filename": "/uploads/walls.ifc", "ids_filename": "/examples/IDS-example.ids",
        "output_filename": "/output/ids/test.html", "report_type": "html"})
    assert tested.status_code == 200, tested.text
    shutil.copy(env.data / "uploads" / "tiny.ifc", env.data / "uploads" / "back.ifc")
    back = patch(env, "ExtractElements", ["IfcWall"], input_file="/uploads/back.ifc", output_file="/uploads/back.ifc")
    assert back.status_code == 200, back.text
    for body in ({"ifc_filename": "walls.ifc", "ids_filename": "/etc/passwd", "output_filename": "o.html"},
                 {"ifc_filename": "walls.ifc", "ids_filename": "/examples/IDS-example.ids",
                  "output_filename": "/examples/o.html"},
                 {"ifc_filename": "walls.ifc", "ids_filename": "/examples/../uploads/x.ids", "output_filename": "o"},
                 {"ifc_filename": "walls.ifc", "ids_filename": "/examples/IDS-example.ids",
                  "output_filename": "/tmp/o.html"}):
        assert env.client.post("/ifctester", json=body).status_code == 400, body
    assert wait_job(env, tested.json()["job_id"])["status"] == "finished"
    assert "<html" in (env.data / "output" / "ids" / "test.html").read_text().lower()
    assert wait_job(env, back.json()["job_id"])["status"] == "finished"
    assert (env.data / "uploads" / "back.ifc").read_bytes() != (env.data / "uploads" / "tiny.ifc").read_bytes()
    assert len(ifcopenshell.open(str(env.data / "uploads" / "back.ifc")).by_type("IfcWall")) == 3


# --- C, D: the Getting Started chain: upload -> ifctester -> result.output_path -> download link ----------------

def no_server_path(env: Env, doc: Any) -> None:
    text = json.dumps(doc)
    assert str(env.data) not in text and str(env.data.resolve()) not in text, text[:2000]


def test_getting_started_chain_upload_test_download(env: Env) -> None:
    with (env.data / "uploads" / "walls.ifc").open("rb") as handle:
        uploaded = env.client.post("/upload/ifc", files={"file": ("My Model.ifc", handle)})
    assert uploaded.status_code == 200, uploaded.text
    up = uploaded.json()
    assert up["file_path"] == "/uploads/My Model.ifc" and up["original_filename"] == "My Model.ifc" and up["message"]
    job = env.client.post("/ifctester", json={"ifc_filename": up["file_path"], "ids_filename": "/examples/IDS-example.ids",
                                              "output_filename": "/output/ids/test.html", "report_type": "html"})
    assert job.status_code == 200, job.text
    doc = wait_job(env, job.json()["job_id"])
    assert doc["status"] == "finished", doc
    result = doc["result"]
    no_server_path(env, doc)
    assert result["output_path"] == "/output/ids/test.html"
    assert result["success"] is True and result["outputs"]["report"] == "output/ids/test.html"
    assert "<html" in result["report"].lower()
    for file_path in (result["output_path"], result["outputs"]["report"]):
        link = env.client.post("/create_download_link", json={"file_path": file_path})
        assert link.status_code == 200, link.text
        token = link.json()["download_token"]
        browser = httpx.get(f"{env.api.url}/download/{token}", timeout=30)  # no X-API-Key: the token is the key
        assert browser.status_code == 200, browser.text
        assert browser.content == (env.data / "output" / "ids" / "test.html").read_bytes()
    assert httpx.get(f"{env.api.url}/runs", headers={"X-API-Key": token}).status_code in (401, 403)
    assert httpx.get(f"{env.api.url}/download/{'x' * 43}").status_code == 404


def test_patch_result_carries_the_original_fields(env: Env) -> None:
    job = patch(env, "ExtractElements", ["IfcWall"], input_file="/uploads/walls.ifc", output_file="walls_only.ifc")
    doc = wait_job(env, job.json()["job_id"])
    assert doc["status"] == "finished", doc
    result = doc["result"]
    no_server_path(env, doc)
    assert result["output_path"] == "/output/patch/walls_only.ifc"
    assert result["output_filename"] == "walls_only.ifc" and result["recipe"] == "ExtractElements"
    assert result["input_file"] == "/uploads/walls.ifc" and result["outputs"]["model"] == "output/patch/walls_only.ifc"


def test_a_failed_job_reads_a_clean_error_with_the_traceback_apart(env: Env) -> None:
    job = patch(env, "ExtractElements", ["IfcWall[[["], input_file="/uploads/walls.ifc", output_file="bad.ifc")
    assert job.status_code == 200, job.text
    doc = wait_job(env, job.json()["job_id"])
    assert doc["status"] == "failed", doc
    assert "Traceback" not in doc["error"] and doc["error"].strip(), doc["error"]
    assert "Traceback" in doc["traceback"]
    no_server_path(env, doc)


def test_revit_execute_says_a_windows_revit_worker_is_needed(env: Env) -> None:
    answer = env.client.post("/revit/execute", json={"script": "x", "input_file": "/uploads/a.rvt"})
    assert answer.status_code == 501, answer.text
    assert "Windows" in answer.json()["detail"] and "Revit" in answer.json()["detail"]
