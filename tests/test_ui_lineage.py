"""A file's lineage on the web page (issue 19), in real Chromium against a real ``ifcflow serve``, worker and private
redis-server: the run page's "lineage" action and the ``/ui/lineage/...`` page draw files -> steps -> files up and
down from the history database, keep working after Redis is flushed, show "nothing recorded yet" and the database
being down, and never run a file name as markup. Screenshots go to ``test-artifacts/`` (git-ignored)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis

from ifcflow.engine import outbox
from ifcflow.standalone.embedded import EmbeddedRedis

from .apiserver import ApiServer
from .factories import tiny_model, walls_model
from .test_history import COORDINATION
from .test_ui_browser import CHROMIUM, KEY, browser, screenshot, sign_in  # noqa: F401 - the fixture

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH: install Debian's package "
                                "(apt-get install chromium; .ci/run does this when it can reach the package mirror)")
WEIRD = "<script>alert(1)<script><img src=x onerror=alert(2)>.ifc"
"""A user's file name that would run if the page ever wrote it as markup."""
HEADERS = {"X-API-Key": KEY}


@pytest.fixture()
def redis() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


def _recorded_run(api: ApiServer) -> str:
    uploads = api.data / "uploads"
    walls_model(uploads / WEIRD, walls=3)
    walls_model(uploads / "mep.ifc", walls=2, spacing=5.0)
    body = {"pipeline": COORDINATION.replace("\n    ", "\n").strip() + "\n", "inputs": {"arch": WEIRD, "mep": "mep.ifc"}}
    started = httpx.post(f"{api.url}/runs", json=body, headers=HEADERS, timeout=30)
    assert started.status_code == 202, started.text
    run_id = str(started.json()["run_id"])
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # ended, and its records drained into the server's history database
        listed = httpx.get(f"{api.url}/history", headers=HEADERS, timeout=10).json()
        if listed["behind"] == 0 and [r["state"] for r in listed["runs"]] == ["succeeded"]:
            return run_id
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} not recorded: {httpx.get(f'{api.url}/runs/{run_id}', headers=HEADERS).text}")


def _graph(page: Any) -> dict[str, Any]:
    """What the drawn graph holds: files (name text, sha256), steps (run, step, link), edges."""
    page.wait_for_selector(".lineage-box[data-state=graph] svg.lineage")
    return page.evaluate("""() => {
        const svg = document.querySelector(".lineage-box svg.lineage");
        const files = [...svg.querySelectorAll(".lnode.file")].map((n) => ({
            sha256: n.dataset.sha256, name: n.dataset.name, text: n.querySelector("text.name").textContent,
            target: n.classList.contains("target"), href: n.getAttribute("href")}));
        const steps = [...svg.querySelectorAll(".lnode.step")].map((n) => ({
            run: n.dataset.run, step: n.dataset.step, href: n.getAttribute("href"), gone: n.classList.contains("gone")}));
        const edges = [...svg.querySelectorAll("path.ledge")].map((p) => [p.dataset.from, p.dataset.to]);
        return {files, steps, edges, box: svg.getBoundingClientRect().height};
    }""")


