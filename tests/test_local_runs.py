"""Local runs (no Redis configured) as a new user sees them: they leave a record, and end cleanly however ended."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from ifcflow.engine import status
from ifcflow.engine.states import RunState, StepState

from .conftest import shared_ifc
from .factories import tiny_model, wall_name_ids, write_pipeline
from .test_runs import DIAMOND

SLOW = """\
    version: 1
    name: slow
    inputs: {fzk: fzk.ifc}
    steps:
      clash:
        uses: ifcclash
        with:
          clash_sets: [{name: all, a: [{file: "${{ inputs.fzk }}"}], b: []}]
          check_all: true
    """


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    tiny_model(tmp_path / "arch.ifc")
    wall_name_ids(tmp_path / "rules.ids")
    return tmp_path


def cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "IFCFLOW_REDIS_URL"}
    return subprocess.run([sys.executable, "-m", "ifcflow", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)


def test_a_finished_local_run_can_be_looked_at(folder: Path) -> None:
    done = cli("run", str(write_pipeline(folder, DIAMOND)), cwd=folder)
    assert done.returncode == 0, done.stderr
    (run_dir,) = [p for p in (folder / "ifcflow-runs").iterdir() if p.is_dir()]
    recorded = status.RunStatus.model_validate_json((run_dir / "status.json").read_text())
    assert recorded.status == RunState.SUCCEEDED and recorded.run_id == run_dir.name
    shown = cli("status", run_dir.name, "--json", cwd=folder)  # default run folders: ./ifcflow-runs
    assert shown.returncode == 0, shown.stderr
    assert status.RunStatus.model_validate_json(shown.stdout).status == RunState.SUCCEEDED
    table = cli("status", run_dir.name, "--out", str(folder / "ifcflow-runs"))
    assert table.returncode == 0 and "succeeded" in table.stderr, table.stderr
    listed = cli("runs", "--out", str(folder / "ifcflow-runs"))
    assert listed.returncode == 0 and run_dir.name in listed.stdout and "succeeded" in listed.stdout
    report = cli("report", run_dir.name, "--format", "junit", cwd=folder)
    assert report.returncode == 0 and 'tests="4"' in report.stdout, report.stderr
    retried = cli("retry", run_dir.name, cwd=folder)  # its Redis is gone: say what to run instead
    assert retried.returncode == 2 and "no Redis configured" not in retried.stderr, retried.stderr
    assert f"run it again with: ifcflow run {folder / 'pipeline.yaml'}" in retried.stderr


def test_workers_log_holds_each_jobs_start_and_end_and_no_traceback(folder: Path) -> None:
    for attempt in range(3):  # the scheduler traceback came in about half of the runs
        done = cli("run", str(write_pipeline(folder, DIAMOND)), "--out", str(folder / f"runs{attempt}"))
        assert done.returncode == 0, done.stderr
        (run_dir,) = [p for p in (folder / f"runs{attempt}").iterdir() if p.is_dir()]
        log = (run_dir / "workers.log").read_text(errors="replace")
        assert "Traceback" not in log, log
        for step in ("top", "left", "right", "bottom"):
            assert f"job {run_dir.name}-{step} (run {run_dir.name}) started on queue" in log, log
            assert f"job {run_dir.name}-{step} (run {run_dir.name}) ended finished after" in log, log
        assert log.count(" started on queue ") >= 4 and log.count(" ended finished after ") >= 4, log


def test_looking_at_an_unknown_local_run_says_where_it_looked(folder: Path) -> None:
    done = cli("status", "nope", "--out", str(folder / "runs"))
    assert done.returncode == 2
    assert "no run 'nope' in" in done.stderr and "--out" in done.stderr and "no Redis configured" not in done.stderr


def test_unreachable_redis_does_not_advise_what_then_fails() -> None:
    done = cli("runs", "--redis", "redis://127.0.0.1:1/0")
    assert done.returncode == 2
    assert "leave both unset" not in done.stderr and "cannot reach Redis" in done.stderr


def test_timeout_cancels_a_local_run_properly(tmp_path: Path) -> None:
    (tmp_path / "fzk.ifc").symlink_to(shared_ifc("AC20-FZK-Haus.ifc"))
    done = cli("run", str(write_pipeline(tmp_path, SLOW)), "--out", str(tmp_path / "runs"), "--timeout", "2s")
    assert done.returncode == 1, done.stderr
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    document = json.loads((run_dir / "status.json").read_text())
    assert document["status"] == "canceled" and document["reason"] == "timeout", document
    steps = document["steps"]
    assert steps["clash"]["status"] == StepState.CANCELED.value and steps["clash"]["error"] == "timeout"
    assert not list(run_dir.rglob(".partial-*"))
    assert not (run_dir / "clash").exists()  # its folder was empty: removed
    assert "canceled" in done.stderr


def _descendants_once_a_step_runs(proc: subprocess.Popen[bytes], log: Path) -> list[psutil.Process]:
    """Wait until a local worker logged a job start, then list every process under ``ifcflow run``."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and "started on queue ifcclash" in log.read_text(errors="replace"):
            time.sleep(1.0)  # let the work horse get going
            found = psutil.Process(proc.pid).children(recursive=True)
            names = " ".join(" ".join(p.cmdline()) for p in found)
            assert "redis-server" in names and "worker" in names, names
            return found
        time.sleep(0.1)
    raise AssertionError(f"no job started: {log.read_text(errors='replace') if log.exists() else 'no log'}")


