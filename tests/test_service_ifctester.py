"""The ifctester service as a pipeline step, compared with ifctester called directly on the same files."""

from __future__ import annotations

import json
from pathlib import Path

import ifcopenshell
import pytest
import yaml
from ifctester import ids
from redis import Redis

from ifcflow.engine.states import StepState
from ifcflow.errors import PipelineError, StepError
from ifcflow.services import ifctester as tester_service
from tests.conftest import run_pipeline, shared_ifc
from tests.factories import walls_model
from tests.helpers import bad_inputs, run_unchecked
from workers import ifctester as worker
from workers.runtime import Progress

IDS_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<ids xmlns="http://standards.buildingsmart.org/IDS" xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <info><title>{title}</title></info>
  <specifications>
"""
IDS_TAIL = "  </specifications>\n</ids>\n"


def spec(name: str, entity: str, requirement: str, usage: str = "required", version: str = "IFC4") -> str:
    """One IDS specification: every ``entity`` must satisfy ``requirement`` (an IDS requirement facet)."""
    occurs = {"required": 'minOccurs="1"', "optional": 'minOccurs="0"', "prohibited": 'minOccurs="0" maxOccurs="0"'}
    return f"""    <specification name="{name}" ifcVersion="{version}">
      <applicability {occurs[usage]}><entity><name><simpleValue>{entity}</simpleValue></name></entity></applicability>
      <requirements>{requirement}</requirements>
    </specification>
"""


def write_ids(path: Path, *specs: str, title: str = "rules") -> Path:
    path.write_text(IDS_HEAD.format(title=title) + "".join(specs) + IDS_TAIL, encoding="utf-8")
    return path


NAMED = '<attribute><name><simpleValue>Name</simpleValue></name></attribute>'
FIRE = ('<property dataType="IFCLABEL"><propertySet><simpleValue>Pset_WallCommon</simpleValue></propertySet>'
        '<baseName><simpleValue>FireRating</simpleValue></baseName></property>')
DESCRIBED = '<attribute><name><simpleValue>Description</simpleValue></name></attribute>'


def write_pipeline(folder: Path, steps: dict[str, dict]) -> Path:
    path = folder / "pipeline.yml"
    path.write_text(yaml.safe_dump({"version": 1, "name": "ids-check",
                                    "steps": {k: {"uses": "ifctester", "with": v} for k, v in steps.items()}}))
    return path


def direct(ifc: Path, ids_path: Path) -> list[bool]:
    """ifctester's own verdict per specification."""
    document_ = ids.open(str(ids_path), validate=True)
    document_.validate(ifcopenshell.open(str(ifc)))
    return [bool(s.status) for s in document_.specifications]


def test_pipeline_matches_direct_call_on_generated_model(conn: Redis, tmp_path: Path) -> None:
    ifc = walls_model(tmp_path / "walls.ifc", rated=2)
    rules = write_ids(tmp_path / "rules.ids", spec("named", "IFCWALL", NAMED), spec("fire", "IFCWALL", FIRE),
                      spec("described", "IFCWALL", DESCRIBED, usage="optional"))
    run = run_pipeline(conn, write_pipeline(tmp_path, {"check": {"ifc": "walls.ifc", "ids": "rules.ids",
                                                                 "gate": False}}), tmp_path / "runs")
    step = run.steps["check"]
    assert step.status == StepState.SUCCEEDED, step.error
    expected = direct(ifc, rules)
    assert expected == [True, False, False]
    assert step.result is not None
    data = step.result["data"]
    assert data["specifications"] == 3 and data["passed"] == expected.count(True)
    assert data["failed"] == 2 and data["required_failed"] == 1 and data["optional_failed"] == 1
    report = json.loads(Path(step.outputs["report"]).read_text())
    assert [s["status"] for s in report["specifications"]] == expected
    assert Path(step.outputs["report"]).name == "walls_ids.json"


def test_gate_fails_step_but_keeps_report(conn: Redis, tmp_path: Path) -> None:
    walls_model(tmp_path / "walls.ifc", walls=2, rated=0)
    write_ids(tmp_path / "rules.ids", spec("named", "IFCWALL", NAMED), spec("fire", "IFCWALL", FIRE))
    pipeline = write_pipeline(tmp_path, {"check": {"ifc": "walls.ifc", "ids": "rules.ids", "output": "out.html",
                                                   "report_type": "html"}})
    run = run_pipeline(conn, pipeline, tmp_path / "runs")
    step = run.steps["check"]
    assert step.status == StepState.FAILED
    report = Path(step.outputs["report"])
    assert step.error == f"1 of 2 specifications failed: 'fire' (required); report: {report}"
    assert report.name == "out.html" and report.stat().st_size > 0
    assert not list(report.parent.glob(".partial-*"))