def _watch(page: Any) -> list[str]:
    """Dialogs (an alert() a file name smuggled in) and CSP violations, as they happen."""
    seen: list[str] = []
    page.on("dialog", lambda dialog: (seen.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    page.on("console", lambda msg: seen.append(f"console: {msg.text}") if "Content Security Policy" in msg.text
            else None)
    return seen


def test_lineage_graph_on_the_run_page_and_its_own_page_after_redis_is_flushed(redis: EmbeddedRedis, browser: Any,
                                                                                tmp_path: Path) -> None:
    with ApiServer(redis.url, tmp_path / "data", workers=1, env={"IFCFLOW_API_KEYS": KEY}) as api:
        run_id = _recorded_run(api)
        status = httpx.get(f"{api.url}/runs/{run_id}", headers=HEADERS, timeout=10).json()
        model = status["steps"]["walls"]["outputs"]["model"]
        arch = outbox.describe(api.data / "uploads" / WEIRD)
        assert arch

        page = browser.new_context(viewport={"width": 1360, "height": 1000}).new_page()
        seen = _watch(page)
        sign_in(page, api, f"/ui/runs/{run_id}")
        assert page.get_attribute("[data-input=arch] a[data-lineage]", "data-lineage") == f"uploads/{WEIRD}"
        page.click("a[data-lineage-of='walls/model']")  # the action on the walls step's output: the graph in place
        graph = _graph(page)
        steps = {(s["run"], s["step"]): s for s in graph["steps"]}
        assert set(steps) == {(run_id, "walls"), (run_id, "clash"), (run_id, "json")}  # one up, two down
        assert all(s["href"] == f"/ui/runs/{run_id}#step-{s['step']}" and not s["gone"] for s in steps.values())
        names = {f["name"]: f for f in graph["files"]}
        assert len(graph["files"]) == 5 and len(graph["edges"]) == 7, graph
        assert names[WEIRD]["sha256"] == arch["sha256"] and names[WEIRD]["href"] == f"/ui/lineage/{arch['sha256']}"
        assert names[WEIRD]["text"].startswith("<script>al") and "…" in names[WEIRD]["text"]  # text, shortened
        assert [f["name"] for f in graph["files"] if f["target"]] == [Path(model).name]
        walls, clash = f"s:{run_id}\u0000walls", f"s:{run_id}\u0000clash"
        assert [f"f:{arch['sha256']}", walls] in graph["edges"] and [walls, f"f:{names[Path(model).name]['sha256']}"] \
            in graph["edges"] and [f"f:{names['mep.ifc']['sha256']}", clash] in graph["edges"]
        assert page.locator("#lineage-box img").count() == 0 and page.locator("#lineage-box script").count() == 0
        screenshot(browser, page, "ui-lineage-run.png")

        page.click("#lineage-open")  # its own page, the address any output link leads to
        page.wait_for_url(f"{api.url}/ui/lineage/output/runs/{run_id}/walls/**")
        csp = page.reload().headers["content-security-policy"]
        again = _graph(page)
        assert {(s["run"], s["step"]) for s in again["steps"]} == set(steps) and len(again["edges"]) == 7
        assert "script-src 'self';" in csp and "unsafe-inline" not in csp
        page.click(f"a.lnode.file[data-sha256='{arch['sha256']}']")  # a file node opens that file's lineage
        page.wait_for_url(f"{api.url}/ui/lineage/{arch['sha256']}")
        down = _graph(page)
        assert [f["name"] for f in down["files"] if f["target"]] == [WEIRD]
        assert {s["step"] for s in down["steps"]} == {"walls", "clash", "json"}  # all derived from it

        Redis.from_url(redis.url).flushdb()  # Redis forgets the run: the history draws the same graph
        page.goto(f"{api.url}/ui/lineage/output/runs/{run_id}/walls/{Path(model).name}")
        flushed = _graph(page)
        assert {(s["run"], s["step"]) for s in flushed["steps"]} == set(steps) and len(flushed["edges"]) == 7
        assert all(s["gone"] and s["href"] is None for s in flushed["steps"])  # no link to a page that is gone
        screenshot(browser, page, "ui-lineage-after-flush.png")

        tiny_model(api.data / "uploads" / "fresh.ifc")
        page.goto(f"{api.url}/ui/lineage/uploads/fresh.ifc")
        page.wait_for_selector(".lineage-box[data-state=empty]")
        assert "Nothing recorded yet" in page.inner_text("#lineage-graph")
        screenshot(browser, page, "ui-lineage-nothing-yet.png")
        refused = page.goto(f"{api.url}/ui/lineage/uploads/..%2F..%2Fetc%2Fpasswd")
        assert refused is not None and refused.status == 400  # the page refuses what the API refuses
        page.wait_for_selector(".lineage-box[data-state=error]")
        assert "contains '..'" in page.inner_text("#lineage-graph")  # the API refused it; the page says why
        assert not seen, seen  # no alert ran, nothing broke the CSP


def test_lineage_page_says_the_history_database_is_unavailable(redis: EmbeddedRedis, browser: Any,
                                                               tmp_path: Path) -> None:
    env = {"IFCFLOW_API_KEYS": KEY, "IFCFLOW_DATABASE_URL": "postgresql://nobody:secret@127.0.0.1:1/none"}
    with ApiServer(redis.url, tmp_path / "data", workers=0, env=env) as api:
        tiny_model(api.data / "uploads" / "model.ifc")
        page = browser.new_context(viewport={"width": 1360, "height": 700}).new_page()
        seen = _watch(page)
        sign_in(page, api, "/ui/lineage/uploads/model.ifc")
        page.wait_for_selector(".lineage-box[data-state=unavailable]")
        text = page.inner_text("#lineage-graph")
        assert "history database is unavailable" in text and "Runs still run" in text and "secret" not in text
        screenshot(browser, page, "ui-lineage-unavailable.png")
        assert not seen, seen
