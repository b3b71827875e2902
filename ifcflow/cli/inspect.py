"""Commands that look at pipelines and runs: validate, plan, status, report, runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console

from ..batches import batch
from ..client import Run
from ..engine import connection, runfolder, store
from ..engine.status import RunStatus, StatusReader
from ..errors import IfcflowError
from ..pipeline import document
from ..pipeline.plan import plan as make_plan
from ..views import live
from . import batch as batch_cli
from .app import EXIT, cli, err, follow, parse_inputs, redis_from, redis_option

out_option = click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=runfolder.DEFAULT_ROOT,
                          show_default=True, help="run folders to read when no Redis is configured")


def recorded(redis_url: str | None, out: Path, run_id: str, with_traceback: bool = False) -> RunStatus:
    """A run's status: from Redis when one is configured, else from its run folder's status.json."""
    return Run(run_id, redis_url, out=out).status(with_traceback)


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("-i", "--input", "inputs", multiple=True, metavar="NAME=PATH")
def validate(files: tuple[Path, ...], inputs: tuple[str, ...]) -> None:
    """Check pipeline files (syntax, options, references, cycles, input files); exit 0 or 2."""
    bad = 0
    for file in files:
        try:
            make_plan(document.load(file, parse_inputs(inputs)))  # planning is pure; it checks output paths too
            click.echo(f"{file}: ok")
        except IfcflowError as exc:
            bad += 1
            click.echo(str(exc), err=True)
    sys.exit(2 if bad else 0)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-i", "--input", "inputs", multiple=True, metavar="NAME=PATH")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "mermaid"]), default="text", show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("ifcflow-runs"))
def plan(file: Path, inputs: tuple[str, ...], fmt: str, out: Path) -> None:
    """Show the DAG that FILE expands to, without enqueueing anything."""
    planned = make_plan(document.load(file, parse_inputs(inputs)), out_root=out)
    if fmt == "json":
        click.echo(planned.model_dump_json(indent=2))
    else:
        click.echo(live.mermaid(planned) if fmt == "mermaid" else live.describe_plan(planned))


@cli.command()
@click.argument("run_id")
@redis_option
@click.option("--json", "as_json", is_flag=True)
@click.option("--watch", is_flag=True, help="follow the run until it ends")
@click.option("--traceback", "with_traceback", is_flag=True, help="include failed steps' tracebacks (JSON)")
@out_option
def status(run_id: str, redis_url: str | None, as_json: bool, watch: bool, with_traceback: bool, out: Path) -> None:
    """Show a run's status: every step, and the whole run (from its run folder when no Redis is configured); or a
    batch's: a row per file."""
    if connection.configured_url(redis_url) is not None and batch.exists(redis_from(redis_url), run_id):
        return batch_cli.show(redis_from(redis_url), run_id, as_json, watch)
    if connection.configured_url(redis_url) is None and (kept := batch_cli.recorded(out, run_id)) is not None:
        return batch_cli.show(None, run_id, as_json, False, kept)
    if watch and connection.configured_url(redis_url) is not None:
        result = follow(StatusReader(redis_from(redis_url), run_id), None, quiet=as_json)
    else:
        result = recorded(redis_url, out, run_id, with_traceback)
    if as_json:
        click.echo(result.model_dump_json(indent=2, exclude={"steps": {"__all__": {"traceback"}}}
                                          if not with_traceback else None))
    else:
        wide = err if err.is_terminal else Console(stderr=True, highlight=False, width=1000)  # a log: whole lines
        wide.print(live.table(result))
    sys.exit(EXIT.get(result.status, 0) if result.terminal else 0)


@cli.command()
@click.argument("run_id")
@redis_option
@click.option("--format", "fmt", type=click.Choice(["junit", "markdown", "html"]), default="markdown",
              show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="write to a file")
@out_option
def report(run_id: str, redis_url: str | None, fmt: str, output: Path | None, out: Path) -> None:
    """Write a run's (or a batch's) report as JUnit XML (for CI), Markdown (for pull requests) or HTML."""
    if connection.configured_url(redis_url) is not None and batch.exists(redis_from(redis_url), run_id):
        return batch_cli.report(redis_from(redis_url), run_id, fmt, output)
    if connection.configured_url(redis_url) is None and (kept := batch_cli.recorded(out, run_id)) is not None:
        return batch_cli.report(None, run_id, fmt, output, kept=kept, out=out)
    text = Run(run_id, redis_url, out=out).report(fmt)
    if output:
        output.write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)


@cli.command()
@redis_option
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@out_option
def runs(redis_url: str | None, limit: int, as_json: bool, out: Path) -> None:
    """List recent runs, newest first (the run folders' records when no Redis is configured)."""
    found = runfolder.recent(out, limit) if connection.configured_url(redis_url) is None else _redis_runs(redis_url, limit)
    rows = [{"run_id": s.run_id, "pipeline": s.pipeline, "status": s.status.value, "created_at": s.created_at,
             "steps": len(s.steps)} for s in found]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    for row in rows if not as_json else []:
        click.echo(f"{row['run_id']}  {row['status']:<24} {row['steps']:>4} steps  {row['created_at']}")
    if not rows and not as_json:
        click.echo(f"no runs in {out}" if connection.configured_url(redis_url) is None else "no runs")


def _redis_runs(redis_url: str | None, limit: int) -> list[RunStatus]:
    conn = redis_from(redis_url)
    found = []
    for run_id in store.recent_runs(conn, limit):
        try:
            found.append(StatusReader(conn, run_id).read())
        except IfcflowError:  # expired with its results (``ifcflow prune`` removes it from the index)
            continue
    return found
