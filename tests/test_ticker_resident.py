"""One progress ticker per resident work horse (workers/ticker.py): forked at the horse's first step, reused by
the next steps, gone with the horse. A real ``ifcflow worker`` process; the processes are found with psutil.
(That the ticker still writes notes during a long step: tests/test_progress_ticker.py.)"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
from redis import Redis

from ifcflow.engine import runner, status
from ifcflow.engine.states import RunState
from ifcflow.standalone.embedded import EmbeddedRedis

from .factories import ONE_STEP, tiny_model, write_pipeline
from .processes import kill_tree, start_worker


def run_one(conn: Redis, pipeline: Path, out: Path) -> None:
    planned = runner.start(conn, pipeline, out=out)
    deadline = time.monotonic() + 60
    while not (state := status.read(conn, planned.run_id)).terminal and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state.status == RunState.SUCCEEDED, state


def horse_and_tickers(worker: psutil.Process) -> tuple[psutil.Process, list[int]]:
    """The worker's resident horse (the child running ``ifcflow worker`` code that has children of its own or is
    the only one besides RQ's scheduler) and the pids of the horse's children (its ticker)."""
    deadline = time.monotonic() + 10
    while True:
        for child in worker.children():
            grandchildren = [p.pid for p in child.children() if p.status() != psutil.STATUS_ZOMBIE]
            if grandchildren:
                return child, grandchildren
        assert time.monotonic() < deadline, f"no horse with a ticker under worker {worker.pid}"
        time.sleep(0.05)


def test_a_horse_keeps_one_ticker_for_its_steps_and_it_dies_with_the_horse(
        redis_server: EmbeddedRedis, conn: Redis, tmp_path: Path) -> None:
    tiny_model(tmp_path / "arch.ifc")
    pipeline = write_pipeline(tmp_path, ONE_STEP)
    proc = start_worker(redis_server.url, f"ticker-resident-{time.monotonic_ns()}",
                        env={"IFCFLOW_PROGRESS_INTERVAL": "0.2", "IFCFLOW_CACHE": "off"})
    try:
        worker = psutil.Process(proc.pid)
        run_one(conn, pipeline, tmp_path / "runs")
        horse, tickers = horse_and_tickers(worker)
        assert len(tickers) == 1, tickers
        # it keeps none of the horse's descriptors (its pipe to the worker above all): stdio, its pipe, Redis
        assert psutil.Process(tickers[0]).num_fds() <= 5, psutil.Process(tickers[0]).open_files()
        for _ in range(3):
            run_one(conn, pipeline, tmp_path / "runs")
        assert horse_and_tickers(worker) == (horse, tickers)  # the same horse, the same ticker: no fork per step
        os.kill(horse.pid, signal.SIGKILL)  # (not its process group: the ticker must notice on its own)
        ticker = psutil.Process(tickers[0])
        deadline = time.monotonic() + 10
        while ticker.is_running() and ticker.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not ticker.is_running() or ticker.status() == psutil.STATUS_ZOMBIE, "the ticker outlived its horse"
        run_one(conn, pipeline, tmp_path / "runs")  # the next step gets a fresh horse and a fresh ticker
        assert horse_and_tickers(worker)[1] != tickers
    finally:
        kill_tree(proc)
