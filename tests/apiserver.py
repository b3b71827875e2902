"""A real ``ifcflow serve`` (uvicorn, subprocess) on a free port, with real ``ifcflow worker`` processes, on a
private redis-server: what the API tests and ``bench/bench_api.py`` drive with httpx."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from tests.processes import kill_tree
from tests.servers import free_port


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


class ApiServer:
    """``with ApiServer(redis_url, data, env) as api: api.url`` -- the server plus ``workers`` worker processes."""

    def __init__(self, redis_url: str, data: Path, env: dict[str, str] | None = None, workers: int = 2,
                 log: Path | None = None, command: list[str] | None = None):
        self.redis_url = redis_url
        self.data = data
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "IFCFLOW_REDIS_URL": redis_url, **(env or {})}
        self.workers = workers
        self.log = log or data / "processes.log"
        self.command = command
        self.processes: list[subprocess.Popen[bytes]] = []

    def spawn(self, args: list[str]) -> subprocess.Popen[bytes]:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            proc = subprocess.Popen(args, env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    start_new_session=True)
        self.processes.append(proc)
        return proc

    def start_workers(self, count: int) -> None:
        for index in range(count):
            self.spawn([sys.executable, "-m", "ifcflow", "worker", "--redis", self.redis_url, "--quiet",
                         "--name", f"api-test-{os.getpid()}-{len(self.processes)}-{index}"])

    def __enter__(self) -> ApiServer:
        try:
            args = self.command or [sys.executable, "-m", "ifcflow", "serve", "--port", str(self.port),
                                    "--data", str(self.data), "--log-level", "warning"]
            server = self.spawn([a.replace("{port}", str(self.port)) for a in args])
            self.start_workers(self.workers)
            wait_http(f"{self.url}/health", server)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in self.processes:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                kill_tree(proc)  # work horses have process groups of their own
        self.processes.clear()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def stream_events(client: httpx.Client, path: str) -> list[tuple[str, dict[str, Any]]]:
    """Read a Server-Sent Events stream (``/runs/{id}/events``, ``/batches/{id}/events``) up to its ``end`` event."""
    found = []
    with client.stream("GET", path, timeout=120) as stream:
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: ") and name:
                found.append((name, json.loads(line[6:])))
                if name == "end":
                    break
    return found
