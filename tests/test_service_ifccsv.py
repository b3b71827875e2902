"""The ifccsv and ifccsv-import services as pipeline steps, compared with IfcCsv called directly on the same files."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import ifcopenshell
import ifcopenshell.api
import ifcopenshell.util.element
import ifcopenshell.util.selector
import pandas as pd
import pytest
import yaml
from ifccsv import IfcCsv
from pydantic import ValidationError
from redis import Redis

from ifcflow.engine.states import StepState
from ifcflow.services.ifccsv import CsvExportOptions, CsvImportOptions
from tests.conftest import run_pipeline, shared_ifc
from tests.factories import walls_model
from tests.helpers import run_unchecked, succeeded

ATTRIBUTES = ["Name", "Description", "Pset_WallCommon.FireRating"]


def pipeline_file(folder: Path, steps: dict[str, tuple[str, dict[str, Any]]], name: str = "pipeline.yml") -> Path:
    """A pipeline with one step per entry: id -> (service, with-block)."""
    path = folder / name
    path.write_text(yaml.safe_dump({"version": 1, "name": "tables",
                                    "steps": {k: {"uses": uses, "with": w} for k, (uses, w) in steps.items()}}))
    return path


def direct_export(ifc: Path, out: Path, attributes: list[str], query: str = "IfcProduct", fmt: str = "csv",
                  delimiter: str = ",", null: str = "-") -> Path:
    model = ifcopenshell.open(str(ifc))
    elements = sorted(ifcopenshell.util.selector.filter_elements(model, query), key=lambda e: e.id())
    IfcCsv().export(model, elements, list(attributes),
                    output=str(out), format=fmt, delimiter=delimiter, null=null)
    return out


def read_csv(path: Path, delimiter: str = ",") -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle, delimiter=delimiter))


def test_csv_export_matches_direct_call(conn: Redis, tmp_path: Path) -> None:
    ifc = walls_model(tmp_path / "walls.ifc", walls=3, rated=2, description="outer wall")
    run = run_pipeline(conn, pipeline_file(tmp_path, {"export": ("ifccsv", {
        "filename": "walls.ifc", "query": "IfcWall", "attributes": ATTRIBUTES, "delimiter": ";",
        "null_value": "n/a"})}), tmp_path / "runs")
    step = succeeded(run, "export")
    table = Path(step.outputs["table"])
    assert table.name == "walls.csv"
    expected = direct_export(ifc, tmp_path / "direct.csv", ATTRIBUTES, "IfcWall", delimiter=";", null="n/a")
    assert table.read_bytes() == expected.read_bytes()  # same element order in, same bytes out
    rows = read_csv(table, ";")
    assert rows[0] == ["GlobalId", *ATTRIBUTES]
    assert [r[1:] for r in rows[1:]] == [["W0", "outer wall", "REI60"], ["W1", "n/a", "REI60"], ["W2", "n/a", "n/a"]]
    assert step.result["data"] == {"rows": 3, "columns": 4, "format": "csv"}


@pytest.mark.parametrize("fmt", ["xlsx", "ods"])
def test_spreadsheet_export_matches_direct_call(conn: Redis, tmp_path: Path, fmt: str) -> None:
    ifc = walls_model(tmp_path / "walls.ifc", rated=2, description="outer wall")
    # format follows the output's extension when it is not given; an explicit GlobalId is not repeated
    run = run_pipeline(conn, pipeline_file(tmp_path, {"export": ("ifccsv", {
        "ifc": "walls.ifc", "output_filename": f"table.{fmt}", "attributes": ["GlobalId", *ATTRIBUTES]})}),
        tmp_path / "runs")
    step = succeeded(run, "export")
    engine = "odf" if fmt == "ods" else "openpyxl"
    got = pd.read_excel(step.outputs["table"], engine=engine)
    expected = pd.read_excel(direct_export(ifc, tmp_path / f"direct.{fmt}", ATTRIBUTES, fmt=fmt), engine=engine)
    pd.testing.assert_frame_equal(got.sort_values("GlobalId", ignore_index=True),
                                  expected.sort_values("GlobalId", ignore_index=True))
    assert list(got.columns) == ["GlobalId", *ATTRIBUTES] and len(got) == 5  # 3 walls, site, storey


def test_format_must_agree_with_output() -> None:
    assert CsvExportOptions(ifc="m.ifc").outputs() == {"table": "m.csv"}
    assert CsvExportOptions(ifc="a/m.ifc", format="ods").outputs() == {"table": "m.ods"}
    assert CsvExportOptions(ifc="m.ifc", output="t.xlsx").format == "xlsx"
    with pytest.raises(ValidationError, match="does not end in .csv"):
        CsvExportOptions(ifc="m.ifc", output="t.xlsx", format="csv")
    with pytest.raises(ValidationError, match="does not end in .csv"):
        CsvExportOptions(ifc="m.ifc", output="t.txt")
    with pytest.raises(ValidationError, match="one character"):
        CsvExportOptions(ifc="m.ifc", delimiter="||")
    assert CsvImportOptions.model_validate({"ifc_filename": "d/m.ifc", "csv_filename": "t.csv"}).outputs() == {"model": "m_updated.ifc"}


def values(path: Path, attributes: list[str], query: str = "IfcProduct") -> dict[str, list[Any]]:
    """GlobalId -> attribute values, read with ifcopenshell."""
    model = ifcopenshell.open(str(path))
    return {e.GlobalId: [ifcopenshell.util.selector.get_element_value(e, a) for a in attributes]
            for e in ifcopenshell.util.selector.filter_elements(model, query)}


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "ods"])
def test_round_trip_changes_exactly_the_edited_value(conn: Redis, tmp_path: Path, fmt: str) -> None:
    ifc = walls_model(tmp_path / "walls.ifc", rated=2, description="outer wall")
    run = run_pipeline(conn, pipeline_file(tmp_path, {"export": ("ifccsv", {
        "ifc": "walls.ifc", "format": fmt, "attributes": ATTRIBUTES})}), tmp_path / "runs")
    table = Path(succeeded(run, "export").outputs["table"])
    edited = tmp_path / f"edited.{fmt}"
    if fmt == "csv":
        rows = read_csv(table)
        target = next(r for r in rows if r[1] == "W1")
        target[3] = "REI120"
        with edited.open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows(rows)
        guid = target[0]
    else:
        frame = pd.read_excel(table)
        frame.loc[frame["Name"] == "W1", "Pset_WallCommon.FireRating"] = "REI120"
        frame.to_excel(edited, index=False, engine="odf" if fmt == "ods" else "openpyxl")
        guid = frame.loc[frame["Name"] == "W1", "GlobalId"].iloc[0]

    run = run_pipeline(conn, pipeline_file(tmp_path, {"import": ("ifccsv-import", {
        "ifc_filename": "walls.ifc", "csv_filename": edited.name})}, "import.yml"), tmp_path / "runs")
    step = succeeded(run, "import")
    updated = Path(step.outputs["model"])
    assert updated.name == "walls_updated.ifc"
    assert step.result["data"] == {"rows": 5, "updated": 5, "missing": 0}

    before, after = values(ifc, ATTRIBUTES), values(updated, ATTRIBUTES)
    assert after.keys() == before.keys()
    changed = {g: (before[g], after[g]) for g in before if before[g] != after[g]}
    assert changed == {guid: (["W1", None, "REI60"], ["W1", None, "REI120"])}
    # the library's own import of the same table gives the same values
    direct = ifcopenshell.open(str(ifc))
    IfcCsv().Import(direct, str(edited))
    direct.write(str(tmp_path / "direct.ifc"))
    assert values(tmp_path / "direct.ifc", ATTRIBUTES) == after


def test_import_reports_unknown_rows_and_rejects_foreign_tables(conn: Redis, tmp_path: Path) -> None:
    ifc = walls_model(tmp_path / "walls.ifc", walls=2, rated=2, description="outer wall")
    rows = read_csv(direct_export(ifc, tmp_path / "t.csv", ["Name"], "IfcWall"))
    rows.append(["0000000000000000000000", "ghost"])
    with (tmp_path / "extra.csv").open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    (tmp_path / "foreign.csv").write_text("Name,GlobalId\nW0,0000000000000000000000\n", encoding="utf-8")
    (tmp_path / "other.csv").write_text("GlobalId,Name\n0000000000000000000000,x\n", encoding="utf-8")
    run = run_pipeline(conn, pipeline_file(tmp_path, {
        "extra": ("ifccsv-import", {"ifc": "walls.ifc", "table": "extra.csv", "output": "extra.ifc"}),
        "foreign": ("ifccsv-import", {"ifc": "walls.ifc", "table": "foreign.csv", "output": "foreign.ifc"}),
        "other": ("ifccsv-import", {"ifc": "walls.ifc", "table": "other.csv", "output": "other.ifc"}),
    }), tmp_path / "runs")
    extra = succeeded(run, "extra")
    assert extra.result["data"] == {"rows": 3, "updated": 2, "missing": 1}
    assert "1 rows skipped" in extra.result["message"]
    assert run.steps["foreign"].status == StepState.FAILED
    assert "must have GlobalId as its first column" in (run.steps["foreign"].error or "")
    assert run.steps["other"].status == StepState.FAILED
    assert "none of the 1 GlobalIds" in (run.steps["other"].error or "")


def test_bad_query_fails_with_a_clear_message(conn: Redis, tmp_path: Path) -> None:
    walls_model(tmp_path / "walls.ifc", walls=1, rated=2, description="outer wall")
    run = run_unchecked(conn, pipeline_file(tmp_path, {"export": ("ifccsv", {"ifc": "walls.ifc", "query": "IfcWall, [["})}),
                        tmp_path / "runs")  # validate refuses it; the worker checks again
    step = run.steps["export"]
    assert step.status == StepState.FAILED
    assert (step.error or "").startswith("query 'IfcWall, [[' is not a valid ifcopenshell selector")


def test_mixed_first_column_and_entity_values(conn: Redis, tmp_path: Path) -> None:
    """IfcCsv sorts rows by the first attribute: numbers (or entities) next to null_value would crash it."""
    ifc = walls_model(tmp_path / "walls.ifc", walls=2, rated=2, description="outer wall")
    model = ifcopenshell.open(str(ifc))
    wall = model.by_type("IfcWall")[0]
    qto = ifcopenshell.api.run("pset.add_qto", model, product=wall, name="Qto_WallBaseQuantities")
    ifcopenshell.api.run("pset.edit_qto", model, qto=qto, properties={"Length": 4.0})
    model.write(str(ifc))
    attributes = ["Qto_WallBaseQuantities.Length", "Name"]
    with pytest.raises(TypeError):  # what the library does on its own
        direct_export(ifc, tmp_path / "direct.csv", attributes)
    run = run_pipeline(conn, pipeline_file(tmp_path, {
        "mixed": ("ifccsv", {"ifc": "walls.ifc", "attributes": attributes}),
        "entities": ("ifccsv", {"ifc": "walls.ifc", "attributes": ["Representation"], "output": "e.xlsx"}),
    }), tmp_path / "runs")
    rows = read_csv(Path(succeeded(run, "mixed").outputs["table"]))
    assert rows[0] == ["GlobalId", *attributes]
    assert [r[0] for r in rows[1:]] == sorted(r[0] for r in rows[1:])  # fell back to GlobalId order
    assert sorted(r[1:] for r in rows[1:]) == [["-", "Ground"], ["-", "Site"], ["-", "W1"], ["4.0", "W0"]]
    shapes = pd.read_excel(succeeded(run, "entities").outputs["table"])  # entities are written as their STEP text
    assert sorted(str(v).split("=")[-1].split("(")[0] for v in shapes["Representation"]) == [
        "-", "-", "IfcProductDefinitionShape", "IfcProductDefinitionShape"]


def test_real_model_export_and_unchanged_round_trip(conn: Redis, tmp_path: Path) -> None:
    house = shared_ifc("IfcOpenHouse_IFC4.ifc")
    attributes = ["class", "Name", "Description", "ObjectType"]
    run = run_pipeline(conn, pipeline_file(tmp_path, {"export": ("ifccsv", {
        "ifc": str(house), "query": "IfcElement", "attributes": attributes, "output": "house.csv"})}), tmp_path / "runs")
    table = Path(succeeded(run, "export").outputs["table"])
    expected = direct_export(house, tmp_path / "direct.csv", attributes, "IfcElement")
    assert table.read_bytes() == expected.read_bytes()
    rows = read_csv(table)
    assert len(rows) - 1 == len(ifcopenshell.open(str(house)).by_type("IfcElement")) > 20

    editable = ["Name", "Description", "ObjectType"]
    direct_export(house, tmp_path / "editable.csv", editable, "IfcElement")
    run = run_pipeline(conn, pipeline_file(tmp_path, {"import": ("ifccsv-import", {
        "ifc": str(house), "table": "editable.csv"})}, "import.yml"), tmp_path / "runs")
    step = succeeded(run, "import")
    assert values(Path(step.outputs["model"]), editable, "IfcElement") == values(house, editable, "IfcElement")


def test_a_query_that_selects_nothing_warns_or_fails_with_require_elements(conn: Redis, tmp_path: Path) -> None:
    walls_model(tmp_path / "walls.ifc", walls=1)
    run = run_pipeline(conn, pipeline_file(tmp_path, {
        "doors": ("ifccsv", {"ifc": "walls.ifc", "query": "IfcDoor"}),
        "strict": ("ifccsv", {"ifc": "walls.ifc", "query": "IfcDoor", "require_elements": True, "output": "s.csv"}),
    }), tmp_path / "runs")
    doors = succeeded(run, "doors")
    assert doors.result["message"].endswith("(warning: query 'IfcDoor' selects no elements in walls.ifc)")
    strict = run.steps["strict"]
    assert strict.status == StepState.FAILED
    assert strict.error == "query 'IfcDoor' selects no elements in walls.ifc (require_elements: true); check the query against the model"
