"""Local mode: a private Redis plus worker processes, for ``ifcflow run`` with no server configured.

The workers are ordinary ``ifcflow worker`` processes over the same RQ code path as production; all of it is
stopped and removed when the run ends, on errors and on Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from redis import Redis
from redis.exceptions import RedisError

from ..engine import changes, lifeline
from ..errors import EmbeddedRedisError
from . import prestart
from .embedded import EmbeddedRedis


class LocalCluster:
    """``with LocalCluster(workers=2) as cluster: cluster.url`` -- Redis on a unix socket + N workers."""

    def __init__(self, workers: int | None = None, log_file: Path | None = None, preload: list[str] | None = None):
        self.count = max(1, workers or os.cpu_count() or 1)
        self.log_file = log_file
        self.preload = preload or []
        self.redis = EmbeddedRedis(die_with_parent=True)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.names = [f"local-{os.getpid()}-{index}" for index in range(self.count)]

    @property
    def url(self) -> str:
        return self.redis.url

    def __enter__(self) -> LocalCluster:
        log = subprocess.DEVNULL
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            log = self.log_file.open("ab")  # type: ignore[assignment]
        env = {**os.environ, lifeline.ENV: str(os.getpid())}  # workers, horses, scheduler die with this process
        early = prestart.take()  # ifcflow run's head start: Redis launched, a worker importing ifcopenshell
        try:
            if early is not None:
                self.redis.stop()  # (only its empty temporary folder)
                self.redis = early.redis
                self.processes.append(early.worker)
                early.configure(self.names[0], self.preload, self.log_file)
            for name in self.names[len(self.processes):]:
                self.processes.append(subprocess.Popen(
                    [sys.executable, "-m", "ifcflow.operations.localworker", self.url, name, ",".join(self.preload)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, env=env,
                ))
            if early is None:
                self.redis.launch()  # while the workers import ifcopenshell; they wait for it (operations.localworker)
            self.redis.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def check(self) -> None:
        """Raise when every local worker has exited (nothing would ever run the steps)."""
        if self.processes and all(proc.poll() is not None for proc in self.processes):
            codes = sorted({proc.returncode for proc in self.processes})
            raise EmbeddedRedisError(f"all {len(self.processes)} local workers exited (exit codes {codes}); "
                                     f"see {self.log_file or 'their output'}")

    def stop(self, grace: float = 3.0) -> None:
        """Ask workers to stop (warm), then kill what is left; then stop Redis and remove its temp folder.

        With ``grace=0`` (the run ended, workers are idle) they are killed at once. Workers, their work horses
        and RQ's scheduler processes are gone before Redis stops, so none of them logs a lost connection.
        """
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM if grace > 0 else signal.SIGKILL)
        deadline = time.monotonic() + grace
        for proc in self.processes:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                proc.wait()
            _kill_group(proc.pid)  # the scheduler process (same group); horses die with their worker
        _await_groups([proc.pid for proc in self.processes], timeout=5.0)
        self.processes.clear()
        self.redis.stop()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop(grace=0.5 if kind is KeyboardInterrupt else 3.0)

    def finished(self, settle: float = 5.0) -> None:
        """The run ended: stop at once, as soon as no worker is still handling a job's end (logging it,
        reconciling: ``ifcflow run`` may see the last step end first), at most ``settle`` seconds."""
        keys = [f"rq:worker:{name}" for name, proc in zip(self.names, self.processes) if proc.poll() is None]
        deadline = time.monotonic() + settle
        try:
            client = Redis(unix_socket_path=str(self.redis.socket), socket_timeout=settle)
            with client.pipeline(transaction=False) as pipe:
                while time.monotonic() < deadline:
                    for key in keys:
                        pipe.hexists(key, changes.BUSY_FIELD)
                    if not any(pipe.execute()):
                        break
                    time.sleep(0.005)
            client.close()
        except RedisError:
            pass
        self.stop(grace=0)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _await_groups(pgids: list[int], timeout: float) -> None:
    """Wait until no live process of these process groups is left (or ``timeout`` passes).

    A zombie counts as gone: it runs no code and holds no connection. Orphaned members (RQ's scheduler process,
    whose worker was killed) are reaped by PID 1, which in containers and micro-VMs can take over a second.
    """
    deadline = time.monotonic() + timeout
    pending = set(pgids)
    while pending and time.monotonic() < deadline:
        pending = _live_groups(pending)
        if pending:
            time.sleep(0.02)


def _live_groups(pgids: set[int]) -> set[int]:
    """Those of ``pgids`` that still have a process that is not a zombie."""
    proc = Path("/proc")
    if not proc.is_dir():
        live = set()
        for pgid in pgids:
            try:
                os.killpg(pgid, 0)
                live.add(pgid)
            except (ProcessLookupError, PermissionError):
                pass
        return live
    live = set()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        state, pgid = fields[0], int(fields[2])  # after "pid (comm)": state, ppid, pgrp
        if pgid in pgids and state not in ("Z", "X"):
            live.add(pgid)
    return live
