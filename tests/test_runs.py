"""Runs on a real redis-server with real RQ workers: ordering, failure propagation, lost jobs, atomic start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job
from rq.registry import DeferredJobRegistry

from ifcflow.engine import enqueue, reconcile, runner, status, store
from ifcflow.engine.states import RunState, StepState
from ifcflow.services import QUEUES
from ifcflow.standalone.embedded import EmbeddedRedis

from .conftest import run_pipeline, work
from .factories import tiny_model, wall_name_ids, write_pipeline


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    tiny_model(tmp_path / "arch.ifc")
    wall_name_ids(tmp_path / "rules.ids")
    return tmp_path


DIAMOND = """\
    version: 1
    name: diamond
    inputs: {arch: arch.ifc}
    steps:
      top: {uses: ifcpatch, with: {ifc: "${{ inputs.arch }}", recipe: ExtractElements, arguments: [IfcWall]}}
      left: {uses: ifctester, with: {ifc: "${{ steps.top.outputs.model }}", ids: rules.ids, gate: false}}
      right: {uses: ifcpatch, with: {ifc: "${{ steps.top.outputs.model }}", recipe: Optimise}}
      bottom: {uses: ifcpatch, needs: [left], with: {ifc: "${{ steps.right.outputs.model }}", recipe: Optimise}}
    """


def test_diamond_across_queues_runs_in_order(conn: Redis, folder: Path) -> None:
    result = run_pipeline(conn, write_pipeline(folder, DIAMOND), folder / "runs")
    assert result.status == RunState.SUCCEEDED
    steps = result.steps
    assert {s.queue for s in steps.values()} == {"default", "ifctester"}
    assert all(s.status == StepState.SUCCEEDED for s in steps.values())
    assert steps["bottom"].needs == ["left", "right"]
    for child, parents in {"left": ["top"], "right": ["top"], "bottom": ["left", "right"]}.items():
        for parent in parents:
            assert steps[child].started_at >= steps[parent].ended_at  # type: ignore[operator]
    for step in steps.values():
        assert step.result and step.result["success"]
        for path in step.outputs.values():
            assert Path(path).is_file()
    assert steps["left"].result["data"]["specifications"] == 1  # type: ignore[index]


def test_fan_out(conn: Redis, folder: Path) -> None:
    children = "\n".join(
        f"  c{i}: {{uses: ifcpatch, with: {{ifc: '${{{{ steps.root.outputs.model }}}}', recipe: Optimise}}}}"
        for i in range(6))
    text = ("version: 1\nname: fan\nsteps:\n"
            "  root: {uses: ifcpatch, with: {ifc: arch.ifc, recipe: Optimise}}\n" + children + "\n")
    result = run_pipeline(conn, write_pipeline(folder, text), folder / "runs")
    assert result.status == RunState.SUCCEEDED
    assert result.counts["succeeded"] == 7


FAILING = """\
    version: 1
    name: failing
    steps:
      validate: {uses: ifctester, with: {ifc: arch.ifc, ids: rules.ids}}
      patch: {uses: ifcpatch, needs: [validate], with: {ifc: arch.ifc, recipe: Optimise}}
      deeper: {uses: ifcpatch, with: {ifc: "${{ steps.patch.outputs.model }}", recipe: Optimise}}
      independent: {uses: ifcpatch, with: {ifc: arch.ifc, recipe: Optimise}}
      report: {uses: ifcpatch, needs: [deeper], if: always(), with: {ifc: arch.ifc, recipe: Optimise}}
    """


def test_failed_step_skips_dependents_and_leaves_nothing_deferred(conn: Redis, folder: Path) -> None:
    result = run_pipeline(conn, write_pipeline(folder, FAILING), folder / "runs")
    steps = result.steps
    assert result.status == RunState.FAILED
    assert steps["validate"].status == StepState.FAILED
    assert steps["validate"].error == ("1 of 1 specifications failed: 'ifcwall has a name' (required); report: "
                                       f"{steps['validate'].outputs['report']}")
    assert Path(steps["validate"].outputs["report"]).is_file()  # a failed gate still publishes its report
    assert steps["patch"].status == StepState.SKIPPED
    assert steps["patch"].error == "upstream step 'validate' failed"
    assert steps["deeper"].status == StepState.SKIPPED
    assert steps["deeper"].error == "upstream step 'validate' failed"
    assert steps["independent"].status == StepState.SUCCEEDED
    assert steps["report"].status == StepState.SUCCEEDED  # always() runs after a skipped need
    for queue in QUEUES:
        assert DeferredJobRegistry(queue, connection=conn).get_job_ids() == []
    assert not Path(steps["patch"].outputs["model"]).exists()


def test_vanished_job_is_reported_lost(conn: Redis, folder: Path) -> None:
    planned = runner.start(conn, write_pipeline(folder, DIAMOND), out=folder / "runs")
    Job.fetch(planned.step("right").job_id, connection=conn).delete()
    work(conn)
    result = status.read(conn, planned.run_id)
    assert result.steps["right"].status == StepState.FAILED
    assert result.steps["right"].error is not None and result.steps["right"].error.startswith("lost")
    assert result.steps["bottom"].status == StepState.SKIPPED
    assert result.status == RunState.FAILED


def test_failed_start_leaves_no_keys(conn: Redis, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc_path = write_pipeline(folder, DIAMOND)
    calls = {"n": 0}
    original = Job.save

    def flaky(self: Job, *args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise ConnectionError("simulated network failure during enqueue")
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Job, "save", flaky)
    with pytest.raises(ConnectionError):
        runner.start(conn, doc_path, out=folder / "runs")
    monkeypatch.undo()
    assert conn.keys("*") == []
    work(conn)  # nothing runs
    assert not (folder / "runs").exists() or not any((folder / "runs").rglob("*.ifc"))


@pytest.mark.parametrize("path", ["script", "rq"])
def test_failed_release_is_undone(conn: Redis, folder: Path, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    """Opening the gate fails, in the one-script path or in RQ's ``enqueue_dependents`` (the fallback)."""
    def broken(*args: object, **kwargs: object) -> None:
        raise ConnectionError("simulated failure while opening the gate")

    if path == "rq":
        monkeypatch.setattr(enqueue, "open_simple", lambda conn, gate_id: -1)
        monkeypatch.setattr(Queue, "enqueue_dependents", broken)
    else:
        monkeypatch.setattr(enqueue, "open_simple", broken)
    with pytest.raises(ConnectionError):
        runner.start(conn, write_pipeline(folder, DIAMOND), out=folder / "runs")
    monkeypatch.undo()
    # (input files' digests, a cache of file contents kept for the host, are written once the files have settled)
    assert {k for k in conn.keys("*") if k != b"rq:queues" and not k.startswith(b"ifcflow:digest:")} == set()


