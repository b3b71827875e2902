"""The demo inputs: byte-stable, openable, with the IDS verdicts, clashes and geometry the pipelines rely on."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import ifcopenshell
import ifcopenshell.geom
import pytest
from ifcclash.ifcclash import Clasher, ClashSettings
from ifctester import ids

from ifcflow.standalone import demo


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return demo.write_demo(tmp_path_factory.mktemp("demo"))


def _counts(path: Path) -> Counter[str]:
    model = ifcopenshell.open(str(path))
    return Counter(e.is_a() for e in model.by_type("IfcProduct"))


def test_importing_the_module_does_not_import_ifcopenshell() -> None:
    code = "import sys, ifcflow.standalone.demo; sys.exit('ifcopenshell' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_written_twice_gives_identical_bytes(tmp_path: Path) -> None:
    first, second = demo.write_demo(tmp_path / "one"), demo.write_demo(tmp_path / "two")
    assert set(first) == {"arch", "arch_v2", "mep", "rules"}
    for name, path in first.items():
        assert path.name == second[name].name
        assert path.read_bytes() == second[name].read_bytes(), name
    tiny = [demo.write_tiny(tmp_path / folder / "tiny.ifc") for folder in ("one", "two")]  # the name is in the header
    assert tiny[0].read_bytes() == tiny[1].read_bytes()


def test_models_open_with_expected_counts(models: dict[str, Path]) -> None:
    assert _counts(models["arch"]) == {"IfcSite": 1, "IfcBuilding": 1, "IfcBuildingStorey": 1, "IfcWall": 4,
                                       "IfcSlab": 1, "IfcDoor": 2, "IfcOpeningElement": 2}
    assert _counts(models["arch_v2"])["IfcWall"] == 4
    assert _counts(models["mep"]) == {"IfcSite": 1, "IfcBuilding": 1, "IfcBuildingStorey": 1,
                                      "IfcDuctSegment": 2, "IfcPipeSegment": 1}
    for name in ("arch", "arch_v2", "mep"):
        model = ifcopenshell.open(str(models[name]))
        assert model.schema == "IFC4"
        assert len(model.by_type("IfcProject")) == 1
        unit = next(u for u in model.by_type("IfcSIUnit") if u.UnitType == "LENGTHUNIT")
        assert (unit.Prefix, unit.Name) == (None, "METRE")
        guids = [e.GlobalId for e in model.by_type("IfcRoot")]
        assert len(guids) == len(set(guids)), name


def test_walls_have_names_and_one_lacks_a_fire_rating(models: dict[str, Path]) -> None:
    import ifcopenshell.util.element

    model = ifcopenshell.open(str(models["arch"]))
    psets = {w.Name: ifcopenshell.util.element.get_psets(w)["Pset_WallCommon"] for w in model.by_type("IfcWall")}
    assert [name for name, pset in psets.items() if "FireRating" not in pset] == [demo.UNRATED_WALL]
    assert all(pset["IsExternal"] is True for pset in psets.values())


def test_revision_adds_deletes_and_renames_one_wall(models: dict[str, Path]) -> None:
    old = {w.GlobalId: w.Name for w in ifcopenshell.open(str(models["arch"])).by_type("IfcWall")}
    new = {w.GlobalId: w.Name for w in ifcopenshell.open(str(models["arch_v2"])).by_type("IfcWall")}
    assert [old[g] for g in set(old) - set(new)] == ["East wall"]
    assert [new[g] for g in set(new) - set(old)] == ["Partition wall"]
    assert sorted((old[g], new[g]) for g in set(old) & set(new) if old[g] != new[g]) == [
        ("North wall", "North wall (revised)")]


def test_ids_is_valid_and_only_the_fire_rating_specification_fails(models: dict[str, Path]) -> None:
    rules = ids.open(str(models["rules"]), validate=True)
    rules.validate(ifcopenshell.open(str(models["arch"])))
    verdicts = {s.name: (s.status, s.get_usage()) for s in rules.specifications}
    assert verdicts == {demo.SPEC_NAMED: (True, "required"), demo.SPEC_FIRE: (False, "optional"),
                        demo.SPEC_STOREY: (True, "required")}
    fire = next(s for s in rules.specifications if s.name == demo.SPEC_FIRE)
    failed = [f["element"].Name for r in fire.requirements for f in r.failures]
    assert failed == [demo.UNRATED_WALL]


def _clashes(a: Path, b: Path, tmp_path: Path) -> list[dict[str, Any]]:
    settings = ClashSettings()
    settings.logger = logging.getLogger("ifcclash")
    settings.output = str(tmp_path / "clashes.json")
    clasher = Clasher(settings)
    clasher.clash_sets = [{
        "name": "arch-vs-mep", "mode": "intersection", "tolerance": 0.01, "check_all": True,
        "allow_touching": False, "a": [{"file": str(a), "mode": "i", "selector": "IfcWall"}],
        "b": [{"file": str(b)}],
    }]
    clasher.clash()
    return list(clasher.clash_sets[0].get("clashes", {}).values())


def test_mep_crosses_the_walls_and_the_clear_duct_clashes_with_nothing(models: dict[str, Path],
                                                                       tmp_path: Path) -> None:
    clashes = _clashes(models["arch"], models["mep"], tmp_path)
    pairs = {frozenset((c["a_name"], c["b_name"])) for c in clashes}
    assert pairs == {frozenset(p) for p in (("South wall", "Supply duct"), ("North wall", "Supply duct"),
                                            ("West wall", "Water pipe"))}
    clashing = {name for c in clashes for name in (c["a_name"], c["b_name"])} - {w.name for w in demo.ARCH_WALLS}
    assert set(demo.CROSSING) == clashing
    assert not clashing & set(demo.CLEAR)


@pytest.mark.parametrize("name", ["arch", "arch_v2", "mep"])
def test_geometry_of_every_element(models: dict[str, Path], name: str) -> None:
    import ifcopenshell.util.shape

    settings = ifcopenshell.geom.settings()
    settings.set("use-world-coords", True)
    model = ifcopenshell.open(str(models[name]))
    elements = model.by_type("IfcWall") + model.by_type("IfcFlowSegment") + model.by_type("IfcSlab")
    assert elements
    for element in elements:
        shape = ifcopenshell.geom.create_shape(settings, element)
        vertices = ifcopenshell.util.shape.get_vertices(shape.geometry)
        assert len(vertices) >= 8, element
        body = element.Representation.Representations[0].Items[0]
        assert body.is_a("IfcExtrudedAreaSolid"), element
    walls = {w.Name: w for w in model.by_type("IfcWall")}
    if "South wall" in walls:  # metres, not millimetres: the south wall is 6 m long, 3 m high
        shape = ifcopenshell.geom.create_shape(settings, walls["South wall"])
        vertices = ifcopenshell.util.shape.get_vertices(shape.geometry)
        assert (vertices.max(0) - vertices.min(0)).round(3).tolist() == [6.0, 0.2, 3.0]


def test_tiny_model(tmp_path: Path) -> None:
    path = demo.write_tiny(tmp_path / "tiny.ifc")
    model = ifcopenshell.open(str(path))
    assert [w.Name for w in model.by_type("IfcWall")] == ["Wall"]
    assert ifcopenshell.geom.create_shape(ifcopenshell.geom.settings(), model.by_type("IfcWall")[0])


def test_factories_build_ifc2x3_with_owner_history(tmp_path: Path) -> None:
    model, storey = demo.new_model("IFC2X3")
    wall = demo.add_wall(model, storey, "W", (0.0, 0.0), (2.0, 0.0), fire_rating=None)
    duct = demo.add_duct(model, storey, "D", (1.0, -1.0, 1.0), (1.0, 1.0, 1.0), (0.3, 0.2))
    assert wall.OwnerHistory is not None and duct.is_a("IfcFlowSegment")
    settings = ifcopenshell.geom.settings()
    for element in (wall, duct):
        assert ifcopenshell.geom.create_shape(settings, element)
