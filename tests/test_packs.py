"""Packs (ifcflow/engine/packs.py, workers/pack.py): a batch of small files runs several sub-runs per RQ job, on
real ``ifcflow worker`` processes and a real redis-server, and each file still is a run of its own: status,
row, ``status.json``, cancel, retry; a file that kills the work horse fails alone and the rest of its pack runs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from redis import Redis
from rq.job import Job

from ifcflow.batches import batch, batch_status, lifecycle
from ifcflow.engine import control, packs, store
from ifcflow.engine.states import RunState, StepState
from ifcflow.engine.status import StatusReader
from ifcflow.standalone.embedded import EmbeddedRedis

from .factories import tiny_model, write_pipeline
from .test_reliability import Workers

PIPELINE = """\
    version: 1
    name: packed
    inputs: {arch: arch.ifc}
    steps:
      patch: {uses: ifcpatch, with: {ifc: "${{ inputs.arch }}", recipe: RECIPE}}
    """
CRASH = """\
import os
import signal


class Patcher:
    \"\"\"Kills its own process on a model of exactly three walls (a crash inside a library call).\"\"\"

    def __init__(self, file, logger, *args):
        self.file = file

    def patch(self):
        if len(self.file.by_type("IfcWall")) == 3:
            os.kill(os.getpid(), signal.SIGKILL)

    def get_output(self):
        return self.file
