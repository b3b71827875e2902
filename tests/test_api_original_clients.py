"""The original system's real clients (its n8n "Getting Started" workflows) against a real ``ifcflow serve``, a
private redis-server and a real worker: the calls as the workflows send them, and what the next node reads.
Also the allow-list of IfcPatch recipes and their arguments over HTTP (issue 15 item 1)."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import ifcopenshell
import ifcopenshell.util.element
import pytest
from redis import Redis

from ifcflow.standalone.embedded import EmbeddedRedis
from tests.apiserver import ApiServer
from tests.conftest import shared_ifc
from tests.factories import tiny_model, wall_name_ids, walls_model

KEY = "clients-key"
LIMIT = 3_000_000
FOLDER_RECIPE = '''
class Patcher:
    def __init__(self, file, logger, name: str = "Renamed"):
        """Give the project a name.

        :param name: the new name
        """
        self.file, self.name = file, name

    def patch(self):
        for project in self.file.by_type("IfcProject"):
            project.Name = self.name

    def get_output(self):
        return self.file
'''


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
    walls_model(data / "examples" / "v1.ifc", walls=3)
    walls_model(data / "examples" / "v2.ifc", walls=4)
    folder = root / "recipes"
    folder.mkdir()
    (folder / "NameProject.py").write_text(FOLDER_RECIPE)
    settings = {"IFCFLOW_API_KEYS": KEY, "IFCFLOW_PATCH_RECIPES": str(folder), "IFCFLOW_DOWNLOAD_ALLOW": "127.0.0.1:*",
                "IFCFLOW_MAX_UPLOAD": str(LIMIT)}
    with EmbeddedRedis() as server, ApiServer(server.url, data, settings, workers=1) as api:
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
        detail = answer.json()["detail"][0]["msg"]
        assert "ifcpatch recipe" in detail and ("Allowed recipes" in detail or "argument" in detail), detail
    assert "MergeProjects" in patch(env, "Ifc2Sql", []).json()["detail"][0]["msg"]
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


def test_storey_names_cannot_lead_a_split_outside_its_folder(env: Env) -> None:
    """SplitByBuildingStorey names files ``{i}-{storey name}.ifc``: a name is model content, and a name such as
    ``/../../../x`` wrote the model anywhere the worker can write once the folder ``0-`` existed."""
    model = ifcopenshell.api.run("project.create_file", version="IFC4")
    project = ifcopenshell.api.run("root.create_entity", model, ifc_class="IfcProject", name="p")
    ifcopenshell.api.run("unit.assign_unit", model)
    storey = ifcopenshell.api.run("root.create_entity", model, ifc_class="IfcBuildingStorey",
                                  name="/../../../../escaped")
    ifcopenshell.api.run("aggregate.assign_object", model, products=[storey], relating_object=project)
    model.write(str(env.data / "uploads" / "storeys.ifc"))
    split = env.data / "output" / "patch" / "split"
    (split / "0-").mkdir(parents=True)  # what an earlier request could create
    answer = patch(env, "SplitByBuildingStorey", ["split"], input_file="storeys.ifc", output_file="storeys-o.ifc")
    assert answer.status_code == 200, answer.text
    assert wait_job(env, answer.json()["job_id"])["status"] == "finished"
    assert [p.name for p in split.glob("*.ifc")] == ["0-_.._.._.._.._escaped.ifc"]
    assert not list(env.root.rglob("escaped.ifc"))
    kept = ifcopenshell.open(str(env.data / "output" / "patch" / "storeys-o.ifc"))
    assert kept.by_type("IfcBuildingStorey")[0].Name == "/../../../../escaped"  # the model's own name, unchanged


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
    assert result["total_specifications"] == result["passed_specifications"] + result["failed_specifications"] >= 1
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


# --- E: the workflows' custom recipes, replayed over HTTP ---------------------------------------------------------

def download_model(env: Env, file_path: str, tmp_path: Path) -> ifcopenshell.file:
    link = env.client.post("/create_download_link", json={"file_path": file_path})
    assert link.status_code == 200, link.text
    got = httpx.get(f"{env.api.url}/download/{link.json()['download_token']}", timeout=30)
    assert got.status_code == 200
    (tmp_path / "got.ifc").write_bytes(got.content)
    return ifcopenshell.open(str(tmp_path / "got.ifc"))


def test_recipes_list_has_the_custom_recipes_with_parameters(env: Env) -> None:
    listed = env.client.post("/patch/recipes/list", json={}).json()
    custom = {r["name"]: r for r in listed["recipes"] if r["is_custom"]}
    assert {"SetColorBySelector", "SetPropertyBySelector", "SetAttributeBySelector", "RemoveElements",
            "MergeTasksFromPrevious", "NameProject"} <= set(custom)
    assert listed["custom_count"] == len(custom) and listed["builtin_count"] > 20
    assert [p["name"] for p in custom["RemoveElements"]["parameters"]][0]  # noqa: RUF015 == "query"
    assert custom["NameProject"]["parameters"][0]["name"] == "name"


def test_workflow_colour_the_walls_then_download(env: Env, tmp_path: Path) -> None:
    with (env.data / "uploads" / "walls.ifc").open("rb") as handle:
        up = env.client.post("/upload/ifc", files={"file": ("colour-me.ifc", handle)}).json()
    job = env.client.post("/patch/execute", json={
        "input_file": up["file_path"], "output_file": up["file_path"], "recipe": "SetColorBySelector",
        "arguments": ["{\"selectors\": \"IfcWall\", \"hex\": \"FF0000\"}", "", "", "", ""], "use_custom": True})
    assert job.status_code == 200, job.text
    doc = wait_job(env, job.json()["job_id"])
    assert doc["status"] == "finished", doc
    assert doc["result"]["output_path"] == "/uploads/colour-me.ifc"
    assert "ignored_fields" not in doc["result"]
    model = download_model(env, doc["result"]["output_path"], tmp_path)
    walls = model.by_type("IfcWall")
    assert walls
    for wall in walls:
        colours = [s.SurfaceColour for st in ifcopenshell.util.element.get_styles(wall) for s in st.Styles
                   if s.is_a("IfcSurfaceStyleShading")]
        assert any((c.Red, c.Green, c.Blue) == (1.0, 0.0, 0.0) for c in colours)


def test_workflow_property_diff_and_merge_tasks(env: Env, tmp_path: Path) -> None:
    operation = ("{\"selector\": \"IfcWall\", \"property\": \"Pset_WallCommon.Status\", \"data_type\": \"IfcText\", "
                 "\"value\": \"Approved\"}")
    prop = patch(env, "SetPropertyBySelector", [operation],
                 input_file="/examples/v2.ifc", output_file="/output/patch/v2-approved.ifc")
    diff = env.client.post("/ifcdiff", json={
        "old_file": "/examples/v1.ifc", "new_file": "/examples/v2.ifc", "output_file": "/output/diff/v1-v2.json",
        "relationships": ["property", "aggregate", "attributes", "classification", "container", "geometry", "type"],
        "is_shallow": False})
    assert prop.status_code == 200 and diff.status_code == 200, (prop.text, diff.text)
    approved = wait_job(env, prop.json()["job_id"])["result"]["output_path"]
    diff_path = wait_job(env, diff.json()["job_id"])["result"]["output_path"]
    assert approved == "/output/patch/v2-approved.ifc" and diff_path == "/output/diff/v1-v2.json"
    model = download_model(env, approved, tmp_path)
    assert all(ifcopenshell.util.element.get_pset(w, "Pset_WallCommon", "Status") == "Approved"
               for w in model.by_type("IfcWall"))
    merged = patch(env, "MergeTasksFromPrevious", ["/examples/v1.ifc", diff_path, "V."], input_file=approved,
                   output_file="with-tasks.ifc")
    assert merged.status_code == 200, merged.text
    doc = wait_job(env, merged.json()["job_id"])
    assert doc["status"] == "finished", doc
    tasks = download_model(env, doc["result"]["output_path"], tmp_path).by_type("IfcTask")
    assert tasks and all(t.Identification.startswith("V.") for t in tasks)


def test_a_folder_recipe_runs_and_a_folder_outside_recipe_is_unknown(env: Env, tmp_path: Path) -> None:
    job = patch(env, "NameProject", ["From the folder"], input_file="walls.ifc", output_file="named.ifc")
    assert job.status_code == 200, job.text
    doc = wait_job(env, job.json()["job_id"])
    assert doc["status"] == "finished", doc
    assert download_model(env, doc["result"]["output_path"], tmp_path).by_type("IfcProject")[0].Name == "From the folder"
    assert patch(env, "NameProject", [{"x": 1}]).status_code == 422


# --- F: POST /download-from-url, from an allowed host only ---------------------------------------------------------

class Files(BaseHTTPRequestHandler):
    model = b""

    def do_GET(self) -> None:
        port = self.server.server_address[1]
        routes: dict[str, tuple[int, dict[str, str], bytes]] = {
            "/model.ifc": (200, {}, self.model),
            "/same": (302, {"Location": "/model.ifc"}, b""),
            "/other": (302, {"Location": f"http://localhost:{port}/model.ifc"}, b""),
            "/page.ifc": (200, {}, b"<html>not a model</html>"),
            "/big.ifc": (200, {}, b"ISO-10303-21;\n" + b"x" * (LIMIT + 10)),
            "/rules.ids": (200, {}, b"<?xml version='1.0'?><ids xmlns='http://standards.buildingsmart.org/IDS'/>"),
        }
        status, headers, body = routes.get(self.path, (404, {}, b"no"))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def files(env: Env) -> Iterator[str]:
    Files.model = (env.data / "uploads" / "tiny.ifc").read_bytes()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_from_url_fetches_from_an_allowed_host_only(env: Env, files: str) -> None:
    got = env.client.post("/download-from-url", json={"url": f"{files}/same", "output_filename": "fetched.ifc"})
    assert got.status_code == 200, got.text
    assert got.json()["file_path"] == "/uploads/fetched.ifc"
    assert (env.data / "uploads" / "fetched.ifc").read_bytes() == Files.model
    ids = env.client.post("/download-from-url", json={"url": f"{files}/rules.ids"})
    assert ids.status_code == 200 and ids.json()["file_path"] == "/uploads/rules.ids", ids.text
    port = files.rsplit(":", 1)[1]
    cases = {
        f"{files}/other": 403,                       # redirect to another host name
        f"http://localhost:{port}/model.ifc": 403,   # host not on the list
        f"{files}/page.ifc": 422,                    # not an IFC file
        f"{files}/big.ifc": 413,                     # beyond IFCFLOW_MAX_UPLOAD
        "file:///etc/passwd": 422,
        f"{files}/missing.ifc": 502,
    }
    for url, status in cases.items():
        answer = env.client.post("/download-from-url", json={"url": url, "output_filename": "bad.ifc"})
        assert answer.status_code == status, (url, answer.text)
    assert "IFCFLOW_DOWNLOAD_ALLOW" in env.client.post(
        "/download-from-url", json={"url": f"http://localhost:{port}/model.ifc"}).json()["detail"]
    assert not (env.data / "uploads" / "bad.ifc").exists()
    assert not list((env.data / "uploads").glob(".fetch-*"))


def test_download_from_url_is_off_by_default() -> None:
    from fastapi import HTTPException

    from ifcflow.api.fetch import check_host

    with pytest.raises(HTTPException) as caught:
        check_host("https://files.example.com/a.ifc", ())
    assert caught.value.status_code == 403 and "IFCFLOW_DOWNLOAD_ALLOW" in str(caught.value.detail)
    with pytest.raises(HTTPException) as caught:
        check_host("http://localhost/a.ifc", ("localhost",))  # an allowed name pointing at an internal address
    assert caught.value.status_code == 403 and "internal" in str(caught.value.detail)


# --- H: the web page's "preview" link of a run output --------------------------------------------------------------

def test_run_output_preview_link_redirects_to_a_token_preview(env: Env) -> None:
    started = run_pipeline(env, "ExtractElements", ["IfcWall"])
    assert started.status_code == 202, started.text
    wait_job(env, started.json()["steps"]["s"])
    run_id = started.json()["run_id"]
    answer = env.client.get(f"/runs/{run_id}/outputs/s/model/preview", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/preview/"), answer.text
    page = httpx.get(env.api.url + answer.headers["location"], timeout=30)  # no key: the token is the credential
    assert page.status_code == 200 and "GLTFLoader" in page.text
    assert httpx.get(f"{env.api.url}/runs/{run_id}/outputs/s/model/preview").status_code in (401, 403)
    assert env.client.get(f"/runs/{run_id}/outputs/s/nope/preview").status_code == 404


def test_html_report_over_http_links_the_servers_output_urls(env: Env) -> None:
    started = run_pipeline(env, "ExtractElements", ["IfcWall"])
    wait_job(env, started.json()["steps"]["s"])
    run_id = started.json()["run_id"]
    for fmt in ("html", "markdown", "junit"):
        text = env.client.get(f"/runs/{run_id}/report", params={"format": fmt}).text
        assert "file://" not in text and str(env.data) not in text and str(env.data.resolve()) not in text, text
    page = env.client.get(f"/runs/{run_id}/report", params={"format": "html"}).text
    assert f"{env.api.url}/runs/{run_id}/outputs/s/model" in page
    assert env.client.get(f"{env.api.url}/runs/{run_id}/outputs/s/model").status_code == 200


def test_ifcflow_demo_fills_examples_with_the_workflows_file_names(env: Env) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "ifcflow", "demo", str(env.data / "examples" / "demo"),
                           "--original-names"], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    job = env.client.post("/ifctester", json={
        "ifc_filename": "/examples/demo/Building-Architecture.ifc", "ids_filename": "/examples/demo/IDS-example.ids",
        "output_filename": "/output/ids/demo.html", "report_type": "html"})
    assert job.status_code == 200, job.text
    result = wait_job(env, job.json()["job_id"])["result"]
    assert result["output_path"] == "/output/ids/demo.html" and "<html" in result["report"].lower()


def test_run_status_and_events_name_no_server_path(env: Env) -> None:
    started = run_pipeline(env, "ExtractElements", ["IfcWall"])
    wait_job(env, started.json()["steps"]["s"])
    run_id = started.json()["run_id"]
    doc = env.client.get(f"/runs/{run_id}").json()
    no_server_path(env, doc)
    assert doc["steps"]["s"]["outputs"]["model"].startswith("output/runs/")
    with env.client.stream("GET", f"/runs/{run_id}/events") as events:
        text = "".join(events.iter_text())
    assert "event: end" in text and str(env.data) not in text and str(env.data.resolve()) not in text
