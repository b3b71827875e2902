"""Reports of a run's status document: JUnit XML (for CI systems), Markdown (for pull requests) and HTML."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from xml.etree import ElementTree as ET

from ..engine.states import StepState
from ..engine.status import RunStatus
from .live import cached_from

FORMATS = ("junit", "markdown", "html")
_ICONS = {"succeeded": "✅", "cached": "♻️", "failed": "❌", "skipped": "⏭️", "canceled": "🚫", "running": "⏳",
          "queued": "🕒", "pending": "🕒"}


def junit(status: RunStatus) -> str:
    """One test suite per run, one test case per step; skipped and canceled steps are <skipped/>."""
    suite = junit_suite(status)
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def junit_suite(status: RunStatus, name: str | None = None) -> ET.Element:
    """The <testsuite> of a run (named ``ifcflow.<pipeline>`` unless ``name``)."""
    failures = sum(1 for s in status.steps.values() if s.status == StepState.FAILED)
    skipped = sum(1 for s in status.steps.values() if s.status in (StepState.SKIPPED, StepState.CANCELED))
    total_time = sum(s.duration or 0.0 for s in status.steps.values())
    suite = ET.Element("testsuite", name=name or f"ifcflow.{status.pipeline}", tests=str(len(status.steps)),
                       failures=str(failures), errors="0", skipped=str(skipped), time=f"{total_time:.3f}",
                       timestamp=status.created_at)
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="run_id", value=status.run_id)
    ET.SubElement(props, "property", name="status", value=status.status.value)
    for step_id, step in status.steps.items():
        case = ET.SubElement(suite, "testcase", classname=f"{status.pipeline}.{step.service}", name=step_id,
                             time=f"{step.duration or 0.0:.3f}")
        if step.status == StepState.FAILED:
            failure = ET.SubElement(case, "failure", message=step.error or "failed", type=step.service)
            failure.text = step.traceback or "\n".join(step.errors) or step.error or ""
        elif step.status in (StepState.SKIPPED, StepState.CANCELED):
            ET.SubElement(case, "skipped", message=step.error or step.status.value)
        elif not step.status.terminal:
            ET.SubElement(case, "skipped", message=f"not finished: {step.status.value}")
        if step.result and step.result.get("message"):
            ET.SubElement(case, "system-out").text = (cached_from(step) + ": " if cached_from(step) else "") + \
                str(step.result["message"])
    return suite


def _detail(step: object) -> str:
    error = getattr(step, "error", None)
    result = getattr(step, "result", None) or {}
    cached = cached_from(step)
    return str(error or (f"{cached}: {result.get('message', '')}" if cached else result.get("message")) or "")


def markdown(status: RunStatus) -> str:
    counts = ", ".join(f"{n} {state}" for state, n in status.counts.items() if n)
    lines = [f"## ifcflow run `{status.run_id}`: {_ICONS.get(status.status.value, '')} {status.status.value}", "",
             f"Pipeline **{status.pipeline}** ({counts}); outputs in `{status.out_dir}`.", "",
             "| step | service | status | time | detail |", "|---|---|---|---|---|"]
    for step_id, step in status.steps.items():
        detail = _detail(step).replace("|", "\\|").replace("\n", " ")
        took = f"{step.duration:.1f} s" if step.duration is not None else ""
        lines.append(f"| {step_id} | {step.service} | {_ICONS.get(step.status.value, '')} {step.status.value} "
                     f"| {took} | {detail} |")
    return "\n".join(lines) + "\n"


OutputUrl = Callable[[str, str], str]
"""``(step id, output name) -> URL`` of an output, for reports served over HTTP (default: a file:// URI)."""


def html_report(status: RunStatus, output_url: OutputUrl | None = None) -> str:
    rows = []
    for step_id, step in status.steps.items():
        outputs = "<br>".join(_link(p, status.out_dir, output_url(step_id, name) if output_url else None)
                              for name, p in step.outputs.items() if Path(p).is_file())
        took = f"{step.duration:.1f} s" if step.duration is not None else ""
        rows.append(f"<tr class='{step.status.value}'><td>{html.escape(step_id)}</td><td>{step.service}</td>"
                    f"<td>{step.status.value}</td><td>{took}</td><td>{html.escape(_detail(step))}</td>"
                    f"<td>{outputs}</td></tr>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>ifcflow {html.escape(status.run_id)}</title>"
            "<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
            "padding:4px 8px;vertical-align:top}.failed{background:#fdd}.skipped,.canceled{background:#ffd}"
            ".succeeded,.cached{background:#dfd}</style></head><body>"
            f"<h1>{html.escape(status.pipeline)}: {status.status.value}</h1><p>run {html.escape(status.run_id)}, "
            f"created {html.escape(status.created_at)}</p><table><tr><th>step</th><th>service</th><th>status</th>"
            f"<th>time</th><th>detail</th><th>outputs</th></tr>{''.join(rows)}</table></body></html>\n")


def _link(path: str, out_dir: str, href: str | None = None) -> str:
    """An output as a link (``href``, else its file URI); its text is the path inside the run folder when it is
    there, else the file name when ``href`` is given (never a server path over HTTP)."""
    target = Path(path)
    try:
        text = str(target.relative_to(out_dir))
    except ValueError:
        text = target.name if href else path
    return f"<a href='{html.escape(href or target.resolve().as_uri())}'>{html.escape(text)}</a>"


def render(status: RunStatus, fmt: str, output_url: OutputUrl | None = None) -> str:
    """The report in ``fmt``; ``output_url`` links outputs to URLs (over HTTP) instead of file:// URIs."""
    if fmt == "junit":
        return junit(status)
    if fmt == "markdown":
        return markdown(status)
    if fmt == "html":
        return html_report(status, output_url)
    raise ValueError(f"unknown report format {fmt!r}; use one of {', '.join(FORMATS)}")
