"""Processes that tests start: stopped robustly, and none may outlive the test session.

Every process started by the test session (directly or by a process it started) inherits ``IFCFLOW_TEST_SESSION``;
at the end of the session :func:`leftovers` finds any that is still alive, wherever it was re-parented to, and
the session fails (see ``conftest.pytest_sessionfinish``). That catches a teardown that missed a worker, which
would otherwise take the jobs of later tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

import psutil

MARKER = "IFCFLOW_TEST_SESSION"
SESSION = os.environ.setdefault(MARKER, uuid.uuid4().hex)


def kill_tree(proc: subprocess.Popen[bytes] | subprocess.Popen[str], sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to ``proc``, its process group and all its descendants (an RQ work horse has a group of its
    own), ignoring processes that are already gone; then reap ``proc``."""
    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    for kill in (lambda: os.killpg(proc.pid, sig), lambda: os.kill(proc.pid, sig)):
        try:
            kill()
        except (ProcessLookupError, PermissionError):
            pass
    for child in descendants:
        try:
            child.send_signal(sig)
        except psutil.NoSuchProcess:
            pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()


def leftovers(grace: float = 10.0) -> list[psutil.Process]:
    """Processes of this test session (other than this one) still alive after ``grace`` seconds."""
    deadline = time.monotonic() + grace
    while True:
        alive = []
        for proc in psutil.process_iter():
            if proc.pid == os.getpid():
                continue
            try:
                if proc.status() != psutil.STATUS_ZOMBIE and proc.environ().get(MARKER) == SESSION:
                    alive.append(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


def start_worker(url: str, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A real ``ifcflow worker`` process (extra ``args`` such as ``--preload ifc5d``), returned once it listens:
    RQ's "idle" state is set after its signal handlers are installed."""
    import sys

    from redis import Redis
    from rq import Worker

    proc = subprocess.Popen([sys.executable, "-m", "ifcflow", "worker", "--redis", url, "--quiet", "--name", name,
                             *args], start_new_session=True, env={**os.environ, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(w.name == name and w.get_state() == "idle" for w in Worker.all(connection=Redis.from_url(url))):
            return proc
        time.sleep(0.1)
    kill_tree(proc)
    raise AssertionError("the worker did not register within 60 s")
