"""The ``ifcflow`` command: thin typed commands over the library. Exit codes: 0 succeeded, 1 failed or
canceled or timed out, 2 bad input or unreachable Redis, 3 succeeded with failures (``on_failure: continue``)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from redis import Redis
from rich.console import Console

from . import connection, document, live, store
from .errors import IfcflowError
from .plan import plan as make_plan
from .states import RunState
from .status import RunStatus, StatusReader, wait

EXIT = {RunState.SUCCEEDED: 0, RunState.SUCCEEDED_WITH_FAILURES: 3, RunState.FAILED: 1, RunState.CANCELED: 1}
redis_option = click.option("--redis", "redis_url", metavar="URL", envvar=connection.ENV,
                            help="Redis server (default: $IFCFLOW_REDIS_URL; `run` starts a private one if unset)")
err = Console(stderr=True, highlight=False)


def _inputs(values: tuple[str, ...]) -> dict[str, str]:
    pairs = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{value!r}: write NAME=PATH", param_hint="-i/--input")
        pairs[name] = path
    return pairs


def _redis(url: str | None) -> Redis:
    chosen = connection.configured_url(url)
    if not chosen:
        raise IfcflowError("no Redis configured: pass --redis URL or set IFCFLOW_REDIS_URL")
    return connection.connect(chosen)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ifcflow")
def cli() -> None:
    """Run pipelines of IfcOpenShell tools as python-rq job DAGs."""


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-i", "--input", "inputs", multiple=True, metavar="NAME=PATH", help="override a pipeline input")
@redis_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("ifcflow-runs"),
              show_default=True, help="folder for run outputs (<out>/<run_id>/<step>/)")
@click.option("--detach", is_flag=True, help="enqueue, print the run id and return at once")
@click.option("--json", "as_json", is_flag=True, help="print the final status document as JSON")
@click.option("--timeout", type=float, default=None, help="stop waiting after this many seconds (exit 1)")
@click.option("--workers", type=int, default=None, help="local workers when no Redis is configured [cores]")
@click.option("--ttl", type=int, default=store.DEFAULT_TTL, show_default=True, help="keep results this many seconds")
@click.option("--report", "reports", multiple=True, metavar="FORMAT:PATH",
              help="also write a report when the run ends, e.g. junit:report.xml, markdown:summary.md, html:r.html")
def run(file: Path, inputs: tuple[str, ...], redis_url: str | None, out: Path, detach: bool, as_json: bool,
        timeout: float | None, workers: int | None, ttl: int, reports: tuple[str, ...]) -> None:
    """Check FILE, plan it, enqueue it and (by default) wait for it with a live view."""
    from . import enqueue

    report_specs = _report_specs(reports)
    doc = document.load(file, _inputs(inputs))
    planned = make_plan(doc, out_root=out)
    url = connection.configured_url(redis_url)
    if url is None and detach:
        raise IfcflowError("--detach needs a shared Redis (--redis URL or IFCFLOW_REDIS_URL): a private one "
                           "ends with the command")
    services = sorted({step.service for step in planned.steps})
    workers = workers or min(len(planned.steps), os.cpu_count() or 1)
    with _cluster(url, workers, Path(planned.out_dir) / "workers.log", services) as (conn, health):
        enqueue.submit(conn, planned, ttl=ttl)
        if detach:
            click.echo(f"enqueued {len(planned.steps)} steps; follow with: ifcflow status {planned.run_id} --watch")
            click.echo(planned.run_id)
            return
        status = _follow(StatusReader(conn, planned.run_id, planned), timeout, quiet=as_json, health=health)
    _write_reports(status, report_specs)
    _finish(status, as_json)


def _report_specs(reports: tuple[str, ...]) -> list[tuple[str, Path]]:
    from .report import FORMATS

    specs = []
    for spec in reports:
        fmt, sep, path = spec.partition(":")
        if not sep or fmt not in FORMATS or not path:
            raise click.BadParameter(f"{spec!r}: write FORMAT:PATH with FORMAT one of {', '.join(FORMATS)}",
                                     param_hint="--report")
        specs.append((fmt, Path(path)))
    return specs


def _write_reports(status: RunStatus, specs: list[tuple[str, Path]]) -> None:
    from .report import render

    for fmt, path in specs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(status, fmt), encoding="utf-8")


@contextmanager
def _cluster(url: str | None, workers: int, log: Path, services: list[str]) -> Iterator[tuple[Redis, Callable[[], None]]]:
    """The configured Redis, or a private Redis with local workers; with a health check to call while waiting."""
    if url is not None:
        yield connection.connect(url), lambda: None
        return
    from .local import LocalCluster

    with LocalCluster(workers, log_file=log, preload=services) as cluster:
        yield connection.connect(cluster.url), cluster.check
        cluster.finished()


def _follow(reader: StatusReader, timeout: float | None, quiet: bool,
            health: Callable[[], None] = lambda: None) -> RunStatus:
    with live.View(err, quiet=quiet) as view:
        def update(status: RunStatus) -> None:
            view(status)
            if not status.terminal:
                health()

        return wait(reader, timeout=timeout, on_update=update)


def _finish(status: RunStatus, as_json: bool) -> None:
    if as_json:
        click.echo(status.model_dump_json(indent=2))
    else:
        err.print(live.summary(status))
    sys.exit(EXIT.get(status.status, 1))


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("-i", "--input", "inputs", multiple=True, metavar="NAME=PATH")
def validate(files: tuple[Path, ...], inputs: tuple[str, ...]) -> None:
    """Check pipeline files (syntax, options, references, cycles, input files); exit 0 or 2."""
    bad = 0
    for file in files:
        try:
            make_plan(document.load(file, _inputs(inputs)))  # planning is pure; it checks output paths too
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
    planned = make_plan(document.load(file, _inputs(inputs)), out_root=out)
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
def status(run_id: str, redis_url: str | None, as_json: bool, watch: bool, with_traceback: bool) -> None:
    """Show a run's status: every step, and the whole run."""
    reader = StatusReader(_redis(redis_url), run_id)
    result = _follow(reader, None, quiet=as_json) if watch else reader.read(with_traceback)
    if as_json:
        click.echo(result.model_dump_json(indent=2, exclude={"steps": {"__all__": {"traceback"}}}
                                          if not with_traceback else None))
    else:
        err.print(live.table(result))
    sys.exit(EXIT.get(result.status, 0) if result.terminal else 0)


