"""Batches on a real redis-server with real RQ workers: globs, one submission, status, retry, cancel, fairness."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from redis import Redis
from rich.console import Console
from rq import SimpleWorker

from ifcflow.batches import batch, batch_status, lifecycle
from ifcflow.batches.batch_report import junit, markdown, table
from ifcflow.engine import lifetimes, runner
from ifcflow.engine.states import RunState, StepState
from ifcflow.engine.status import StatusReader
from ifcflow.errors import IfcflowError, PipelineError
from ifcflow.operations.worker import IfcflowWorker
from ifcflow.pipeline import document
from ifcflow.services import QUEUES
from ifcflow.standalone.embedded import EmbeddedRedis

from .factories import tiny_model, wall_name_ids, write_pipeline
from .test_reliability import Workers

PIPELINE = """\
    version: 1
    name: each
    inputs: {arch: arch.ifc}
    steps:
      validate: {uses: ifctester, with: {ifc: "${{ inputs.arch }}", ids: rules.ids}}
      patch: {uses: ifcpatch, needs: [validate], with: {ifc: "${{ inputs.arch }}", recipe: Optimise}}
    """


class InProcessWorker(IfcflowWorker, SimpleWorker):
    """ifcflow's worker (which releases a batch's next sub-runs when one ends) in this process; its jobs still run
    in its resident work horse (IfcflowWorker's RQ Worker comes first in the MRO)."""


def work(conn: Redis) -> None:
    InProcessWorker(list(QUEUES), connection=conn).work(burst=True, logging_level="WARNING")


@pytest.fixture()
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tiny_model(tmp_path / "arch.ifc")
    wall_name_ids(tmp_path / "rules.ids", attribute="Name")  # tiny walls have names: passes when there are walls
    models = tmp_path / "models"
    (models / "sub").mkdir(parents=True)
    for name, walls in (("b.ifc", 2), ("a.ifc", 1), ("sub/c.ifc", 0), ("sub/d.ifc", 3)):
        tiny_model(models / name, walls=walls)  # c has no wall: its IDS (at least one wall) fails
    (models / "notes.txt").write_text("not a model")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_globs_sorted_recursive_matrix_and_cap(folder: Path) -> None:
    combos = batch.expand({"arch": str(folder / "models/**/*.ifc")})
    assert [Path(c["arch"]).relative_to(folder / "models").as_posix() for c in combos] == \
        ["a.ifc", "b.ifc", "sub/c.ifc", "sub/d.ifc"]
    matrix = batch.expand({"x": str(folder / "models/*.ifc"), "y": str(folder / "models/sub/*.ifc")})
    assert len(matrix) == 4 and {Path(c["y"]).name for c in matrix} == {"c.ifc", "d.ifc"}
    with pytest.raises(IfcflowError, match=r"more than --max-runs 3"):
        batch.expand({"x": str(folder / "models/**/*.ifc")}, max_runs=3)
    with pytest.raises(IfcflowError, match=r"arch='.*nothing/\*\.ifc' matches no file"):
        batch.expand({"arch": str(folder / "nothing/*.ifc")})


def test_batch_runs_every_file_reports_and_retries_failed_only(conn: Redis, folder: Path) -> None:
    pipeline = write_pipeline(folder, PIPELINE)
    record = batch.start(conn, pipeline, each={"arch": "models/**/*.ifc"}, out=folder / "runs", window=2)
    assert [r.label for r in record.runs] == ["models/a.ifc", "models/b.ifc", "models/sub/c.ifc", "models/sub/d.ifc"]
    assert batch_status.read(conn, record.batch_id).released == 2  # the window: the rest waits behind closed gates
    work(conn)
    result = batch_status.read(conn, record.batch_id)
    assert result.status == RunState.FAILED
    rows = {r.label: r for r in result.runs}
    assert rows["models/sub/c.ifc"].status == RunState.FAILED
    assert rows["models/sub/c.ifc"].failed_step == "validate" and "failed" in (rows["models/sub/c.ifc"].error or "")
    assert rows["models/sub/c.ifc"].steps == {"validate": StepState.FAILED, "patch": StepState.SKIPPED}
    assert all(rows[f].status == RunState.SUCCEEDED for f in ("models/a.ifc", "models/b.ifc", "models/sub/d.ifc"))
    assert all(r.duration is not None and r.duration > 0 for r in result.runs)
    assert result.counts["succeeded"] == 3 and result.counts["failed"] == 1
    # JUnit: one test suite per file, the failure in c's
    suites = ET.fromstring(junit(conn, result)).findall("testsuite")
    assert [s.get("name") for s in suites] == [f"ifcflow.each[{r.label}]" for r in record.runs]
    assert [s.get("failures") for s in suites] == ["0", "0", "1", "0"]
    assert "| models/sub/c.ifc |" in markdown(result)
    console = Console(record=True, width=200)
    console.print(table(result))
    shown = console.export_text()
    assert "batch " + record.batch_id in shown and "3 succeeded, 1 failed" in shown
    assert shown.index("models/sub/c.ifc") < shown.index("models/a.ifc")  # failed files first
    # fix the file, retry: only c's failed and skipped steps run again
    before = {r.run_id: StatusReader(conn, r.run_id).fetch().steps["patch"].ended_at for r in result.runs}
    tiny_model(folder / "models/sub/c.ifc", walls=1)
    retried = lifecycle.retry(conn, record.batch_id)
    c_run = rows["models/sub/c.ifc"].run_id
    assert retried == {c_run: ["validate", "patch"]}
    work(conn)
    again = batch_status.read(conn, record.batch_id)
    assert again.status == RunState.SUCCEEDED and again.counts["succeeded"] == 4
    after = {r.run_id: StatusReader(conn, r.run_id).fetch().steps["patch"].ended_at for r in again.runs}
    assert {k: v for k, v in after.items() if k != c_run} == {k: v for k, v in before.items() if k != c_run}


def test_for_each_in_pipeline_file(conn: Redis, folder: Path) -> None:
    text = PIPELINE.replace("inputs: {arch: arch.ifc}", "inputs: {arch: 'models/sub/*.ifc'}\n    for_each: arch")
    pipeline = write_pipeline(folder, text)
    document.load(pipeline)  # a glob input of for_each is not checked as a file
    record = batch.start(conn, pipeline, out=folder / "runs")
    assert [Path(r.inputs["arch"]).name for r in record.runs] == ["c.ifc", "d.ifc"]
    work(conn)
    assert [r.status for r in batch_status.read(conn, record.batch_id).runs] == [RunState.FAILED, RunState.SUCCEEDED]


def test_one_bad_file_enqueues_nothing(conn: Redis, folder: Path) -> None:
    good = (folder / "models/a.ifc").read_bytes()
    (folder / "models/sub/cut.ifc").write_bytes(good[: len(good) // 2])
    with pytest.raises(PipelineError, match="truncated"):
        batch.start(conn, write_pipeline(folder, PIPELINE), each={"arch": "models/**/*.ifc"}, out=folder / "runs")
    assert conn.dbsize() == 0


def test_cancel_batch_cancels_released_and_waiting_runs(conn: Redis, folder: Path) -> None:
    record = batch.start(conn, write_pipeline(folder, PIPELINE), each={"arch": "models/**/*.ifc"},
                         out=folder / "runs", window=1)
    assert len(lifecycle.cancel(conn, record.batch_id)) == 4
    work(conn)
    result = batch_status.read(conn, record.batch_id)
    assert result.status == RunState.CANCELED
    assert all(r.status == RunState.CANCELED for r in result.runs) and result.released == 1


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "IFCFLOW_REDIS_URL"} | (env or {})
    return subprocess.run([sys.executable, "-m", "ifcflow", *args], capture_output=True, text=True, cwd=cwd,
                          env=full, timeout=300)


def test_cli_zero_matches_and_cap_exit_2(folder: Path) -> None:
    pipeline = write_pipeline(folder, PIPELINE)
    done = _cli("run", str(pipeline), "--each", "arch=nowhere/**/*.ifc", cwd=folder)
    assert done.returncode == 2 and "arch='" in done.stderr and "nowhere/**/*.ifc' matches no file" in done.stderr
    done = _cli("run", str(pipeline), "--each", "arch=models/**/*.ifc", "--each", "arch2=x", cwd=folder)
    assert done.returncode == 2 and "arch2" in done.stderr
    done = _cli("run", str(pipeline), "--each", "arch=models/**/*.ifc", "--max-runs", "2", cwd=folder)
    assert done.returncode == 2 and "more than --max-runs 2" in done.stderr


def test_cli_batch_status_json_and_report(folder: Path, redis_server: EmbeddedRedis, conn: Redis) -> None:
    pipeline = write_pipeline(folder, PIPELINE)
    env = {"IFCFLOW_REDIS_URL": redis_server.url}
    done = _cli("run", str(pipeline), "--each", "arch=models/*.ifc", "--detach", cwd=folder, env=env)
    assert done.returncode == 0, done.stderr
    batch_id = done.stdout.strip().splitlines()[-1]
    work(conn)
    shown = _cli("status", batch_id, "--json", cwd=folder, env=env)
    assert shown.returncode == 0, shown.stderr
    doc = batch_status.BatchStatus.model_validate_json(shown.stdout)
    assert doc.status == RunState.SUCCEEDED and [r.label for r in doc.runs] == ["models/a.ifc", "models/b.ifc"]
    report = _cli("report", batch_id, "--format", "junit", cwd=folder, env=env)
    assert len(ET.fromstring(report.stdout).findall("testsuite")) == 2
    listed = _cli("batches", cwd=folder, env=env)
    assert listed.returncode == 0 and batch_id in listed.stdout and "2 succeeded" in listed.stdout


def test_single_run_is_not_starved_by_a_batch(conn: Redis, folder: Path, redis_server: EmbeddedRedis) -> None:
    """Two real forked workers; a batch of 40 runs, then one run: it ends while the batch still runs."""
    models = folder / "many"
    models.mkdir()
    for index in range(40):
        (models / f"m{index:02d}.ifc").write_bytes((folder / "arch.ifc").read_bytes())
    pipeline = write_pipeline(folder, PIPELINE)
    workers = Workers(redis_server.url, count=2)
    try:
        record = batch.start(conn, pipeline, each={"arch": "many/*.ifc"}, out=folder / "runs")
        time.sleep(1.0)
        single = runner.start(conn, pipeline, out=folder / "runs")
        reader = StatusReader(conn, single.run_id)
        deadline = time.monotonic() + 120
        while not reader.read().terminal and time.monotonic() < deadline:
            time.sleep(0.1)
        assert reader.read().status == RunState.SUCCEEDED
        during = batch_status.read(conn, record.batch_id, errors=False)
        assert not during.terminal and during.counts["succeeded"] < 40, during.counts
        while not batch_status.read(conn, record.batch_id, errors=False).terminal and time.monotonic() < deadline:
            time.sleep(0.2)
        final = batch_status.read(conn, record.batch_id)
        assert final.status == RunState.SUCCEEDED and final.counts["succeeded"] == 40
    finally:
        workers.stop()


def test_local_batch_end_to_end_records_and_reports(folder: Path) -> None:
    """No Redis configured: a private one and local workers run the batch; the folders keep its record."""
    pipeline = write_pipeline(folder, PIPELINE)
    done = _cli("run", str(pipeline), "--each", "arch=models/*.ifc", "--out", "runs", "--report", "junit:r.xml",
                cwd=folder)
    assert done.returncode == 0, done.stderr
    suites = ET.parse(folder / "r.xml").getroot().findall("testsuite")
    assert [s.get("name") for s in suites] == ["ifcflow.each[models/a.ifc]", "ifcflow.each[models/b.ifc]"]
    [batch_folder] = [p for p in (folder / "runs").iterdir() if p.is_dir()]  # history.sqlite beside
    shown = _cli("status", batch_folder.name, "--out", "runs", "--json", cwd=folder)
    assert shown.returncode == 0, shown.stderr
    doc = batch_status.BatchStatus.model_validate_json(shown.stdout)
    assert doc.status == RunState.SUCCEEDED and len(doc.runs) == 2
    for run in doc.runs:  # every sub-run's own record, readable as a run
        one = _cli("status", run.run_id, "--out", str(batch_folder), "--json", cwd=folder)
        assert one.returncode == 0 and '"status": "succeeded"' in one.stdout


def test_prune_removes_finished_batches_with_their_runs(conn: Redis, folder: Path) -> None:
    from ifcflow.operations import maintenance

    record = batch.start(conn, write_pipeline(folder, PIPELINE), each={"arch": "models/*.ifc"}, out=folder / "runs")
    assert lifetimes.prune_batches(conn, time.time() + 1) == []  # not ended yet: kept
    work(conn)
    lifecycle.advance(conn, record.batch_id)
    pruned = maintenance.prune(conn, older_than=-1)
    assert set(pruned) == {*(r.run_id for r in record.runs), record.batch_id}
    assert not batch.exists(conn, record.batch_id) and batch.recent(conn) == []


def test_failure_while_opening_gates_leaves_nothing(conn: Redis, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ifcflow.engine import enqueue

    opened: list[str] = []

    def failing(conn: Redis, start: object) -> None:
        opened.append("x")
        if len(opened) == 2:
            raise ConnectionError("Redis went away")
        real(conn, start)  # type: ignore[arg-type]

    real = enqueue.open_gate
    monkeypatch.setattr(enqueue, "open_gate", failing)
    with pytest.raises(ConnectionError):
        batch.start(conn, write_pipeline(folder, PIPELINE), each={"arch": "models/**/*.ifc"}, out=folder / "runs")
    leftover = [k.decode() for k in conn.keys("*") if not k.startswith(b"rq:queues")]
    assert leftover == [], leftover


def test_a_local_batch_can_be_reported_listed_looked_into_and_retried(folder: Path) -> None:
    """No Redis configured: report, batches, status of a sub-run, runs and retry work from the batch folders (they
    said "no Redis configured" or "has no status.json"); without a terminal no error is cut at 80 columns."""
    pipeline = write_pipeline(folder, PIPELINE)
    done = _cli("run", str(pipeline), "--each", "arch=models/**/*.ifc", "--out", "runs", "--workers", "2", cwd=folder)
    assert done.returncode == 1, done.stderr  # sub/c.ifc has no wall: its IDS fails
    [batch_folder] = [p for p in (folder / "runs").iterdir() if p.is_dir()]  # (history.sqlite beside)
    batch_id = batch_folder.name
    failed = f"{batch_id}-2"
    report = _cli("report", batch_id, "--out", "runs", cwd=folder)
    assert report.returncode == 0, report.stderr
    assert f"| models/sub/c.ifc | `{failed}` | ❌ failed | validate |" in report.stdout
    junit = _cli("report", batch_id, "--out", "runs", "--format", "junit", cwd=folder)
    assert junit.returncode == 0 and len(ET.fromstring(junit.stdout).findall("testsuite")) == 4, junit.stderr
    listed = _cli("batches", "--out", "runs", cwd=folder)
    assert listed.returncode == 0 and batch_id in listed.stdout and "3 succeeded, 1 failed" in listed.stdout
    one = _cli("status", failed, "--out", "runs", "--json", cwd=folder)
    assert one.returncode == 1 and '"status": "failed"' in one.stdout, one.stderr
    table = _cli("status", failed, "--out", "runs", cwd=folder)  # no terminal: the error is not cut at 80 columns
    assert "…" not in table.stderr and "validate/c_ids.json" in table.stderr, table.stderr
    runs = _cli("runs", "--out", "runs", cwd=folder)
    assert all(f"{batch_id}-{i}" in runs.stdout for i in range(4)), runs.stdout
    shown = _cli("status", batch_id, "--out", "runs", cwd=folder)
    assert shown.returncode == 1 and "…" not in shown.stderr
    assert f"models/sub/c.ifc [{failed}] failed" in shown.stderr and "'ifcwall has a name' (required)" in shown.stderr
    sub = _cli("retry", failed, "--out", "runs", cwd=folder)
    assert sub.returncode == 2 and f"ifcflow retry {batch_id}" in sub.stderr, sub.stderr
    tiny_model(folder / "models/sub/c.ifc", walls=1)  # fixed: the retry runs the failed file again, locally
    retried = _cli("retry", batch_id, "--out", "runs", "--workers", "1", cwd=folder)
    assert retried.returncode == 0, retried.stderr
    assert "models/sub/c.ifc" in retried.stderr and "from the start" in retried.stderr
    whole = batch_status.BatchStatus.model_validate_json((batch_folder / "batch.json").read_text())
    assert whole.status == RunState.SUCCEEDED and len(whole.runs) == 4
    assert '"status": "succeeded"' in (batch_folder / failed / "status.json").read_text()
    again = _cli("retry", batch_id, "--out", "runs", cwd=folder)
    assert again.returncode == 0 and "nothing to retry" in again.stdout


def test_a_bad_file_of_a_batch_is_named_as_the_glob_matched_it(folder: Path) -> None:
    (folder / "models" / "e.ifc").write_text("not a model")
    done = _cli("run", str(write_pipeline(folder, PIPELINE)), "--each", "arch=models/*.ifc", cwd=folder)
    assert done.returncode == 2 and "-i arch=" not in done.stderr, done.stderr
    assert "arch=models/e.ifc (matched by the batch glob" in done.stderr


def test_sweep_passes_over_sub_runs_behind_closed_gates_until_released_or_canceled(conn: Redis, folder: Path) -> None:
    """The periodic sweep skips a batch's waiting sub-runs (nothing of theirs can have run): a 500-run batch was
    swept in full every 5 s. A released or canceled one is swept again."""
    from ifcflow.engine import reconcile

    record = batch.start(conn, write_pipeline(folder, PIPELINE), each={"arch": "models/*.ifc"}, out=folder / "runs",
                         window=1)
    first, second = (r.run_id for r in record.runs)
    assert reconcile.behind_closed_gates(conn, [first, second]) == {second}
    lifecycle.cancel(conn, record.batch_id)
    assert reconcile.behind_closed_gates(conn, [first, second]) == set()
    reconcile.sweep(conn)
    assert StatusReader(conn, second).fetch().status == RunState.CANCELED


def test_prune_during_a_running_batch_keeps_its_finished_sub_run(conn: Redis, folder: Path) -> None:
    """Issue 15.9: a sub-run that ended keeps its final state for its batch, whatever prune does meanwhile."""
    from ifcflow.engine import reconcile
    from ifcflow.operations import maintenance

    record = batch.start(conn, write_pipeline(folder, PIPELINE), each={"arch": "models/*.ifc"}, out=folder / "runs",
                         window=1)
    first, second = (r.run_id for r in record.runs)
    SimpleWorker(list(QUEUES), connection=conn).work(burst=True, logging_level="WARNING")  # (does not advance)
    reconcile.sweep(conn)
    assert StatusReader(conn, first).fetch().status == RunState.SUCCEEDED
    maintenance.prune(conn, older_than=-1)  # the batch is running: its sub-runs stay (or keep their row)
    during = batch_status.read(conn, record.batch_id)  # errors=True read the failed runs' full status: no 404
    assert [r.status for r in during.runs] == [RunState.SUCCEEDED, RunState.QUEUED]
    lifecycle.advance(conn, record.batch_id)
    work(conn)
    lifecycle.advance(conn, record.batch_id)
    done = batch_status.read(conn, record.batch_id)
    assert done.status == RunState.SUCCEEDED and [r.status for r in done.runs] == [RunState.SUCCEEDED] * 2
    assert conn.hget(batch.key(record.batch_id), "ended_at") is not None
    # once the batch ended, its sub-runs may go: the batch still reads what they ended as
    maintenance.prune(conn, older_than=3600)  # (nothing that old)
    conn.delete(f"ifcflow:run:{second}", f"ifcflow:run:{second}:steps")  # as if its records expired first
    assert [r.status for r in batch_status.read(conn, record.batch_id).runs] == [RunState.SUCCEEDED] * 2


def test_a_row_counts_as_recorded_only_once_the_runs_end_hooks_ran(conn: Redis, folder: Path) -> None:
    """A batch's advance does not reconcile again a sub-run another worker ended (``RunRow.recorded``), but one
    whose ender died between recording the end and running the hooks (still live) it does."""
    from ifcflow.engine import runstates, store

    from .conftest import run_pipeline
    from .factories import ONE_STEP

    tiny_model(folder / "arch.ifc")
    ended = run_pipeline(conn, write_pipeline(folder, ONE_STEP), folder / "runs")
    assert ended.status == RunState.SUCCEEDED and not conn.sismember(store.LIVE, ended.run_id)
    assert runstates.rows(conn, [("patch", "stop")], [ended.run_id])[ended.run_id].recorded
    conn.sadd(store.LIVE, ended.run_id)  # as if its ender died before its hooks ran
    assert not runstates.rows(conn, [("patch", "stop")], [ended.run_id])[ended.run_id].recorded


def test_an_advance_leaves_a_sub_run_being_reconciled_to_its_holder(conn: Redis, folder: Path) -> None:
    """A batch's advance notes a sub-run that ended while another process holds its lock (the worker that ran its
    last job, mid-pass) without a pass of its own: a pass would only leave a dirty mark and make that worker pass
    again. The holder ends it; a pass that announces nothing (the worker announces once, after its advance) ends it
    quietly."""
    from ifcflow.engine import changes, reconcile, store
    from ifcflow.engine.lock import dirty_key, lock_key

    from .factories import ONE_STEP

    record = batch.start(conn, write_pipeline(folder, ONE_STEP), each={"arch": "models/a.ifc"}, out=folder / "runs")
    run_id = record.runs[0].run_id
    SimpleWorker(list(QUEUES), connection=conn).work(burst=True, logging_level="WARNING")  # (does not reconcile)
    assert conn.hget(store.run_key(run_id), "ended_at") is None
    conn.set(lock_key(run_id), "another-worker", px=60_000)  # its worker's reconcile pass is under way
    lifecycle.advance(conn, record.batch_id)
    assert not conn.exists(dirty_key(run_id))  # no second pass asked of the holder
    assert conn.sismember(batch.ended_key(record.batch_id), run_id)  # noted, with its row
    assert conn.hget(store.run_key(run_id), "ended_at") is None  # the holder ends it, not the advance
    conn.delete(lock_key(run_id))
    with conn.pubsub() as pubsub:
        pubsub.subscribe(changes.CHANNEL)
        assert pubsub.get_message(timeout=1.0)["type"] == "subscribe"
        status = reconcile.run(conn, run_id, announce=False)
        assert status is not None and status.status == RunState.SUCCEEDED
        assert conn.hget(store.run_key(run_id), "ended_at") is not None  # this pass ended it...
        assert pubsub.get_message(timeout=0.5) is None  # ...and announced nothing
