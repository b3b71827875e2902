"""The dirty-mark lock (``lock.exclusive``): a caller that finds the lock taken never waits; the holder passes again.

Used by a batch's advance after every job of the batch; checked here on the real Redis of the session, then with
three real ``ifcflow worker`` processes advancing one batch concurrently.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from redis import Redis

from ifcflow.batches import batch, batch_status
from ifcflow.engine.lock import MOST_PASSES, exclusive
from ifcflow.engine.states import RunState
from ifcflow.standalone.embedded import EmbeddedRedis

from .factories import ONE_STEP, tiny_model, write_pipeline
from .test_reliability import Workers


def test_a_caller_finding_the_lock_taken_marks_it_and_the_holder_passes_again(conn: Redis) -> None:
    key = f"test:exclusive:{time.monotonic_ns()}"
    inside, go_on, passes = threading.Event(), threading.Event(), []

    def slow() -> int:
        passes.append("holder")
        inside.set()
        go_on.wait(10)
        return len(passes)

    holder: list[list[int] | None] = []
    thread = threading.Thread(target=lambda: holder.append(exclusive(conn, key, slow)))
    thread.start()
    assert inside.wait(10)
    began = time.monotonic()
    assert exclusive(conn, key, lambda: passes.append("other")) is None  # marked dirty, did not wait nor run
    assert exclusive(conn, key, lambda: passes.append("other")) is None  # a second mark is one more pass at most
    assert time.monotonic() - began < 1.0
    go_on.set()
    thread.join(10)
    assert holder == [[1, 2]]  # its own pass, then one more for the marks
    assert passes == ["holder", "holder"]
    assert not conn.exists(key) and not conn.exists(f"{key}:dirty")
    assert exclusive(conn, key, lambda: 7) == [7]  # free again: the next caller runs at once


def test_a_pass_that_fails_lets_go_and_a_waiting_caller_gets_the_lock(conn: Redis) -> None:
    key = f"test:exclusive:{time.monotonic_ns()}"

    def fails() -> None:
        raise RuntimeError("boom")

    try:
        exclusive(conn, key, fails)
    except RuntimeError:
        pass
    assert not conn.exists(key)
    conn.set(key, "someone", px=300)
    began = time.monotonic()
    assert exclusive(conn, key, lambda: 1, wait=5.0) == [1]  # waits for the lease of a dead holder to run out
    assert 0.1 < time.monotonic() - began < 5.0


def test_three_workers_advance_one_batch_concurrently_without_losing_a_release(
        conn: Redis, redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    """Every job's end advances the batch with ``wait=0``: ends that meet a busy lock leave a mark instead of
    waiting; no sub-run is left unreleased, none released twice, and the batch ends."""
    tiny_model(tmp_path / "arch.ifc")
    models = tmp_path / "many"
    models.mkdir()
    for index in range(24):
        (models / f"m{index:02d}.ifc").write_bytes((tmp_path / "arch.ifc").read_bytes())
    pipeline = write_pipeline(tmp_path, ONE_STEP)
    workers = Workers(redis_server.url, count=3)
    try:
        record = batch.start(conn, pipeline, each={"arch": str(models / "*.ifc")}, out=tmp_path / "runs",
                             window=2)
        deadline = time.monotonic() + 180
        while not conn.hexists(batch.key(record.batch_id), "ended_at") and time.monotonic() < deadline:
            time.sleep(0.1)
        final = batch_status.read(conn, record.batch_id)
        assert final.status == RunState.SUCCEEDED and final.counts["succeeded"] == 24, final.counts
        assert int(conn.hget(batch.key(record.batch_id), "released") or 0) == 24
        assert conn.scard(batch.ended_key(record.batch_id)) == 24
        assert not conn.exists(f"{batch.key(record.batch_id)}:lock")
    finally:
        workers.stop()


def test_a_pass_that_marks_its_own_lock_stops_after_the_most_passes(conn: Redis) -> None:
    key = f"test:exclusive:{time.monotonic_ns()}"
    calls = []

    def marks_itself() -> None:
        calls.append(1)
        assert exclusive(conn, key, lambda: None) is None  # (nested: finds its own lock taken, marks it)

    passes = exclusive(conn, key, marks_itself)
    assert passes is not None and len(passes) == len(calls) == MOST_PASSES
    assert not conn.exists(key) and conn.exists(f"{key}:dirty")  # let go; the mark waits for the next caller
    assert exclusive(conn, key, lambda: 1) == [1]
