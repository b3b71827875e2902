"""The history database (issue 19): runs, lineage and audit outlive Redis, on SQLite and on real PostgreSQL."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from redis import Redis
from sqlalchemy.exc import SQLAlchemyError

from ifcflow.cli import cli
from ifcflow.engine import control, outbox, runner, status, store
from ifcflow.errors import IfcflowError
from ifcflow.history import database as history
from ifcflow.history import lineage

from .conftest import work
from .factories import tiny_model, walls_model, write_pipeline

PG_ADMIN = os.environ.get("IFCFLOW_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

COORDINATION = """\
    version: 1
    name: coordination
    inputs: {arch: arch.ifc, mep: mep.ifc}
    steps:
      walls: {uses: ifcpatch, with: {ifc: "${{ inputs.arch }}", recipe: ExtractElements, arguments: [IfcWall]}}
      clash:
        uses: ifcclash
        with:
          clash_sets: [{name: walls-vs-mep, a: [{file: "${{ steps.walls.outputs.model }}"}],
                        b: [{file: "${{ inputs.mep }}"}]}]
          output: clashes.json
      json: {uses: ifc2json, with: {ifc: "${{ steps.walls.outputs.model }}"}}
    """
FAILING = """\
    version: 1
    name: failing
    steps:
      bad: {uses: ifcpatch, with: {ifc: tiny.ifc, recipe: NoSuchRecipe}}
    """


def _pg_admin() -> Any:
    psycopg = pytest.importorskip("psycopg")
    try:
        return psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {PG_ADMIN}: {exc}")


class Database:
    """A private database: a SQLite file, or a PostgreSQL database with a random name (dropped at the end)."""

    def __init__(self, kind: str, tmp_path: Path):
        self.kind = kind
        self.name = f"ifcflow_hist_{uuid.uuid4().hex[:12]}"
        if kind == "sqlite":
            self.url = f"sqlite:///{tmp_path / 'db' / 'history.sqlite'}"
        else:
            self.url = PG_ADMIN.rsplit("/", 1)[0] + "/" + self.name
            self.create()

    def create(self) -> None:
        if self.kind == "postgresql":
            with _pg_admin() as admin:
                admin.execute(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        history.dispose(self.url)
        if self.kind == "postgresql":
            with _pg_admin() as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    database = Database(request.param, tmp_path)
    try:
        yield database
    finally:
        database.drop()


def _coordination(folder: Path) -> Path:
    walls_model(folder / "arch.ifc", walls=3)
    walls_model(folder / "mep.ifc", walls=2, spacing=5.0)
    return write_pipeline(folder, COORDINATION)


def _run(conn: Redis, pipeline: Path, out: Path) -> status.RunStatus:
    planned = runner.start(conn, pipeline, out=out)
    work(conn)
    return status.read(conn, planned.run_id)


def _cli(*args: str, url: str) -> Any:
    result = CliRunner().invoke(cli, list(args), env={history.ENV: url, "IFCFLOW_REDIS_URL": ""},
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_history_and_lineage_outlive_redis(conn: Redis, db: Database, tmp_path: Path) -> None:
    pipeline = _coordination(tmp_path)
    first = _run(conn, pipeline, tmp_path / "runs")
    first_arch = outbox.describe(tmp_path / "arch.ifc")
    walls_model(tmp_path / "arch.ifc", walls=4, spacing=2.0)  # revision B of the architecture model
    second = _run(conn, pipeline, tmp_path / "runs")
    assert first.status.value == second.status.value == "succeeded", (first, second)
    second_arch = outbox.describe(tmp_path / "arch.ifc")
    assert first_arch and second_arch and first_arch["sha256"] != second_arch["sha256"]

    assert outbox.drain(conn, db.url) > 0
    conn.flushdb()  # Redis gone: the history stays

    listed = json.loads(_cli("history", "--json", url=db.url))
    assert [r["run_id"] for r in listed["runs"]] == [second.run_id, first.run_id]
    assert all(r["state"] == "succeeded" and r["actor"].startswith("local:") for r in listed["runs"])
    assert listed["runs"][0]["inputs"]["arch"]["sha256"] == second_arch["sha256"]
    assert {s["step_id"]: s["state"] for s in listed["runs"][0]["steps"]} == {
        "walls": "succeeded", "clash": "succeeded", "json": "succeeded"}

    report = second.steps["clash"].outputs["report"]
    up = json.loads(_cli("lineage", report, "--up", "--format", "json", url=db.url))
    shas = {f["sha256"] for f in up["files"]}
    assert second_arch["sha256"] in shas and first_arch["sha256"] not in shas
    assert {(s["run_id"], s["step"]) for s in up["steps"]} == {(second.run_id, "clash"), (second.run_id, "walls")}

    down = lineage.lineage(db.url, second_arch["sha256"], "down")
    derived = {p for f in down["files"] for p in f["paths"]}
    assert report in derived and second.steps["json"].outputs["json"] in derived
    assert first.steps["clash"].outputs["report"] not in derived
    graph = _cli("lineage", second_arch["sha256"], "--format", "mermaid", url=db.url)
    assert graph.startswith("flowchart LR") and "clash (ifcclash)" in graph


def test_cancel_and_retry_are_audited_with_their_actors(conn: Redis, db: Database, tmp_path: Path) -> None:
    tiny_model(tmp_path / "tiny.ifc")
    failing = write_pipeline(tmp_path, FAILING)
    with outbox.acting("api:key#1"):
        failed = _run(conn, failing, tmp_path / "runs")
    assert failed.status.value == "failed"
    with outbox.acting("api:key#2"):
        assert control.retry(conn, failed.run_id) == ["bad"]
    work(conn)
    waiting = runner.start(conn, _coordination(tmp_path), out=tmp_path / "runs")
    with outbox.acting("schedule:nightly", schedule="nightly"):
        control.cancel(conn, waiting.run_id, wait=1.0)
    outbox.drain(conn, db.url)
    conn.flushdb()

    events = {(e["event"], e["run_id"]): e for e in json.loads(_cli("audit", "--json", url=db.url))}
    assert events[("submit", failed.run_id)]["actor"] == "api:key#1"
    assert events[("retry", failed.run_id)]["actor"] == "api:key#2"
    assert events[("retry", failed.run_id)]["detail"]["steps"] == ["bad"]
    assert events[("cancel", waiting.run_id)]["actor"] == "schedule:nightly"
    assert events[("cancel", waiting.run_id)]["schedule"] == "nightly"
    runs = {r["run_id"]: r for r in lineage.runs_list(db.url)}
    assert runs[waiting.run_id]["state"] == "canceled"
    assert runs[failed.run_id]["state"] == "failed" and runs[failed.run_id]["actor"] == "api:key#1"


def test_database_down_during_a_run_loses_nothing(conn: Redis, db: Database, tmp_path: Path) -> None:
    pipeline = _coordination(tmp_path)
    first = _run(conn, pipeline, tmp_path / "runs")
    outbox.drain(conn, db.url)
    blocker = tmp_path / "db"
    if db.kind == "sqlite":  # the database's folder cannot be opened: a file is in its way
        history.dispose(db.url)
        (blocker / "history.sqlite").unlink()
        for extra in blocker.iterdir():
            extra.unlink()
        blocker.rmdir()
        blocker.write_text("not a folder")
    else:
        db.drop()

    second = _run(conn, pipeline, tmp_path / "runs")  # the database is down: the run runs all the same
    assert second.status.value == "succeeded"
    assert outbox.settle(conn, db.url) == 0 and outbox.behind(conn) > 0
    with pytest.raises((history.HistoryUnavailable, SQLAlchemyError)):
        outbox.drain(conn, db.url)

    if db.kind == "sqlite":
        blocker.unlink()
    else:
        db.create()
    assert outbox.settle(conn, db.url) > 0 and outbox.behind(conn) == 0
    conn.flushdb()
    runs = {r["run_id"]: r for r in lineage.runs_list(db.url)}
    assert second.run_id in runs and runs[second.run_id]["state"] == "succeeded"
    assert {s["step_id"] for s in runs[second.run_id]["steps"]} == {"walls", "clash", "json"}
    up = lineage.lineage(db.url, second.steps["clash"].outputs["report"], "up")
    assert {s["step"] for s in up["steps"]} == {"clash", "walls"}
    assert first.run_id not in runs or db.kind == "postgresql"  # the recreated PostgreSQL database starts empty


def test_records_applied_twice_are_stored_once(db: Database) -> None:
    run = {"kind": "run", "run_id": "r1", "at": 2.0, "state": "succeeded", "ended_at": 2.0}
    submit = {"kind": "run", "run_id": "r1", "at": 1.0, "pipeline": "p", "state": "queued", "created_at": 1.0}
    step = {"kind": "step", "run_id": "r1", "step_id": "s", "at": 1.5, "service": "ifcpatch", "state": "succeeded",
            "inputs": [{"path": "/m/a.ifc", "sha256": "a" * 64, "size": 1}],
            "outputs": [{"path": "/m/b.ifc", "sha256": "b" * 64, "size": 2}]}
    event = {"kind": "audit", "key": "submit:r1", "event": "submit", "actor": "me", "at": 1.0}
    history.apply(db.url, [run, step, event])
    history.apply(db.url, [submit, step, event, run])  # older records arrive late, newer ones again
    [row] = lineage.runs_list(db.url)
    assert (row["pipeline"], row["state"], row["created_at"], row["ended_at"]) == ("p", "succeeded", 1.0, 2.0)
    assert len(row["steps"]) == 1 and len(lineage.audit_list(db.url)) == 1
    doc = lineage.lineage(db.url, "b" * 64, "up")
    assert len(doc["edges"]) == 2 and len(doc["files"]) == 2


def test_http_history_lineage_audit_and_known_uploads(conn: Redis, db: Database, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from ifcflow.api.app import create_app
    from ifcflow.api.settings import Settings

    monkeypatch.setenv(history.ENV, db.url)
    monkeypatch.setattr(outbox, "_urls", {})  # the app names its connection's database: undone at the end
    client = TestClient(create_app(Settings(data=tmp_path / "data", redis_url="unused", api_keys=("k1", "k2")),
                                   conn=conn), headers={"X-API-Key": "k2"}, base_url="http://localhost")  # a loopback Host
    models = tmp_path / "models"
    models.mkdir()
    walls_model(models / "arch.ifc", walls=3)
    walls_model(models / "mep.ifc", walls=2)
    first = client.post("/upload/ifc", files={"file": ("arch.ifc", (models / "arch.ifc").read_bytes())}).json()
    assert first["known"] is False and first["sha256"] == outbox.describe(models / "arch.ifc")["sha256"]
    client.post("/upload/ifc", files={"file": ("mep.ifc", (models / "mep.ifc").read_bytes())})
    started = client.post("/runs", json={"pipeline": COORDINATION.replace("\n    ", "\n").strip() + "\n",
                                         "inputs": {"arch": "arch.ifc", "mep": "mep.ifc"}})
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    work(conn)
    assert client.get("/history").json()["behind"] == 0  # the run's end drained into the server's database
    conn.flushdb()

    listed = client.get("/history", params={"pipeline": "coordination", "since": "1d"}).json()
    [run] = listed["runs"]
    assert (run["run_id"], run["state"], run["actor"]) == (run_id, "succeeded", "api:key#2")
    assert run["inputs"]["arch"]["path"] == "uploads/arch.ifc" and listed["behind"] == 0
    report = f"output/runs/{run_id}/clash/clashes.json"
    up = client.get(f"/lineage/{report}", params={"direction": "up"}).json()
    paths = {p for f in up["files"] for p in f["paths"]}
    assert {"uploads/arch.ifc", "uploads/mep.ifc", report} <= paths
    assert not any(p.startswith("/") for p in paths)  # named relative to the data folder
    assert up["steps"] and all(s["run_exists"] is False for s in up["steps"])  # Redis was flushed: no run page
    down = client.get(f"/lineage/{first['sha256']}", params={"direction": "down"}).json()
    assert report in {p for f in down["files"] for p in f["paths"]}
    events = client.get("/audit", params={"run_id": run_id}).json()["events"]
    assert [(e["event"], e["actor"]) for e in events] == [("submit", "api:key#2")]
    again = client.post("/upload/ifc", files={"file": ("copy.ifc", (models / "arch.ifc").read_bytes())}).json()
    assert again["known"] is True and again["runs"] == [run_id]

    assert client.get("/history", params={"since": "forever"}).status_code == 422
    assert client.get("/history", params={"state": "bogus"}).status_code == 422
    assert client.get("/history", params={"limit": 0}).status_code == 422
    assert client.get("/lineage/uploads/..%2F..%2Fetc/passwd").status_code in (400, 404)
    assert client.get("/lineage/" + "0" * 64).status_code == 404
    assert client.get("/lineage/" + "0" * 64, params={"depth": 1000}).status_code == 422
    assert client.get("/audit", params={"event": "DROP TABLE"}).status_code == 422
    assert client.get("/history", headers={"X-API-Key": "nope"}).status_code == 403


def test_killed_work_horse_is_audited(conn: Redis, db: Database, tmp_path: Path, redis_server: Any) -> None:
    import signal
    import time

    import psutil

    from .test_reliability import Workers, slow_pipeline, wait_for

    tiny_model(tmp_path / "arch.ifc")
    planned = runner.start(conn, slow_pipeline(tmp_path), out=tmp_path / "runs")
    reader = status.StatusReader(conn, planned.run_id)
    workers = Workers(redis_server.url)
    try:
        wait_for(reader, lambda s: s.steps["clash"].status.value == "running")
        time.sleep(0.5)
        horse = max(psutil.Process(workers.procs[0].pid).children(), key=lambda p: p.create_time())
        horse.send_signal(signal.SIGKILL)
        result = wait_for(reader, lambda s: s.terminal)
        deadline = time.monotonic() + 60  # the worker announces the run's end (its run-end hooks ran)
        while conn.sismember(store.LIVE, planned.run_id) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        workers.stop()
    outbox.drain(conn, db.url)
    [killed] = lineage.audit_list(db.url, event="killed")
    assert killed["run_id"] == planned.run_id and killed["detail"]["step"] == "clash"
    assert killed["actor"] == (result.steps["clash"].worker or "reconciler") and "signal 9" in killed["detail"]["error"]
    [run] = lineage.runs_list(db.url)
    assert run["state"] == "failed"
    assert {s["step_id"]: s["state"] for s in run["steps"]} == {"clash": "failed", "after": "skipped"}


def test_local_run_records_history_that_the_cli_reads_after_prune(tmp_path: Path) -> None:
    import subprocess
    import sys

    pipeline = _coordination(tmp_path)
    out = tmp_path / "runs"
    env = {k: v for k, v in os.environ.items() if k not in ("IFCFLOW_REDIS_URL", history.ENV)}
    done = subprocess.run([sys.executable, "-m", "ifcflow", "run", str(pipeline), "--out", str(out), "--json"],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    assert (out / "history.sqlite").is_file()  # the private Redis is gone; its outbox was drained first

    def cli_out(*args: str) -> str:
        ran = subprocess.run([sys.executable, "-m", "ifcflow", *args, "--out", str(out)], env=env,
                             capture_output=True, text=True, timeout=120, check=False)
        assert ran.returncode == 0, ran.stderr
        return ran.stdout

    [run] = json.loads(cli_out("history", "--json", "--state", "succeeded", "--since", "1h"))["runs"]
    assert run["run_id"] == run_id and len(run["steps"]) == 3
    report = out / run_id / "clash" / "clashes.json"
    text = cli_out("lineage", str(report), "--up")
    assert "walls (ifcpatch" in text and "arch.ifc" in text
    assert "1 runs" in cli_out("history", "prune", "--older-than", "0s", "--yes")
    assert json.loads(cli_out("history", "--json"))["runs"] == []
    assert "history-prune" in cli_out("audit")


def test_unsupported_or_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    runner_ = CliRunner()
    for url, expected in (("mysql://x@y/z", "is not supported"), ("nonsense", "is not supported"),
                          ("postgresql://nobody:secret@127.0.0.1:1/none", "not usable")):
        result = runner_.invoke(cli, ["history", "--out", str(tmp_path)], env={history.ENV: url})
        assert isinstance(result.exception, history.HistoryUnavailable)  # `ifcflow` prints it as one line, exit 2
        assert expected in str(result.exception) and "secret" not in str(result.exception), result.exception
    result = runner_.invoke(cli, ["lineage", "0" * 64, "--out", str(tmp_path)], env={history.ENV: ""})
    assert isinstance(result.exception, IfcflowError) and "not in the history" in str(result.exception)
    result = runner_.invoke(cli, ["history", "--since", "soon", "--out", str(tmp_path)], env={history.ENV: ""})
    assert isinstance(result.exception, IfcflowError) and "not a duration" in str(result.exception)


def test_options_hash_is_the_cache_key(tmp_path: Path) -> None:
    from ifcflow.engine import cache
    from ifcflow.pipeline.plan import PlannedStep

    model = tiny_model(tmp_path / "arch.ifc")
    planned = PlannedStep(id="p", service="ifcpatch", queue="default", func="workers.ifcpatch.run", job_id="j",
                          needs=[], timeout=60, workdir=str(tmp_path),
                          options={"ifc": str(model), "recipe": "Optimise", "output": str(tmp_path / "out.ifc")},
                          outputs={"model": str(tmp_path / "out.ifc")})
    record = outbox.step_succeeded("r", planned, {"outputs": {}}, 1.0)
    assert record["options_hash"] == cache.key(planned) and record["inputs"][0]["sha256"] == cache.sha256(model)


def test_schedule_fire_is_audited_and_its_run_names_the_schedule(conn: Redis, tmp_path: Path) -> None:
    from ifcflow.batches import schedule

    tiny_model(tmp_path / "tiny.ifc")
    pipeline = write_pipeline(tmp_path, FAILING.replace("tiny.ifc", str(tmp_path / "tiny.ifc")))
    spec = schedule.ScheduleSpec(name="nightly", pipeline=str(pipeline), cron="0 2 * * *", out=str(tmp_path / "runs"))
    fired = schedule.fire(conn, spec, 1_800_000_000.0)
    assert fired.outcome == "started"
    url = f"sqlite:///{tmp_path / 'history.sqlite'}"
    outbox.drain(conn, url)
    [run] = lineage.runs_list(url)
    assert (run["run_id"], run["actor"], run["schedule"]) == (fired.id, "schedule:nightly", "nightly")
    events = {e["event"]: e for e in lineage.audit_list(url)}
    assert events["schedule-fire"]["actor"] == "schedule:nightly" and events["schedule-fire"]["run_id"] == fired.id
    assert events["submit"]["actor"] == "schedule:nightly"
    history.dispose(url)


def test_concurrent_drainers_neither_lose_nor_duplicate(conn: Redis, db: Database, redis_server: Any) -> None:
    import threading

    records = [r for i in range(300) for r in (
        {"kind": "run", "run_id": f"r{i}", "at": float(i), "pipeline": "p", "state": "queued", "created_at": float(i)},
        {"kind": "run", "run_id": f"r{i}", "at": i + 0.5, "state": "succeeded", "ended_at": i + 0.5},
        outbox.audit("submit", run_id=f"r{i}", key=f"submit:r{i}"))]
    outbox.push(conn, records)
    history.engine(db.url)  # migrated once, before the race (migrating concurrently is tested by use, not here)
    errors: list[BaseException] = []

    def drain() -> None:
        try:
            own = Redis.from_url(redis_server.url)
            while outbox.behind(own):
                outbox.drain(own, db.url, limit=50)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=drain) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors and outbox.behind(conn) == 0
    runs = lineage.runs_list(db.url, limit=1000)
    assert len(runs) == 300 and all(r["state"] == "succeeded" and r["pipeline"] == "p" for r in runs)
    assert len(lineage.audit_list(db.url, limit=1000)) == 300


def test_outbox_nobody_drains_is_capped_and_says_so(conn: Redis, redis_server: Any, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """With no database anywhere the outbox keeps only the newest IFCFLOW_OUTBOX_MAX records, `ifcflow history`
    says records are being dropped, and records a drainer had read before they were trimmed do not stay pending."""
    monkeypatch.setenv(outbox.MAX_ENV, "200")
    outbox._group(conn)
    outbox.push(conn, [outbox.audit("submit", run_id=f"old{i}", key=f"submit:old{i}") for i in range(50)])
    conn.xreadgroup(outbox.GROUP, "gone-drainer", {outbox.STREAM: ">"}, count=50)  # read, never acknowledged
    outbox.push(conn, [outbox.audit("submit", run_id=f"r{i}", key=f"submit:r{i}") for i in range(2000)])
    waiting = outbox.behind(conn)
    assert 200 <= waiting < 400 and outbox.full(waiting)  # Redis trims whole nodes (100 entries): never fewer
    newest = conn.xrevrange(outbox.STREAM, count=1)[0][1][b"r"]
    assert json.loads(newest)["run_id"] == "r1999"

    env = {history.ENV: "", "IFCFLOW_REDIS_URL": "", outbox.MAX_ENV: "200"}
    result = CliRunner().invoke(cli, ["history", "--out", str(tmp_path), "--redis", redis_server.url], env=env)
    assert result.exit_code == 0, result.output
    assert "full:" in result.output and "at its cap of 200 records" in result.output

    url = f"sqlite:///{tmp_path / 'h.sqlite'}"
    assert outbox.drain(conn, url) == waiting  # the trimmed entries the gone drainer held are acknowledged, not lost
    assert outbox.behind(conn) == 0
    assert conn.xpending(outbox.STREAM, outbox.GROUP)["pending"] == 0
    assert len(lineage.audit_list(url, limit=5000)) == waiting

    monkeypatch.setenv(outbox.MAX_ENV, "many")
    assert outbox.cap() == outbox.DEFAULT_MAX
