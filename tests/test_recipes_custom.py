"""ifcflow's own IfcPatch recipes (the original system's custom ones, written anew) on real models, with the
arguments as the original's n8n workflows pass them; results read back with ifcopenshell.util."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import ifcopenshell
import ifcopenshell.util.element
import pytest

from ifcflow.errors import StepError
from tests.conftest import shared_ifc
from workers import recipes

LOG = logging.getLogger("test")


def run(name: str, model: ifcopenshell.file, *arguments: object) -> ifcopenshell.file:
    patcher = recipes.patcher_class(name)
    assert patcher is not None, name
    instance = patcher(model, LOG, *arguments)
    instance.patch()
    return instance.get_output()  # type: ignore[no-any-return]


def surface_colours(element: ifcopenshell.entity_instance) -> list[tuple[float, float, float]]:
    found = []
    for style in ifcopenshell.util.element.get_styles(element):
        for item in style.Styles or []:
            if item.is_a("IfcSurfaceStyleShading"):
                c = item.SurfaceColour
                found.append((round(c.Red, 3), round(c.Green, 3), round(c.Blue, 3)))
    return found


def reopened(model: ifcopenshell.file, tmp_path: Path) -> ifcopenshell.file:
    path = tmp_path / "out.ifc"
    model.write(str(path))
    return ifcopenshell.open(str(path))


def test_set_color_by_selector_colours_the_walls_red(tmp_path: Path) -> None:
    model = ifcopenshell.open(str(shared_ifc("AC20-FZK-Haus.ifc")))
    op = json.dumps({"selectors": "IfcWall", "hex": "FF0000"})
    slab = json.dumps({"selectors": "IfcSlab", "hex": "00ff00"})
    out = reopened(run("SetColorBySelector", model, op, slab, "", "", ""), tmp_path)
    walls = out.by_type("IfcWall")
    assert walls and all((1.0, 0.0, 0.0) in surface_colours(w) for w in walls)
    assert all((0.0, 1.0, 0.0) in surface_colours(s) for s in out.by_type("IfcSlab"))
    assert all((1.0, 0.0, 0.0) not in surface_colours(d) for d in out.by_type("IfcDoor"))


def test_set_property_by_selector_sets_a_typed_value(tmp_path: Path) -> None:
    model = ifcopenshell.open(str(shared_ifc("duplex.ifc")))
    op = json.dumps({"selector": "IfcWall", "property": "Pset_WallCommon.Status", "data_type": "IfcText",
                     "value": "Approved"})
    fire = json.dumps({"selector": "IfcWall", "property": "Custom.Load", "data_type": "IfcReal", "value": "12.5"})
    out = reopened(run("SetPropertyBySelector", model, op, fire), tmp_path)
    walls = out.by_type("IfcWall")
    assert walls
    for wall in walls:
        assert ifcopenshell.util.element.get_pset(wall, "Pset_WallCommon", "Status") == "Approved"
        assert ifcopenshell.util.element.get_pset(wall, "Custom", "Load") == 12.5
    status = next(p for p in out.by_type("IfcPropertySingleValue") if p.Name == "Status")
    assert status.NominalValue.is_a("IfcText")


def test_set_attribute_by_selector(tmp_path: Path) -> None:
    model = ifcopenshell.open(str(shared_ifc("IfcOpenHouse_IFC4.ifc")))
    op = json.dumps({"selector": "IfcWindow", "attribute": "Description", "value": "checked"})
    out = reopened(run("SetAttributeBySelector", model, op), tmp_path)
    assert out.by_type("IfcWindow") and all(w.Description == "checked" for w in out.by_type("IfcWindow"))
    with pytest.raises(StepError, match="no attribute"):
        run("SetAttributeBySelector", model, json.dumps({"selector": "IfcWall", "attribute": "Colour", "value": 1}))


def test_remove_elements_removes_them_their_fillings_and_orphan_types(tmp_path: Path) -> None:
    model = ifcopenshell.open(str(shared_ifc("AC20-FZK-Haus.ifc")))
    before = {k: len(model.by_type(k)) for k in ("IfcWall", "IfcSlab", "IfcCovering", "IfcDoor", "IfcWindow")}
    assert before["IfcWall"] and before["IfcDoor"]
    out = reopened(run("RemoveElements", model, "IfcWall"), tmp_path)
    assert not out.by_type("IfcWall")
    assert len(out.by_type("IfcSlab")) == before["IfcSlab"]
    hosted = [d for d in out.by_type("IfcDoor") + out.by_type("IfcWindow") if d.FillsVoids]
    assert not hosted, "fillings of removed walls' openings are removed"
    assert not [t for t in out.by_type("IfcWallType") if not ifcopenshell.util.element.get_types(t)]


def test_unknown_operation_json_is_a_step_error() -> None:
    model = ifcopenshell.open(str(shared_ifc("wall-extruded-solid.ifc")))
    with pytest.raises(StepError, match="not JSON"):
        run("SetColorBySelector", model, "IfcWall red")
    with pytest.raises(StepError, match="not a colour"):
        run("SetColorBySelector", model, json.dumps({"selectors": "IfcWall", "hex": "red"}))