def _alive(processes: list[psutil.Process], timeout: float = 15.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not left:
            return []
        time.sleep(0.1)
    return [" ".join(p.cmdline()) for p in left]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL], ids=lambda s: s.name)
def test_killing_ifcflow_run_leaves_no_process_behind(tmp_path: Path, sig: signal.Signals) -> None:
    (tmp_path / "fzk.ifc").symlink_to(shared_ifc("AC20-FZK-Haus.ifc"))
    env = {k: v for k, v in os.environ.items() if k != "IFCFLOW_REDIS_URL"}
    proc = subprocess.Popen([sys.executable, "-m", "ifcflow", "run", str(write_pipeline(tmp_path, SLOW)),
                             "--out", str(tmp_path / "runs"), "--workers", "2"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        (run_dir,) = _wait_for_run_dir(tmp_path / "runs")
        tree = _descendants_once_a_step_runs(proc, run_dir / "workers.log")
        proc.send_signal(sig)
        code = proc.wait(timeout=60)
        assert _alive(tree) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stderr:
            stderr = proc.stderr.read().decode(errors="replace")
            proc.stderr.close()
    if sig != signal.SIGKILL:  # handled like Ctrl-C: canceled, recorded, one line
        assert code == 130, stderr
        document = json.loads((run_dir / "status.json").read_text())
        assert document["status"] == "canceled" and document["reason"] == "interrupted", document
        assert not (run_dir / "clash").exists()  # the canceled step's folder was left empty: removed
        assert "Traceback" not in stderr, stderr
    log = (run_dir / "workers.log").read_text(errors="replace")
    assert "Traceback" not in log, log


def _wait_for_run_dir(root: Path, timeout: float = 60.0) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no run folder in {root}")


def test_duplicate_input_flags_are_refused(folder: Path) -> None:
    path = write_pipeline(folder, DIAMOND)
    done = cli("validate", str(path), "-i", f"arch={folder / 'arch.ifc'}", "-i", "arch=b.ifc")
    assert done.returncode == 2
    assert "input 'arch' is given twice" in done.stderr


def test_clean_up_does_not_wait_for_zombies_to_be_reaped() -> None:
    """An orphaned zombie (RQ's scheduler after its worker was killed) is reaped by PID 1 whenever it gets to it
    (over a second in containers); it runs nothing, so the local clean-up must not wait for it."""
    from ifcflow.standalone.local import _await_groups

    zombie = subprocess.Popen(["true"], start_new_session=True)  # never waited for below: a zombie of ours
    while psutil.Process(zombie.pid).status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.01)
    began = time.monotonic()
    _await_groups([zombie.pid], timeout=30.0)
    assert time.monotonic() - began < 10.0, "waited for a zombie as if it still ran"
    zombie.wait()


ONE_STEP = "version: 1\nname: one\nsteps:\n  a: {uses: ifcpatch, with: {ifc: arch.ifc, recipe: Optimise}}\n"


def test_a_local_run_does_not_warn_about_its_own_starting_workers(folder: Path) -> None:
    """Its first status is read while its worker still imports ifcopenshell: no "no worker listens on queue"."""
    (folder / "one.yaml").write_text(ONE_STEP)
    done = cli("run", str(folder / "one.yaml"), "--out", str(folder / "runs"), cwd=folder)
    assert done.returncode == 0, done.stderr
    assert "a [ifcpatch] succeeded" in done.stderr, done.stderr
    assert "no worker listens" not in done.stderr, done.stderr
    (run_dir,) = [p for p in (folder / "runs").iterdir() if p.is_dir()]
    log = (run_dir / "workers.log").read_text(errors="replace")
    assert f"job {run_dir.name}-a (run {run_dir.name}) ended finished after" in log, log
    assert "Traceback" not in log and "Killed" not in log, log


def test_a_pipeline_that_does_not_check_stops_the_early_redis_and_worker(tmp_path: Path) -> None:
    """``ifcflow run`` starts its private Redis and a worker before it reads the pipeline; a pipeline that does not
    check ends the command and both, and removes their temporary folder."""
    from ifcflow.standalone import prestart

    assert prestart.wanted(["run", "p.yaml"]) and prestart.wanted(["run", "p.yaml", "--workers", "2"])
    assert not prestart.wanted(["run", "p.yaml", "--redis", "redis://x"]) and not prestart.wanted(["status", "x"])
    assert not prestart.wanted(["run", "--help"]) and not prestart.wanted(["run", "p.yaml", "--detach"])
    (tmp_path / "bad.yaml").write_text("version: 1\nname: bad\nsteps:\n  a: {uses: nope}\n")
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "IFCFLOW_REDIS_URL"} | {"TMPDIR": str(temp)}
    done = subprocess.run([sys.executable, "-m", "ifcflow", "run", str(tmp_path / "bad.yaml")], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "nope" in done.stderr, done.stderr
    assert _alive([p for p in psutil.process_iter() if _mentions(p, str(temp))], timeout=5.0) == []
    assert list(temp.iterdir()) == []


def _mentions(process: psutil.Process, text: str) -> bool:
    try:
        return text in " ".join(process.cmdline())
    except psutil.Error:
        return False
