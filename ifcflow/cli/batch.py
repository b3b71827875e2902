"""Batches on the command line: ``ifcflow run --each``, and ``status``/``cancel``/``retry``/``report`` of a batch id
(those commands hand a batch id to the functions here)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from redis import Redis
from rich.live import Live

from ..batches import batch, batch_report, batch_status, batchfolder, lifecycle
from ..batches.batch_status import BatchStatus
from ..engine import connection, runfolder, store
from ..errors import IfcflowError
from ..pipeline import document
from ..pipeline.plan import plan
from .app import EXIT, cli, cluster, err, redis_from, redis_option

if TYPE_CHECKING:
    from ..engine.storage import Storage


class BatchView:
    """A live table on a terminal; elsewhere one line per sub-run whose state changed."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.live: Live | None = None
        self.seen: dict[str, str] = {}

    def __enter__(self) -> BatchView:
        if err.is_terminal and not self.quiet:
            self.live = Live(console=err, refresh_per_second=4, transient=False)
            self.live.__enter__()
        return self

    def __call__(self, status: BatchStatus) -> None:
        if self.quiet:
            return
        if self.live is not None:
            self.live.update(batch_report.table(status))
            return
        for run in status.runs:
            if self.seen.get(run.run_id, "queued") != run.status.value:
                self.seen[run.run_id] = run.status.value
                took = f" in {run.duration:.2f}s" if run.duration is not None and run.status.terminal else ""
                why = f": {run.failed_step}: {run.error}" if run.failed_step else ""
                err.print(f"{run.label} [{run.run_id}] {run.status.value}{took}{why}", highlight=False, markup=False)

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)


def follow(conn: Redis, batch_id: str, timeout: float | None = None, quiet: bool = False,
           health: Callable[[], None] = lambda: None, max_delay: float = 2.0) -> BatchStatus:
    """Poll until the batch ends: each poll repairs unfinished sub-runs and releases the next ones (so batches
    progress with plain ``rq worker``s too), then shows the batch."""
    delay, deadline = 0.05, None if timeout is None else time.monotonic() + timeout
    with BatchView(quiet) as view:
        while True:
            lifecycle.advance(conn, batch_id, repair=True)
            status = batch_status.read(conn, batch_id)
            view(status)
            if status.terminal or (deadline is not None and time.monotonic() >= deadline):
                return status
            health()
            time.sleep(delay)
            delay = min(delay * 1.25, max_delay)


def finish(status: BatchStatus, as_json: bool) -> None:
    if as_json:
        click.echo(status.model_dump_json(indent=2))
    else:
        err.print(batch_report.summary(status), highlight=False)
    sys.exit(EXIT.get(status.status, 1))


def write_reports(conn: Redis, status: BatchStatus, specs: list[tuple[str, Path]]) -> None:
    for fmt, path in specs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(batch_report.render(conn, status, fmt), encoding="utf-8")


