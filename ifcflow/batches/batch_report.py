"""Showing a batch: reports (JUnit with one test suite per file, Markdown, HTML) and the live terminal view."""

from __future__ import annotations

import html
from collections.abc import Callable
from xml.etree import ElementTree as ET

from redis import Redis
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..engine.states import RunState
from ..engine.status import RunStatus, StatusReader
from ..views.live import STYLES
from ..views.report import junit_suite
from .batch_status import BatchStatus

_ICONS = {"succeeded": "✅", "succeeded_with_failures": "⚠️", "failed": "❌", "canceled": "🚫", "running": "⏳",
          "queued": "🕒"}
SHOWN = 15
"""Rows of the live view: unfinished and failed sub-runs first, then the rest, up to this many."""


def junit(conn: Redis | None, status: BatchStatus, read_run: Callable[[str], RunStatus] | None = None) -> str:
    """<testsuites> with one <testsuite> per file (named after it), one test case per step of its run (each run
    read from Redis, or by ``read_run``: a local batch's recorded folders)."""
    if read_run is None:
        assert conn is not None
        reader = conn

        def read_run(run_id: str) -> RunStatus:
            return StatusReader(reader, run_id).fetch(with_traceback=True)
    root = ET.Element("testsuites", name=f"ifcflow.{status.pipeline}")
    ET.SubElement(ET.SubElement(root, "properties"), "property", name="batch_id", value=status.batch_id)
    tests = failures = skipped = 0
    for run in status.runs:
        suite = junit_suite(read_run(run.run_id), name=f"ifcflow.{status.pipeline}[{run.label}]")
        tests += int(suite.get("tests", 0))
        failures += int(suite.get("failures", 0))
        skipped += int(suite.get("skipped", 0))
        root.append(suite)
    root.set("tests", str(tests))
    root.set("failures", str(failures))
    root.set("skipped", str(skipped))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _counts(status: BatchStatus) -> str:
    return ", ".join(f"{n} {state}" for state, n in status.counts.items() if n)


def markdown(status: BatchStatus) -> str:
    lines = [f"## ifcflow batch `{status.batch_id}`: {_ICONS.get(status.status.value, '')} {status.status.value}",
             "", f"Pipeline **{status.pipeline}**, {len(status.runs)} runs ({_counts(status)}); outputs in "
             f"`{status.out_dir}`.", "", "| file | run | status | failed step | time | error |",
             "|---|---|---|---|---|---|"]
    for run in status.runs:
        took = f"{run.duration:.1f} s" if run.duration is not None else ""
        error = (run.error or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {run.label} | `{run.run_id}` | {_ICONS.get(run.status.value, '')} {run.status.value} | "
                     f"{run.failed_step or ''} | {took} | {error} |")
    return "\n".join(lines) + "\n"


def html_report(status: BatchStatus) -> str:
    rows = "".join(
        f"<tr class='{r.status.value}'><td>{html.escape(r.label)}</td><td>{html.escape(r.run_id)}</td>"
        f"<td>{r.status.value}</td><td>{html.escape(r.failed_step or '')}</td>"
        f"<td>{'' if r.duration is None else f'{r.duration:.1f} s'}</td><td>{html.escape(r.error or '')}</td></tr>"
        for r in status.runs)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>ifcflow {html.escape(status.batch_id)}</title>"
            "<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
            "padding:4px 8px}.failed{background:#fdd}.canceled,.succeeded_with_failures{background:#ffd}"
            ".succeeded{background:#dfd}</style></head><body>"
            f"<h1>{html.escape(status.pipeline)}: {status.status.value}</h1><p>batch {html.escape(status.batch_id)}, "
            f"{len(status.runs)} runs ({html.escape(_counts(status))}), created {html.escape(status.created_at)}</p>"
            "<table><tr><th>file</th><th>run</th><th>status</th><th>failed step</th><th>time</th><th>error</th></tr>"
            f"{rows}</table></body></html>\n")


def render(conn: Redis | None, status: BatchStatus, fmt: str,
           read_run: Callable[[str], RunStatus] | None = None) -> str:
    if fmt == "junit":
        return junit(conn, status, read_run)
    if fmt == "markdown":
        return markdown(status)
    if fmt == "html":
        return html_report(status)
    raise ValueError(f"unknown report format {fmt!r}")


def table(status: BatchStatus, limit: int = SHOWN) -> Group:
    """The live view: the batch's state and counts, then unfinished and failed files first."""
    head = Text.assemble(("batch ", "dim"), (status.batch_id, "bold"), ("  ", ""),
                         (status.status.value, STYLES.get(status.status, "")),
                         (f"  {len(status.runs)} runs: {_counts(status)}", "dim"))
    order = {RunState.RUNNING: 0, RunState.FAILED: 1, RunState.CANCELED: 2, RunState.SUCCEEDED_WITH_FAILURES: 3,
             RunState.QUEUED: 4, RunState.SUCCEEDED: 5}
    rows = sorted(status.runs, key=lambda r: order.get(r.status, 9))
    grid = Table(box=None, pad_edge=False, show_edge=False, header_style="dim")
    for column in ("file", "run", "status", "failed step", "time", "detail"):
        grid.add_column(column, no_wrap=column != "detail")
    for run in rows[:limit]:
        done = sum(1 for s in run.steps.values() if s.terminal)
        grid.add_row(run.label, run.run_id, Text(run.status.value, STYLES.get(run.status, "")), run.failed_step or "",
                     f"{run.duration:.1f}s" if run.duration is not None else "",
                     run.error or f"{done}/{len(run.steps)} steps ended")
    more = [Text(f"... and {len(rows) - limit} more (ifcflow status {status.batch_id})", "dim")] \
        if len(rows) > limit else []
    return Group(head, grid, *more)


def lines(status: BatchStatus) -> list[str]:
    """The batch as whole lines (a log or a pipe: no table cut to 80 columns hides an error)."""
    out = [summary(status)]
    for run in status.runs:
        took = f" in {run.duration:.1f}s" if run.duration is not None and run.status.terminal else ""
        why = f": {run.failed_step}: {run.error}" if run.failed_step else ""
        out.append(f"{run.label} [{run.run_id}] {run.status.value}{took}{why}")
    return out


def summary(status: BatchStatus) -> str:
    return (f"batch {status.batch_id} {status.status.value}: {len(status.runs)} runs ({_counts(status)}); "
            f"outputs in {status.out_dir}")
