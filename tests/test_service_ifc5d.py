"""The ifc5d service as a pipeline step, compared with ifc5d.qto called directly; and ifc5d -> ifccsv chained."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import ifcopenshell
import ifcopenshell.util.element
import ifcopenshell.util.selector
import pandas as pd
import pytest
from ifc5d import qto
from pydantic import ValidationError
from redis import Redis

from ifcflow.errors import PipelineError
from ifcflow.pipeline import document
from ifcflow.services.ifc5d import QtoOptions
from tests.conftest import run_pipeline, shared_ifc
from tests.factories import walls_model
from tests.helpers import succeeded
from tests.test_service_ifccsv import pipeline_file


def direct(ifc: Path, rules: str = "IFC4QtoBaseQuantities", query: str = "IfcElement") -> dict[str, dict[str, Any]]:
    """GlobalId -> quantity set -> quantity -> value, from ifc5d called directly."""
    model = ifcopenshell.open(str(ifc))
    results = qto.quantify(model, set(ifcopenshell.util.selector.filter_elements(model, query)), qto.rules[rules])
    return {e.GlobalId: {q: dict(v) for q, v in qtos.items()} for e, qtos in results.items()}


def written(ifc: Path) -> dict[str, dict[str, Any]]:
    """GlobalId -> Qto_* sets stored in a model (without the 'id' keys)."""
    model = ifcopenshell.open(str(ifc))
    found: dict[str, dict[str, Any]] = {}
    for element in model.by_type("IfcElement"):
        qtos = ifcopenshell.util.element.get_psets(element, qtos_only=True)  # type: ignore[arg-type]
        if qtos:
            found[element.GlobalId] = {n: {k: v for k, v in q.items() if k != "id"} for n, q in qtos.items()}
    return found


def test_pipeline_matches_direct_call(conn: Redis, tmp_path: Path) -> None:
    ifc = walls_model(tmp_path / "walls.ifc", walls=3, rated=2, description="outer wall")
    run = run_pipeline(conn, pipeline_file(tmp_path, {"qto": ("ifc5d", {"input_file": "walls.ifc"})}),
                       tmp_path / "runs")
    step = succeeded(run, "qto")
    model, summary = Path(step.outputs["model"]), Path(step.outputs["summary"])
    assert (model.name, summary.name) == ("walls_qto.ifc", "walls_qto.json")
    entries = json.loads(summary.read_text())
    expected = direct(ifc)
    assert {e["GlobalId"]: e["quantities"] for e in entries} == expected
    assert [(e["class"], e["name"]) for e in entries] == [("IfcWall", "W0"), ("IfcWall", "W1"), ("IfcWall", "W2")]
    lengths = [e["quantities"]["Qto_WallBaseQuantities"]["Length"] for e in entries]
    assert lengths == pytest.approx([4.0, 4.0, 4.0])
    assert written(model) == expected  # the quantity sets in the model hold the same values
    count = sum(len(v) for q in expected.values() for v in q.values())
    assert step.result["data"] == {"selected": 3, "quantified": 3, "quantities": count}


def test_csv_summary_query_and_rule_set(conn: Redis, tmp_path: Path) -> None:
    ifc = walls_model(tmp_path / "walls.ifc", walls=2, rated=2, description="outer wall")
    run = run_pipeline(conn, pipeline_file(tmp_path, {
        "qto": ("ifc5d", {"ifc": "walls.ifc", "output": "q.ifc", "summary": "q.csv", "query": "IfcWall, Name=W1",
                          "rules": "IFC4X3QtoBaseQuantities"}),
    }), tmp_path / "runs")
    step = succeeded(run, "qto")
    with Path(step.outputs["summary"]).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    expected = direct(ifc, "IFC4X3QtoBaseQuantities", "IfcWall, Name=W1")
    assert len(expected) == 1
    assert {(r["GlobalId"], r["qset"], r["quantity"]): float(r["value"]) for r in rows} == {
        (g, s, q): v for g, qtos in expected.items() for s, values in qtos.items() for q, v in values.items()}
    assert {r["name"] for r in rows} == {"W1"}
    bad = pipeline_file(tmp_path, {"bad": ("ifc5d", {"ifc": "walls.ifc", "rules": "IFC4QtoBaseQuantitiesBlender"}),
                                   "unknown": ("ifc5d", {"ifc": "walls.ifc", "rules": "NoSuchRules"})}, "bad.yml")
    with pytest.raises(PipelineError) as caught:  # rule sets are checked before anything is enqueued
        document.load(bad)
    messages = [p.message for p in caught.value.problems]
    assert len(messages) == 2 and all(m.endswith("Rule sets: IFC4QtoBaseQuantities, IFC4X3QtoBaseQuantities")
                                      for m in messages), messages


def test_invalid_options() -> None:
    assert QtoOptions(ifc="d/m.ifc").outputs() == {"model": "m_qto.ifc", "summary": "m_qto.json"}
    with pytest.raises(ValidationError, match=".json or .csv"):
        QtoOptions(ifc="m.ifc", summary="q.xlsx")
    with pytest.raises(ValidationError, match="different file names"):
        QtoOptions(ifc="m.ifc", output="q.json", summary="q.json")


def test_quantities_chain_into_an_xlsx_table(conn: Redis, tmp_path: Path) -> None:
    walls_model(tmp_path / "walls.ifc", walls=3, rated=2, description="outer wall")
    columns = ["Name", "Qto_WallBaseQuantities.Length", "Qto_WallBaseQuantities.NetVolume"]
    run = run_pipeline(conn, pipeline_file(tmp_path, {
        "qto": ("ifc5d", {"ifc": "walls.ifc"}),
        "table": ("ifccsv", {"ifc": "${{ steps.qto.outputs.model }}", "query": "IfcWall", "attributes": columns,
                             "format": "xlsx", "output": "wall-quantities.xlsx"}),
    }), tmp_path / "runs")
    succeeded(run, "qto")
    table = pd.read_excel(succeeded(run, "table").outputs["table"])
    assert list(table.columns) == ["GlobalId", *columns]
    assert list(table["Qto_WallBaseQuantities.Length"]) == pytest.approx([4.0, 4.0, 4.0])
    assert list(table["Qto_WallBaseQuantities.NetVolume"]) == pytest.approx([4.0 * 3 * 0.2] * 3)


@pytest.mark.parametrize(("name", "query"), [
    ("IfcOpenHouse_IFC4.ifc", "IfcElement"),
    # FZK-Haus walls cost ~8 s per quantification (openings): leave them out, twice would blow the file's budget
    pytest.param("AC20-FZK-Haus.ifc", "IfcElement, ! IfcWall", marks=pytest.mark.slow),
])
def test_real_model(conn: Redis, tmp_path: Path, name: str, query: str) -> None:
    ifc = shared_ifc(name)
    run = run_pipeline(conn, pipeline_file(tmp_path, {"qto": ("ifc5d", {"ifc": str(ifc), "query": query})}),
                       tmp_path / "runs")
    step = succeeded(run, "qto")
    got = {e["GlobalId"]: e["quantities"] for e in json.loads(Path(step.outputs["summary"]).read_text())}
    expected = direct(ifc, query=query)
    assert len(expected) > 30
    assert got.keys() == expected.keys()
    for guid, qtos in expected.items():
        assert got[guid].keys() == qtos.keys()
        for qset, values in qtos.items():
            assert got[guid][qset] == pytest.approx(values), (guid, qset)
    assert step.result["data"]["quantified"] == len(expected)