def run_batch(doc: document.Document, each: dict[str, str], *, url: str | None, out: Path, detach: bool,
              as_json: bool, timeout: float | None, workers: int | None, ttl: int, max_runs: int, window: int,
              cache: bool, specs: list[tuple[str, Path]], storage: Storage | None = None,
              download: bool = False) -> None:
    """``ifcflow run FILE --each NAME=GLOB``: plan every sub-run, submit them at once, follow the batch. With a
    remote ``storage`` every sub-run's inputs are uploaded (each sha256 once) and pinned first; ``download``
    brings every sub-run's stored files into the batch folder when it ends."""
    import os

    from ..engine.staging import download_outputs, pin_inputs

    record, plans = batch.prepare(doc, each, out, max_runs=max_runs, ttl=ttl, window=window, cache=cache)
    fields = {plan.run_id: pin_inputs(storage, plan) for plan in plans} if storage is not None else None
    if url is None and detach:
        raise IfcflowError("--detach needs a shared Redis (--redis URL or IFCFLOW_REDIS_URL): a private one "
                           "ends with the command")
    services = sorted({step.service for step in plans[0].steps})
    count = workers or os.cpu_count() or 1
    with cluster(url, count, Path(record.out_dir) / "workers.log", services) as (conn, health):
        batch.submit(conn, record, plans, fields)
        err.print(f"batch {record.batch_id}: {len(plans)} runs of {record.pipeline} "
                  f"({', '.join(f'{k}={v}' for k, v in record.each.items())})", highlight=False)
        if detach:
            click.echo(f"follow with: ifcflow status {record.batch_id} --watch", err=True)
            click.echo(record.batch_id)
            return
        status = follow(conn, record.batch_id, timeout, quiet=as_json, health=health)
        if not status.terminal and url is None:  # the private Redis and workers end with this command
            lifecycle.cancel(conn, record.batch_id)
            status = batch_status.read(conn, record.batch_id)
        record_batch(conn, status)
        if url is None or os.environ.get("IFCFLOW_DATABASE_URL"):
            from .history import drain_local

            drain_local(conn, out)  # before the private Redis goes away (ifcflow history reads it)
        write_reports(conn, status, specs)  # JUnit reads each run's steps: before a private Redis goes
        if storage is not None and download:
            for plan in plans:
                download_outputs(storage, plan)
    finish(status, as_json)


BATCH_FILE = batchfolder.BATCH_FILE


def record_batch(conn: Redis, status: BatchStatus, into: BatchStatus | None = None) -> BatchStatus:
    """Write every sub-run's ``status.json`` and the batch's ``batch.json`` into the batch folder (a local batch's
    private Redis is gone when the command ends); ``into``: the recorded batch whose rows ``status`` replaces (a
    local retry). Returns the batch document written."""
    from ..engine.status import StatusReader
    from .app import record

    for run in status.runs:
        record(StatusReader(conn, run.run_id).fetch())
    whole = batchfolder.merge(into, status) if into is not None else status
    try:
        batchfolder.write(whole)
    except OSError as exc:
        err.print(f"warning: could not write {status.out_dir}/{BATCH_FILE}: {exc.strerror or exc}", markup=False)
    return whole


def recorded(out: Path, batch_id: str) -> BatchStatus | None:
    """The batch document recorded under ``out`` (no Redis configured), if there is one."""
    return batchfolder.read(out, batch_id)


def show(conn: Redis | None, batch_id: str, as_json: bool, watch: bool, status: BatchStatus | None = None) -> None:
    """``ifcflow status BATCH`` (from Redis, or the recorded ``status`` when no Redis is configured)."""
    if status is None and conn is not None:
        status = follow(conn, batch_id, quiet=as_json) if watch else batch_status.read(conn, batch_id)
    assert status is not None
    if as_json:
        click.echo(status.model_dump_json(indent=2))
    elif err.is_terminal:
        err.print(batch_report.table(status, limit=len(status.runs)))
    else:  # a log or a pipe: whole lines, never a table cut at 80 columns
        for line in batch_report.lines(status):
            err.print(line, markup=False, highlight=False)
    sys.exit(EXIT.get(status.status, 0) if status.terminal else 0)


def cancel(conn: Redis, batch_id: str) -> None:
    runs = lifecycle.cancel(conn, batch_id)
    click.echo(f"canceled {len(runs)} run(s) of batch {batch_id}")


def retry(conn: Redis, batch_id: str, wait: bool) -> None:
    retried = lifecycle.retry(conn, batch_id)
    click.echo(f"re-enqueued {sum(len(s) for s in retried.values())} step(s) in {len(retried)} run(s)" if retried
               else "nothing to retry: no failed or canceled run, or their steps are still running")
    for run_id, steps in retried.items():
        click.echo(f"  {run_id}: {', '.join(steps)}")
    if wait:
        finish(follow(conn, batch_id), as_json=False)


