"""The web page's batches and schedules (issue 16 item 11) in Debian's Chromium, against a real server, real
workers and a private redis-server. Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ifcflow.standalone.embedded import EmbeddedRedis

from .apiserver import ApiServer
from .factories import tiny_model, wall_name_ids, walls_model, write_pipeline
from .test_ui_browser import CHROMIUM, KEY, browser, screenshot, sign_in
from .test_ui_states import fits

__all__ = ["browser"]
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH: install Debian's package")
HEADERS = {"X-API-Key": KEY}
GATE = """\
version: 1
name: gated-batch
inputs: {model: walls.ifc, rules: rules.ids}
steps:
  check: {uses: ifctester, with: {ifc: "${{ inputs.model }}", ids: "${{ inputs.rules }}"}}
  json: {uses: ifc2json, needs: [check], with: {ifc: "${{ inputs.model }}", output: model.json}}
"""


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[ApiServer]:
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    write_pipeline(pipelines, GATE, "gated.yaml")
    env = {"IFCFLOW_API_KEYS": KEY, "IFCFLOW_PIPELINES": str(pipelines)}
    with EmbeddedRedis() as redis, ApiServer(redis.url, tmp_path / "data", workers=0, env=env) as api:
        uploads = api.data / "uploads"
        (uploads / "project").mkdir(parents=True, exist_ok=True)
        walls_model(uploads / "project" / "a-described.ifc", walls=1, description="load-bearing")
        tiny_model(uploads / "project" / "b-plain.ifc")  # its walls have no Description: the gate fails
        tiny_model(uploads / "project" / "c-plain.ifc")
        tiny_model(uploads / "walls.ifc")
        wall_name_ids(uploads / "rules.ids")
        yield api


def test_a_batch_page_follows_its_files_live(server: ApiServer, browser: Any) -> None:
    body = {"file": "gated.yaml", "inputs": {"rules": "rules.ids"}, "each": {"model": "project/*.ifc"}}
    started = httpx.post(f"{server.url}/batches", json=body, headers=HEADERS, timeout=60)
    assert started.status_code == 202, started.text
    batch_id = started.json()["batch_id"]

    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    sign_in(page, server, f"/ui/batches/{batch_id}")
    page.evaluate("window.__same_page = true")
    rows = page.locator("#files tr[data-run]")
    assert rows.count() == 3 and page.inner_text("#live") == "live"
    assert "project/a-described.ifc" in rows.nth(0).inner_text()
    screenshot(browser, page, "ui-batch-waiting.png")

    server.start_workers(1)  # the batch runs while the page is open
    page.wait_for_selector("#batch-state .s-failed", timeout=120_000)
    assert page.evaluate("window.__same_page") is True  # followed live, never reloaded
    states = {r["label"]: r["state"] for r in page.eval_on_selector_all(
        "#files tr[data-run]", "rs => rs.map(r => ({label: r.querySelector('td').innerText, state: r.dataset.state}))")}
    assert states == {"project/a-described.ifc": "succeeded", "project/b-plain.ifc": "failed",
                      "project/c-plain.ifc": "failed"}, states
    failed = page.inner_text("#files tr[data-state=failed]:first-child, #files tr[data-state=failed] >> nth=0")
    assert "check" in failed and "specifications failed" in failed
    assert page.is_disabled("#cancel") and page.is_enabled("#retry")
    fits(page)
    screenshot(browser, page, "ui-batch-ended.png")
    page.click("#files tr[data-state=succeeded] td a")
    page.wait_for_url(f"{server.url}/ui/runs/**")
    page.wait_for_selector("#steps tr[data-step=json][data-state=succeeded]")

    page.goto(f"{server.url}/ui/batches")
    row = page.locator(f"tr[data-batch='{batch_id}']")
    assert row.get_attribute("data-state") == "failed" and "3/3" in row.inner_text()
    fits(page)
    screenshot(browser, page, "ui-batches.png")
    page.goto(f"{server.url}/ui/batches/nope")
    assert "batch nope not found" in page.inner_text("[role=alert]")


def test_schedules_page_fires_pauses_and_resumes(server: ApiServer, browser: Any) -> None:
    for body in ({"name": "nightly", "file": "gated.yaml", "cron": "0 2 * * *",
                  "inputs": {"model": "walls.ifc", "rules": "rules.ids"}},
                 {"name": "weekly-project", "file": "gated.yaml", "cron": "0 3 * * 1",
                  "inputs": {"rules": "rules.ids"}, "each": {"model": "project/*.ifc"}},
                 {"name": "empty-folder", "file": "gated.yaml", "cron": "0 4 * * *",
                  "inputs": {"rules": "rules.ids"}, "each": {"model": "nothing-here/*.ifc"}}):
        added = httpx.post(f"{server.url}/schedules", json=body, headers=HEADERS, timeout=30)
        assert added.status_code == 201, added.text

    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    sign_in(page, server, "/ui/schedules")
    assert page.locator("#schedules tr[data-schedule]").count() == 3
    assert "never fired" in page.inner_text("tr[data-schedule=nightly]")

    page.click("tr[data-schedule=nightly] button:text('Fire now')")
    page.wait_for_selector("#fired")
    run_id = httpx.get(f"{server.url}/schedules/nightly", headers=HEADERS, timeout=10).json()["last"]["id"]
    assert f"nightly fired: started run {run_id}" in page.inner_text("#fired")
    assert run_id in page.inner_text("tr[data-schedule=nightly] td.last")
    page.click("tr[data-schedule=weekly-project] button:text('Fire now')")
    page.wait_for_selector("#fired a[href*='/ui/batches/']")
    page.click("tr[data-schedule=empty-folder] button:text('Fire now')")
    fired = page.inner_text("#fired")
    assert "empty-folder fired: failed" in fired and "'nothing-here/*.ifc'" in fired, fired
    assert str(server.data) not in fired  # the server's layout is not shown

    page.click("tr[data-schedule=nightly] button:text('Pause')")
    page.wait_for_selector("tr[data-schedule=nightly][data-paused=yes]")
    assert "paused" in page.inner_text("#said")
    assert httpx.get(f"{server.url}/schedules/nightly", headers=HEADERS, timeout=10).json()["paused"] is True
    fits(page)
    screenshot(browser, page, "ui-schedules.png")
    page.click("tr[data-schedule=nightly] button:text('Resume')")
    page.wait_for_selector("tr[data-schedule=nightly][data-paused=no]")
    assert httpx.get(f"{server.url}/schedules/nightly", headers=HEADERS, timeout=10).json()["paused"] is False

    page.click(f"tr[data-schedule=nightly] a:text('{run_id}')")  # the last fire leads to its run's page
    page.wait_for_url(f"{server.url}/ui/runs/{run_id}")

    # the forms keep the same-site check: a form posted by another site changes nothing
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    forged = httpx.post(f"{server.url}/ui/schedules/nightly/pause", cookies=cookies, timeout=10,
                        headers={"Origin": "https://evil.example"})
    assert forged.status_code == 403
    assert httpx.get(f"{server.url}/schedules/nightly", headers=HEADERS, timeout=10).json()["paused"] is False
    missing = httpx.post(f"{server.url}/ui/schedules/nope/run", cookies=cookies, timeout=10)
    assert missing.status_code == 404 and "Schedule nope not found" in missing.text
