"""Schedules and the scheduler on a real redis-server: fires, failures recorded, overlap, two schedulers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from ifcflow.batches import batch_status, schedule
from ifcflow.batches.scheduler import Scheduler
from ifcflow.engine.states import RunState
from ifcflow.engine.status import StatusReader
from ifcflow.errors import IfcflowError
from ifcflow.standalone.embedded import EmbeddedRedis

from .factories import tiny_model, write_pipeline
from .test_batch import work  # ifcflow's worker logic in-process: it releases batches' next sub-runs

PIPELINE = """\
    version: 1
    name: nightly
    inputs: {arch: arch.ifc}
    steps:
      patch: {uses: ifcpatch, with: {ifc: "${{ inputs.arch }}", recipe: Optimise}}
    """


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    tiny_model(tmp_path / "arch.ifc")
    (tmp_path / "models").mkdir()
    for name in ("a.ifc", "b.ifc"):
        tiny_model(tmp_path / "models" / name)
    write_pipeline(tmp_path, PIPELINE, "p.yaml")
    return tmp_path


def spec(folder: Path, name: str = "nightly", cron: str = "0 2 * * *", **kw: Any) -> schedule.ScheduleSpec:
    return schedule.ScheduleSpec(name=name, pipeline=str(folder / "p.yaml"), cron=cron, out=str(folder / "runs"),
                                 **kw)


class Hook:
    """A real HTTP server collecting webhook POSTs."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture()
def hook() -> Iterator[Hook]:
    server = Hook()
    yield server
    server.server.shutdown()


def test_add_list_run_remove(conn: Redis, folder: Path) -> None:
    schedule.add(conn, spec(folder))
    with pytest.raises(IfcflowError, match="exists"):
        schedule.add(conn, spec(folder))
    with pytest.raises(IfcflowError, match="not a cron expression"):
        schedule.add(conn, spec(folder, name="bad", cron="every night"))
    [row] = schedule.listing(conn)
    assert row["name"] == "nightly" and row["last"] is None
    assert row["next_fire"] > time.strftime("%Y-%m-%d")
    fire = schedule.run_now(conn, "nightly")
    assert fire.outcome == "started" and fire.kind == "run"
    work(conn)
    [row] = schedule.listing(conn)
    assert row["last"]["id"] == fire.id and row["last"]["state"] == "succeeded"
    schedule.remove(conn, "nightly")
    assert schedule.listing(conn) == []


def test_schedule_commands(folder: Path, redis_server: EmbeddedRedis, conn: Redis) -> None:
    env = {k: v for k, v in os.environ.items() if k != "IFCFLOW_REDIS_URL"} | {"IFCFLOW_REDIS_URL": redis_server.url}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ifcflow", "schedule", *args], capture_output=True, text=True,
                              cwd=folder, env=env, timeout=120)

    added = cli("add", "nightly", "p.yaml", "--cron", "0 2 * * *", "-i", "arch=models/a.ifc")
    assert added.returncode == 0 and "next fire" in added.stdout, added.stderr
    assert schedule.get(conn, "nightly").inputs == {"arch": str(folder / "models/a.ifc")}
    bad = cli("add", "Bad Name", "p.yaml", "--cron", "0 2 * * *")
    assert bad.returncode == 2 and "schedule name" in bad.stderr
    fired = cli("run", "nightly")
    assert fired.returncode == 0, fired.stderr
    listed = cli("list")
    assert fired.stdout.strip() in listed.stdout and "started" in listed.stdout
    assert cli("remove", "nightly").returncode == 0 and "no schedules" in cli("list").stdout


def test_broken_file_fails_the_fire_visibly_and_the_next_one_works(conn: Redis, folder: Path, hook: Hook) -> None:
    schedule.add(conn, spec(folder, webhook=hook.url))
    (folder / "p.yaml").write_text("version: 1\nname: nightly\nsteps: {patch: {uses: ifcpatchh}}\n")
    failed = schedule.fire(conn, schedule.get(conn, "nightly"), time.time())
    assert failed.outcome == "failed" and "ifcpatchh" in (failed.reason or "") and "p.yaml:3" in (failed.reason or "")
    assert hook.received and hook.received[0]["event"] == "fire_failed"
    assert schedule.listing(conn)[0]["last"]["outcome"] == "failed"
    write_pipeline(folder, PIPELINE, "p.yaml")
    assert schedule.fire(conn, schedule.get(conn, "nightly"), time.time()).outcome == "started"


def test_each_glob_reexpanded_at_every_fire(conn: Redis, folder: Path) -> None:
    schedule.add(conn, spec(folder, each={"arch": str(folder / "models/*.ifc")}))
    first = schedule.run_now(conn, "nightly")
    assert first.kind == "batch"
    work(conn)
    assert len(batch_status.read(conn, first.id or "").runs) == 2
    tiny_model(folder / "models" / "c.ifc")
    second = schedule.run_now(conn, "nightly")
    work(conn)
    done = batch_status.read(conn, second.id or "")
    assert len(done.runs) == 3 and done.status == RunState.SUCCEEDED
    for path in (folder / "models").glob("*.ifc"):
        path.unlink()
    empty = schedule.run_now(conn, "nightly")
    assert empty.outcome == "failed" and "matches no file" in (empty.reason or "")