@cli.command()
@click.argument("run_id")
@redis_option
@click.option("--format", "fmt", type=click.Choice(["junit", "markdown", "html"]), default="markdown",
              show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="write to a file")
def report(run_id: str, redis_url: str | None, fmt: str, output: Path | None) -> None:
    """Write a run's report as JUnit XML (for CI), Markdown (for pull requests) or HTML."""
    from .report import render

    text = render(StatusReader(_redis(redis_url), run_id).read(with_traceback=True), fmt)
    if output:
        output.write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)


@cli.command()
@redis_option
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def runs(redis_url: str | None, limit: int, as_json: bool) -> None:
    """List recent runs, newest first."""
    conn = _redis(redis_url)
    rows = []
    for run_id in store.recent_runs(conn, limit):
        try:
            s = StatusReader(conn, run_id).read()
        except IfcflowError:  # expired with its results
            conn.zrem(store.RUNS, run_id)
            continue
        rows.append({"run_id": run_id, "pipeline": s.pipeline, "status": s.status.value, "created_at": s.created_at,
                     "steps": len(s.steps)})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    for row in rows if not as_json else []:
        click.echo(f"{row['run_id']}  {row['status']:<24} {row['steps']:>4} steps  {row['created_at']}")


@cli.command()
@click.argument("queues", nargs=-1)
@redis_option
@click.option("--burst", is_flag=True, help="stop when the queues are empty")
@click.option("--name", default=None, help="worker name (default: RQ's)")
@click.option("--quiet", is_flag=True, help="log warnings only")
@click.option("--preload", default="", metavar="SERVICES", help="comma-separated services to import up front [all]")
def worker(queues: tuple[str, ...], redis_url: str | None, burst: bool, name: str | None, quiet: bool,
           preload: str) -> None:
    """Run an RQ worker for QUEUES (default: all ifcflow queues), with ifcopenshell preloaded."""
    from .worker import run_worker

    url = connection.configured_url(redis_url)
    if not url:
        raise IfcflowError("a worker needs a Redis: pass --redis URL or set IFCFLOW_REDIS_URL")
    connection.connect(url)
    run_worker(url, queues, burst=burst, name=name, logging_level="WARNING" if quiet else "INFO",
               services=[s for s in preload.split(",") if s])


