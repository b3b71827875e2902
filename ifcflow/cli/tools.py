"""Helpers for authors of pipelines: schema, demo."""

from __future__ import annotations

from pathlib import Path

import click

from .app import cli


@cli.command()
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write to this file instead of stdout")
def schema(output: Path | None) -> None:
    """Print the JSON Schema of pipeline files (checked in as schemas/pipeline.schema.json)."""
    from ..schema import render

    text = render()
    if output:
        output.write_text(text)
    else:
        click.echo(text, nl=False)


@cli.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
def demo(folder: Path) -> None:
    """Write the example models and IDS used by the committed pipelines into FOLDER."""
    from ..demo import write_demo

    folder.mkdir(parents=True, exist_ok=True)
    for name, path in write_demo(folder).items():
        click.echo(f"{name}: {path}")
