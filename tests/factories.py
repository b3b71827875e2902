"""Small IFC models and IDS files built in code for tests."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent
from typing import Any

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


def new_storey_model(schema: str = "IFC4") -> tuple[ifcopenshell.file, Any, Any]:
    """An empty model in metres: project "P", site "Site" and storey "Ground" (elevation 0), plus the
    Model/Body/MODEL_VIEW context that ``add_wall`` and ``ifcflow.standalone.demo.add_duct`` draw in. Returns (model, body,
    storey). Unlike ``ifcflow.standalone.demo.new_model`` there is no IfcBuilding: tests count the products."""
    run = ifcopenshell.api.run
    model = run("project.create_file", version=schema)
    project = run("root.create_entity", model, ifc_class="IfcProject", name="P")
    run("unit.assign_unit", model, length={"is_metric": True, "raw": "METERS"})
    context = run("context.add_context", model, context_type="Model")
    body = run("context.add_context", model, context_type="Model", context_identifier="Body",
               target_view="MODEL_VIEW", parent=context)
    site = run("root.create_entity", model, ifc_class="IfcSite", name="Site")
    storey = run("root.create_entity", model, ifc_class="IfcBuildingStorey", name="Ground")
    storey.Elevation = 0.0
    run("aggregate.assign_object", model, products=[site], relating_object=project)
    run("aggregate.assign_object", model, products=[storey], relating_object=site)
    return model, body, storey


def add_wall(model: ifcopenshell.file, body: Any, storey: Any, name: str, x: float = 0.0, y: float = 0.0,
             length: float = 4.0) -> Any:
    """One extruded wall (``length`` x 3 x 0.2 m) along +X from (``x``, ``y``), contained in ``storey``. Without
    the Pset_WallCommon that ``ifcflow.standalone.demo.add_wall`` always adds: tests look at the property sets."""
    run = ifcopenshell.api.run
    wall = run("root.create_entity", model, ifc_class="IfcWall", name=name)
    shape = run("geometry.add_wall_representation", model, context=body, length=length, height=3, thickness=0.2)
    run("geometry.assign_representation", model, product=wall, representation=shape)
    matrix = [[1.0, 0.0, 0.0, x], [0.0, 1.0, 0.0, y], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    run("geometry.edit_object_placement", model, product=wall, matrix=matrix, is_si=True)
    run("spatial.assign_container", model, products=[wall], relating_structure=storey)
    return wall


def walls_model(path: Path, walls: int = 3, rated: int = 0, names: list[str] | None = None,
                description: str | None = None, spacing: float = 5.0, schema: str = "IFC4") -> Path:
    """A model (see ``new_storey_model``) with ``walls`` walls W0, W1, ... (or ``names``) ``spacing`` m apart
    along y; the first ``rated`` get Pset_WallCommon.FireRating REI60, the first gets ``description``."""
    model, body, storey = new_storey_model(schema)
    for index, name in enumerate(names or [f"W{i}" for i in range(walls)]):
        wall = add_wall(model, body, storey, name, y=index * spacing)
        if index == 0 and description is not None:
            wall.Description = description
        if index < rated:
            pset = ifcopenshell.api.run("pset.add_pset", model, product=wall, name="Pset_WallCommon")
            ifcopenshell.api.run("pset.edit_pset", model, pset=pset, properties={"FireRating": "REI60"})
    model.write(str(path))
    return path


ONE_STEP = """\
    version: 1
    name: one
    inputs: {arch: arch.ifc}
    steps:
      patch: {uses: ifcpatch, with: {ifc: "${{ inputs.arch }}", recipe: Optimise}}
    """
"""A one-step pipeline over input ``arch`` (a tiny step: ``ifcpatch Optimise``)."""
