"""Redis faults for real: a restart with AOF persistence loses nothing; without it runs are reported lost;
an unreachable server gives one clear error; workers reconnect after a restart."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from rq import Worker

from ifcflow.engine import runner, status
from ifcflow.engine.states import RunState, StepState
from ifcflow.errors import RunNotFound
from ifcflow.standalone.embedded import find_server

from .conftest import work
from .factories import tiny_model, write_pipeline
from .processes import kill_tree

PIPELINE = """\
    version: 1
    name: restart
    steps:
      a: {uses: ifcpatch, with: {ifc: arch.ifc, recipe: Optimise}}
      b: {uses: ifcpatch, with: {ifc: "${{ steps.a.outputs.model }}", recipe: Optimise}}
    """


class Server:
    """A redis-server on a free TCP port that the test can stop and start again (same port, same folder)."""

    def __init__(self, folder: Path, persistent: bool):
        self.folder = folder
        self.persistent = persistent
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        aof = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        self.proc = subprocess.Popen([find_server(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--dir", str(self.folder), *aof], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if Redis.from_url(self.url).ping():
                    return
            except Exception:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    tiny_model(tmp_path / "arch.ifc")
    return tmp_path


@pytest.fixture()
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    data = tmp_path / "redis-data"
    data.mkdir()
    srv = Server(data, persistent=request.param)
    srv.start()
    yield srv
    srv.stop()


@pytest.mark.parametrize("server", [True], indirect=True)
def test_restart_with_aof_loses_nothing(server: Server, folder: Path) -> None:
    planned = runner.start(Redis.from_url(server.url), write_pipeline(folder, PIPELINE), out=folder / "runs")
    server.stop()
    server.start()
    conn = Redis.from_url(server.url)
    work(conn)
    assert status.read(conn, planned.run_id).status == RunState.SUCCEEDED


@pytest.mark.parametrize("server", [False], indirect=True)
def test_restart_without_persistence_reports_lost(server: Server, folder: Path) -> None:
    conn = Redis.from_url(server.url)
    planned = runner.start(conn, write_pipeline(folder, PIPELINE), out=folder / "runs")
    reader = status.StatusReader(conn, planned.run_id)  # a client that was following the run keeps the plan
    server.stop()
    server.start()
    result = status.StatusReader(Redis.from_url(server.url), planned.run_id, reader.plan).read()
    assert result.status == RunState.FAILED
    assert all(s.status == StepState.FAILED and (s.error or "").startswith("lost") for s in result.steps.values())
    with pytest.raises(RunNotFound, match="no run"):
        status.read(Redis.from_url(server.url), planned.run_id)


@pytest.mark.parametrize("server", [True], indirect=True)
def test_worker_reconnects_after_restart(server: Server, folder: Path) -> None:
    worker = subprocess.Popen([sys.executable, "-m", "ifcflow", "worker", "--redis", server.url, "--quiet"],
                              start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not Worker.all(connection=Redis.from_url(server.url)) and time.monotonic() < deadline:
            time.sleep(0.1)  # started and registered before Redis goes away
        assert Worker.all(connection=Redis.from_url(server.url))
        server.stop()
        time.sleep(2)
        server.start()
        conn = Redis.from_url(server.url)
        planned = runner.start(conn, write_pipeline(folder, PIPELINE), out=folder / "runs")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not status.read(conn, planned.run_id).terminal:
            time.sleep(0.2)
        assert status.read(conn, planned.run_id).status == RunState.SUCCEEDED
    finally:
        kill_tree(worker)


@pytest.mark.parametrize("command", [["status", "some-run"], ["runs"], ["queues"], ["workers"], ["cancel", "x"],
                                     ["retry", "x"], ["prune"], ["worker", "--burst"]])
def test_unreachable_redis_one_clear_error(command: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "ifcflow", *command, "--redis", "redis://127.0.0.1:1/0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in done.stderr


def _poll_until_redis_goes(server: Server, args: list[str]) -> subprocess.CompletedProcess[str]:
    """Start a polling command on ``server``, stop the server while it polls, and return what the command did."""
    env = {k: v for k, v in os.environ.items() if k != "IFCFLOW_REDIS_URL"}
    proc = subprocess.Popen([sys.executable, "-m", "ifcflow", *args, "--redis", server.url], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # the first view line: it is polling now (no worker: the run never ends)
        assert proc.poll() is None, (first, proc.communicate())
        server.stop()
        out, err = proc.communicate(timeout=60)
        err = first + err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


@pytest.mark.parametrize("server", [False], indirect=True)
@pytest.mark.parametrize("command", ["status --watch", "run", "retry --wait"])
def test_every_polling_command_says_one_line_and_exits_2_when_redis_goes_away(server: Server, folder: Path,
                                                                              command: str) -> None:
    from ifcflow.engine import control

    path = write_pipeline(folder, PIPELINE)
    if command == "run":
        args = ["run", str(path), "--out", str(folder / "runs")]
    else:
        conn = Redis.from_url(server.url)
        planned = runner.start(conn, path, out=folder / "runs")
        if command == "retry --wait":
            control.cancel(conn, planned.run_id, wait=0)
        args = [*command.split()[:1], planned.run_id, *command.split()[1:]]
    done = _poll_until_redis_goes(server, args)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.strip().splitlines() if not line.startswith(("a [", "b [", "run "))]
    assert len(lines) == 1 and lines[0].startswith("error: lost Redis while following run "), done.stderr
    assert "Traceback" not in done.stderr