@cli.command()
@click.argument("run_id")
@redis_option
def cancel(run_id: str, redis_url: str | None) -> None:
    """Stop a run: running steps are stopped, waiting ones canceled, partial outputs removed."""
    from .control import cancel as do_cancel

    steps = do_cancel(_redis(redis_url), run_id)
    click.echo(f"canceled {len(steps)} step(s) of run {run_id}" + (f": {', '.join(steps)}" if steps else ""))


@cli.command()
@click.argument("run_id")
@redis_option
@click.option("--step", default=None, help="re-run this step (and what depends on it) instead of every failed one")
@click.option("--wait/--no-wait", default=False, help="follow the run until it ends")
def retry(run_id: str, redis_url: str | None, step: str | None, wait: bool) -> None:
    """Re-run a run's failed, skipped and canceled steps in the same run, keeping what succeeded."""
    from .control import retry as do_retry

    conn = _redis(redis_url)
    steps = do_retry(conn, run_id, step)
    click.echo(f"re-enqueued {len(steps)} step(s): {', '.join(steps)}" if steps
               else "nothing to retry: no failed, skipped or canceled step, or they are still running")
    if wait:
        _finish(_follow(StatusReader(conn, run_id), None, quiet=False), as_json=False)


@cli.command()
@redis_option
@click.option("--empty", "to_empty", metavar="NAME", default=None, help="remove every queued job of queue NAME")
@click.option("--json", "as_json", is_flag=True)
def queues(redis_url: str | None, to_empty: str | None, as_json: bool) -> None:
    """Queue depths, workers per queue and failed counts (or empty one queue)."""
    from . import maintenance

    conn = _redis(redis_url)
    if to_empty:
        click.echo(f"removed {maintenance.empty(conn, to_empty)} queued job(s) from {to_empty}")
        return
    rows = maintenance.queues(conn)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'queue':<12}{'queued':>8}{'started':>9}{'deferred':>10}{'scheduled':>11}{'failed':>8}{'workers':>9}")
    for r in rows:
        click.echo(f"{r['queue']:<12}{r['queued']:>8}{r['started']:>9}{r['deferred']:>10}{r['scheduled']:>11}"
                   f"{r['failed']:>8}{r['workers']:>9}")


@cli.command()
@redis_option
@click.option("--json", "as_json", is_flag=True)
def workers(redis_url: str | None, as_json: bool) -> None:
    """Workers connected to this Redis: state, queues, current job, last heartbeat."""
    from . import maintenance

    rows = maintenance.workers(_redis(redis_url))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    for r in rows if not as_json else []:
        click.echo(f"{r['name']:<40} {r['state']:<10} {','.join(r['queues']):<30} {r['current_job'] or '-'}")
    if not rows and not as_json:
        click.echo("no workers; start one with: ifcflow worker --redis URL")


@cli.command()
@redis_option
@click.option("--older-than", "older_than", default="7d", show_default=True, help="age, e.g. 12h, 7d")
@click.option("--dry-run", is_flag=True)
def prune(redis_url: str | None, older_than: str, dry_run: bool) -> None:
    """Delete finished runs (records, jobs, results) older than --older-than."""
    from . import durations, maintenance

    try:
        seconds = durations.parse(older_than)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from None
    pruned = maintenance.prune(_redis(redis_url), seconds, dry_run=dry_run)
    click.echo(f"{'would prune' if dry_run else 'pruned'} {len(pruned)} run(s)" + "".join(f"\n  {r}" for r in pruned))


@cli.command()
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write to this file instead of stdout")
def schema(output: Path | None) -> None:
    """Print the JSON Schema of pipeline files (checked in as schemas/pipeline.schema.json)."""
    from .schema import render

    text = render()
    if output:
        output.write_text(text)
    else:
        click.echo(text, nl=False)


@cli.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
def demo(folder: Path) -> None:
    """Write the example models and IDS used by the committed pipelines into FOLDER."""
    from .demo import write_demo

    folder.mkdir(parents=True, exist_ok=True)
    for name, path in write_demo(folder).items():
        click.echo(f"{name}: {path}")


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except IfcflowError as exc:
        click.echo(f"error: {exc}" if "\n" not in str(exc) else str(exc), err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted; local workers and the private Redis were stopped")
        sys.exit(130)
