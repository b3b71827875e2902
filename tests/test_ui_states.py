"""Every state a step can be in, readable on the web page (issue 16 item 2): real runs on a real server with the
cache on (as it is by default), looked at in Debian's Chromium. Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ifcflow.standalone.embedded import EmbeddedRedis

from .apiserver import ApiServer
from .conftest import ROOT, shared_ifc
from .factories import tiny_model, wall_name_ids
from .test_ui_browser import CHROMIUM, KEY, browser, screenshot, sign_in

__all__ = ["browser"]
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH: install Debian's package")
HEADERS = {"X-API-Key": KEY}

PUBLISH = """\
version: 1
name: cached-publish
inputs: {model: walls.ifc}
steps:
  glb: {uses: ifcconvert, with: {input: "${{ inputs.model }}", output: walls.glb}}
  json: {uses: ifc2json, with: {ifc: "${{ inputs.model }}", output: walls.json}}
  table:
    uses: ifccsv
    needs: [json]
    with: {ifc: "${{ inputs.model }}", query: IfcWall, attributes: [GlobalId, Name], output: walls.csv}
"""
GATE = """\
version: 1
name: gated
inputs: {model: walls.ifc, rules: rules.ids}
steps:
  check: {uses: ifctester, with: {ifc: "${{ inputs.model }}", ids: "${{ inputs.rules }}"}}
  json: {uses: ifc2json, needs: [check], with: {ifc: "${{ inputs.model }}", output: gated.json}}
"""
MIXED = """\
version: 1
name: mixed
inputs: {model: big.ifc}
steps:
  slow: {uses: ifcconvert, with: {input: "${{ inputs.model }}", output: big.glb, threads: 1}}
  after: {uses: ifc2json, needs: [slow], with: {ifc: "${{ inputs.model }}", output: big.json}}
  waiting: {uses: ifcdiff, with: {old: "${{ inputs.model }}", new: "${{ inputs.model }}", output: diff.json}}
"""
# no worker listens on ifcdiff: that step stays queued
SHARED = """\
version: 1
name: shared
inputs: {model: big.ifc}
steps:
  glb: {uses: ifcconvert, with: {input: "${{ inputs.model }}", output: big.glb, threads: 1}}
  clash: {uses: ifcclash, with: {clash_sets: [{name: walls, a: [{file: "${{ inputs.model }}", selector: IfcWall}]}],
                                 output: clashes.json}}
