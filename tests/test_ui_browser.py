"""The web page in a real browser: Debian's headless Chromium driven by Playwright, against a real ``ifcflow
serve``, real workers and a private redis-server. Screenshots are kept under ``test-artifacts/`` (git-ignored)."""

from __future__ import annotations

import base64
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ifcflow.standalone.embedded import EmbeddedRedis

from .apiserver import ApiServer
from .conftest import ROOT
from .factories import tiny_model, wall_name_ids, walls_model

KEY = "ui-test-key"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH: install Debian's package "
                                "(apt-get install chromium; .ci/run does this when it can reach the package mirror)")

# Records every state each step's table row shows, and counts page loads in the tab (sessionStorage), so a test
# can tell the page was never reloaded.
RECORDER = """
(() => {
  const loads = Number(sessionStorage.getItem("loads") || 0) + 1;
  sessionStorage.setItem("loads", String(loads));
  window.__loads = loads;
  window.__seen = {};
  const note = () => document.querySelectorAll("#steps tr[data-step]").forEach((tr) => {
    const seen = (window.__seen[tr.dataset.step] ||= []);
    if (seen[seen.length - 1] !== tr.dataset.state) seen.push(tr.dataset.state);
  });
  new MutationObserver(note).observe(document, {subtree: true, childList: true, attributes: true});
})();
"""


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[ApiServer]:
    with EmbeddedRedis() as redis, ApiServer(redis.url, tmp_path / "data", workers=0,
                                             env={"IFCFLOW_API_KEYS": KEY,
                                                  "IFCFLOW_PIPELINES": str(ROOT / "pipelines")}) as api:
        yield api


@pytest.fixture()
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def sign_in(page: Any, api: ApiServer, path: str = "/ui") -> None:
    page.goto(f"{api.url}{path}")
    assert "/ui/login" in page.url  # no key, no page
    page.fill("input[name=key]", "wrong")
    page.click("button[type=submit]")
    assert "not one of this server's API keys" in page.inner_text("[role=alert]")
    if path == "/ui/new":
        screenshot(page.context.browser, page, "ui-login.png")
    page.fill("input[name=key]", KEY)
    page.click("button[type=submit]")
    page.wait_for_url(f"{api.url}{path}")


def not_blank(browser: Any, png: bytes) -> float:
    """Standard deviation of the screenshot's grey levels, decoded by the browser itself."""
    page = browser.new_page()
    try:
        return float(page.evaluate("""async (src) => {
            const img = new Image(); img.src = src; await img.decode();
            const canvas = Object.assign(document.createElement("canvas"), {width: img.width, height: img.height});
            const ctx = canvas.getContext("2d"); ctx.drawImage(img, 0, 0);
            const data = ctx.getImageData(0, 0, img.width, img.height).data;
            let sum = 0, sq = 0, n = 0;
            for (let i = 0; i < data.length; i += 4) {
              const g = (data[i] + data[i + 1] + data[i + 2]) / 3; sum += g; sq += g * g; n++;
            }
            return Math.sqrt(sq / n - (sum / n) ** 2);
        }""", "data:image/png;base64," + base64.b64encode(png).decode()))
    finally:
        page.close()


CSP_REPORTS = """() => new Promise((resolve) => {
  const observer = new ReportingObserver(() => {}, {types: ["csp-violation"], buffered: true});
  observer.observe();
  setTimeout(() => {
    resolve(observer.takeRecords().map((r) => `${r.body.effectiveDirective} blocked ${r.body.blockedURL} at `
      + `${r.body.sourceFile}:${r.body.lineNumber}`));
    observer.disconnect();
  }, 50);
})"""


def csp_violations(page: Any) -> list[str]:
    """What the page's Content-Security-Policy refused since it loaded (an inline style, handler or script, a
    request to another origin): the browser's own reports."""
    return list(page.evaluate(CSP_REPORTS))


