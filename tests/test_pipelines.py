"""Every committed pipeline runs end to end on the demo models, on a real worker."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis import Redis

from ifcflow.engine.states import RunState, StepState
from ifcflow.pipeline import document
from ifcflow.standalone.demo import write_demo

from .conftest import run_pipeline

ROOT = Path(__file__).resolve().parent.parent
PIPELINES = sorted((ROOT / "pipelines").glob("*.yaml"))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_demo(tmp_path_factory.mktemp("models"))


def _inputs(path: Path, models: dict[str, Path]) -> dict[str, str]:
    """Point each input at the freshly generated demo file of the same name."""
    doc = document.load(path, check_files=False)
    return {name: str(models[Path(value).stem]) if Path(value).stem in models else str(models[name])
            for name, value in doc.pipeline.inputs.items()}


def test_example_step_names_say_what_they_export() -> None:
    """The coordination example's CSV step is named after what it exports (it once said "clashing elements")."""
    doc = document.load(ROOT / "pipelines" / "coordination.yaml", check_files=False)
    table = [(step_id, step) for step_id, step in doc.pipeline.steps.items() if step.uses == "ifccsv"]
    assert [(step_id, step.with_.query, step.with_.outputs()["table"]) for step_id, step in table] == [  # type: ignore[attr-defined]
        ("mep-segments", "IfcFlowSegment", "mep-segments.csv")]


def test_the_four_example_pipelines_exist() -> None:
    assert {p.stem for p in PIPELINES} == {"coordination", "revision-diff", "quantities", "publish"}


@pytest.mark.parametrize("path", PIPELINES, ids=[p.stem for p in PIPELINES])
def test_committed_pipeline_runs(conn: Redis, tmp_path: Path, models: dict[str, Path], path: Path) -> None:
    result = run_pipeline(conn, path, tmp_path / "runs", _inputs(path, models))
    failed = {k: (s.error, s.traceback) for k, s in result.steps.items() if s.status != StepState.SUCCEEDED}
    assert result.status == RunState.SUCCEEDED, failed
    for step in result.steps.values():
        for output in step.outputs.values():
            assert Path(output).is_file(), output
    data = {step_id: (step.result or {}).get("data", {}) for step_id, step in result.steps.items()}
    for (step_id, key), expected in HEADLINES[path.stem].items():
        assert data[step_id].get(key) == expected, (path.stem, step_id, key, data[step_id])


# Each example's headline numbers on the demo models: an example can never silently do nothing again.
HEADLINES: dict[str, dict[tuple[str, str], object]] = {
    "coordination": {("clash", "clashes"): 3, ("validate", "specifications"): 3, ("validate", "passed"): 2,
                     ("validate", "optional_failed"): 1, ("mep-segments", "rows"): 3,
                     ("arch-glb", "elements"): 7, ("mep-glb", "elements"): 3},
    "publish": {("glb", "elements"): 7, ("obj", "elements"): 7, ("svg", "elements"): 7, ("json", "entities"): 29},
    "quantities": {("qto", "quantified"): 7, ("qto", "quantities"): 54, ("table", "rows"): 4},
    "revision-diff": {("diff", "added"): 1, ("diff", "deleted"): 1, ("diff", "changed"): 1, ("json", "entities"): 29},
}