"""
# the clash step starts after the glb step (which makes the shared geometry): a dashed edge
QUEUES = ["default", "ifcconvert", "ifcclash", "ifccsv", "ifctester", "ifc2json"]

# WCAG 2 contrast ratio of two computed CSS colours; a transparent colour counts as no colour at all (0).
CONTRAST = """
([fg, bg]) => {
  const parse = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = (c) => {
    const [r, g, b] = c.slice(0, 3).map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const a = parse(fg), b = parse(bg);
  if (a.length < 3 || b.length < 3 || a[3] === 0 || b[3] === 0) return 0;
  const [hi, lo] = [lum(a), lum(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}
"""
NODE_COLOURS = """(g) => {
  const css = (el, p) => getComputedStyle(el).getPropertyValue(p);
  const rect = g.querySelector("rect");
  return {fill: css(rect, "fill"), name: css(g.querySelector("text.name"), "fill"),
          state: css(g.querySelector(".state"), "fill"), label: g.querySelector(".state").textContent};
}"""
BADGE_COLOURS = "(b) => ({fg: getComputedStyle(b).color, bg: getComputedStyle(b).backgroundColor, text: b.textContent})"


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[ApiServer]:
    env = {"IFCFLOW_API_KEYS": KEY, "IFCFLOW_PIPELINES": str(ROOT / "pipelines"), "IFCFLOW_CACHE": "on"}
    with EmbeddedRedis() as redis, ApiServer(redis.url, tmp_path / "data", workers=0, env=env) as api:
        api.spawn([*worker_command(api), *QUEUES])
        yield api


def worker_command(api: ApiServer) -> list[str]:
    import sys

    return [sys.executable, "-m", "ifcflow", "worker", "--redis", api.redis_url, "--quiet"]


def start(api: ApiServer, text: str, inputs: dict[str, str] | None = None) -> str:
    answer = httpx.post(f"{api.url}/runs", json={"pipeline": text, "inputs": inputs or {}}, headers=HEADERS,
                        timeout=60)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["run_id"])


def wait_end(api: ApiServer, run_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc: dict[str, Any] = httpx.get(f"{api.url}/runs/{run_id}", headers=HEADERS, timeout=10).json()
        if doc["status"] not in ("queued", "running"):
            return doc
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} did not end in {timeout} s")


def fits(page: Any) -> None:
    """The page needs no horizontal scrolling at its window's width."""
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"{page.url} is {width[0]} px wide in a {width[1]} px window"


def _settled_badge(page: Any, step: str, state: str) -> dict[str, str]:
    """The badge's text and colours once the row is in the document with its state (a live update re-renders the
    row: read in between, a detached badge has no computed style)."""
    deadline = time.monotonic() + 10
    while True:
        badge: dict[str, str] = page.locator(f"#steps tr[data-step='{step}'] .badge").evaluate(BADGE_COLOURS)
        if (badge["text"] == state and badge["fg"] and badge["bg"]) or time.monotonic() > deadline:
            return badge
        time.sleep(0.1)


def check_states(page: Any, expected: dict[str, str]) -> None:
    """Each step's DAG box and table badge show its state, readable: text on box and badge at 4.5:1 at least;
    the page fits its window."""
    for step, state in expected.items():
        page.wait_for_selector(f"#steps tr[data-step='{step}'][data-state='{state}']", timeout=60_000)
        node = page.locator(f"svg.dag g.node[data-step='{step}']")
        assert node.get_attribute("class") == f"node state-{state}"
        colours = node.evaluate(NODE_COLOURS)
        assert colours["label"] == state
        for part in ("name", "state"):
            ratio = page.evaluate(CONTRAST, [colours[part], colours["fill"]])
            assert ratio >= 4.5, f"{step} ({state}): {part} {colours[part]} on {colours['fill']} is {ratio:.2f}:1"
        badge = _settled_badge(page, step, state)
        assert badge["text"] == state
        ratio = page.evaluate(CONTRAST, [badge["fg"], badge["bg"]])
        assert ratio >= 4.5, f"{step} badge {state}: {badge['fg']} on {badge['bg']} is {ratio:.2f}:1"
        assert badge["bg"] not in ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)"), f"{state} badge is unstyled"
    fits(page)


def test_every_step_state_is_readable(server: ApiServer, browser: Any) -> None:
    uploads = server.data / "uploads"
    tiny_model(uploads / "walls.ifc")
    wall_name_ids(uploads / "rules.ids")  # walls have no Description: the IDS gate fails
    first = start(server, PUBLISH)
    assert wait_end(server, first)["status"] == "succeeded"
    cached = start(server, PUBLISH)
    doc = wait_end(server, cached)
    assert {s["status"] for s in doc["steps"].values()} == {"cached"}, doc
    gated = start(server, GATE)
    wait_end(server, gated)

    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    sign_in(page, server, f"/ui/runs/{first}")
    check_states(page, {"glb": "succeeded", "json": "succeeded", "table": "succeeded"})

    page.goto(f"{server.url}/ui/runs/{cached}")
    check_states(page, {"glb": "cached", "json": "cached", "table": "cached"})
    for step in ("glb", "json", "table"):
        links = page.locator(f"#steps tr[data-step='{step}'] td.outputs a")
        assert links.count() >= 1, f"no outputs listed for cached step {step}"
        for href in links.evaluate_all("as => as.map(a => a.href)"):
            assert page.request.get(href).status == 200, href
        assert f"cached from {first}" in page.inner_text(f"#steps tr[data-step='{step}']")
    assert "100 %" in page.inner_text("#steps tr[data-step='glb']")
    screenshot(browser, page, "ui-state-cached.png")

    page.goto(f"{server.url}/ui/runs/{gated}")
    check_states(page, {"check": "failed", "json": "skipped"})
    screenshot(browser, page, "ui-state-failed-skipped.png")

    page.goto(f"{server.url}/ui")
    row = page.locator(f"tr[data-run='{cached}']")
    assert "3/3" in row.inner_text()
    bar = row.locator(".counts").evaluate(
        "(c) => ({width: c.getBoundingClientRect().width, filled: [...c.querySelectorAll('rect')].reduce((n, r) => n + "
        "(['none', 'rgb(0, 0, 0)'].includes(getComputedStyle(r).fill) ? 0 : r.getBoundingClientRect().width), 0)})")
    assert bar["width"] > 0 and abs(bar["filled"] - bar["width"]) < 1, bar  # a fully cached run: a full bar
    screenshot(browser, page, "ui-state-runs.png")


def test_running_queued_pending_then_canceled_are_readable(server: ApiServer, browser: Any) -> None:
    big = server.data / "uploads" / "big.ifc"
    big.write_bytes(shared_ifc("duplex.ifc").read_bytes())
    run_id = start(server, MIXED)
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    sign_in(page, server, f"/ui/runs/{run_id}")
    check_states(page, {"slow": "running", "after": "pending", "waiting": "queued"})
    screenshot(browser, page, "ui-state-running.png")
    page.click("#cancel")
    page.wait_for_selector("#run-state .s-canceled", timeout=30_000)
    check_states(page, {"slow": "canceled", "after": "canceled", "waiting": "canceled"})
    screenshot(browser, page, "ui-state-canceled.png")


def test_a_clash_step_waiting_for_its_glb_step_shows_why(server: ApiServer, browser: Any) -> None:
    big = server.data / "uploads" / "big.ifc"
    big.write_bytes(shared_ifc("duplex.ifc").read_bytes())
    run_id = start(server, SHARED)
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    sign_in(page, server, f"/ui/runs/{run_id}")
    check_states(page, {"glb": "running", "clash": "pending"})
    edge = page.locator("svg.dag path.edge.after[data-from='glb'][data-to='clash']")
    assert edge.evaluate("(e) => getComputedStyle(e).strokeDasharray") not in ("", "none")
    assert "starts after glb" in edge.evaluate("(e) => e.textContent")
    assert "starts after glb" in page.inner_text("#steps tr[data-step='clash']")
    screenshot(browser, page, "ui-state-after.png")
    assert wait_end(server, run_id)["status"] == "succeeded"
    check_states(page, {"glb": "succeeded", "clash": "succeeded"})
    screenshot(browser, page, "ui-state-after-done.png")
