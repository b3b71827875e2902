"""The ifcclash service as a pipeline step, compared with ifcclash called directly on the same models."""

from __future__ import annotations

import json
import logging
import time
import zipfile
from pathlib import Path
from typing import Any

import ifcopenshell
import ifcopenshell.api
import pytest
import yaml
from ifcclash.ifcclash import Clasher, ClashSettings
from pydantic import ValidationError
from redis import Redis

from ifcflow.engine.states import StepState
from ifcflow.errors import PipelineError
from ifcflow.services import SERVICES
from ifcflow.services import ifcclash as clash_service
from ifcflow.standalone import demo
from tests.conftest import run_pipeline, shared_ifc
from tests.factories import add_wall, new_storey_model
from tests.helpers import run_unchecked


def models(folder: Path) -> tuple[Path, Path]:
    """walls.ifc (W0 at y=0, W1 at x=6..10) and mep.ifc: round 0.2 m segments 2 m long along +Y from y=-1;
    ducts D0, D1 cross W0, pipe P0 crosses W1, D2 is clear."""
    arch, body, storey = new_storey_model()
    add_wall(arch, body, storey, "W0", 0, 0)
    add_wall(arch, body, storey, "W1", 6, 0)
    arch.write(str(folder / "walls.ifc"))
    mep, _, storey = new_storey_model()
    for ifc_class, name, x, z in (("IfcDuctSegment", "D0", 1.0, 1.5), ("IfcDuctSegment", "D1", 3.0, 1.5),
                                  ("IfcDuctSegment", "D2", 20.0, 1.5), ("IfcPipeSegment", "P0", 7.0, 1.0)):
        demo.add_duct(mep, storey, name, (x, -1.0, z), (x, 1.0, z), (0.2,), ifc_class=ifc_class)
    mep.write(str(folder / "mep.ifc"))
    return folder / "walls.ifc", folder / "mep.ifc"


SETS = [
    {"name": "arch-vs-mep", "a": [{"file": "walls.ifc"}], "b": [{"file": "mep.ifc"}]},
    {"name": "walls-vs-ducts", "a": [{"file": "walls.ifc"}],
     "b": [{"file": "mep.ifc", "selector": "IfcDuctSegment", "mode": "i"}]},
    {"name": "walls-vs-no-ducts", "a": [{"file": "walls.ifc"}],
     "b": [{"file": "mep.ifc", "selector": "IfcDuctSegment", "mode": "e"}]},
    {"name": "walls-internal", "a": [{"file": "walls.ifc", "mode": "a"}]},
]
EXPECTED = {"arch-vs-mep": 3, "walls-vs-ducts": 2, "walls-vs-no-ducts": 1, "walls-internal": 0}


def write_pipeline(folder: Path, steps: dict[str, dict[str, Any]]) -> Path:
    path = folder / "clash.yml"
    path.write_text(yaml.safe_dump({"version": 1, "name": "clash",
                                    "steps": {k: {"uses": "ifcclash", "with": v} for k, v in steps.items()}}))
    return path


def direct_counts(folder: Path, clash_sets: list[dict[str, Any]], **settings: Any) -> dict[str, int]:
    """ifcclash's own clash count per set, files resolved against ``folder``."""
    config = {"mode": "intersection", "tolerance": 0.01, "check_all": False, "allow_touching": False,
              "clearance": 0.0, **settings}
    sets = [{**cs, **config, "a": [{**s, "file": str(folder / s["file"])} for s in cs["a"]],
             "b": [{**s, "file": str(folder / s["file"])} for s in cs.get("b", [])]} for cs in clash_sets]
    clash_settings = ClashSettings()
    clash_settings.logger = logging.getLogger("direct-ifcclash")
    clasher = Clasher(clash_settings)
    clasher.clash_sets = sets
    clasher.clash()
    return {cs["name"]: len(cs["clashes"]) for cs in clasher.clash_sets}


