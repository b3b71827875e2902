"""``ifcflow history``, ``ifcflow lineage``, ``ifcflow audit``: the history database (see :mod:`ifcflow.history.database`)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from ..engine import connection, outbox
from ..errors import IfcflowError
from ..history import ENV as DATABASE_ENV
from ..history import MAX_DEPTH
from .app import cli, err

database_option = click.option("--database", "database", metavar="URL", envvar=DATABASE_ENV,
                               help="history database (default: $IFCFLOW_DATABASE_URL, else OUT/history.sqlite)")
out_option = click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("ifcflow-runs"),
                          show_default=True, help="folder of the run folders (holds history.sqlite by default)")
redis_option = click.option("--redis", "redis_url", metavar="URL", envvar=connection.ENV,
                            help="Redis whose outbox to check (and drain when a database is configured)")
json_option = click.option("--json", "as_json", is_flag=True, help="print JSON")


def _url(database: str | None, out: Path) -> str:
    from ..history import database as history

    return database or history.url_for(out)


def _settle(redis_url: str | None, database: str | None, url: str) -> int | None:
    """Drain the outbox into an explicitly configured database; return how many records still wait (None: no
    Redis to ask)."""
    chosen = connection.configured_url(redis_url)
    if not chosen:
        return None
    try:
        conn = connection.connect(chosen)
        if database:
            try:
                outbox.drain(conn, url)
            except Exception as exc:  # noqa: BLE001 - the database is down: say how far behind it is
                from ..history import database as history

                err.print(f"[yellow]note:[/] the history database {history.redact(url)} could not be written: "
                          f"{(str(exc).splitlines() or [type(exc).__name__])[0]}")
        return outbox.behind(conn)
    except Exception as exc:  # noqa: BLE001 - the history is readable without Redis
        err.print(f"[yellow]note:[/] could not check the outbox on {chosen}: {exc}")
        return None


def _behind(waiting: int | None) -> None:
    if waiting:
        err.print(f"[yellow]behind:[/] {waiting} record(s) wait in the Redis outbox and are not in this history yet "
                  "(the database was unreachable, or no process with a database drained them); they are written "
                  "by the next drain (ifcflow worker / reconcile --loop / the API server, with a database set)")
    if waiting and outbox.full(waiting):
        err.print(f"[yellow]full:[/] the outbox is at its cap of {outbox.cap()} records ({outbox.MAX_ENV}): the "
                  "oldest records are being dropped and will never reach the history; set IFCFLOW_DATABASE_URL "
                  "for a worker or `ifcflow reconcile --loop` so that something drains it")


def _when(epoch: float | None) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S") if epoch else "-"


def _since(text: str | None) -> float | None:
    from ..history import lineage

    return lineage.ago(lineage.since_seconds(text)) if text else None


@cli.group("history", invoke_without_command=True)
@click.option("--pipeline", default=None, help="only runs of this pipeline (its name)")
@click.option("--since", default=None, metavar="AGE", help="only runs created within AGE (30d, 12h, 2y)")
@click.option("--state", default=None, help="only runs in this state (succeeded, failed, canceled, ...)")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@database_option
@out_option
@redis_option
@json_option
@click.pass_context
def history_group(ctx: click.Context, pipeline: str | None, since: str | None, state: str | None, limit: int,
                  database: str | None, out: Path, redis_url: str | None, as_json: bool) -> None:
    """Runs recorded in the history database (kept after `ifcflow prune` and after Redis is flushed)."""
    from ..history import database as history
    from ..history import lineage

    if ctx.invoked_subcommand is not None:
        return
    url = _url(database, out)
    waiting = _settle(redis_url, database, url)
    try:
        rows = lineage.runs_list(url, pipeline=pipeline, since=_since(since), state=state, limit=limit)
    except history.HistoryUnavailable:
        _behind(waiting)  # the database is down: the runs still run, their records wait in Redis
        raise
    if as_json:
        click.echo(json.dumps({"database": history.redact(url), "behind": waiting, "runs": rows}, indent=2))
        return
    _behind(waiting)
    table = Table("run", "pipeline", "state", "created (UTC)", "by", "inputs (sha256)", box=None)
    for row in rows:
        inputs = ", ".join(f"{name}={(entry.get('sha256') or '?')[:12]}" for name, entry in row["inputs"].items())
        table.add_row(row["run_id"], row["pipeline"] or "-", row["state"] or "-", _when(row["created_at"]),
                      row["actor"] or "-", inputs or "-")
    _print(table, f"no runs recorded in {history.redact(url)}" if not rows else None)


def _print(table: Table, empty: str | None) -> None:
    from rich.console import Console

    if empty:
        click.echo(empty)
    else:
        Console(highlight=False, soft_wrap=True).print(table)


@history_group.command("prune")
@click.option("--older-than", "older", required=True, metavar="AGE", help="delete runs created before AGE (e.g. 2y)")
@database_option
@out_option
@click.option("--yes", is_flag=True, help="do not ask")
def prune_command(older: str, database: str | None, out: Path, yes: bool) -> None:
    """Delete history older than AGE: runs, their steps and lineage edges, audit events, unused files."""
    from ..history import database as history
    from ..history import lineage

    url = _url(database, out)
    before = lineage.ago(lineage.since_seconds(older))
    if not yes:
        click.confirm(f"delete history recorded before {_when(before)} UTC from {history.redact(url)}?", abort=True)
    counts = history.prune(url, before)
    history.apply(url, [outbox.audit("history-prune", detail={"before": before, **counts})])
    click.echo("deleted " + ", ".join(f"{n} {what}" for what, n in counts.items()))


@cli.command("lineage")
@click.argument("target")
@click.option("--up", "direction", flag_value="up", help="only what produced it")
@click.option("--down", "direction", flag_value="down", help="only what was derived from it")
@click.option("--depth", type=click.IntRange(1, MAX_DEPTH), default=20, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json", "mermaid"]), default="text", show_default=True)
@database_option
@out_option
def lineage_command(target: str, direction: str | None, depth: int, fmt: str, database: str | None,
                    out: Path) -> None:
    """What produced TARGET and from what, and what was derived from it. TARGET: a file (its current contents are
    looked up by sha256), a recorded path, or a sha256."""
    from ..history import lineage

    url = _url(database, out)
    doc = lineage.lineage(url, _target(target), direction or "both", depth)  # type: ignore[arg-type]
    render: dict[str, Callable[[dict[str, Any]], str]] = {
        "json": lambda d: json.dumps(d, indent=2) + "\n", "mermaid": lineage.mermaid, "text": lineage.text}
    click.echo(render[fmt](doc), nl=False)


def _target(target: str) -> str:
    """A file that exists is named by its contents; anything else as given (a sha256 or a recorded path)."""
    from ..history import lineage

    if lineage.SHA256.match(target.lower()):
        return target.lower()
    path = Path(target)
    if path.is_file():
        found = outbox.describe(path)
        if found:
            return str(found["sha256"])
    return str(path.resolve()) if not path.is_absolute() else target


@cli.command("audit")
@click.option("--since", default=None, metavar="AGE", help="only events within AGE (30d, 12h)")
@click.option("--event", default=None, help="only this event (submit, cancel, retry, schedule-fire, worker-lost, ...)")
@click.option("--run", "run_id", default=None, help="only events of this run")
@click.option("--limit", type=click.IntRange(1, 10000), default=100, show_default=True)
@database_option
@out_option
@json_option
def audit_command(since: str | None, event: str | None, run_id: str | None, limit: int, database: str | None,
                  out: Path, as_json: bool) -> None:
    """Who did what: submissions, cancels, retries, schedule fires, lost and killed steps."""
    from ..history import lineage

    url = _url(database, out)
    rows = lineage.audit_list(url, since=_since(since), event=event, run_id=run_id, limit=limit)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table("time (UTC)", "event", "actor", "run / batch", "detail", box=None)
    for row in rows:
        table.add_row(_when(row["at"]), row["event"], row["actor"] or "-", row["run_id"] or row["batch_id"] or "-",
                      json.dumps(row["detail"])[:120])
    _print(table, "no audit events recorded" if not rows else None)


def warm_local(out: str | Path) -> threading.Thread:
    """Open (and migrate) the database :func:`drain_local` will write, in a thread while the run runs: importing
    Alembic and checking the schema took 0.1-0.2 s at the end of every local run. A failure is left for
    :func:`drain_local` to report."""
    def warm() -> None:
        from ..history import database as history

        try:
            history.engine(history.url_for(out))
        except Exception:  # noqa: BLE001, S110 - drain_local meets it again and says so
            pass

    thread = threading.Thread(target=warm, name="ifcflow-history-warm", daemon=True)
    thread.start()
    return thread


def drain_local(conn: Any, out: str | Path) -> None:
    """A local run's private Redis ends with the command: move its records into OUT/history.sqlite first."""
    from ..engine import reconcile
    from ..history import database as history

    try:
        reconcile.sweep(conn)  # runs whose steps all ended are ended (their end recorded) before the drain
        outbox.drain(conn, history.url_for(out))
    except (IfcflowError, Exception) as exc:  # noqa: BLE001 - the run's own result matters more
        err.print(f"[yellow]note:[/] history not recorded ({exc})")
