"""Showing a run in the terminal: a live rich table on a TTY, one line per change elsewhere."""

from __future__ import annotations

import json
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..engine.states import RunState, StepState
from ..engine.status import RunStatus
from ..pipeline import durations

STYLES = {
    StepState.PENDING: "dim", StepState.QUEUED: "cyan", StepState.RUNNING: "bold blue",
    StepState.SUCCEEDED: "green", StepState.CACHED: "green", StepState.FAILED: "bold red", StepState.SKIPPED: "yellow",
    StepState.CANCELED: "magenta",
    RunState.QUEUED: "cyan", RunState.RUNNING: "bold blue", RunState.SUCCEEDED: "bold green",
    RunState.SUCCEEDED_WITH_FAILURES: "bold yellow", RunState.FAILED: "bold red", RunState.CANCELED: "magenta",
}


def _bar(percent: float | None, width: int = 12) -> str:
    if percent is None:
        return ""
    filled = int(round(width * min(max(percent, 0.0), 100.0) / 100))
    return "█" * filled + "░" * (width - filled) + f" {percent:5.1f}%"


def table(status: RunStatus) -> Group:
    head = Text.assemble(("run ", "dim"), (status.run_id, "bold"), ("  ", ""),
                         (status.status.value, STYLES.get(status.status, "")))
    grid = Table(box=None, pad_edge=False, show_edge=False, header_style="dim")
    for column in ("step", "service", "status", "progress", "time", "detail"):
        grid.add_column(column, no_wrap=column != "detail")
    for step_id, step in status.steps.items():
        progress = step.progress or {}
        attempt = f" (try {step.attempt}/{step.attempts})" if step.attempts > 1 and step.attempt else ""
        detail = step.error or step.detail or result_message(step) or progress.get("message") or ""
        grid.add_row(step_id, step.service, Text(step.status.value + attempt, STYLES.get(step.status, "")),
                     _bar(progress.get("percent")) if step.status == StepState.RUNNING else "",
                     f"{step.duration:.1f}s" if step.duration is not None else "", detail)
    return Group(head, grid)


def cached_from(step: Any) -> str:
    """"cached from run X" for a step served from the cache, else ""."""
    origin = (step.result or {}).get("cached_from") if step.status == StepState.CACHED else None
    return f"cached from run {origin['run_id']}" if origin else ""


def result_message(step: Any) -> str:
    """A finished step's own summary ("3 clashes in 1 clash set", "2 of 3 specifications passed"); for a step
    served from the cache, "cached from run X: <its summary>"."""
    result = step.result or {}
    message = str(result.get("message") or "") if step.status in (StepState.SUCCEEDED, StepState.CACHED) else ""
    cached = cached_from(step)
    return f"{cached}: {message}" if cached and message else cached or message


def line(step_id: str, step: Any) -> str:
    """One plain line for a step: ``clash [ifcclash] succeeded in 1.20s: 3 clashes in 1 clash set``."""
    took = f" in {step.duration:.2f}s" if step.duration is not None and step.status.terminal else ""
    detail = step.error or step.detail or result_message(step)
    return f"{step_id} [{step.service}] {step.status.value}{took}{f': {detail}' if detail else ''}"


class View:
    """Call with each new status; renders live on a terminal, or prints changes line by line (CI logs), with a
    progress line for each running step at least every ``heartbeat`` seconds. Lines are never wrapped."""

    def __init__(self, console: Console | None = None, quiet: bool = False, heartbeat: float = 30.0):
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self.heartbeat = heartbeat
        self.live: Live | None = None
        self.seen: dict[str, Any] = {}
        self.said: dict[str, float] = {}

    def __enter__(self) -> View:
        if self.console.is_terminal and not self.quiet:
            self.live = Live(console=self.console, refresh_per_second=8, transient=False)
            self.live.__enter__()
        return self

    def __call__(self, status: RunStatus) -> None:
        if self.quiet:
            return
        if self.live is not None:
            self.live.update(table(status))
            return
        now = time.monotonic()
        for step_id, step in status.steps.items():
            key = (step.status, step.attempt, step.detail)
            if self.seen.get(step_id) != key:
                self.seen[step_id] = key
                self.said[step_id] = now
                self.console.print(line(step_id, step), highlight=False, soft_wrap=True, markup=False)
            elif step.status == StepState.RUNNING and now - self.said.get(step_id, now) >= self.heartbeat:
                self.said[step_id] = now
                progress = step.progress or {}
                percent = f" {progress['percent']:.0f}%" if progress.get("percent") is not None else ""
                message = f": {progress['message']}" if progress.get("message") else ""
                took = f" for {step.duration:.0f}s" if step.duration is not None else ""
                self.console.print(f"{step_id} [{step.service}] running{took}{percent}{message}", highlight=False,
                                   soft_wrap=True, markup=False)

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)


def summary(status: RunStatus) -> str:
    counts = ", ".join(f"{n} {state}" for state, n in status.counts.items() if n)
    return f"run {status.run_id} {status.status.value} ({counts}); outputs in {status.out_dir}"


def describe_plan(plan: Any) -> str:
    """The text form of ``ifcflow plan``."""
    lines = [f"run {plan.run_id}: pipeline {plan.pipeline} ({len(plan.steps)} steps), outputs in {plan.out_dir}"]
    for step in plan.steps:
        needs = f" after {', '.join(step.needs)}" if step.needs else ""
        if step.after:
            needs += f"{',' if needs else ''} after {', '.join(step.after)} ends (it makes the shared geometry)"
        cond = f" if {step.condition}" if step.condition != "success()" else ""
        lines.append(f"  {step.id}: {step.service} on queue {step.queue}{needs}{cond}, "
                     f"timeout {durations.format(step.timeout)}, job {step.job_id}")
        for name, value in step.options.items():
            if value is not None:
                lines.append(f"      {name}: {json.dumps(value, ensure_ascii=False)}")
        for name, path in step.outputs.items():
            lines.append(f"      -> {name}: {path}")
    return "\n".join(lines)


def mermaid(plan: Any) -> str:
    lines = ["flowchart TD"]
    for step in plan.steps:
        cond = f"<br/>if {step.condition}" if step.condition != "success()" else ""
        lines.append(f'  {step.id}["{step.id}<br/>{step.service}{cond}"]')
        arrow = f'-->|"{step.condition}"|' if step.condition != "success()" else "-->"
        lines.extend(f"  {need} {arrow} {step.id}" for need in step.needs)
        lines.extend(f"  {first} -.->|after| {step.id}" for first in step.after)
    return "\n".join(lines)
