"""``ifcflow dashboard``: RQ Dashboard on the ifcflow Redis (queues, workers, jobs by pipeline and step)."""

from __future__ import annotations

import logging

import click

from ..engine import connection
from ..errors import IfcflowError
from .app import cli, err, redis_option


@cli.command()
@redis_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to listen on (0.0.0.0 in a container)")
@click.option("--port", default=9181, show_default=True, type=click.IntRange(1, 65535), help="port to listen on")
@click.option("--username", envvar="RQ_DASHBOARD_USERNAME", default=None,
              help="HTTP Basic Auth user (default: $RQ_DASHBOARD_USERNAME; no auth if unset)")
@click.option("--password", envvar="RQ_DASHBOARD_PASSWORD", default=None,
              help="HTTP Basic Auth password (default: $RQ_DASHBOARD_PASSWORD)")
def dashboard(redis_url: str | None, host: str, port: int, username: str | None, password: str | None) -> None:
    """Start RQ Dashboard on the ifcflow Redis: queues, workers and every step job, described as
    'pipeline/step (service) run RUN_ID'."""
    url = connection.configured_url(redis_url)
    if not url:
        raise IfcflowError("the dashboard needs a Redis: pass --redis URL or set IFCFLOW_REDIS_URL")
    if username and not password:
        raise IfcflowError("--username needs --password (or RQ_DASHBOARD_PASSWORD)")
    connection.connect(url)
    from ..views.dashboard import dashboard_app

    app = dashboard_app(url, username=username, password=password)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    err.print(f"RQ Dashboard on http://{host}:{port}/ (Redis {url}); Ctrl-C stops it")
    app.run(host=host, port=port, debug=False, use_reloader=False)