def test_gate_passes_when_only_optional_specifications_fail(conn: Redis, tmp_path: Path) -> None:
    walls_model(tmp_path / "walls.ifc", walls=2, rated=2)
    write_ids(tmp_path / "rules.ids", spec("fire", "IFCWALL", FIRE), spec("described", "IFCWALL", DESCRIBED, "optional"))
    run = run_pipeline(conn, write_pipeline(tmp_path, {"check": {"ifc": "walls.ifc", "ids": "rules.ids"}}),
                       tmp_path / "runs")
    step = run.steps["check"]
    assert step.status == StepState.SUCCEEDED, step.error
    assert step.result is not None and step.result["data"]["optional_failed"] == 1


def test_every_report_type_is_written(conn: Redis, tmp_path: Path) -> None:
    walls_model(tmp_path / "walls.ifc", walls=2, rated=1)
    write_ids(tmp_path / "rules.ids", spec("fire", "IFCWALL", FIRE))
    steps = {kind: {"ifc": "walls.ifc", "ids": "rules.ids", "report_type": kind, "gate": False}
             for kind in ("json", "html", "bcf", "txt")}
    run = run_pipeline(conn, write_pipeline(tmp_path, steps), tmp_path / "runs")
    for kind, step in run.steps.items():
        assert step.status == StepState.SUCCEEDED, (kind, step.error)
        report = Path(step.outputs["report"])
        assert report.suffix == f".{kind}" and report.stat().st_size > 0
    assert "fire" in Path(run.steps["txt"].outputs["report"]).read_text()
    assert Path(run.steps["bcf"].outputs["report"]).read_bytes()[:2] == b"PK"  # BCF is a zip


INVALID_IDS = IDS_HEAD.format(title="bad") + '    <specification name="no version"><applicability/></specification>\n' + IDS_TAIL


def test_invalid_ids_is_refused_before_enqueue(conn: Redis, tmp_path: Path) -> None:
    walls_model(tmp_path / "walls.ifc", walls=1, rated=2)
    (tmp_path / "rules.ids").write_text(INVALID_IDS)
    with pytest.raises(PipelineError, match="not valid IDS 1.0"):
        run_pipeline(conn, write_pipeline(tmp_path, {"check": {"ifc": "walls.ifc", "ids": "rules.ids"}}),
                     tmp_path / "runs")


def test_invalid_ids_fails_the_step_on_the_worker(conn: Redis, tmp_path: Path) -> None:
    """Bypass the client's checks (as if the IDS changed after submission): the worker says what is wrong."""
    walls_model(tmp_path / "walls.ifc", walls=1, rated=2)
    (tmp_path / "rules.ids").write_text(INVALID_IDS)
    run = run_unchecked(conn, write_pipeline(tmp_path, {"check": {"ifc": "walls.ifc", "ids": "rules.ids"}}),
                        tmp_path / "runs")
    step = run.steps["check"]
    assert step.status == StepState.FAILED
    assert step.error is not None
    assert step.error.startswith("ids file rules.ids is not valid IDS 1.0: missing required attribute 'ifcVersion'")


def _body(tmp_path: Path, ifc: str, ids_path: str) -> None:
    options = tester_service.TesterOptions.model_validate({"ifc": ifc, "ids": ids_path})
    worker.body(options, {"report": tmp_path / "r.json"}, Progress(None))


@pytest.mark.parametrize("content, message", [
    ("not xml at all", "ids file rules.ids is not valid IDS 1.0: "),
    (INVALID_IDS, "ids file rules.ids is not valid IDS 1.0: missing required attribute"),
])
def test_worker_rejects_bad_ids(tmp_path: Path, content: str, message: str) -> None:
    ifc = walls_model(tmp_path / "walls.ifc", walls=1, rated=2)
    (tmp_path / "rules.ids").write_text(content)
    with pytest.raises(StepError, match="^" + message):
        _body(tmp_path, str(ifc), str(tmp_path / "rules.ids"))


def test_worker_rejects_bad_models(tmp_path: Path) -> None:
    rules = write_ids(tmp_path / "rules.ids", spec("named", "IFCWALL", NAMED))
    for path, fragment in bad_inputs(tmp_path).values():  # not IFC, truncated, IFC4X3_RC2, missing
        with pytest.raises(StepError, match=fragment):
            _body(tmp_path, path, str(rules))


def test_real_model_matches_direct_call(conn: Redis, tmp_path: Path) -> None:
    haus = shared_ifc("AC20-FZK-Haus.ifc")
    rules = write_ids(tmp_path / "rules.ids", spec("walls named", "IFCWALLSTANDARDCASE", NAMED, version="IFC4"),
                      spec("slabs described", "IFCSLAB", DESCRIBED, version="IFC4"),
                      spec("no proxies", "IFCBUILDINGELEMENTPROXY", NAMED, usage="prohibited", version="IFC4"))
    run = run_pipeline(conn, write_pipeline(tmp_path, {"check": {"ifc": str(haus), "ids": "rules.ids",
                                                                 "gate": False}}), tmp_path / "runs")
    step = run.steps["check"]
    assert step.status == StepState.SUCCEEDED, step.error
    expected = direct(haus, rules)
    report = json.loads(Path(step.outputs["report"]).read_text())
    assert [s["status"] for s in report["specifications"]] == expected
    assert step.result is not None and step.result["data"]["passed"] == expected.count(True)
