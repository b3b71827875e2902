"""Schedules: ``ifcflow schedule add|list|remove|run`` and ``ifcflow scheduler`` (fires them)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import click
from pydantic import ValidationError

from ..batches import batch, schedule
from ..engine import store
from ..errors import IfcflowError
from .app import SECONDS, WHOLE_SECONDS, cli, parse_inputs, redis_from, redis_option


@cli.group(name="schedule")
def schedule_group() -> None:
    """Run pipelines on a cron schedule (stored in Redis; `ifcflow scheduler` fires them)."""


@schedule_group.command(name="add")
@click.argument("name")
@click.argument("pipeline", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--cron", required=True, help="cron expression, local time: 5 fields (minute hour day month weekday), "
              "e.g. '0 2 * * *'; or 6 with the seconds LAST (croniter), unlike Quartz/Spring which put them first: "
              "'* * * * * */20' is every 20 seconds")
@click.option("-i", "--input", "inputs", multiple=True, metavar="NAME=PATH", help="override a pipeline input")
@click.option("--each", "each", multiple=True, metavar="NAME=GLOB", help="run a batch over the files (re-expanded "
              "at every fire; relative to the current folder)")
@click.option("--webhook", default=None, metavar="URL", help="POST failed/skipped fires and finished runs here")
@click.option("--overlap", type=click.Choice(["skip", "queue", "allow"]), default="skip", show_default=True,
              help="when the previous run has not ended: skip this fire, queue it, or start anyway")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("ifcflow-runs"),
              show_default=True, help="folder for run outputs")
@click.option("--ttl", type=WHOLE_SECONDS, default=store.DEFAULT_TTL, show_default=True,
              help="keep results this long (seconds, or 12h, 7d)")
@click.option("--replace", is_flag=True, help="replace a schedule of that name")
@redis_option
def add(name: str, pipeline: Path, cron: str, inputs: tuple[str, ...], each: tuple[str, ...], webhook: str | None,
        overlap: str, out: Path, ttl: int, replace: bool, redis_url: str | None) -> None:
    """Add schedule NAME running PIPELINE on --cron."""
    try:
        spec = schedule.spec_from_cli(name, pipeline, cron, parse_inputs(inputs), batch.parse_each(each), webhook,
                                      overlap, out, ttl)
    except ValidationError as exc:
        raise IfcflowError(f"schedule name {name!r}: use lower-case letters, digits and '-' "
                           f"({exc.errors()[0]['msg']})") from None
    added = schedule.add(redis_from(redis_url), spec, replace=replace)
    fires = ", ".join(datetime.fromtimestamp(t).astimezone().isoformat(" ", "seconds")
                      for t in schedule.next_fires(added.cron, 3))
    click.echo(f"schedule {added.name}: {added.pipeline} on '{added.cron}'\nnext fires: {fires}\n"
               "fired by: ifcflow scheduler")


@schedule_group.command(name="list")
@click.option("--json", "as_json", is_flag=True)
@redis_option
def list_(as_json: bool, redis_url: str | None) -> None:
    """Schedules with their next fire time and last fire (run id and outcome)."""
    conn = redis_from(redis_url)
    rows = schedule.listing(conn)
    broken = schedule.read_all(conn)[1]
    for name, reason in broken.items():
        click.echo(f"{name:<20} BROKEN: {reason}", err=as_json)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows and not broken:
        click.echo("no schedules; add one with: ifcflow schedule add NAME PIPELINE --cron '0 2 * * *'")
    for row in rows:
        last = row["last"]
        shown = "never fired" if last is None else (
            f"last {last['tick']}: {last['outcome']}" + (f" {last['id']} ({last['state'] or 'expired'})"
                                                          if last["id"] else f": {last['reason']}"))
        click.echo(f"{row['name']:<20} {row['cron']:<16} next {row['next_fire']}  {shown}\n"
                   f"{'':<20} {row['pipeline']}")


@schedule_group.command(name="remove")
@click.argument("name")
@redis_option
def remove(name: str, redis_url: str | None) -> None:
    """Remove schedule NAME (its runs are kept)."""
    schedule.remove(redis_from(redis_url), name)
    click.echo(f"removed schedule {name}")


@schedule_group.command(name="run")
@click.argument("name")
@redis_option
def run_now(name: str, redis_url: str | None) -> None:
    """Fire schedule NAME now (whatever its overlap policy)."""
    fire = schedule.run_now(redis_from(redis_url), name)
    if fire.outcome != "started":
        raise IfcflowError(f"schedule {name}: fire {fire.outcome}: {fire.reason}")
    click.echo(f"started {fire.kind} {fire.id}", err=True)
    click.echo(fire.id)


@cli.command()
@redis_option
@click.option("--poll", type=SECONDS, default=1.0, show_default=True,
              help="time between looks at the schedules (seconds, or 5s)")
@click.option("--name", default="", help="scheduler name (default: host:pid:random)")
def scheduler(redis_url: str | None, poll: float, name: str) -> None:
    """Fire the stored schedules (several schedulers on one Redis fire each tick once); logs each fire, and once
    each stored schedule it skips because it cannot be read or never fires."""
    import logging

    from ..batches.scheduler import Scheduler

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logging.getLogger("ifcflow").addHandler(handler)
    logging.getLogger("ifcflow").setLevel(logging.INFO)
    Scheduler(redis_from(redis_url), poll=poll, name=name).start()
