"""The ifcdiff service as a pipeline step, compared with IfcDiff called directly on the same revisions."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path
from typing import Any

import ifcopenshell
import ifcopenshell.api
import pytest
from ifcdiff import IfcDiff
from pydantic import ValidationError
from redis import Redis

from ifcflow.engine.states import StepState
from ifcflow.services.ifcdiff import DiffOptions
from tests.conftest import run_pipeline, shared_ifc
from tests.factories import add_wall, walls_model
from tests.helpers import succeeded
from tests.test_service_ifccsv import pipeline_file


def revise(old: Path, new: Path) -> dict[str, str]:
    """Write ``new``: ``old`` with wall W1 renamed, W2 deleted and a wall W9 added. Returns what changed."""
    model = ifcopenshell.open(str(old))
    walls = {w.Name: w for w in model.by_type("IfcWall")}
    walls["W1"].Name = "W1 renamed"
    deleted = walls["W2"].GlobalId
    ifcopenshell.api.run("root.remove_product", model, product=walls["W2"])
    body = next(c for c in model.by_type("IfcGeometricRepresentationSubContext") if c.ContextIdentifier == "Body")
    added = add_wall(model, body, model.by_type("IfcBuildingStorey")[0], "W9", y=40.0).GlobalId
    model.write(str(new))
    return {"added": added, "deleted": deleted, "changed": walls["W1"].GlobalId}


def direct(old: Path, new: Path, out: Path, **kw: Any) -> dict[str, Any]:
    differ = IfcDiff(ifcopenshell.open(str(old)), ifcopenshell.open(str(new)), **kw)
    with contextlib.redirect_stdout(io.StringIO()):
        differ.diff()
    logging.disable(logging.NOTSET)
    differ.export(str(out))
    return normal(out)


def normal(path: Path) -> dict[str, Any]:
    """The diff JSON with its (unordered) GlobalId lists sorted."""
    data = json.loads(path.read_text())
    return {"added": sorted(data["added"]), "deleted": sorted(data["deleted"]), "changed": data["changed"]}


@pytest.fixture()
def revisions(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    old = walls_model(tmp_path / "v1.ifc", walls=4, rated=2, description="outer wall")
    changes = revise(old, tmp_path / "v2.ifc")
    return old, tmp_path / "v2.ifc", changes


def test_pipeline_matches_direct_call(conn: Redis, tmp_path: Path, revisions: tuple[Path, Path, dict[str, str]],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    old, new, changes = revisions
    run = run_pipeline(conn, pipeline_file(tmp_path, {"diff": ("ifcdiff", {"old_file": "v1.ifc",
                                                                            "new_file": "v2.ifc"})}), tmp_path / "runs")
    step = succeeded(run, "diff")
    assert Path(step.outputs["diff"]).name == "diff.json"
    got = normal(Path(step.outputs["diff"]))
    assert "item(s)" not in capsys.readouterr().out  # ifcdiff's prints stay off the worker's stdout
    assert logging.root.manager.disable == logging.NOTSET  # and logging is back on
    expected = direct(old, new, tmp_path / "direct.json")
    assert got == expected
    assert got["added"] == [changes["added"]] and got["deleted"] == [changes["deleted"]]
    assert got["changed"] == {changes["changed"]: {"attributes_changed": True}}
    assert step.result["data"] == {"added": 1, "deleted": 1, "changed": 1}


def test_options_reach_ifcdiff(conn: Redis, tmp_path: Path, revisions: tuple[Path, Path, dict[str, str]]) -> None:
    old, new, changes = revisions
    options = {"relationships": ["attributes", "container"], "is_shallow": False, "filter_elements": "IfcWall"}
    run = run_pipeline(conn, pipeline_file(tmp_path, {
        "walls": ("ifcdiff", {"old": "v1.ifc", "new": "v2.ifc", "output": "walls.json", **options}),
        "storeys": ("ifcdiff", {"old": "v1.ifc", "new": "v2.ifc", "output": "storeys.json",
                                "filter_elements": "IfcBuildingStorey"}),
    }), tmp_path / "runs")
    walls = succeeded(run, "walls")
    assert normal(Path(walls.outputs["diff"])) == direct(old, new, tmp_path / "d.json", **options)
    assert walls.result["data"] == {"added": 1, "deleted": 1, "changed": 1}
    storeys = succeeded(run, "storeys")
    assert storeys.result["data"] == {"added": 0, "deleted": 0, "changed": 0}


def test_invalid_options(conn: Redis, tmp_path: Path, revisions: tuple[Path, Path, dict[str, str]]) -> None:
    with pytest.raises(ValidationError, match="must end in .json"):
        DiffOptions(old="a.ifc", new="b.ifc", output="diff.csv")
    with pytest.raises(ValidationError):
        DiffOptions.model_validate({"old": "a.ifc", "new": "b.ifc", "relationships": ["colour"]})
    run = run_pipeline(conn, pipeline_file(tmp_path, {"diff": ("ifcdiff", {"old": "v1.ifc", "new": "v2.ifc",
                                                                            "filter_elements": "IfcWall, [["})}),
                       tmp_path / "runs")
    assert run.steps["diff"].status == StepState.FAILED
    assert (run.steps["diff"].error or "").startswith("filter_elements 'IfcWall, [[' is not a valid selector")


def test_real_model_revision(conn: Redis, tmp_path: Path) -> None:
    house = shared_ifc("IfcOpenHouse_IFC4.ifc")
    model = ifcopenshell.open(str(house))
    door = model.by_type("IfcDoor")[0]
    door.Name = "front door (revised)"
    ifcopenshell.api.run("root.remove_product", model, product=model.by_type("IfcWindow")[0])
    model.write(str(tmp_path / "house_v2.ifc"))
    run = run_pipeline(conn, pipeline_file(tmp_path, {"diff": ("ifcdiff", {"old": str(house), "new": "house_v2.ifc",
                                                                            "output": "house.json"})}),
                       tmp_path / "runs")
    step = succeeded(run, "diff")
    got = normal(Path(step.outputs["diff"]))
    assert got == direct(house, tmp_path / "house_v2.ifc", tmp_path / "direct.json")
    assert step.result["data"] == {"added": 0, "deleted": 1, "changed": len(got["changed"])}
    assert door.GlobalId in got["changed"]
