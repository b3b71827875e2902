"""A private PostgreSQL 15 server for a test: its own data folder, port and socket folder, started and stopped
with Debian's ``initdb``/``pg_ctl`` as the ``postgres`` OS user (PostgreSQL refuses to run as root).

``with PrivatePostgres() as pg: pg.url ... pg.stop(); pg.start()`` -- stopped with ``-m immediate`` (a crash, no
clean shutdown), started again on the same port and data. Removed at the end."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from .servers import free_port

BIN = Path(os.environ.get("IFCFLOW_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def missing() -> str | None:
    """Why a private server cannot be started here, or None."""
    if not (BIN / "initdb").is_file() or not (BIN / "pg_ctl").is_file():
        return f"no PostgreSQL server binaries in {BIN} (apt-get install postgresql-15, or set IFCFLOW_TEST_PG_BIN)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' OS user to run the server as"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser (util-linux) to start the server as 'postgres'"
    return None


class PrivatePostgres:
    def __init__(self) -> None:
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="ifcflow-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.running = False

    def _as_postgres(self, *args: str, timeout: float = 60) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise AssertionError(f"{args[0]} failed ({done.returncode}): {done.stderr}{done.stdout}\n{log}")

    def __enter__(self) -> PrivatePostgres:
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        try:
            self._as_postgres(str(BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                              "-E", "UTF8", "--no-sync", "--no-instructions")
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
                          "-t", "60", "start")
        self.running = True

    def stop(self, mode: str = "immediate") -> None:
        self._as_postgres(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")
        self.running = False

    def close(self) -> None:
        try:
            if self.running:
                self.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
