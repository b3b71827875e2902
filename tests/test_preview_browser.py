"""preview_url of POST /create_download_link in a real chromium: a real IFC model in the 3D view (converted to glb
on first preview, cached), an HTML report as is, a CSV and a JSON file as tables; no API key in the browser."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ifcflow.standalone.embedded import EmbeddedRedis

from .apiserver import ApiServer
from .conftest import shared_ifc
from .test_ui_browser import ARTIFACTS, CHROMIUM, not_blank

KEY = "preview-key"
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    data = tmp_path_factory.mktemp("preview") / "data"
    (data / "output" / "ids").mkdir(parents=True)
    (data / "uploads").mkdir()
    shutil.copy(shared_ifc("AC20-FZK-Haus.ifc"), data / "uploads" / "haus.ifc")
    (data / "output" / "ids" / "report.html").write_text("<html><body><h1 id=t>IDS report</h1></body></html>")
    (data / "output" / "table.csv").write_text("GlobalId,Name\n1abc,Wall A\n2def,Wall <b>B</b>\n")
    (data / "output" / "diff.json").write_text(json.dumps({"added": ["g1", "g2"], "deleted": [], "changed": {}}))
    with EmbeddedRedis() as server, ApiServer(server.url, data, {"IFCFLOW_API_KEYS": KEY}, workers=0) as started:
        yield started


@pytest.fixture()
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--use-gl=swiftshader",
                                                                              "--enable-unsafe-swiftshader"])
        try:
            yield launched
        finally:
            launched.close()


def link(api: ApiServer, file_path: str) -> str:
    answer = httpx.post(f"{api.url}/create_download_link", json={"file_path": file_path},
                        headers={"X-API-Key": KEY}, timeout=30)
    assert answer.status_code == 200, answer.text
    url: str = answer.json()["preview_url"]
    assert url.startswith(api.url + "/preview/")
    return url


def test_a_real_ifc_model_shows_in_3d(api: ApiServer, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 750})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    started = time.monotonic()
    page.goto(link(api, "/uploads/haus.ifc"))
    page.wait_for_selector("body[data-loaded]", timeout=240_000)
    first = time.monotonic() - started
    meshes = int(page.get_attribute("body", "data-loaded"))
    assert meshes > 50 and not errors, (meshes, errors)
    page.wait_for_timeout(500)
    ARTIFACTS.mkdir(exist_ok=True)
    png = page.screenshot(path=str(ARTIFACTS / "preview-ifc.png"))
    assert not_blank(browser, png) > 8
    cached = list((api.data / "output" / ".preview").glob("*.glb"))
    assert len(cached) == 1
    started = time.monotonic()
    page.goto(link(api, "uploads/haus.ifc"))
    page.wait_for_selector("body[data-loaded]", timeout=60_000)
    assert time.monotonic() - started < first  # the cached glb, no second conversion
    assert len(list((api.data / "output" / ".preview").glob("*.glb"))) == 1
    page.close()


def test_report_as_is_and_tables(api: ApiServer, browser: Any) -> None:
    page = browser.new_page()
    page.goto(link(api, "/output/ids/report.html"))
    assert page.inner_text("#t") == "IDS report"
    page.goto(link(api, "output/table.csv"))
    assert page.locator("th").all_inner_texts() == ["GlobalId", "Name"]
    assert "Wall <b>B</b>" in page.locator("td").all_inner_texts()  # escaped, not markup
    page.screenshot(path=str(ARTIFACTS / "preview-csv.png"))
    page.goto(link(api, "output/diff.json"))
    assert page.locator("th").all_inner_texts() == ["key", "value"]
    assert "added" in page.locator("td").all_inner_texts()
    page.close()
