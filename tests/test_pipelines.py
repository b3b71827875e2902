"""Every committed pipeline runs end to end on the demo models, on a real worker."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis import Redis

from ifcflow import document
from ifcflow.demo import write_demo
from ifcflow.states import RunState, StepState

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
