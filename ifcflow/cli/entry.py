"""The command group with every command registered, and running it with the CLI's exit codes (see
:mod:`ifcflow.cli`)."""

from __future__ import annotations

import gc
import sys

import click
from redis.exceptions import RedisError

from ..errors import IfcflowError
from . import dashboard, history, inspect, operate, run, schedule, serve, services, tools  # noqa: F401  (each module registers its commands)
from .app import cli, err

__all__ = ["cli", "main"]


def main() -> None:
    gc.freeze()  # the imported modules are kept to the end: the collector (and the one at exit, ~0.1 s) skips them
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
    except RedisError as exc:  # a server that goes away outside a followed run: still one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        click.echo(f"error: lost Redis: {first}. Start the server, or check --redis / IFCFLOW_REDIS_URL.", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted; local workers and the private Redis were stopped")
        sys.exit(130)