def test_overlap_skip_queue_allow(conn: Redis, folder: Path) -> None:
    for name, policy in (("s", "skip"), ("q", "queue"), ("a", "allow")):
        schedule.add(conn, spec(folder, name=name, overlap=policy))
        first = schedule.fire(conn, schedule.get(conn, name), 1000.0)
        second = schedule.fire(conn, schedule.get(conn, name), 2000.0)  # no worker: the first is still queued
        assert first.outcome == "started"
        assert second.outcome == {"skip": "skipped", "queue": "queued", "allow": "started"}[policy], second
    assert schedule.start_queued(conn, schedule.get(conn, "q")) is None  # the previous run has not ended
    work(conn)
    started = schedule.start_queued(conn, schedule.get(conn, "q"))
    assert started is not None and started.outcome == "started"
    work(conn)
    assert StatusReader(conn, started.id or "").fetch().status == RunState.SUCCEEDED


def test_webhook_hears_the_end_of_a_run_once(conn: Redis, folder: Path, hook: Hook) -> None:
    schedule.add(conn, spec(folder, webhook=hook.url))
    fire = schedule.run_now(conn, "nightly")
    assert not schedule.notify_ended(conn, schedule.get(conn, "nightly"))  # still queued
    work(conn)
    assert schedule.notify_ended(conn, schedule.get(conn, "nightly"))
    assert not schedule.notify_ended(conn, schedule.get(conn, "nightly"))
    assert [h["event"] for h in hook.received] == ["run_ended"]
    assert hook.received[0]["status"]["run_id"] == fire.id and hook.received[0]["status"]["status"] == "succeeded"


