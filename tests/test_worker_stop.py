"""``ifcflow worker`` stops on SIGTERM (``docker compose stop``/``restart``, Ctrl-C) instead of restarting itself."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from redis import Redis
from rq import Worker

from ifcflow.standalone.embedded import EmbeddedRedis

from .servers import spawn, stop


def test_idle_worker_exits_on_sigterm(redis_server: EmbeddedRedis, conn: Redis, tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    worker = spawn([sys.executable, "-m", "ifcflow", "worker", "--redis", redis_server.url, "--preload", "ifc2json"],
                   log)
    try:
        deadline = time.monotonic() + 60
        while not Worker.all(connection=conn) and time.monotonic() < deadline:
            assert worker.poll() is None, log.read_text()
            time.sleep(0.1)
        assert Worker.all(connection=conn), log.read_text()
        worker.send_signal(signal.SIGTERM)
        try:
            assert worker.wait(timeout=15) == 0, log.read_text()
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the worker did not stop on SIGTERM:\n{log.read_text()}") from None
        assert "restarting the worker" not in log.read_text()
        assert Worker.all(connection=conn) == []
    finally:
        stop(worker)
