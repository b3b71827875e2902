"""The terminal view: results reach the terminal, CI logs get progress lines and unwrapped paths."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from ifcflow.engine.states import RunState, StepState
from ifcflow.engine.status import RunStatus, StepStatus
from ifcflow.views import live

LONG = "/builds/group/project/" + "very-long-folder-name/" * 6 + "clashes.json"


def step(state: StepState, **extra: Any) -> StepStatus:
    return StepStatus(status=state, service="ifcclash", queue="ifcclash", job_id="j", **extra)


def run(state: RunState, **steps: StepStatus) -> RunStatus:
    return RunStatus(run_id="r1", pipeline="p", file="p.yaml", status=state, created_at="2026-01-01T00:00:00Z",
                     out_dir=LONG.rsplit("/", 1)[0], counts={}, steps=steps)


def plain_console(width: int = 40) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=width, force_terminal=False, highlight=False), out


DONE = step(StepState.SUCCEEDED, duration=1.5, result={"message": "3 clashes in 1 clash set", "outputs": {}},
            outputs={"report": LONG})


def test_the_final_table_shows_each_steps_result_message() -> None:
    console, out = plain_console(width=200)
    console.print(live.table(run(RunState.SUCCEEDED, clash=DONE)))
    assert "3 clashes in 1 clash set" in out.getvalue()


def test_lines_without_a_tty_carry_results_and_are_never_wrapped() -> None:
    console, out = plain_console(width=40)
    failed = step(StepState.FAILED, duration=0.2, error=f"1 of 2 specifications failed: 'fire' (required); "
                                                        f"report: {LONG}")
    with live.View(console) as view:
        view(run(RunState.FAILED, clash=DONE, gate=failed))
    lines = out.getvalue().splitlines()
    assert lines[0] == "clash [ifcclash] succeeded in 1.50s: 3 clashes in 1 clash set"
    assert lines[1].startswith("gate [ifcclash] failed in 0.20s: 1 of 2 specifications failed: 'fire'")
    assert lines[1].endswith(f"report: {LONG}") and len(lines) == 2


def test_a_running_step_gets_a_progress_line_every_heartbeat_without_a_tty() -> None:
    console, out = plain_console()
    running = step(StepState.RUNNING, duration=31.0, progress={"percent": 40.0, "message": "clash set all"})
    with live.View(console, heartbeat=0.2) as view:
        view(run(RunState.RUNNING, clash=running))
        view(run(RunState.RUNNING, clash=running))  # nothing changed, heartbeat not due: no line
        time.sleep(0.25)
        view(run(RunState.RUNNING, clash=running))
    assert out.getvalue().splitlines() == ["clash [ifcclash] running", "clash [ifcclash] running for 31s 40%: clash set all"]


def test_the_default_heartbeat_is_at_most_30_seconds() -> None:
    assert live.View(plain_console()[0]).heartbeat <= 30


def test_plan_text_shows_resolved_options_and_mermaid_shows_conditions(tmp_path: Path) -> None:
    from ifcflow.pipeline import document
    from ifcflow.pipeline.plan import plan

    from .factories import tiny_model, write_pipeline

    tiny_model(tmp_path / "arch.ifc")
    planned = plan(document.load(write_pipeline(tmp_path, """\
        version: 1
        name: x
        inputs: {arch: arch.ifc}
        steps:
          a: {uses: ifcpatch, with: {ifc: "${{ inputs.arch }}", recipe: Optimise}}
          b: {uses: ifcpatch, needs: a, if: failure(), with: {ifc: arch.ifc, recipe: ExtractElements, arguments: [IfcWall]}}
        """)), out_root=tmp_path / "runs")
    text = live.describe_plan(planned)
    assert f'      ifc: "{tmp_path / "arch.ifc"}"' in text and '      recipe: "ExtractElements"' in text
    assert '      arguments: ["IfcWall"]' in text
    chart = live.mermaid(planned)
    assert '  a -->|"failure()"| b' in chart and 'b["b<br/>ifcpatch<br/>if failure()"]' in chart
