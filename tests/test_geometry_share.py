"""Tessellate once: a glb step and clash steps of one run over the same model share one geometry pass
(workers/geometry.py), with byte-identical glb (one iterator thread: with 2 the shape order, so the glb
bytes, differ from run to run even without sharing), the same clashes, no reuse once the model changed, and retries."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from redis import Redis

from ifcflow.engine import control, status
from ifcflow.engine.states import StepState
from tests.conftest import run_pipeline, shared_ifc, work

CLASH_SETS = [
    {"name": "all", "a": [{"file": "model.ifc"}]},
    {"name": "walls-vs-rest", "a": [{"file": "model.ifc", "selector": "IfcWall", "mode": "i"}],
     "b": [{"file": "model.ifc", "selector": "IfcWall", "mode": "e"}]},
]


def write_pipeline(folder: Path, model: Path) -> Path:
    shutil.copyfile(model, folder / "model.ifc")
    path = folder / "geometry.yml"
    path.write_text(yaml.safe_dump({"version": 1, "name": "geometry", "defaults": {"cache": False}, "steps": {
        "glb": {"uses": "ifcconvert", "with": {"input": "model.ifc", "output": "model.glb", "threads": 1}},
        "clash": {"uses": "ifcclash", "with": {"clash_sets": CLASH_SETS, "output": "clashes.json"}},
    }}))
    return path


Clashes = dict[str, dict[frozenset[str], tuple[str, str, float]]]


def clashes(report: Path) -> Clashes:
    """Per clash set: unordered element pair -> (element a, clash type, distance)."""
    found: Clashes = {}
    for clash_set in json.loads(report.read_text()):
        found[clash_set["name"]] = {
            frozenset((c["a_global_id"], c["b_global_id"])): (c["a_global_id"], c["type"], round(c["distance"], 9))
            for c in clash_set["clashes"].values()}
    return found


def same_clashes(one: Clashes, other: Clashes) -> None:
    """The same element pairs in every set, each with the same type and distance when found from the same side.

    In an all-against-all set ifcclash itself reports a pair from either side depending on the order its
    threaded iterator fills the tree; with check_all false the type and distance then describe the first contact
    from that side (e.g. pierce one way, protrusion the other), so only same-side findings are comparable."""
    assert one.keys() == other.keys()
    for name, pairs in one.items():
        assert pairs.keys() == other[name].keys(), name
        same_side = [pair for pair, found in pairs.items() if found[0] == other[name][pair][0]]
        assert len(same_side) >= 0.9 * len(pairs), name
        assert all(pairs[pair] == other[name][pair] for pair in same_side), name


def run(conn: Redis, folder: Path) -> status.RunStatus:
    result = run_pipeline(conn, write_pipeline(folder, shared_ifc("duplex.ifc")), folder / "runs")
    for step in result.steps.values():
        assert step.status == StepState.SUCCEEDED, step.error
    return result


def data(step: Any) -> dict[str, Any]:
    assert step.result is not None
    result: dict[str, Any] = step.result["data"]
    return result


def test_shared_pass_gives_the_same_glb_and_clashes(conn: Redis, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "shared").mkdir()
    (tmp_path / "alone").mkdir()
    shared = run(conn, tmp_path / "shared")
    monkeypatch.setenv("IFCFLOW_SHARE_GEOMETRY", "0")
    alone = run(conn, tmp_path / "alone")
    assert data(shared.steps["glb"])["shared_geometry"] and data(shared.steps["clash"])["shared_geometry"]
    assert not data(alone.steps["glb"])["shared_geometry"] and not data(alone.steps["clash"])["shared_geometry"]
    glb = Path(shared.steps["glb"].outputs["model"]).read_bytes()
    assert glb == Path(alone.steps["glb"].outputs["model"]).read_bytes()
    assert data(shared.steps["glb"])["elements"] == data(alone.steps["glb"])["elements"]
    got = clashes(Path(shared.steps["clash"].outputs["report"]))
    same_clashes(got, clashes(Path(alone.steps["clash"].outputs["report"])))
    assert got["walls-vs-rest"] == clashes(Path(alone.steps["clash"].outputs["report"]))["walls-vs-rest"]
    assert len(got["all"]) > 100 and got["walls-vs-rest"]
    assert data(shared.steps["clash"])["clash_sets"] == data(alone.steps["clash"])["clash_sets"]
    assert len(list((tmp_path / "shared" / "runs").glob("*/.geometry/*/*.glb"))) == 1
    assert not list((tmp_path / "alone" / "runs").glob("*/.geometry"))


def test_changed_model_is_tessellated_again_on_retry(conn: Redis, tmp_path: Path) -> None:
    first = run(conn, tmp_path)
    assert data(first.steps["clash"])["clash_sets"]["all"] > 100
    other = shared_ifc("AC20-FZK-Haus.ifc")
    shutil.copyfile(other, tmp_path / "model.ifc")  # same path, different sha256
    assert control.retry(conn, first.run_id, "clash") == ["clash"]
    work(conn)
    again = status.read(conn, first.run_id)
    step = again.steps["clash"]
    assert step.status == StepState.SUCCEEDED, step.error
    assert data(step)["shared_geometry"]  # a fresh pass over the new model, not the old one's clashes
    folders = sorted(p.name for p in (Path(first.steps["glb"].outputs["model"]).parents[1] / ".geometry").iterdir())
    assert len(folders) == 2
    (tmp_path / "direct").mkdir()
    direct = status.read(conn, run_pipeline(conn, write_pipeline(tmp_path / "direct", other),
                                            tmp_path / "direct" / "runs").run_id)
    assert data(step)["clash_sets"] == data(direct.steps["clash"])["clash_sets"]
    assert data(step)["clash_sets"] != data(first.steps["clash"])["clash_sets"]


def test_retry_of_one_step_reads_the_shared_products(conn: Redis, tmp_path: Path) -> None:
    first = run(conn, tmp_path)
    glb = Path(first.steps["glb"].outputs["model"]).read_bytes()
    report = clashes(Path(first.steps["clash"].outputs["report"]))
    for step_id in ("glb", "clash"):
        assert control.retry(conn, first.run_id, step_id) == [step_id]
        work(conn)
    again = status.read(conn, first.run_id)
    assert all(s.status == StepState.SUCCEEDED for s in again.steps.values())
    assert Path(again.steps["glb"].outputs["model"]).read_bytes() == glb
    assert clashes(Path(again.steps["clash"].outputs["report"])) == report  # read back: the same file
    assert data(again.steps["clash"])["shared_geometry"]


def test_a_bad_clash_set_fails_only_its_step(conn: Redis, tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path, shared_ifc("duplex.ifc"))
    document = yaml.safe_load(pipeline.read_text())
    document["steps"]["clash"]["with"]["clash_sets"] = [
        {"name": "none", "a": [{"file": "model.ifc", "selector": "IfcTendon", "mode": "i"}]}]
    pipeline.write_text(yaml.safe_dump(document))
    result = run_pipeline(conn, pipeline, tmp_path / "runs")
    assert result.steps["glb"].status == StepState.SUCCEEDED, result.steps["glb"].error
    assert data(result.steps["glb"])["shared_geometry"]
    clash = result.steps["clash"]
    assert clash.status == StepState.FAILED
    assert clash.error is not None and "selects no elements" in clash.error and "Traceback" not in clash.error