def test_plain_rq_worker_runs_ifcflow_jobs(conn: Redis, folder: Path, redis_server: EmbeddedRedis) -> None:
    planned = runner.start(conn, write_pipeline(folder, DIAMOND), out=folder / "runs")
    for queues in (["default"], ["ifctester"], ["default"]):
        subprocess.run([sys.executable, "-m", "rq.cli", "worker", *queues, "--burst", "--url", redis_server.url],
                       check=True, capture_output=True, timeout=120)
    result = status.read(conn, planned.run_id)
    assert result.status == RunState.SUCCEEDED, result.model_dump_json(indent=1)
    assert not conn.hexists(store.run_key(planned.run_id), "ended_at")  # plain workers do not end runs...
    done = _cli("reconcile", "--redis", redis_server.url)  # ...the reconciler does (ifcflow reconcile --loop)
    assert done.returncode == 0 and "reconciled 1 run(s)" in done.stdout, done.stderr
    assert conn.hexists(store.run_key(planned.run_id), "ended_at")
    assert planned.run_id not in store.live_runs(conn)


def test_gate_holds_roots_until_everything_is_enqueued(conn: Redis, folder: Path) -> None:
    planned = runner.start(conn, write_pipeline(folder, DIAMOND), out=folder / "runs")
    gate = Job.fetch(store.gate_id(planned.run_id), connection=conn)
    assert gate.get_status().value == "finished"
    assert Queue("default", connection=conn).job_ids == [planned.step("top").job_id]
    job = Job.fetch(planned.step("top").job_id, connection=conn)
    assert job.result_ttl == 7 * 86400 and job.failure_ttl == 7 * 86400
    work(conn)


def test_status_document_contract(conn: Redis, folder: Path) -> None:
    result = run_pipeline(conn, write_pipeline(folder, DIAMOND), folder / "runs")
    doc = result.model_dump(mode="json")
    for step_status in result.steps.values():  # the fast constructor sets every field
        assert step_status.model_fields_set == set(status.StepStatus.model_fields)
        assert status.StepStatus.model_validate(step_status.model_dump()) == step_status
    assert {"run_id", "pipeline", "status", "steps"} <= set(doc)
    for step in doc["steps"].values():
        assert {"status", "service", "queue", "job_id", "started_at", "ended_at", "outputs", "error"} <= set(step)
    assert doc["status"] == "succeeded"


def _cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "IFCFLOW_REDIS_URL"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "ifcflow", *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd, timeout=300)


def test_embedded_default_end_to_end(folder: Path) -> None:
    path = write_pipeline(folder, DIAMOND)
    done = _cli("run", str(path), "--out", str(folder / "runs"), "--json")
    assert done.returncode == 0, done.stderr
    doc = status.RunStatus.model_validate_json(done.stdout)
    assert doc.status == RunState.SUCCEEDED and len(doc.steps) == 4
    assert (Path(doc.out_dir) / "workers.log").exists()


