"""``ifcflow serve``: the HTTP API on uvicorn."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import IfcflowError
from .app import cli, redis_option, storage_option


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="TCP port")
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="data folder with uploads/ and output/ (default $IFCFLOW_DATA, else ./ifcflow-data); workers "
                   "must see it at the same path unless --storage is s3://...")
@redis_option
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@storage_option
def serve(host: str, port: int, data: Path | None, redis_url: str | None, log_level: str,
          storage_url: str | None) -> None:
    """Serve the HTTP API: the original IFC Pipeline endpoints, /runs, events and webhooks (docs at /docs)."""
    import uvicorn

    from ..engine import storage

    storage.select(storage_url)  # an unreachable store or wrong credentials: one line, exit 2

    from ..api.app import create_app
    from ..api.settings import Settings, loopback

    settings = Settings.from_env(data, redis_url, bind=host)
    if not settings.api_keys and not loopback(host):
        raise IfcflowError(f"refusing to listen on {host} without an API key: set IFCFLOW_API_KEYS (comma-separated "
                           "keys clients send as X-API-Key), or listen on 127.0.0.1")
    if "*" in settings.allowed_hosts and not loopback(host):
        click.echo(f"warning: answering any Host name on {host} (every request needs an API key); set "
                   "IFCFLOW_ALLOWED_HOSTS to the names clients use for this server to refuse others", err=True)
    app = create_app(settings)
    click.echo(f"ifcflow API on http://{host}:{port} (docs /docs), data folder {settings.data}", err=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