def test_generated_models_match_direct_ifcclash(conn: Redis, tmp_path: Path) -> None:
    models(tmp_path)
    pipeline = write_pipeline(tmp_path, {"clash": {"clash_sets": SETS, "output_filename": "clashes.json",
                                                   "bcf": "clashes.bcf"}})
    run = run_pipeline(conn, pipeline, tmp_path / "runs")
    step = run.steps["clash"]
    assert step.status == StepState.SUCCEEDED, step.error
    direct = direct_counts(tmp_path, SETS)
    assert direct == EXPECTED
    assert step.result is not None
    assert step.result["data"] == {"clashes": 6, "clash_sets": direct, "shared_geometry": False}
    report = json.loads(Path(step.outputs["report"]).read_text())
    assert {cs["name"]: len(cs["clashes"]) for cs in report} == direct
    pairs = {frozenset((c["a_name"], c["b_name"])) for c in report[0]["clashes"].values()}
    assert pairs == {frozenset(p) for p in (("W0", "D0"), ("W0", "D1"), ("W1", "P0"))}
    with zipfile.ZipFile(step.outputs["bcf"]) as bcf:
        assert sum(name.endswith("markup.bcf") for name in bcf.namelist()) == 6


def test_bcf_report_and_collision_mode(conn: Redis, tmp_path: Path) -> None:
    models(tmp_path)
    sets = SETS[:2]
    pipeline = write_pipeline(tmp_path, {"clash": {"clash_sets": sets, "output": "clashes.bcf",
                                                   "mode": "collision", "allow_touching": True}})
    step = run_pipeline(conn, pipeline, tmp_path / "runs").steps["clash"]
    assert step.status == StepState.SUCCEEDED, step.error
    assert set(step.outputs) == {"report"}
    assert zipfile.is_zipfile(step.outputs["report"])
    direct = direct_counts(tmp_path, sets, mode="collision", allow_touching=True)
    assert step.result is not None and step.result["data"]["clash_sets"] == direct


def test_clearance_mode_matches_direct(conn: Redis, tmp_path: Path) -> None:
    models(tmp_path)
    sets = [{"name": "near", "a": [{"file": "walls.ifc"}], "b": [{"file": "mep.ifc"}]}]
    pipeline = write_pipeline(tmp_path, {"clash": {"clash_sets": sets, "mode": "clearance", "clearance": 0.5,
                                                   "check_all": True}})
    step = run_pipeline(conn, pipeline, tmp_path / "runs").steps["clash"]
    assert step.status == StepState.SUCCEEDED, step.error
    direct = direct_counts(tmp_path, sets, mode="clearance", clearance=0.5, check_all=True)
    assert step.result is not None and step.result["data"]["clash_sets"] == direct
    assert direct["near"] >= 1


@pytest.mark.parametrize("with_, fragment", [
    ({"mode": "clearance"}, "clearance mode needs clearance > 0"),
    ({"b_selector": "IfcWall, [Name"}, "missing ']' in selector"),
    ({"b_selector": "IfcWall, \"x"}, "unclosed \" quote"),
    ({"smart_grouping": True, "max_cluster_distance": 0}, "greater than 0"),
    ({"output": "clashes.xml"}, "must end with .json"),
    ({"b_extra": 1}, "unknown option 'colour'"),
])
def test_bad_options_are_refused_before_enqueue(conn: Redis, tmp_path: Path, with_: dict[str, Any],
                                                fragment: str) -> None:
    models(tmp_path)
    with_ = dict(with_)
    source: dict[str, Any] = {"file": "mep.ifc"}
    if "b_selector" in with_:
        source["selector"] = with_.pop("b_selector")
    if "b_extra" in with_:
        source["colour"] = with_.pop("b_extra")
    options = {"clash_sets": [{"name": "s", "a": [{"file": "walls.ifc"}], "b": [source]}], **with_}
    with pytest.raises(PipelineError, match=fragment.replace("[", r"\[")):
        run_pipeline(conn, write_pipeline(tmp_path, {"clash": options}), tmp_path / "runs")


def test_missing_nested_file_is_refused(conn: Redis, tmp_path: Path) -> None:
    models(tmp_path)
    options = {"clash_sets": [{"name": "s", "a": [{"file": "walls.ifc"}], "b": [{"file": "nowhere.ifc"}]}]}
    with pytest.raises(PipelineError, match="nowhere.ifc does not exist"):
        run_pipeline(conn, write_pipeline(tmp_path, {"clash": options}), tmp_path / "runs")


