"""Small IFC models and IDS files built in code for tests."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import ifcopenshell
import ifcopenshell.api


def tiny_model(path: Path, walls: int = 3, schema: str = "IFC4") -> Path:
    """A project with ``walls`` named walls (no geometry): enough for patch and IDS steps."""
    model = ifcopenshell.api.run("project.create_file", version=schema)
    ifcopenshell.api.run("root.create_entity", model, ifc_class="IfcProject", name="Test project")
    ifcopenshell.api.run("unit.assign_unit", model)
    for index in range(walls):
        ifcopenshell.api.run("root.create_entity", model, ifc_class="IfcWall", name=f"Wall {index}")
    model.write(str(path))
    return path


def wall_name_ids(path: Path, entity: str = "IFCWALL", attribute: str = "Description") -> Path:
    """An IDS 1.0 file with one required specification: every ``entity`` has ``attribute`` (tiny models' walls
    have a Name but no Description, so the default fails)."""
    path.write_text(dedent(f"""\
        <?xml version="1.0" encoding="UTF-8"?>
        <ids xmlns="http://standards.buildingsmart.org/IDS" xmlns:xs="http://www.w3.org/2001/XMLSchema"
             xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
             xsi:schemaLocation="http://standards.buildingsmart.org/IDS http://standards.buildingsmart.org/IDS/1.0/ids.xsd">
          <info><title>test rules</title></info>
          <specifications>
            <specification name="{entity.lower()} has a name" ifcVersion="IFC4">
              <applicability minOccurs="1" maxOccurs="unbounded">
                <entity><name><simpleValue>{entity}</simpleValue></name></entity>
              </applicability>
              <requirements>
                <attribute><name><simpleValue>{attribute}</simpleValue></name></attribute>
              </requirements>
            </specification>
          </specifications>
        </ids>
        """))
    return path


def write_pipeline(folder: Path, text: str, name: str = "pipeline.yaml") -> Path:
    path = folder / name
    path.write_text(dedent(text))
    return path