def retry_local(out: Path, kept: BatchStatus, workers: int | None, as_json: bool) -> None:
    """``ifcflow retry BATCH`` without Redis: the private Redis that knew which steps succeeded is gone, so the
    failed and canceled sub-runs run again from the start, locally, in their own run ids and folders; the batch's
    record (batch.json and their status.json) is updated and the whole batch shown, as a retry with Redis does."""

    chosen = batchfolder.to_retry(kept)
    if not chosen:
        click.echo(f"nothing to retry: no failed or canceled run in batch {kept.batch_id}")
        return
    doc = document.load(kept.file, check_files=False)  # re-read: the file may have been fixed since
    runs = [r for r in kept.runs if r.run_id in chosen]
    now = datetime.now(UTC)
    plans = [plan(document.rebind(doc, r.inputs), run_id=r.run_id, out_root=kept.out_dir, now=now) for r in runs]
    record = batch.BatchRecord(
        batch_id=kept.batch_id, pipeline=kept.pipeline, file=kept.file, created_at=kept.created_at,
        out_dir=kept.out_dir, ttl=store.DEFAULT_TTL, each={},
        steps=[batch.TemplateStep(id=s.id, on_failure=s.on_failure) for s in plans[0].steps],
        runs=[batch.SubRun(run_id=r.run_id, label=r.label, inputs=r.inputs) for r in runs])
    err.print(f"batch {kept.batch_id}: running {len(runs)} failed or canceled run(s) again, locally and from the "
              "start (no Redis is configured: the one that ran them is gone): "
              + ", ".join(r.label for r in runs), markup=False, highlight=False)
    services = sorted({step.service for step in plans[0].steps})
    with cluster(None, workers or os.cpu_count() or 1, Path(kept.out_dir) / "workers.log", services) as (conn, health):
        batch.submit(conn, record, plans)
        status = follow(conn, kept.batch_id, quiet=as_json, health=health)
        whole = record_batch(conn, status, into=kept)
    finish(whole, as_json)


def report(conn: Redis | None, batch_id: str, fmt: str, output: Path | None, kept: BatchStatus | None = None,
           out: Path | None = None) -> None:
    """A batch's report, from Redis or (``kept``, under ``out``) from its recorded folders."""
    if kept is not None and out is not None:
        root = out
        text = batch_report.render(None, kept, fmt, read_run=lambda run_id: runfolder.read_status(root, run_id))
    else:
        assert conn is not None
        text = batch_report.render(conn, batch_status.read(conn, batch_id), fmt)
    if output:
        output.write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)


@cli.command(name="batches")
@redis_option
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=runfolder.DEFAULT_ROOT,
              show_default=True, help="batch folders to read when no Redis is configured")
def list_batches(redis_url: str | None, limit: int, as_json: bool, out: Path) -> None:
    """List recent batches, newest first (the batch folders' records when no Redis is configured)."""
    if connection.configured_url(redis_url) is None:
        return _show_rows([_row(s) for s in batchfolder.recent(out, limit)], as_json, f"no batches in {out}")
    conn = redis_from(redis_url)
    rows: list[dict[str, Any]] = []
    for batch_id in batch.recent(conn, limit):
        try:
            status = batch_status.read(conn, batch_id, errors=False)
        except IfcflowError:  # expired with its runs
            conn.zrem(batch.BATCHES, batch_id)
            continue
        rows.append(_row(status))
    _show_rows(rows, as_json, "no batches")


def _row(status: BatchStatus) -> dict[str, Any]:
    return {"batch_id": status.batch_id, "pipeline": status.pipeline, "status": status.status.value,
            "runs": len(status.runs), "counts": {k: v for k, v in status.counts.items() if v},
            "created_at": status.created_at}


def _show_rows(rows: list[dict[str, Any]], as_json: bool, empty: str) -> None:
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        counts = ", ".join(f"{n} {state}" for state, n in row["counts"].items())
        click.echo(f"{row['batch_id']}  {row['status']:<24} {row['runs']:>5} runs ({counts})  {row['created_at']}")
    if not rows:
        click.echo(empty)
