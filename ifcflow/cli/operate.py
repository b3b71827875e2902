"""Operator commands: worker, cancel, retry, queues, workers, prune."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..batches import batch
from ..client import Run
from ..engine import connection, runfolder
from ..engine.status import StatusReader
from ..errors import IfcflowError
from . import batch as batch_cli
from .app import SECONDS, WHOLE_SECONDS, cli, finish, follow, record, redis_from, redis_option, storage_option


@cli.command()
@click.argument("queues", nargs=-1)
@redis_option
@click.option("--burst", is_flag=True, help="stop when the queues are empty")
@click.option("--name", default=None, help="worker name (default: RQ's)")
@click.option("--quiet", is_flag=True, help="log warnings only")
@click.option("--preload", default="", metavar="SERVICES", help="comma-separated services to import up front [all]")
@storage_option
def worker(queues: tuple[str, ...], redis_url: str | None, burst: bool, name: str | None, quiet: bool,
           preload: str, storage_url: str | None) -> None:
    """Run an RQ worker for QUEUES (default: all ifcflow queues), with ifcopenshell preloaded."""
    from ..engine import storage
    from ..operations.worker import run_worker

    storage.select(storage_url)  # an unreachable store or wrong credentials: one line, exit 2

    url = connection.configured_url(redis_url)
    if not url:
        raise IfcflowError("a worker needs a Redis: pass --redis URL or set IFCFLOW_REDIS_URL")
    connection.connect(url)
    run_worker(url, queues, burst=burst, name=name, logging_level="WARNING" if quiet else "INFO",
               services=[s for s in preload.split(",") if s])


@cli.command("reconcile")
@click.argument("run_ids", nargs=-1)
@redis_option
@click.option("--loop", "forever", is_flag=True, help="keep sweeping unfinished runs until stopped (Ctrl-C, SIGTERM)")
@click.option("--interval", type=SECONDS, default=5.0, show_default=True,
              help="time between sweeps with --loop (seconds, or 30s, 1m)")
def reconcile_command(run_ids: tuple[str, ...], redis_url: str | None, forever: bool, interval: float) -> None:
    """Repair runs now: skip what can no longer run, fail dead workers' steps, end finished runs.

    ``ifcflow worker`` does this by itself; deployments with only plain ``rq worker``s run ``ifcflow reconcile
    --loop`` once beside them. Without RUN_IDS, every unfinished run is visited.
    """
    import signal
    import threading

    from ..engine import reconcile

    conn = redis_from(redis_url)
    if not forever:
        for run_id in run_ids:
            if reconcile.run(conn, run_id, wait=30.0) is None:
                raise IfcflowError(f"run {run_id} is not on this Redis, or another process kept it busy; try again")
        count = len(run_ids) if run_ids else reconcile.sweep(conn)
        click.echo(f"reconciled {count} run(s)")
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        reconcile.loop(conn, interval, stop)
    except KeyboardInterrupt:
        stop.set()


@cli.command()
@click.argument("run_id")
@redis_option
def cancel(run_id: str, redis_url: str | None) -> None:
    """Stop a run (or every run of a batch): running steps are stopped, waiting ones canceled, partial outputs
    removed."""
    conn = redis_from(redis_url)
    if batch.exists(conn, run_id):
        return batch_cli.cancel(conn, run_id)
    steps = Run(run_id, conn).cancel()
    click.echo(f"canceled {len(steps)} step(s) of run {run_id}" + (f": {', '.join(steps)}" if steps else ""))


@cli.command()
@click.argument("run_id")
@redis_option
@click.option("--step", default=None, help="re-run this step (and what depends on it) instead of every failed one")
@click.option("--wait/--no-wait", default=False, help="follow the run until it ends")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=runfolder.DEFAULT_ROOT,
              show_default=True, help="batch folders to read when no Redis is configured")
@click.option("--workers", type=int, default=None, help="local workers when no Redis is configured [cores]")
def retry(run_id: str, redis_url: str | None, step: str | None, wait: bool, out: Path, workers: int | None) -> None:
    """Re-run a run's failed, skipped and canceled steps in the same run, keeping what succeeded (of a batch: in
    each failed or canceled run). Without Redis, a local batch's failed and canceled runs run again locally, from
    the start (the private Redis that ran them is gone)."""
    if connection.configured_url(redis_url) is None and step is None \
            and (kept := batch_cli.recorded(out, run_id)) is not None:
        return batch_cli.retry_local(out, kept, workers, as_json=False)
    if connection.configured_url(redis_url) is None:
        ran = runfolder.read_status(out, run_id)  # a clear error when there is no such run either
        parent = run_id.rpartition("-")[0]
        if batch_cli.recorded(out, parent) is not None:
            raise IfcflowError(f"run {run_id} is part of local batch {parent}: retry the batch (it runs its failed "
                               f"and canceled files again): ifcflow retry {parent}")
        raise IfcflowError(f"run {run_id} ran on a private Redis that ended with its `ifcflow run`, so its steps "
                           f"cannot be re-enqueued in place: run it again with: ifcflow run {ran.file} (with the same "
                           "-i); to retry runs in place, use a shared Redis (--redis URL or IFCFLOW_REDIS_URL)")
    conn = redis_from(redis_url)
    if batch.exists(conn, run_id) and step is None:
        return batch_cli.retry(conn, run_id, wait)
    steps = Run(run_id, conn).retry(step)
    click.echo(f"re-enqueued {len(steps)} step(s): {', '.join(steps)}" if steps
               else "nothing to retry: no failed, skipped or canceled step, or they are still running")
    if wait:
        status = follow(StatusReader(conn, run_id), None, quiet=False)
        record(status)
        finish(status, as_json=False)


@cli.command()
@redis_option
@click.option("--empty", "to_empty", metavar="NAME", default=None, help="remove every queued job of queue NAME")
@click.option("--json", "as_json", is_flag=True)
def queues(redis_url: str | None, to_empty: str | None, as_json: bool) -> None:
    """Queue depths, workers per queue and failed counts (or empty one queue)."""
    from ..operations import maintenance

    conn = redis_from(redis_url)
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
    """Workers connected to this Redis: state, queues, current job, which services each can run."""
    from ..operations import maintenance

    rows = maintenance.workers(redis_from(redis_url))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    for r in rows if not as_json else []:
        click.echo(f"{r['name']:<40} {r['state']:<10} {','.join(r['queues']):<30} {r['current_job'] or '-'}")
        click.echo(f"    services: {_services(r['services'])}")
    if not rows and not as_json:
        click.echo("no workers; start one with: ifcflow worker --redis URL")


def _services(record: dict[str, Any] | None) -> str:
    if record is None:
        return "unknown (a plain rq worker: it runs a service when the service's module imports there)"
    missing = record["unavailable"]
    if not missing:
        return "all"
    return ", ".join(record["available"]) + "; NOT available: " + "; ".join(
        f"{name} ({reason})" for name, reason in missing.items())


@cli.command()
@redis_option
@click.option("--older-than", "older_than", type=WHOLE_SECONDS, default="7d", show_default=True,
              help="age (seconds, or 12h, 7d)")
@click.option("--dry-run", is_flag=True)
def prune(redis_url: str | None, older_than: float, dry_run: bool) -> None:
    """Delete finished runs (records, jobs, results) older than --older-than."""
    from ..operations import maintenance

    pruned = maintenance.prune(redis_from(redis_url), int(older_than), dry_run=dry_run)
    click.echo(f"{'would prune' if dry_run else 'pruned'} {len(pruned)} run(s)" + "".join(f"\n  {r}" for r in pruned))
