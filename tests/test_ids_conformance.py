"""The buildingSMART IDS conformance suite, every case run as an ifctester pipeline step.

Each step must report exactly the verdict ifctester gives when called directly on the same pair; the direct
verdicts are also compared with the suite's expected verdicts: ``pass-`` cases should pass, ``fail-`` and
``invalid-`` cases should fail (ifctester 0.9 agrees on most).
"""

from __future__ import annotations

import time
from pathlib import Path

import ifcopenshell
import pytest
import yaml
from ifctester import ids
from redis import Redis

from ifcflow.engine.states import StepState
from tests.conftest import SHARED, run_pipeline

SUITE = SHARED / "ids-testcases"
CASES = 314
"""Pairs in the suite; counted so that a missing folder cannot pass silently."""
AGREEING = 291
"""Direct ifctester 0.9 verdicts that match the expected pass-/fail- prefix (see the shared notes)."""


def cases() -> list[Path]:
    """Every IDS file of the suite (its IFC has the same name)."""
    if not SUITE.is_dir():
        pytest.skip(f"{SUITE} is not present: the IDS conformance test needs ../shared next to the checkout")
    return sorted(SUITE.glob("*/*.ids"))


def direct_verdict(ids_path: Path) -> bool:
    """ifctester's overall verdict: every specification passed."""
    document = ids.open(str(ids_path), validate=True)
    document.validate(ifcopenshell.open(str(ids_path.with_suffix(".ifc"))))
    return all(bool(s.status) for s in document.specifications)


def write_pipeline(folder: Path, found: list[Path]) -> Path:
    steps = {
        f"c{index:03d}": {"uses": "ifctester",
                          "with": {"ifc": str(path.with_suffix(".ifc")), "ids": str(path), "gate": False,
                                   "report_type": "json", "output": f"{path.stem}.json"}}
        for index, path in enumerate(found)
    }
    file = folder / "conformance.yml"
    file.write_text(yaml.safe_dump({"version": 1, "name": "ids-conformance", "steps": steps}))
    return file


def test_suite_is_complete() -> None:
    found = cases()
    assert len(found) == CASES, f"expected {CASES} IDS cases in {SUITE}, found {len(found)}"
    missing = [p.name for p in found if not p.with_suffix(".ifc").is_file()]
    assert not missing, f"IDS cases without their IFC: {missing}"
    odd = [p.name for p in found if not p.name.startswith(("pass-", "fail-", "invalid-"))]
    assert not odd, f"cases without a pass-/fail-/invalid- verdict prefix: {odd}"


def test_pipeline_verdicts_match_direct_ifctester(conn: Redis, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    found = cases()
    assert len(found) == CASES
    started = time.monotonic()
    run = run_pipeline(conn, write_pipeline(tmp_path, found), tmp_path / "runs")
    pipeline_seconds = time.monotonic() - started
    assert len(run.steps) == CASES

    started = time.monotonic()
    direct = {f"c{index:03d}": direct_verdict(path) for index, path in enumerate(found)}
    direct_seconds = time.monotonic() - started

    broken = {k: (s.status.value, s.error) for k, s in run.steps.items() if s.status != StepState.SUCCEEDED}
    assert not broken, f"{len(broken)} steps did not succeed: {dict(list(broken.items())[:5])}"
    verdicts = {}
    for key, step in run.steps.items():
        assert step.result is not None, f"{key} has no result"
        data = step.result["data"]
        assert data["passed"] + data["failed"] == data["specifications"]
        verdicts[key] = data["failed"] == 0
    differing = [found[int(k[1:])].name for k in direct if verdicts[k] != direct[k]]
    assert not differing, f"pipeline and direct ifctester disagree on {len(differing)} cases: {differing[:10]}"

    expected = {f"c{index:03d}": path.name.startswith("pass-") for index, path in enumerate(found)}
    agreeing = sum(direct[k] == expected[k] for k in direct)
    with capsys.disabled():
        print(f"\nIDS suite: {CASES} cases, pipeline {pipeline_seconds:.1f} s, direct {direct_seconds:.1f} s; "
              f"ifctester agrees with the expected verdict on {agreeing} of {CASES}")
    assert agreeing >= AGREEING, f"ifctester agrees with only {agreeing} of {CASES} expected verdicts"
