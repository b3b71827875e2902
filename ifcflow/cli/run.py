"""``ifcflow run``: check, plan, enqueue and follow a pipeline."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click
from redis import Redis

from ..batches import batch
from ..engine import connection, runfolder, store
from ..engine.status import RunStatus, StatusReader
from ..errors import IfcflowError
from ..pipeline import document
from ..pipeline.plan import Plan
from ..pipeline.plan import plan as make_plan

if TYPE_CHECKING:
    from ..engine.storage import Storage

from .app import (
    SECONDS,
    WHOLE_SECONDS,
    cli,
    cluster,
    finish,
    follow,
    parse_inputs,
    record,
    redis_option,
    report_specs,
    storage_option,
    write_reports,
)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-i", "--input", "inputs", multiple=True, metavar="NAME=PATH", help="override a pipeline input")
@redis_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=runfolder.DEFAULT_ROOT,
              show_default=True, help="folder for run outputs (<out>/<run_id>/<step>/)")
@click.option("--detach", is_flag=True, help="enqueue, print the run id and return at once")
@click.option("--json", "as_json", is_flag=True, help="print the final status document as JSON")
@click.option("--timeout", type=SECONDS, default=None,
              help="stop waiting after this long (seconds, or 90s, 30m, 2h; exit 1); a local run is canceled then")
@click.option("--workers", type=int, default=None, help="local workers when no Redis is configured [cores]")
@click.option("--ttl", type=WHOLE_SECONDS, default=store.DEFAULT_TTL, show_default=True,
              help="keep results this long (seconds, or 12h, 7d)")
@click.option("--report", "reports", multiple=True, metavar="FORMAT:PATH",
              help="also write a report when the run ends, e.g. junit:report.xml, markdown:summary.md, html:r.html")
@click.option("--webhook", metavar="URL", default=None,
              help="POST the final status document to URL when the run ends (signed with IFCFLOW_WEBHOOK_SECRET)")
@click.option("--each", "each", multiple=True, metavar="NAME=GLOB",
              help="a batch: one run per file the glob matches (relative to the current folder; quote it); "
                   "several --each make every combination")
@click.option("--max-runs", type=int, default=batch.DEFAULT_MAX_RUNS, show_default=True,
              help="refuse a batch with more runs than this")
@click.option("--window", type=int, default=0, help="a batch's runs released at a time [2 x workers, at least 2]")
@click.option("--no-cache", "no_cache", is_flag=True, help="run every step, even when an identical one ran before")
@storage_option
def run(file: Path, inputs: tuple[str, ...], redis_url: str | None, out: Path, detach: bool, as_json: bool,
        timeout: float | None, workers: int | None, ttl: int, reports: tuple[str, ...], webhook: str | None,
        each: tuple[str, ...], max_runs: int, window: int, no_cache: bool, storage_url: str | None) -> None:
    """Check FILE, plan it, enqueue it and (by default) wait for it with a live view.

    With --each (or 'for_each:' in FILE) it is a batch: one run per matching file, under one batch id."""
    from ..client import submit
    from ..engine import webhooks as hooks

    specs = report_specs(reports)
    fields = {hooks.FIELD: hooks.check_url(webhook, None)} if webhook else None
    doc = document.load(file, parse_inputs(inputs), check_files=not each)  # (sub-runs' files are checked each)
    url = connection.configured_url(redis_url)
    if each or doc.pipeline.for_each:
        if webhook:
            raise IfcflowError("--webhook notifies the end of one run; a batch has no webhook yet (follow it with "
                               "ifcflow status BATCH --watch, or schedule it with ifcflow schedule add --webhook)")
        from .batch import run_batch

        remote = _selected(storage_url)

        run_batch(doc, batch.parse_each(each), url=url, out=out, detach=detach, as_json=as_json, timeout=timeout,
                  workers=workers, ttl=ttl, max_runs=max_runs, window=window, cache=not no_cache, specs=specs,
                  storage=remote, download=_out_given())
        return
    planned = make_plan(doc, out_root=out, cache=not no_cache)
    files = _store_inputs(storage_url, planned)  # a remote store: inputs uploaded and pinned first
    fields = {**(fields or {}), **files[1]} if files else fields
    if url is None and detach:
        raise IfcflowError("--detach needs a shared Redis (--redis URL or IFCFLOW_REDIS_URL): a private one "
                           "ends with the command")
    services = sorted({step.service for step in planned.steps})
    workers = workers or min(len(planned.steps), os.cpu_count() or 1)
    with signals_interrupt(), cluster(url, workers, Path(planned.out_dir) / "workers.log", services) as (conn, health):
        submit(planned, redis=conn, ttl=ttl, record=fields)
        if not detach and (url is None or os.environ.get("IFCFLOW_DATABASE_URL")):
            from .history import warm_local

            warm_local(out)  # opened while the run runs: the drain at its end is then quick
        if webhook:
            conn.sadd(hooks.WATCHED, planned.run_id)  # an API server's watcher observes a detached run's end
        if detach:
            click.echo(f"enqueued {len(planned.steps)} steps; follow with: ifcflow status {planned.run_id} --watch",
                       err=True)
            click.echo(planned.run_id)
            return
        # a local run's workers listen on every queue: while they start, "no worker listens" would be wrong
        reader = StatusReader(conn, planned.run_id, planned, unserved=url is not None)
        reason = None
        try:
            status = follow(reader, timeout, quiet=as_json, health=health)
            if status.terminal:  # the run's end (and its hooks) is done before local workers and Redis go away
                from ..engine import reconcile

                reconcile.run(conn, planned.run_id, plan=planned)
            elif url is None:  # the private Redis and workers end with this command
                status, reason = abandon(conn, reader, "timeout"), "timeout"
        except KeyboardInterrupt:
            if url is None:
                record(abandon(conn, reader, "interrupted"), "interrupted")
            raise
        record(status, reason)
        if url is None or os.environ.get("IFCFLOW_DATABASE_URL"):
            from .history import drain_local

            drain_local(conn, out)  # before the private Redis goes away (ifcflow history reads it)
        if files and _out_given():
            from ..engine.staging import download_outputs

            download_outputs(files[0], planned)  # --out given: the outputs come home when the run ends
        if webhook and url is None:  # the private Redis and its workers end with this command: deliver first
            hooks.await_delivery(conn, planned.run_id, timeout=60)
    write_reports(status, specs)
    finish(status, as_json)


def _out_given() -> bool:
    """Whether --out was given (with a remote store, outputs are then downloaded when the run ends)."""
    return click.get_current_context().get_parameter_source("out") != click.core.ParameterSource.DEFAULT


def _store_inputs(storage_url: str | None, planned: Plan) -> tuple[Storage, dict[str, str]] | None:
    """With a remote store (``--storage s3://...`` or $IFCFLOW_STORAGE): upload the local input files (skipped
    when that sha256 is stored already) and return the store and the run record field pinning them."""
    chosen = _selected(storage_url)
    if chosen is None:
        return None
    from ..engine.staging import pin_inputs  # only then: it imports boto3 (~0.1 s)

    return chosen, pin_inputs(chosen, planned)


def _selected(storage_url: str | None) -> Storage | None:
    """The remote store chosen by --storage or $IFCFLOW_STORAGE (checked: one line if unreachable), else None.
    boto3 is imported only then (it adds ~0.2 s to every command)."""
    if not (storage_url or os.environ.get("IFCFLOW_STORAGE", "").strip()):
        return None
    from ..engine.storage import select

    chosen = select(storage_url)
    return chosen if chosen.remote else None


def abandon(conn: Redis, reader: StatusReader, reason: str, wait: float = 10.0) -> RunStatus:
    """Cancel a run this command cannot follow to its end (steps canceled with ``reason``, partial outputs and
    empty step folders removed) and return its final status."""
    from ..engine.control import cancel

    cancel(conn, reader.run_id, wait=wait, reason=reason)
    deadline = time.monotonic() + wait
    status = reader.read()
    while not status.terminal and time.monotonic() < deadline:
        time.sleep(0.05)
        status = reader.read()
    remove_empty_step_folders(reader.plan)
    return status


def remove_empty_step_folders(plan: Plan) -> None:
    for step in plan.steps:
        folder = Path(step.workdir)
        if folder.is_dir() and not any(folder.iterdir()):
            shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """SIGTERM (``timeout``, a CI cancel, ``kill``) and SIGHUP (the terminal closed) act like Ctrl-C."""
    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