def test_scheduler_fires_a_seconds_cron_in_process(conn: Redis, folder: Path) -> None:
    schedule.add(conn, spec(folder, cron="* * * * * *", overlap="allow"))
    scheduler = Scheduler(conn, poll=0.1)

    def tick_for(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            scheduler.enqueue_jobs()
            time.sleep(scheduler.calculate_sleep_interval())

    tick_for(3.5)
    ticks = [f.tick for f in schedule.history(conn, "nightly")]
    assert 2 <= len(ticks) <= 4 and len(set(ticks)) == len(ticks)
    assert all(f.outcome == "started" for f in schedule.history(conn, "nightly"))
    (folder / "p.yaml").write_text("version: 1\nname: nightly\nsteps: [oops\n")  # broken mid-way
    tick_for(2.5)
    write_pipeline(folder, PIPELINE, "p.yaml")
    tick_for(2.5)
    outcomes = [f.outcome for f in reversed(schedule.history(conn, "nightly"))]
    assert "failed" in outcomes and outcomes[-1] == "started"  # the scheduler went on after the broken fires


def test_two_schedulers_fire_each_tick_once(conn: Redis, folder: Path, redis_server: EmbeddedRedis) -> None:
    schedule.add(conn, spec(folder, cron="* * * * * *", overlap="allow"))
    schedule.add(conn, spec(folder, name="other", cron="* * * * * */2", overlap="allow"))
    env = {k: v for k, v in os.environ.items() if k != "IFCFLOW_REDIS_URL"}
    procs = [subprocess.Popen([sys.executable, "-m", "ifcflow", "scheduler", "--redis", redis_server.url,
                               "--poll", "0.05", "--name", f"s{i}"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, start_new_session=True) for i in range(2)]
    try:
        time.sleep(2.5)  # both started (imports) and registered
        begin = time.time()
        time.sleep(6.0)
        end = time.time()
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        errors = []
        for proc in procs:
            try:
                errors.append(proc.communicate(timeout=20)[1].decode())
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                errors.append(f"did not stop on SIGTERM: {proc.communicate()[1].decode()[-2000:]}")
    assert all(proc.returncode == 0 for proc in procs), errors
    for name, every in (("nightly", 1), ("other", 2)):
        fires = schedule.history(conn, name)
        ticks = [f.tick for f in fires]
        assert len(set(ticks)) == len(ticks), f"{name}: a tick fired twice: {sorted(ticks)}"
        from datetime import datetime

        inside = [t for t in ticks if begin + 0.5 <= datetime.fromisoformat(t).timestamp() <= end - 0.5]
        expected = (end - begin - 1.0) / every
        assert expected - 1.5 <= len(inside) <= expected + 1.5, (name, len(inside), expected)
    # every tick was fired by one of the two, and both took part (RQ's registry lists both)
    assert len({f.id for f in schedule.history(conn, "nightly")}) == len(schedule.history(conn, "nightly"))


def test_stop_request_during_a_fire_stops_the_scheduler(conn: Redis, folder: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """RQ's SIGTERM handler raises StopRequested wherever the scheduler is; a fire must not swallow it."""
    from rq.exceptions import StopRequested

    schedule.add(conn, spec(folder, cron="* * * * * *", overlap="allow"))

    def interrupted(*args: object) -> None:
        raise StopRequested()

    monkeypatch.setattr(schedule, "_start", interrupted)
    with pytest.raises(StopRequested):
        schedule.run_now(conn, "nightly")
    scheduler = Scheduler(conn, poll=0.1)
    with pytest.raises(StopRequested):
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            scheduler.enqueue_jobs()
            time.sleep(scheduler.calculate_sleep_interval())


def test_impossible_or_seconds_first_cron_refused_at_add_with_one_line(folder: Path, redis_server: EmbeddedRedis,
                                                                       conn: Redis) -> None:
    env = {k: v for k, v in os.environ.items() if k != "IFCFLOW_REDIS_URL"} | {"IFCFLOW_REDIS_URL": redis_server.url}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ifcflow", "schedule", *args], capture_output=True, text=True,
                              cwd=folder, env=env, timeout=120)

    never = cli("add", "never", "p.yaml", "--cron", "0 0 30 2 *")
    assert never.returncode == 2 and "never fires" in never.stderr and "Traceback" not in never.stderr
    assert len(never.stderr.strip().splitlines()) == 1, never.stderr
    quartz = cli("add", "quartz", "p.yaml", "--cron", "*/20 * * * * *")
    assert quartz.returncode == 2 and "seconds LAST" in quartz.stderr and "* * * * * */20" in quartz.stderr
    assert cli("add", "q2", "p.yaml", "--cron", "0 30 2 * * *").returncode == 2
    assert conn.hkeys(schedule.SCHEDULES) == []
    assert "seconds LAST" in cli("add", "--help").stdout
    added = cli("add", "nightly", "p.yaml", "--cron", "0 2 * * *")
    assert added.returncode == 0, added.stderr
    fires = added.stdout.split("next fires:")[1].splitlines()[0].split(", ")
    assert len(fires) == 3 and all(" 02:00:00" in f for f in fires), added.stdout
    with pytest.raises(IfcflowError, match="never fires"):
        schedule.add(conn, spec(folder, name="feb", cron="0 0 30 2 *"))


def test_a_broken_stored_schedule_is_skipped_and_reported_never_stopping_the_others(
        conn: Redis, folder: Path, redis_server: EmbeddedRedis) -> None:
    schedule.add(conn, spec(folder, name="good", cron="* * * * * *", overlap="allow"))
    conn.hset(schedule.SCHEDULES, "never", spec(folder, name="never", cron="0 0 30 2 *").model_dump_json())
    conn.hset(schedule.SCHEDULES, "junk", "not json")
    env = {k: v for k, v in os.environ.items() if k != "IFCFLOW_REDIS_URL"} | {"IFCFLOW_REDIS_URL": redis_server.url}
    listed = subprocess.run([sys.executable, "-m", "ifcflow", "schedule", "list"], capture_output=True, text=True,
                            env=env, timeout=120)
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    assert "good" in listed.stdout and "never fires" in listed.stdout and "junk" in listed.stdout
    proc = subprocess.Popen([sys.executable, "-m", "ifcflow", "scheduler", "--poll", "0.1"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(schedule.history(conn, "good")) < 2:
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        output = proc.communicate(timeout=20)[0]
    fired = schedule.history(conn, "good")
    assert len(fired) >= 2 and all(f.outcome == "started" for f in fired), output
    assert output.count("schedule never:") == 1 and "never fires" in output, output  # said once, not every poll
    assert output.count("schedule junk:") == 1, output
    assert f"schedule good tick {fired[-1].tick}: started {fired[-1].id}" in output, output


def test_overlap_sees_the_live_fire_after_any_number_of_skipped_ticks(conn: Redis, folder: Path) -> None:
    """Issue 15.12: the live fire is tracked directly, not looked up among the last 10 fires."""
    schedule.add(conn, spec(folder, name="s", overlap="skip"))
    first = schedule.fire(conn, schedule.get(conn, "s"), 1000.0)
    later = [schedule.fire(conn, schedule.get(conn, "s"), 1000.0 + 60 * n).outcome for n in range(1, 13)]
    assert first.outcome == "started" and later == ["skipped"] * 12  # no worker: the first is still queued
    assert schedule.live_fire(conn, "s") == first
    work(conn)
    assert not schedule.notify_ended(conn, schedule.get(conn, "s"))  # (no webhook) it ended: no longer live
    assert schedule.live_fire(conn, "s") is None
    assert schedule.fire(conn, schedule.get(conn, "s"), 9000.0).outcome == "started"
