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
    from ..pipeline.schema import render

    text = render()
    if output:
        output.write_text(text)
    else:
        click.echo(text, nl=False)


@cli.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--original-names", is_flag=True, help="also write the files the original system's example workflows "
              "name (Building-Architecture.ifc, IDS-example.ids): fill the server's examples/ folder with "
              "`ifcflow demo DATA/examples --original-names`")
def demo(folder: Path, original_names: bool) -> None:
    """Write the example models and IDS used by the committed pipelines into FOLDER."""
    import shutil

    from ..standalone.demo import write_demo

    folder.mkdir(parents=True, exist_ok=True)
    written = write_demo(folder)
    if original_names:
        for stem, name in (("arch", "Building-Architecture.ifc"), ("rules", "IDS-example.ids")):
            if stem in written:
                written[name] = Path(shutil.copyfile(written[stem], folder / name))
    for name, path in written.items():
        click.echo(f"{name}: {path}")
