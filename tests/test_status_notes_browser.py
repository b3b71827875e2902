"""The run page shows what a status read noticed (issue 16.5): a queued step whose queue has no worker says so and
names the command that starts one. Real browser, server and Redis (fixtures of tests/test_ui_browser.py)."""

from __future__ import annotations

from typing import Any

import httpx

from .apiserver import ApiServer
from .test_ui_browser import (  # fixtures
    KEY,
    browser,
    pytestmark,
    screenshot,
    server,
    sign_in,
)

__all__ = ["browser", "pytestmark", "server"]


def test_the_run_page_says_no_worker_listens_and_how_to_start_one(server: ApiServer, browser: Any) -> None:
    from ifcflow.standalone.demo import write_demo

    write_demo(server.data / "uploads")
    body = {"file": "coordination.yaml", "inputs": {"arch": "arch.ifc", "mep": "mep.ifc", "rules": "rules.ids"}}
    headers = {"X-API-Key": KEY}
    run_id = httpx.post(f"{server.url}/runs", json=body, headers=headers, timeout=30).json()["run_id"]
    doc = httpx.get(f"{server.url}/runs/{run_id}", headers=headers, timeout=10).json()
    queued = {sid: s["detail"] for sid, s in doc["steps"].items() if s["status"] == "queued"}
    assert queued and all(d and d.endswith(f"start one: ifcflow worker {doc['steps'][sid]['queue']}")
                          for sid, d in queued.items()), queued  # the API (no worker was started)
    page = browser.new_context(viewport={"width": 1360, "height": 1000}).new_page()
    sign_in(page, server, f"/ui/runs/{run_id}")
    page.wait_for_selector("[data-detail]", timeout=30_000)
    shown = page.eval_on_selector_all("[data-detail]", "ds => ds.map(d => d.textContent)")
    assert sorted(shown) == sorted(queued.values())
    screenshot(browser, page, "ui-run-no-worker.png")
