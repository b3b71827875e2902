"""The ``ifcflow`` command group and what its commands share: options, exit codes, following a run."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from redis import Redis
from redis.exceptions import RedisError
from rich.console import Console

from ..engine import connection
from ..engine.changes import Waiter
from ..engine.states import RunState
from ..engine.status import RunStatus, StatusReader, wait
from ..errors import IfcflowError, RedisLost
from ..views import live

EXIT = {RunState.SUCCEEDED: 0, RunState.SUCCEEDED_WITH_FAILURES: 3, RunState.FAILED: 1, RunState.CANCELED: 1}
redis_option = click.option("--redis", "redis_url", metavar="URL", envvar=connection.ENV,
                            help="Redis server (default: $IFCFLOW_REDIS_URL; `run` starts a private one if unset)")
storage_option = click.option(
    "--storage", "storage_url", metavar="FOLDER|s3://BUCKET/PREFIX", default=None,
    help="where files live (default: $IFCFLOW_STORAGE, else paths are used in place); s3:// needs "
         "$IFCFLOW_S3_ENDPOINT (unless AWS) and the AWS credential variables")
err = Console(stderr=True, highlight=False, soft_wrap=True)  # a long path stays on one line (CI logs)


class Duration(click.ParamType):
    """Seconds (``90``, ``0.5``) or a duration as pipeline files write it (``90s``, ``30m``, ``2h``, ``1h30m``,
    ``7d``; :mod:`ifcflow.pipeline.durations`), for every time option of the CLI."""

    name = "duration"

    def __init__(self, whole: bool = False):
        self.whole = whole  # whole seconds (--ttl): 0.5 is refused

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        from ..pipeline import durations

        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        text = str(value).strip()
        try:
            seconds = float(text) if not self.whole and re.fullmatch(r"\d*\.\d+", text) else durations.parse(text)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if seconds <= 0:
            self.fail(f"duration must be positive, got {text!r}", param, ctx)
        return seconds


SECONDS = Duration()
WHOLE_SECONDS = Duration(whole=True)


def parse_inputs(values: tuple[str, ...]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{value!r}: write NAME=PATH", param_hint="-i/--input")
        if name in pairs:
            raise click.BadParameter(f"input '{name}' is given twice ({name}={pairs[name]} and {value}); give it "
                                     "once", param_hint="-i/--input")
        pairs[name] = path
    return pairs


def redis_from(url: str | None) -> Redis:
    chosen = connection.configured_url(url)
    if not chosen:
        raise IfcflowError("no Redis configured: pass --redis URL or set IFCFLOW_REDIS_URL")
    return connection.connect(chosen)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ifcflow")
def cli() -> None:
    """Run pipelines of IfcOpenShell tools as python-rq job DAGs."""


def report_specs(reports: tuple[str, ...]) -> list[tuple[str, Path]]:
    from ..views.report import FORMATS

    specs = []
    for spec in reports:
        fmt, sep, path = spec.partition(":")
        if not sep or fmt not in FORMATS or not path:
            raise click.BadParameter(f"{spec!r}: write FORMAT:PATH with FORMAT one of {', '.join(FORMATS)}",
                                     param_hint="--report")
        specs.append((fmt, Path(path)))
    return specs


def write_reports(status: RunStatus, specs: list[tuple[str, Path]]) -> None:
    from ..views.report import render

    for fmt, path in specs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(status, fmt), encoding="utf-8")


@contextmanager
def cluster(url: str | None, workers: int, log: Path, services: list[str]) -> Iterator[tuple[Redis, Callable[[], None]]]:
    """The configured Redis, or a private Redis with local workers; with a health check to call while waiting."""
    if url is not None:
        yield connection.connect(url), lambda: None
        return
    from ..standalone.local import LocalCluster

    with LocalCluster(workers, log_file=log, preload=services) as cluster:
        yield connection.connect(cluster.url), cluster.check
        cluster.finished()


def follow(reader: StatusReader, timeout: float | None, quiet: bool,
            health: Callable[[], None] = lambda: None) -> RunStatus:
    """Poll the run until it ends (or ``timeout``), showing it; a Redis that goes away is one line, exit 2."""
    try:
        with live.View(err, quiet=quiet) as view:
            def update(status: RunStatus) -> None:
                view(status)
                if not status.terminal:
                    health()

            waiter = Waiter(reader.conn, reader.run_id)  # wake when a worker announces a change of this run
            try:
                return wait(reader, timeout=timeout, on_update=update, sleep=waiter.sleep)
            finally:
                waiter.close()
    except RedisError as exc:
        raise RedisLost(reader.run_id, str(exc)) from None


def record(status: RunStatus, reason: str | None = None) -> None:
    """Write ``status.json`` into the run folder; a folder this machine cannot write to is only a warning."""
    from ..engine.runfolder import write_status

    try:
        write_status(status, reason)
    except OSError as exc:
        err.print(f"warning: could not write {status.out_dir}/status.json: {exc.strerror or exc}", markup=False)


def finish(status: RunStatus, as_json: bool) -> None:
    if as_json:
        click.echo(status.model_dump_json(indent=2))
    else:
        err.print(live.summary(status), markup=False)
    sys.exit(EXIT.get(status.status, 1))