def test_embedded_failing_run_exits_1(folder: Path) -> None:
    done = _cli("run", str(write_pipeline(folder, FAILING)), "--out", str(folder / "runs"))
    assert done.returncode == 1, done.stderr
    assert "failed" in done.stderr


def test_detach_and_status(folder: Path, redis_server: EmbeddedRedis, conn: Redis) -> None:
    path = write_pipeline(folder, DIAMOND)
    done = _cli("run", str(path), "--out", str(folder / "runs"), "--detach", "--ttl", "2h",
                env={"IFCFLOW_REDIS_URL": redis_server.url})
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()  # RID=$(ifcflow run --detach p.yaml): only the id on stdout, the hint on stderr
    assert run_id.startswith("diamond-") and "\n" not in run_id and f"ifcflow status {run_id}" in done.stderr
    assert conn.hget(f"ifcflow:run:{run_id}", "ttl") == b"7200"
    queued = _cli("status", run_id, "--json", "--redis", redis_server.url)
    assert status.RunStatus.model_validate_json(queued.stdout).status == RunState.QUEUED
    work(conn)
    finished = _cli("status", run_id, "--json", "--redis", redis_server.url)
    assert finished.returncode == 0
    assert status.RunStatus.model_validate_json(finished.stdout).status == RunState.SUCCEEDED
    listed = _cli("runs", "--redis", redis_server.url)
    assert run_id in listed.stdout


def test_bad_input_exits_2_and_enqueues_nothing(folder: Path, redis_server: EmbeddedRedis, conn: Redis) -> None:
    path = write_pipeline(folder, "version: 1\nname: x\nsteps: {a: {uses: ifcclsh, with: {}}}\n")
    done = _cli("run", str(path), "--redis", redis_server.url)
    assert done.returncode == 2
    assert f"{path}:3:19: unknown service 'ifcclsh'" in done.stderr
    assert conn.keys("*") == []


def test_unreachable_redis_is_one_line_exit_2(folder: Path) -> None:
    path = write_pipeline(folder, DIAMOND)
    done = _cli("run", str(path), "--redis", "redis://127.0.0.1:1/0")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert done.stderr.startswith("error: cannot reach Redis at redis://127.0.0.1:1/0")


def test_reports_after_a_failed_run(folder: Path) -> None:
    from xml.etree import ElementTree as ET

    junit, markdown, page = folder / "out" / "junit.xml", folder / "summary.md", folder / "report.html"
    done = _cli("run", str(write_pipeline(folder, FAILING)), "--out", str(folder / "runs"),
                "--report", f"junit:{junit}", "--report", f"markdown:{markdown}", "--report", f"html:{page}")
    assert done.returncode == 1, done.stderr
    suite = ET.parse(junit).getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("5", "1", "2")
    failed = suite.find("testcase[@name='validate']/failure")
    assert failed is not None and failed.get("message", "").startswith("1 of 1 specifications failed: 'ifcwall has a name'")
    text = markdown.read_text()
    assert "| patch | ifcpatch | ⏭️ skipped |" in text and "upstream step 'validate' failed" in text
    html = page.read_text()
    assert "<tr class='failed'><td>validate</td>" in html
    (run_dir,) = [p for p in (folder / "runs").iterdir() if p.is_dir()]  # history.sqlite beside
    report = run_dir / "validate" / "arch_ids.json"
    assert report.is_file()  # a failed gate keeps its report: linked
    assert f"<a href='{report.as_uri()}'>validate/arch_ids.json</a>" in html
    assert "patch/arch_Optimise.ifc" not in html  # skipped: its output does not exist, so no link


def test_bad_report_option_is_bad_input(folder: Path) -> None:
    done = _cli("run", str(write_pipeline(folder, DIAMOND)), "--report", "pdf:x.pdf")
    assert done.returncode == 2 and "FORMAT:PATH" in done.stderr


def test_outputs_in_sub_folders_are_published_and_chained(conn: Redis, folder: Path) -> None:
    path = write_pipeline(folder, """\
        version: 1
        name: nested
        steps:
          a: {uses: ifcpatch, with: {ifc: arch.ifc, recipe: Optimise, output: models/out.ifc}}
          b: {uses: ifcpatch, with: {ifc: "${{ steps.a.outputs.model }}", recipe: Optimise, output: deep/er/b.ifc}}
        """)
    result = run_pipeline(conn, path, folder / "runs")
    assert result.status == RunState.SUCCEEDED
    assert result.steps["a"].outputs["model"].endswith("/a/models/out.ifc")
    assert result.steps["a"].result["outputs"] == result.steps["a"].outputs  # type: ignore[index]
    assert Path(result.steps["b"].outputs["model"]).is_file()