@pytest.mark.parametrize("source, options, fragment", [
    ({"file": "mep.ifc", "selector": "IfcSlab", "mode": "i"}, {},
     "clash set 's', b source 1 (mep.ifc): selector 'IfcSlab' (mode i) selects no elements"),
    ({"file": "mep.ifc", "selector": "IfcWall, , IfcSlab", "mode": "i"}, {},
     "clash set 's', b source 1 (mep.ifc): cannot understand selector"),
    ({"file": "mep.ifc"}, {"smart_grouping": True}, "smart_grouping needs scikit-learn"),
])
def test_worker_failures_are_explained(conn: Redis, tmp_path: Path, source: dict[str, Any],
                                       options: dict[str, Any], fragment: str) -> None:
    models(tmp_path)
    with_ = {"clash_sets": [{"name": "s", "a": [{"file": "walls.ifc"}], "b": [source]}], **options}
    # past validate (which refuses the bad selector), as if the files changed after submission
    step = run_unchecked(conn, write_pipeline(tmp_path, {"clash": with_}), tmp_path / "runs").steps["clash"]
    assert step.status == StepState.FAILED
    assert step.error is not None and step.error.startswith(fragment), step.error
    assert not Path(step.outputs["report"]).exists()


def test_options_model() -> None:
    model = clash_service.ClashOptions
    options = model.model_validate({"clash_sets": [{"name": "s", "a": [{"file": "a.ifc"}]}],
                                    "output_filename": "x.json"})
    assert options.outputs() == {"report": "x.json"}
    assert options.clash_sets[0].a[0].mode == "a" and options.clash_sets[0].b == []
    assert (options.tolerance, options.mode, options.max_cluster_distance) == (0.01, "intersection", 5.0)
    both = model.model_validate({"clash_sets": [{"name": "s", "a": [{"file": "a.ifc"}]}], "bcf": "x.bcf"})
    assert both.outputs() == {"report": "clashes.json", "bcf": "x.bcf"}
    with pytest.raises(ValidationError, match="must be unique"):
        model.model_validate({"clash_sets": [{"name": "s", "a": [{"file": "a.ifc"}]}] * 2})
    with pytest.raises(ValidationError, match="at least 1"):
        model.model_validate({"clash_sets": []})
    service = SERVICES["ifcclash"]
    assert (service.queue, service.timeout, service.func) == ("ifcclash", 7200, "workers.ifcclash.run")
    assert clash_service.selector_problem('IfcWall, [Name="a]b"], (IfcSlab)') is None


