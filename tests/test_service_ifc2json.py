"""The ifc2json service as a pipeline step on a real worker, checked against ifcopenshell reading the same model."""

from __future__ import annotations

import io
import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import ifcopenshell
import ifcopenshell.guid
import pytest
import yaml
from redis import Redis

from ifcflow.engine.states import StepState
from ifcflow.services.ifc2json import Ifc2JsonOptions
from tests.conftest import run_pipeline, shared_ifc
from tests.factories import walls_model
from tests.helpers import assert_bad_inputs_fail, succeeded
from workers import ifc2json as worker
from workers.runtime import Progress


def write_pipeline(folder: Path, steps: dict[str, dict[str, Any]]) -> Path:
    path = folder / "pipeline.yml"
    path.write_text(yaml.safe_dump({"version": 1, "name": "to-json",
                                    "steps": {k: {"uses": "ifc2json", "with": v} for k, v in steps.items()}}))
    return path


def expanded(global_id: str) -> str:
    return str(uuid.UUID(hex=ifcopenshell.guid.expand(global_id)))


def check_against_model(doc: dict[str, Any], ifc: Path) -> None:
    """Every IfcRoot of the model appears in data exactly once, with its class, and nothing else is there."""
    model = ifcopenshell.open(str(ifc))
    roots = model.by_type("IfcRoot")
    assert doc["type"] == "ifcJSON" and doc["schemaIdentifier"] == model.schema_identifier
    ids = Counter(item["globalId"] for item in doc["data"])
    assert len(doc["data"]) == len(roots)
    assert set(ids.values()) == {1}
    assert {expanded(r.GlobalId): r.is_a() for r in roots} == {i["globalId"]: i["type"] for i in doc["data"]}


def test_pipeline_matches_model_on_generated_model(conn: Redis, tmp_path: Path) -> None:
    ifc = walls_model(tmp_path / "walls.ifc", walls=3, rated=1)
    step = succeeded(run_pipeline(conn, write_pipeline(tmp_path, {"json": {"ifc": "walls.ifc"}}), tmp_path / "runs"),
                     "json")
    out = Path(step.outputs["json"])
    assert out.name == "walls.json"
    doc = json.loads(out.read_text(encoding="utf-8"))
    check_against_model(doc, ifc)
    assert step.result is not None and step.result["data"]["entities"] == len(doc["data"])
    walls = [item for item in doc["data"] if item["type"] == "IfcWall"]
    assert sorted(w["name"] for w in walls) == ["W0", "W1", "W2"]
    first = walls[0]
    assert first["objectPlacement"]["type"] == "IfcLocalPlacement"  # not rooted: nested inline
    assert first["representation"]["representations"][0]["items"][0]["type"] == "IfcExtrudedAreaSolid"
    contained = next(i for i in doc["data"] if i["type"] == "IfcRelContainedInSpatialStructure")
    assert {"type", "ref"} == set(contained["relatingStructure"])  # rooted: by reference
    assert contained["relatingStructure"]["ref"] in {i["globalId"] for i in doc["data"]}
    pset = next(i for i in doc["data"] if i["type"] == "IfcPropertySet")
    assert pset["hasProperties"][0]["nominalValue"] == {"type": "IfcLabel", "value": "REI60"}  # typed select value
    # the pipeline's file is byte-identical to the exporter called directly on the same model
    direct = io.StringIO()
    worker.write_json(ifcopenshell.open(str(ifc)), direct, Progress(None))
    assert out.read_text(encoding="utf-8") == direct.getvalue()


def test_real_model_every_root_once_and_deterministic(conn: Redis, tmp_path: Path) -> None:
    house = shared_ifc("IfcOpenHouse_IFC4.ifc")
    steps = {"first": {"ifc": str(house), "output": "a.json"}, "second": {"ifc": str(house), "output": "b.json"}}
    run = run_pipeline(conn, write_pipeline(tmp_path, steps), tmp_path / "runs")
    for step in run.steps.values():
        assert step.status == StepState.SUCCEEDED, step.error
    first = Path(run.steps["first"].outputs["json"]).read_bytes()
    assert first == Path(run.steps["second"].outputs["json"]).read_bytes()
    doc = json.loads(first)
    check_against_model(doc, house)
    assert run.steps["first"].result is not None and run.steps["first"].result["data"]["entities"] == 76


def test_small_real_model(tmp_path: Path) -> None:
    wall = shared_ifc("wall-extruded-solid.ifc")
    options = Ifc2JsonOptions.model_validate({"filename": str(wall), "output_filename": "w.json"})
    outcome = worker.body(options, {"json": tmp_path / "w.json"}, Progress(None))
    doc = json.loads((tmp_path / "w.json").read_text(encoding="utf-8"))
    check_against_model(doc, wall)
    assert outcome.data["entities"] == len(doc["data"])


def test_bad_inputs_fail_the_step_with_a_clear_error(conn: Redis, tmp_path: Path) -> None:
    """Bypass the client's checks (as if the files changed after submission): the worker says what is wrong."""
    assert_bad_inputs_fail(conn, tmp_path, write_pipeline, "ifc", "json", forbid_traceback=True)


@pytest.mark.parametrize("text, expected", [("2XPyKWY018sA1ygZKgQPtU", True), ("not-a-guid", False)])
def test_guid_expansion(text: str, expected: bool) -> None:
    result = worker.expand_guid(text)
    assert (result != text) is expected
    if expected:
        assert ifcopenshell.guid.compress(uuid.UUID(result).hex) == text