def screenshot(browser: Any, page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    png = page.screenshot(path=str(ARTIFACTS / name), full_page=True)
    assert not_blank(browser, png) > 10, f"{name} looks blank"
    assert not csp_violations(page), f"{name}: the page's CSP refused {csp_violations(page)}"


def test_start_a_committed_pipeline_watch_it_live_and_download_the_result(server: ApiServer, browser: Any,
                                                                           tmp_path: Path) -> None:
    model = walls_model(tmp_path / "tower.ifc", walls=30)
    context = browser.new_context(viewport={"width": 1360, "height": 900}, accept_downloads=True)
    context.add_init_script(RECORDER)
    page = context.new_page()
    sign_in(page, server, "/ui/new")

    page.select_option("select[name=pipeline]", "quantities.yaml")
    page.wait_for_selector("form#start input[name='upload:model']")
    page.set_input_files("input[name='upload:model']", str(model))
    page.click("form#start button[type=submit]")
    page.wait_for_url(f"{server.url}/ui/runs/**")
    run_id = page.url.rsplit("/", 1)[-1]
    loads = page.evaluate("window.__loads")
    page.wait_for_selector("#steps tr[data-step=qto][data-state=queued]")
    assert page.get_attribute("svg.dag g.node[data-step=table]", "class") == "node state-pending"
    assert page.inner_text("#live") == "live"

    server.start_workers(1)  # the run executes while the page is open
    page.wait_for_selector("#steps tr[data-step=table][data-state=succeeded]", timeout=90_000)
    seen = page.evaluate("window.__seen")
    assert seen["qto"][-2:] == ["running", "succeeded"], seen
    assert "running" in seen["table"], seen
    assert page.evaluate("window.__loads") == loads  # never reloaded
    assert page.get_attribute("svg.dag g.node[data-step=qto]", "class") == "node state-succeeded"
    page.wait_for_selector("#live.off")
    assert "succeeded" in page.inner_text("#run-state") and page.title().startswith("succeeded · quantities")
    page.focus("svg.dag g.node[data-step=table]")
    page.keyboard.press("Enter")
    assert page.get_attribute("#step-table", "class") == "focus"  # the DAG box leads to its row
    screenshot(browser, page, "ui-run-succeeded.png")

    with page.expect_download() as download:
        page.click("a[data-output='table/table']")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == "wall-quantities.xlsx" and saved.read_bytes()[:2] == b"PK"

    with page.expect_download() as download:
        page.click("#reports a:text-is('HTML')")
    assert download.value.suggested_filename == f"{run_id}.html"
    assert run_id in Path(download.value.path()).read_text()

    page.goto(f"{server.url}/ui")
    row = page.locator(f"tr[data-run='{run_id}']")
    assert row.get_attribute("data-state") == "succeeded" and "2/2" in row.inner_text()
    screenshot(browser, page, "ui-runs.png")
    page.click("nav.filters a:text-is('failed')")
    page.wait_for_url(f"{server.url}/ui?state=failed")
    assert page.locator(f"tr[data-run='{run_id}']").count() == 0
    page.click("nav.filters a:text-is('succeeded')")
    assert page.locator(f"tr[data-run='{run_id}']").count() == 1


CHECKED = """\
version: 1
name: checked-handover
inputs: {model: walls.ifc, rules: rules.ids}
steps:
  check: {uses: ifctester, with: {ifc: "${{ inputs.model }}", ids: "${{ inputs.rules }}"}}
  json: {uses: ifc2json, needs: [check], with: {ifc: "${{ inputs.model }}", output: walls.json}}
"""


def test_retry_a_failed_run_after_fixing_its_input(server: ApiServer, browser: Any) -> None:
    uploads = server.data / "uploads"
    tiny_model(uploads / "walls.ifc")
    wall_name_ids(uploads / "rules.ids")  # walls have no Description: the IDS gate fails
    server.start_workers(1)
    headers = {"X-API-Key": KEY}
    started = httpx.post(f"{server.url}/runs", json={"pipeline": CHECKED}, headers=headers, timeout=30).json()
    run_id = started["run_id"]

    context = browser.new_context(viewport={"width": 1360, "height": 900})
    context.add_init_script(RECORDER)
    page = context.new_page()
    sign_in(page, server, f"/ui/runs/{run_id}")
    loads = page.evaluate("window.__loads")
    page.wait_for_selector("#steps tr[data-step=json][data-state=skipped]", timeout=60_000)
    assert "failed" in page.inner_text("#steps tr[data-step=check]")
    assert "why skipped" in page.inner_text("#steps tr[data-step=json]")
    assert page.get_attribute("svg.dag g.node[data-step=check]", "class") == "node state-failed"
    assert page.is_disabled("#cancel") and page.is_enabled("#retry")
    page.wait_for_selector("a[data-output='check/report']")  # the failing gate's report was published
    assert page.locator("a[data-output='json/json']").count() == 0  # the skipped step wrote nothing
    screenshot(browser, page, "ui-run-failed.png")

    wall_name_ids(uploads / "rules.ids", attribute="Name")  # fixed: every wall has a Name
    page.click("#retry")
    page.wait_for_selector("#steps tr[data-step=json][data-state=succeeded]", timeout=60_000)
    assert page.get_attribute("svg.dag g.node[data-step=check]", "class") == "node state-succeeded"
    assert page.evaluate("window.__seen")["check"][-1] == "succeeded"
    assert page.evaluate("window.__loads") == loads
    final = httpx.get(f"{server.url}/runs/{run_id}", headers=headers, timeout=10).json()
    assert final["status"] == "succeeded" and final["steps"]["check"]["attempt"] >= 1


def test_invalid_pipeline_shows_line_col_messages(server: ApiServer, browser: Any, tmp_path: Path) -> None:
    page = browser.new_context().new_page()
    sign_in(page, server, "/ui/new?pipeline=quantities.yaml")
    (server.data / "uploads" / "notes.ifc").write_text("hello, not a model")
    page.reload()
    page.select_option("select[name='pick:model']", "notes.ifc")
    page.click("form#start button[type=submit]")
    alert = page.inner_text("#problems")  # the summary; the messages sit at the input they are about
    field = page.inner_text("#error-model")
    assert "not started" in alert and "quantities.yaml:" in field and "not an IFC-SPF file" in field, field
    assert re.search(r"^quantities\.yaml:\d+:\d+: ", field, re.M) and str(ROOT) not in field, field
    screenshot(browser, page, "ui-new-invalid.png")


def test_cancel_a_waiting_run_then_retry_it(server: ApiServer, browser: Any) -> None:
    from ifcflow.standalone.demo import write_demo

    write_demo(server.data / "uploads")
    headers = {"X-API-Key": KEY}
    body = {"file": "coordination.yaml", "inputs": {"arch": "arch.ifc", "mep": "mep.ifc", "rules": "rules.ids"}}
    run_id = httpx.post(f"{server.url}/runs", json=body, headers=headers, timeout=30).json()["run_id"]

    page = browser.new_context(viewport={"width": 1360, "height": 1000}).new_page()
    sign_in(page, server, f"/ui/runs/{run_id}")
    edges = page.eval_on_selector_all("svg.dag path.edge", "ps => ps.map(p => p.dataset.from + '>' + p.dataset.to)")
    steps = httpx.get(f"{server.url}/runs/{run_id}", headers=headers, timeout=10).json()["steps"]
    assert sorted(edges) == sorted(f"{need}>{sid}" for sid, step in steps.items() for need in step["needs"])
    assert "validate>clash" in edges
    assert page.is_enabled("#cancel") and page.is_disabled("#retry")  # nothing to retry while it waits
    screenshot(browser, page, "ui-run-waiting.png")
    page.click("#cancel")
    page.wait_for_selector("#run-state .s-canceled", timeout=30_000)
    states = page.eval_on_selector_all("#steps tr", "rows => rows.map(r => r.dataset.state)")
    assert states == ["canceled"] * 5
    assert page.is_disabled("#cancel") and page.is_enabled("#retry")

    server.start_workers(2)
    page.click("#retry")
    page.wait_for_selector("#run-state .s-succeeded", timeout=120_000)
    classes = page.eval_on_selector_all("svg.dag g.node", "gs => gs.map(g => g.getAttribute('class'))")
    assert classes == ["node state-succeeded"] * 5
    page.wait_for_selector("#notice", state="hidden")  # "Retrying..." is gone once the run ended
    screenshot(browser, page, "ui-run-coordination.png")