@pytest.mark.parametrize("output", ["/tmp/elsewhere.ifc", "../escape.ifc"])
def test_outputs_outside_the_run_folder_are_rejected(folder: Path, output: str) -> None:
    from ifcflow.errors import PipelineError
    from ifcflow.pipeline import document
    from ifcflow.pipeline.plan import plan

    doc = document.load(write_pipeline(folder, f"version: 1\nname: x\nsteps:\n  a: {{uses: ifcpatch, with: "
                                               f"{{ifc: arch.ifc, recipe: Optimise, output: '{output}'}}}}\n"))
    with pytest.raises(PipelineError, match="inside the step's run folder"):
        plan(doc, out_root=folder / "runs")


def test_dependent_of_a_vanished_job_still_runs_when_it_must(conn: Redis, folder: Path) -> None:
    path = write_pipeline(folder, """\
        version: 1
        name: vanish
        steps:
          a: {uses: ifcpatch, with: {ifc: arch.ifc, recipe: Optimise}}
          b: {uses: ifcpatch, needs: [a], if: always(), with: {ifc: arch.ifc, recipe: Optimise}}
          c: {uses: ifcpatch, needs: [a], with: {ifc: arch.ifc, recipe: Optimise}}
        """)
    planned = runner.start(conn, path, out=folder / "runs")
    Job.fetch(planned.step("a").job_id, connection=conn).delete()
    reconcile.run(conn, planned.run_id)  # the reconciler notices, records "lost", releases b, skips c
    work(conn)
    result = status.read(conn, planned.run_id)
    assert (result.steps["a"].status, result.steps["b"].status, result.steps["c"].status) == (
        StepState.FAILED, StepState.SUCCEEDED, StepState.SKIPPED)
    assert result.status == RunState.FAILED


def test_finished_run_records_expire_with_the_results(conn: Redis, folder: Path) -> None:
    result = run_pipeline(conn, write_pipeline(folder, DIAMOND), folder / "runs")
    assert result.terminal
    status.read(conn, result.run_id)
    ttl = conn.ttl(f"ifcflow:run:{result.run_id}")
    assert 7 * 86400 - 60 < ttl <= 7 * 86400
    assert 0 < conn.ttl(f"rq:job:{result.run_id}--start") <= 7 * 86400


ONE_STEP = """\
    version: 1
    name: single
    steps:
      only: {uses: ifcpatch, with: {ifc: arch.ifc, recipe: Optimise}}
    """


def test_one_step_run_is_queued_directly_all_or_nothing(conn: Redis, folder: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A one-step run needs no start gate: its job is written queued with the run record, in one transaction."""
    planned = runner.start(conn, write_pipeline(folder, ONE_STEP), out=folder / "runs")
    job = Job.fetch(planned.steps[0].job_id, connection=conn)
    assert job.get_status() == "queued" and job.enqueued_at is not None
    assert not conn.exists(f"rq:job:{store.gate_id(planned.run_id)}")
    assert Queue("default", connection=conn).job_ids == [job.id]
    assert status.read(conn, planned.run_id).status == RunState.QUEUED
    work(conn)
    assert status.read(conn, planned.run_id).status == RunState.SUCCEEDED
    conn.flushdb()

    def broken(self: Queue, *args: object, **kwargs: object) -> None:
        raise ConnectionError("simulated failure inside the transaction")

    monkeypatch.setattr(Queue, "push_job_id", broken)
    with pytest.raises(ConnectionError):
        runner.start(conn, write_pipeline(folder, ONE_STEP), out=folder / "runs")
    assert conn.keys("*") == []


def test_a_detached_run_leaves_its_status_file(conn: Redis, folder: Path) -> None:
    """No client follows the run: the process that ends it writes status.json into the run folder."""
    planned = runner.start(conn, write_pipeline(folder, DIAMOND), out=folder / "runs")
    status_file = Path(planned.out_dir) / "status.json"
    assert not status_file.exists()
    work(conn)
    recorded = status.RunStatus.model_validate_json(status_file.read_text())
    assert recorded.run_id == planned.run_id and recorded.status == RunState.SUCCEEDED
    assert recorded.steps == status.read(conn, planned.run_id).steps


def test_time_options_take_durations_or_seconds(folder: Path) -> None:
    bad = _cli("run", str(write_pipeline(folder, DIAMOND)), "--timeout", "6x")
    assert bad.returncode == 2 and "invalid duration '6x'" in bad.stderr and "30m" in bad.stderr
    for option, value in (("--timeout", "0.5"), ("--timeout", "6s"), ("--ttl", "7d")):
        parsed = _cli("run", str(folder / "missing.yaml"), option, value)  # the file is checked after the options
        assert "cannot read pipeline file" in parsed.stderr, (option, value, parsed.stderr)
