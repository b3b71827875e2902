"""``ifcflow services [NAME]``: what each service does and every option it takes."""

from __future__ import annotations

import click

from .app import cli


@cli.command()
@click.argument("name", required=False)
def services(name: str | None) -> None:
    """List the services, or show every option of service NAME (type, default, meaning)."""
    from ..pipeline import catalog
    from ..pipeline.validation import suggest
    from ..services import SERVICES

    if name is None:
        click.echo(catalog.listing())
        return
    if name not in SERVICES:
        raise click.BadParameter(f"unknown service '{name}'{suggest(name, SERVICES)} Services: "
                                 f"{', '.join(SERVICES)}", param_hint="NAME")
    click.echo(catalog.describe(SERVICES[name]))
