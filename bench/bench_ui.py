"""Web page benchmark (issue 11): how soon the run page shows a step's end, in a real browser.

A real ``ifcflow serve`` with 2 workers on a private redis-server runs the committed ``coordination`` pipeline on
the demo models ``RUNS`` times; for each run headless Chromium (Debian's ``chromium``, driven by Playwright) has
the run page open, and a MutationObserver notes when each step's row turns ``succeeded``. The latency is that
moment minus the step's ``ended_at`` (same machine, same clock), for steps that ended after the page was open.

Run from the repository root: ``python -m bench.bench_ui`` (about 1 minute on 2 cores).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from datetime import datetime
from pathlib import Path

import httpx

from ifcflow.standalone.demo import write_demo
from ifcflow.standalone.embedded import EmbeddedRedis
from tests.apiserver import ApiServer

RUNS = 8
ROOT = Path(__file__).resolve().parent.parent
RECORDER = """(() => {
  window.__opened = Date.now(); window.__seen = {};
  new MutationObserver(() => document.querySelectorAll('#steps tr[data-step]').forEach((tr) => {
    const key = tr.dataset.step + ':' + tr.dataset.state;
    if (!(key in window.__seen)) window.__seen[key] = Date.now();
  })).observe(document, {subtree: true, childList: true, attributes: true});
})();"""


def millis(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000


def measure(browser: object, api: ApiServer) -> list[float]:
    body = {"file": "coordination.yaml", "inputs": {"arch": "arch.ifc", "mep": "mep.ifc", "rules": "rules.ids"}}
    run_id = httpx.post(f"{api.url}/runs", json=body, timeout=30).json()["run_id"]
    context = browser.new_context()  # type: ignore[attr-defined]
    context.add_init_script(RECORDER)
    page = context.new_page()
    page.goto(f"{api.url}/ui/runs/{run_id}")
    page.wait_for_selector("#run-state .s-succeeded", timeout=120_000)
    seen, opened = page.evaluate("window.__seen"), page.evaluate("window.__opened") + 300
    steps = httpx.get(f"{api.url}/runs/{run_id}", timeout=30).json()["steps"]
    context.close()
    return [seen[f"{sid}:succeeded"] - millis(step["ended_at"]) for sid, step in steps.items()
            if f"{sid}:succeeded" in seen and millis(step["ended_at"]) > opened]


def main() -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if not chromium:
        raise SystemExit("needs Debian's chromium on PATH (apt-get install chromium)")
    data = Path(tempfile.mkdtemp(prefix="ifcflow-bench-ui-"))
    env = {"IFCFLOW_API_KEYS": "", "IFCFLOW_PIPELINES": str(ROOT / "pipelines")}
    try:
        with EmbeddedRedis() as redis, ApiServer(redis.url, data, workers=2, env=env) as api, \
                sync_playwright() as playwright:
            write_demo(data / "uploads")
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            latencies = sorted(x for _ in range(RUNS) for x in measure(browser, api))
            browser.close()
    finally:
        shutil.rmtree(data, ignore_errors=True)
    p95 = latencies[max(int(len(latencies) * 0.95) - 1, 0)]
    print(f"step end -> run page shows it: {len(latencies)} steps, p50 {statistics.median(latencies):.0f} ms, "
          f"p95 {p95:.0f} ms, max {latencies[-1]:.0f} ms")


if __name__ == "__main__":
    main()