"""


def models(folder: Path, walls: list[int]) -> str:
    tiny_model(folder / "arch.ifc", walls=1)
    (folder / "many").mkdir()
    for index, count in enumerate(walls):
        tiny_model(folder / "many" / f"m{index:02d}.ifc", walls=count)
    return str(folder / "many" / "m??.ifc")


def wait_batch(conn: Redis, batch_id: str, timeout: float = 120.0) -> batch_status.BatchStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if conn.hexists(batch.key(batch_id), "ended_at"):
            return batch_status.read(conn, batch_id)
        time.sleep(0.1)
    raise AssertionError(f"batch {batch_id} did not end: {batch_status.read(conn, batch_id).counts}")


def test_small_files_run_in_packs_each_a_run_of_its_own(redis_server: EmbeddedRedis, conn: Redis,
                                                         tmp_path: Path) -> None:
    glob = models(tmp_path, [1, 2] * 5)
    file = write_pipeline(tmp_path, PIPELINE.replace("RECIPE", "Optimise"))
    record = batch.start(conn, file, each={"arch": glob}, out=tmp_path / "runs", window=1)
    assert record.pack == 5  # 10 files, a window of 1: two packs of 5 (keeps two workers' worth busy)
    workers = Workers(redis_server.url, count=2)
    try:
        done = wait_batch(conn, record.batch_id)
    finally:
        workers.stop()
    assert done.status == RunState.SUCCEEDED and done.counts["succeeded"] == 10, done.counts
    pack_ids = packs.job_ids(record.batch_id, 10, 5)[:2]
    assert [Job.fetch(j, connection=conn).get_status().value for j in pack_ids] == ["finished", "finished"]
    for sub in record.runs:
        status = StatusReader(conn, sub.run_id).read()
        step = status.steps["patch"]
        assert status.status == RunState.SUCCEEDED and step.status == StepState.SUCCEEDED
        assert step.result and step.result["message"].startswith("applied Optimise"), step.result
        assert step.worker and step.started_at and step.ended_at and step.duration is not None
        assert step.result["outputs"] and all(Path(p).is_file() for p in step.result["outputs"].values())
        assert not conn.exists(f"rq:job:{step.job_id}")  # no job of its own: its pack ran it
        on_disk = json.loads((Path(status.out_dir) / "status.json").read_text())
        assert on_disk["status"] == "succeeded" and on_disk["steps"]["patch"]["result"]["success"] is True


def test_a_file_that_kills_the_horse_fails_alone_and_can_be_retried(redis_server: EmbeddedRedis, conn: Redis,
                                                                    tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "CrashOnThree.py").write_text(CRASH)
    monkeypatch.setenv("IFCFLOW_PATCH_RECIPES", str(recipes))
    glob = models(tmp_path, [1, 1, 3, 1, 1, 1])  # the third file kills the process that runs it
    file = write_pipeline(tmp_path, PIPELINE.replace("RECIPE", "CrashOnThree"))
    record = batch.start(conn, file, each={"arch": glob}, out=tmp_path / "runs", window=1)
    assert record.pack == 3
    workers = Workers(redis_server.url, count=1)
    try:
        done = wait_batch(conn, record.batch_id)
        states = [row.status for row in done.runs]
        assert states == [RunState.SUCCEEDED] * 2 + [RunState.FAILED] + [RunState.SUCCEEDED] * 3, states
        crashed = StatusReader(conn, record.runs[2].run_id).read().steps["patch"]
        assert crashed.error and "work horse died" in crashed.error and "signal 9" in crashed.error, crashed.error
        # the worker went on; the failed file is retried as an ordinary run (a job of its own), and fails again
        assert lifecycle.retry(conn, record.batch_id) == {record.runs[2].run_id: ["patch"]}
        again = wait_batch(conn, record.batch_id)
    finally:
        workers.stop()
    assert [row.status for row in again.runs][2] == RunState.FAILED
    retried = StatusReader(conn, record.runs[2].run_id).read().steps["patch"]
    assert conn.exists(f"rq:job:{retried.job_id}") and "terminated unexpectedly" in (retried.error or "")


def test_cancel_reaches_packed_files_that_have_not_run(conn: Redis, tmp_path: Path) -> None:
    glob = models(tmp_path, [1] * 6)
    file = write_pipeline(tmp_path, PIPELINE.replace("RECIPE", "Optimise"))
    record = batch.start(conn, file, each={"arch": glob}, out=tmp_path / "runs", window=1)
    assert record.pack == 3
    first = record.runs[0].run_id
    assert control.cancel(conn, first) == ["patch"]  # waiting in its pack: canceled at once
    assert StatusReader(conn, first).read().status == RunState.CANCELED
    assert conn.hget(store.run_key(first), "ended_at") is not None
    assert lifecycle.cancel(conn, record.batch_id)  # the rest, released or not
    done = batch_status.read(conn, record.batch_id)
    assert done.status == RunState.CANCELED and done.counts["canceled"] == 6, done.counts
    assert conn.hget(batch.key(record.batch_id), "ended_at") is not None


def test_a_pack_that_vanished_fails_its_files_with_the_reason(conn: Redis, tmp_path: Path) -> None:
    from ifcflow.engine import reconcile

    glob = models(tmp_path, [1] * 4)
    file = write_pipeline(tmp_path, PIPELINE.replace("RECIPE", "Optimise"))
    record = batch.start(conn, file, each={"arch": glob}, out=tmp_path / "runs", window=1)
    pack = packs.job_ids(record.batch_id, 4, record.pack)[0]
    conn.delete(f"rq:job:{pack}")  # (expired, deleted, or Redis lost it)
    status = reconcile.run(conn, record.runs[0].run_id)
    assert status is not None and status.status == RunState.FAILED
    assert f"its pack {pack} ended (vanished)" in (status.steps["patch"].error or "")


def test_big_files_and_longer_pipelines_are_not_packed(conn: Redis, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    glob = models(tmp_path, [1] * 4)
    file = write_pipeline(tmp_path, PIPELINE.replace("RECIPE", "Optimise"))
    monkeypatch.setattr(packs, "SMALL", 100)  # every file is "big" now
    assert batch.start(conn, file, each={"arch": glob}, out=tmp_path / "a", window=1).pack == 1
    monkeypatch.undo()
    monkeypatch.setenv(packs.ENV, "0")
    assert batch.start(conn, file, each={"arch": glob}, out=tmp_path / "b", window=1).pack == 1