@pytest.mark.slow
def test_fzk_haus_all_against_all(conn: Redis, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    haus = shared_ifc("AC20-FZK-Haus.ifc")
    sets = [{"name": "all", "a": [{"file": str(haus)}]}]
    started = time.monotonic()
    with_ = {"clash_sets": sets, "bcf": "all.bcf", "check_all": True}
    step = run_pipeline(conn, write_pipeline(tmp_path, {"clash": with_}), tmp_path / "runs").steps["clash"]
    pipeline_seconds = time.monotonic() - started
    assert step.status == StepState.SUCCEEDED, step.error
    started = time.monotonic()
    direct = direct_counts(Path("/"), sets, check_all=True)
    direct_seconds = time.monotonic() - started
    with capsys.disabled():
        print(f"\nFZK-Haus all-vs-all: pipeline {pipeline_seconds:.1f} s, direct {direct_seconds:.1f} s, "
              f"{direct['all']} clashes")
    assert step.result is not None and step.result["data"]["clash_sets"] == direct
    assert direct["all"] == 144  # the notes' figure (check_all: true; 169 with the default check_all: false)
    assert zipfile.is_zipfile(step.outputs["bcf"])


def test_selection_without_geometry_is_explained(conn: Redis, tmp_path: Path) -> None:
    models(tmp_path)
    empty, _, storey = new_storey_model()
    terminal = ifcopenshell.api.run("root.create_entity", empty, ifc_class="IfcAirTerminal", name="no shape")
    ifcopenshell.api.run("spatial.assign_container", empty, products=[terminal], relating_structure=storey)
    empty.write(str(tmp_path / "bare.ifc"))
    with_ = {"clash_sets": [{"name": "bare", "a": [{"file": "walls.ifc"}], "b": [{"file": "bare.ifc"}]}]}
    step = run_pipeline(conn, write_pipeline(tmp_path, {"clash": with_}), tmp_path / "runs").steps["clash"]
    assert step.status == StepState.FAILED
    assert step.error is not None
    assert step.error.startswith("clash set 'bare': one of its selections has no elements with geometry"), step.error


@pytest.mark.parametrize(("source", "mode"), [
    ({"file": "a.ifc", "selector": "IfcWall"}, "i"),  # a selector means "these elements"
    ({"file": "a.ifc"}, "a"),  # no selector: every element
    ({"file": "a.ifc", "selector": "IfcWall", "mode": "e"}, "e"),  # the original system's explicit mode
    ({"file": "a.ifc", "selector": "IfcWall", "mode": "a"}, "a"),
])
def test_clash_source_mode_defaults_to_the_selector(source: dict[str, Any], mode: str) -> None:
    assert clash_service.ClashSource.model_validate(source).mode == mode


def test_a_selector_without_mode_selects_those_elements(conn: Redis, tmp_path: Path) -> None:
    models(tmp_path)
    sets = [{"name": "ducts", "a": [{"file": "walls.ifc"}], "b": [{"file": "mep.ifc", "selector": "IfcDuctSegment"}]}]
    step = run_pipeline(conn, write_pipeline(tmp_path, {"clash": {"clash_sets": sets}}), tmp_path / "runs").steps["clash"]
    assert step.status == StepState.SUCCEEDED, step.error
    assert step.result is not None and step.result["data"]["clashes"] == 2, step.result


def test_validate_checks_clash_selectors_against_the_models_schema(tmp_path: Path) -> None:
    from ifcflow.pipeline import document

    models(tmp_path)
    with_ = {"clash_sets": [{"name": "s", "a": [{"file": "walls.ifc", "selector": "IfcWalls"}],
                             "b": [{"file": "mep.ifc", "selector": "IfcWall, , IfcSlab"}]}]}
    with pytest.raises(PipelineError) as caught:
        document.load(write_pipeline(tmp_path, {"clash": with_}))
    messages = sorted(p.message for p in caught.value.problems)
    assert len(messages) == 2, messages
    assert "names IfcWalls, which is not an entity of IFC4" in messages[1] and "did you mean 'IfcWall'" in messages[1]
    assert messages[0].startswith("query 'IfcWall, , IfcSlab' is not a valid ifcopenshell selector"), messages


@pytest.mark.parametrize("mode", ["intersection", "collision"])
def test_set_a_element_stays_a(conn: Redis, tmp_path: Path, mode: str) -> None:
    """ifcopenshell's tree reports intersections as (mep, wall) when a is the walls; the report keeps a as a."""
    models(tmp_path)
    sets = [{"name": "walls-first", "a": [{"file": "walls.ifc"}], "b": [{"file": "mep.ifc"}]},
            {"name": "mep-first", "a": [{"file": "mep.ifc"}], "b": [{"file": "walls.ifc"}]}]
    step = run_pipeline(conn, write_pipeline(tmp_path, {"clash": {"clash_sets": sets, "mode": mode}}),
                        tmp_path / "runs").steps["clash"]
    assert step.status == StepState.SUCCEEDED, step.error
    walls_first, mep_first = json.loads(Path(step.outputs["report"]).read_text())
    assert walls_first["clashes"] and {c["a_ifc_class"] for c in walls_first["clashes"].values()} == {"IfcWall"}
    assert {c["b_ifc_class"] for c in mep_first["clashes"].values()} == {"IfcWall"}
    for clash in walls_first["clashes"].values():
        assert f"{clash['a_global_id']}-{clash['b_global_id']}" in walls_first["clashes"]
