"""The ifcconvert service as a pipeline step on a real worker, compared with ifcopenshell.geom called directly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ifcopenshell
import ifcopenshell.geom
import pytest
import yaml
from pygltflib import GLTF2
from redis import Redis

from ifcflow.engine.states import StepState
from ifcflow.errors import StepError
from ifcflow.services.ifcconvert import ConvertOptions
from tests.conftest import run_pipeline, shared_ifc
from tests.factories import walls_model
from tests.helpers import assert_bad_inputs_fail, succeeded
from workers import ifcconvert as worker
from workers.runtime import Progress

FORMATS = ("glb", "gltf", "obj", "dae", "step", "iges", "svg", "ttl")


def write_pipeline(folder: Path, steps: dict[str, dict[str, Any]]) -> Path:
    path = folder / "pipeline.yml"
    path.write_text(yaml.safe_dump({"version": 1, "name": "convert",
                                    "steps": {k: {"uses": "ifcconvert", "with": v} for k, v in steps.items()}}))
    return path


def direct_glb(ifc: Path, out: Path, **iterator_kw: Any) -> GLTF2:
    """The library alone: default IfcConvert exclusions, y-up, triangulated, into the glb serializer."""
    model = ifcopenshell.open(str(ifc))
    settings = ifcopenshell.geom.settings()
    settings.set("y-up", True)
    serializer = ifcopenshell.geom.serializers.glb(str(out), settings)
    serializer.setFile(model)
    serializer.writeHeader()
    kw = iterator_kw or {"exclude": ["IfcSpace", "IfcOpeningElement"]}
    for shape in ifcopenshell.geom.iterator(settings, model, 1, **kw):
        serializer.write(shape)
    serializer.finalize()
    del serializer  # the file is complete only once the serializer is gone
    return GLTF2().load(str(out))


def counts(gltf: GLTF2) -> tuple[int, int, int]:
    return len(gltf.meshes), len(gltf.nodes), sum(len(m.primitives) for m in gltf.meshes)


def test_glb_matches_direct_call_on_generated_model(conn: Redis, tmp_path: Path) -> None:
    ifc = walls_model(tmp_path / "walls.ifc", spacing=4.0, walls=3)
    step = succeeded(run_pipeline(conn, write_pipeline(tmp_path, {"glb": {"input": "walls.ifc"}}), tmp_path / "runs"),
                     "glb")
    produced = Path(step.outputs["model"])
    assert produced.name == "walls.glb" and produced.read_bytes()[:4] == b"glTF"
    expected = direct_glb(ifc, tmp_path / "direct.glb")
    assert counts(GLTF2().load(str(produced))) == counts(expected)
    assert len(expected.meshes) == 3
    assert step.result is not None and step.result["data"]["elements"] == 3
    log = Path(step.outputs["log"]).read_text()
    assert "3 elements converted" in log and "0 elements with a representation produced no geometry" in log


def test_every_format_is_written(conn: Redis, tmp_path: Path) -> None:
    walls_model(tmp_path / "walls.ifc", spacing=4.0, walls=2)
    steps = {fmt: {"input": "walls.ifc", "output": f"walls.{fmt}", "threads": 1} for fmt in FORMATS}
    run = run_pipeline(conn, write_pipeline(tmp_path, steps), tmp_path / "runs")
    for fmt, step in run.steps.items():
        assert step.status == StepState.SUCCEEDED, (fmt, step.error)
        out = Path(step.outputs["model"])
        assert out.suffix == f".{fmt}" and out.stat().st_size > 0, fmt
        assert Path(step.outputs["log"]).exists()
        assert not list(out.parent.glob(".partial-*"))
    obj = Path(run.steps["obj"].outputs["model"])
    assert (obj.parent / "walls.mtl").exists() and "mtllib walls.mtl" in obj.read_text()
    gltf = json.loads(Path(run.steps["gltf"].outputs["model"]).read_text())
    assert gltf["asset"]["version"] == "2.0" and len(gltf["meshes"]) == 2
    assert gltf["buffers"][0]["uri"].startswith("data:application/octet-stream;base64,")
    assert not list(Path(run.steps["gltf"].outputs["model"]).parent.glob("*.glb"))
    assert Path(run.steps["step"].outputs["model"]).read_text().startswith("ISO-10303-21;")
    assert "<path" in Path(run.steps["svg"].outputs["model"]).read_text()


def test_real_model_matches_direct_call(conn: Redis, tmp_path: Path) -> None:
    house = shared_ifc("IfcOpenHouse_IFC4.ifc")
    steps = {"glb": {"input": str(house), "output": "house.glb"},
             "walls": {"input": str(house), "output": "walls.glb", "include": ["IfcWall"]}}
    run = run_pipeline(conn, write_pipeline(tmp_path, steps), tmp_path / "runs")
    for step in run.steps.values():
        assert step.status == StepState.SUCCEEDED, step.error
    expected = direct_glb(house, tmp_path / "direct.glb")
    assert counts(GLTF2().load(run.steps["glb"].outputs["model"])) == counts(expected)
    walls = direct_glb(house, tmp_path / "walls.glb", include=["IfcWall"])
    assert counts(GLTF2().load(run.steps["walls"].outputs["model"])) == counts(walls)
    assert 0 < len(walls.meshes) < len(expected.meshes)


def test_flags_reach_the_geometry_settings(tmp_path: Path) -> None:
    model = ifcopenshell.open(str(walls_model(tmp_path / "walls.ifc", spacing=4.0, walls=1)))
    notes: list[str] = []
    options = ConvertOptions.model_validate({
        "input": "m.ifc", "output": "m.svg", "plan": True, "weld_vertices": True, "use_world_coords": True,
        "convert_back_units": True, "sew_shells": True, "disable_opening_subtractions": True, "bounds": "800x600",
        "merge_boolean_operands": True})
    settings = worker.make_settings(options, "svg", model, notes)
    for name in ("weld-vertices", "use-world-coords", "convert-back-units", "reorient-shells",
                 "disable-opening-subtractions"):
        assert settings.get(name) is True, name
    assert settings.get("dimensionality") == ifcopenshell.geom.settings.CURVES_SURFACES_AND_SOLIDS
    assert settings.get("bounds") == "800x600"
    assert settings.get("iterator-output") == ifcopenshell.geom.settings.NATIVE
    assert settings.get("section-height-from-storeys") is True
    assert any("merge_boolean_operands" in note for note in notes)
    glb = worker.make_settings(ConvertOptions.model_validate({"input": "m.ifc"}), "glb", model, notes)
    assert glb.get("y-up") is True and glb.get("iterator-output") == ifcopenshell.geom.settings.TRIANGULATED
    assert glb.get("dimensionality") == ifcopenshell.geom.settings.SURFACES_AND_SOLIDS
    with pytest.raises(StepError, match="plan and model are both false"):
        worker.make_settings(ConvertOptions.model_validate({"input": "m.ifc", "model": False}), "glb", model, notes)


def test_include_and_exclude_together(tmp_path: Path) -> None:
    ifc = walls_model(tmp_path / "walls.ifc", spacing=4.0, walls=2)
    options = ConvertOptions.model_validate({"input": str(ifc), "output": "o.obj", "include": ["IfcWall"],
                                             "exclude": ["IfcSlab"]})
    outcome = worker.body(options, {"model": tmp_path / "o.obj", "log": tmp_path / "o.log"}, Progress(None))
    assert outcome.data["elements"] == 2
    assert (tmp_path / "o.obj").read_text().count("\ng ") == 2
    options = ConvertOptions.model_validate({"input": str(ifc), "output": "o.obj", "include": ["IfcWal"]})
    with pytest.raises(StepError, match="IfcWal is not an entity type of the IFC4 schema"):
        worker.body(options, {"model": tmp_path / "o.obj", "log": tmp_path / "o.log"}, Progress(None))


def test_convert_back_units_and_world_coords(tmp_path: Path) -> None:
    ifc = walls_model(tmp_path / "walls.ifc", spacing=4.0, walls=2)
    options = ConvertOptions.model_validate({"input": str(ifc), "output": "o.dae", "convert_back_units": True,
                                             "use_world_coords": True, "weld_vertices": True})
    outcome = worker.body(options, {"model": tmp_path / "o.dae", "log": tmp_path / "o.log"}, Progress(None))
    assert outcome.data["elements"] == 2 and (tmp_path / "o.dae").stat().st_size > 0


def test_bad_inputs_fail_the_step_with_a_clear_error(conn: Redis, tmp_path: Path) -> None:
    """Bypass the client's checks (as if the files changed after submission): the worker says what is wrong."""
    assert_bad_inputs_fail(conn, tmp_path, write_pipeline, "input", "glb")
