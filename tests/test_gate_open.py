"""Opening a start gate in one script (``enqueue.open_simple``) and RQ's ``enqueue_dependents`` as the fallback.

Real redis-server; the last test with real ``ifcflow worker`` processes, whose batch window opens every further
gate through the script."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import DeferredJobRegistry

from ifcflow.batches import batch, batch_status
from ifcflow.engine import enqueue, packs, rqstore, runner, store
from ifcflow.engine.states import RunState
from ifcflow.standalone.embedded import EmbeddedRedis

from .conftest import work
from .factories import ONE_STEP, tiny_model, write_pipeline
from .test_reliability import Workers

FAN = """\
    version: 1
    name: fan
    inputs: {arch: arch.ifc}
    steps:
      a: {uses: ifcpatch, with: {ifc: "${{ inputs.arch }}", recipe: Optimise}}
      b: {uses: ifcpatch, with: {ifc: "${{ inputs.arch }}", recipe: Optimise}}
      c: {uses: ifcpatch, needs: [a], with: {ifc: "${{ steps.a.outputs.model }}", recipe: Optimise}}
    """


@pytest.fixture()
def pipeline(tmp_path: Path) -> Path:
    tiny_model(tmp_path / "arch.ifc")
    return write_pipeline(tmp_path, FAN)


def _closed(conn: Redis, pipeline: Path, tmp_path: Path) -> str:
    """A FAN run written behind its start gate, the gate still closed; returns the run id."""
    opened: list[str] = []
    real = enqueue.open_gate
    enqueue.open_gate = lambda conn, start: opened.append(str(start))  # type: ignore[assignment]
    try:
        return runner.start(conn, pipeline, out=tmp_path / "runs").run_id
    finally:
        enqueue.open_gate = real


def _state(conn: Redis, run_id: str) -> dict[str, object]:
    """What a reader (status, RQ's workers and registries) sees of a run's roots and gate."""
    gate = store.gate_id(run_id)
    roots = [f"{run_id}-a", f"{run_id}-b"]
    return {"status": [conn.hget(Job.key_for(j), "status") for j in roots],
            "fields": [sorted(conn.hkeys(Job.key_for(j))) for j in roots],
            "enqueued": [bool(conn.hget(Job.key_for(j), "enqueued_at")) for j in roots],
            "deferred": sorted(x.decode() for x in conn.zrange(DeferredJobRegistry("default", connection=conn).key, 0, -1)),
            "queued": sorted(x.decode() for x in conn.lrange(Queue("default", connection=conn).key, 0, -1)),
            "queues": conn.sismember(Queue.redis_queues_keys, Queue("default", connection=conn).key),
            "ready": conn.zcard("rq:ready:default"),
            "gate": conn.hget(Job.key_for(gate), "status"), "dependents": conn.exists(Job.dependents_key_for(gate))}


def test_the_script_leaves_what_rq_leaves_and_a_second_open_is_a_no_op(
        conn: Redis, pipeline: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fast, slow = _closed(conn, pipeline, tmp_path), _closed(conn, pipeline, tmp_path)
    calls: list[str] = []
    real = Queue.enqueue_dependents
    monkeypatch.setattr(Queue, "enqueue_dependents", lambda self, job, **kw: calls.append(job.id) or real(self, job, **kw))
    assert enqueue.open_simple(conn, store.gate_id(fast)) == 3  # 1 + its two roots
    assert calls == []
    with monkeypatch.context() as m:  # the other run through RQ alone
        m.setattr(enqueue, "open_simple", lambda conn, gate_id: -1)
        enqueue.open_gate(conn, store.gate_id(slow))
    assert calls == [store.gate_id(slow)]
    mine, rqs = _state(conn, fast), _state(conn, slow)
    for key in ("status", "fields", "enqueued", "queues", "ready", "gate", "dependents"):
        assert mine[key] == rqs[key], (key, mine[key], rqs[key])
    assert mine["status"] == [b"queued", b"queued"] and mine["gate"] == b"finished" and not mine["dependents"]
    assert mine["deferred"] == rqs["deferred"] == sorted([f"{fast}-c", f"{slow}-c"])  # c waits for a
    assert mine["queued"] == sorted([f"{fast}-a", f"{fast}-b", f"{slow}-a", f"{slow}-b"])
    before = conn.lrange(Queue("default", connection=conn).key, 0, -1)
    assert enqueue.open_simple(conn, store.gate_id(fast)) == 0  # opened: left alone
    enqueue.open_gate(conn, store.gate_id(fast))
    enqueue.open_gate(conn, store.gate_id(slow))
    assert conn.lrange(Queue("default", connection=conn).key, 0, -1) == before and calls == [store.gate_id(slow)]
    work(conn)
    for run_id in (fast, slow):
        assert conn.hget(store.run_key(run_id), "final") is not None or conn.hexists(store.run_key(run_id), "ended_at")


def test_workers_opening_one_gate_at_once_release_each_job_once(conn: Redis, pipeline: Path, tmp_path: Path) -> None:
    run_id = _closed(conn, pipeline, tmp_path)
    go = threading.Event()

    def opener() -> None:
        go.wait(5)
        enqueue.open_gate(Redis(connection_pool=conn.connection_pool), store.gate_id(run_id))

    threads = [threading.Thread(target=opener) for _ in range(8)]
    for thread in threads:
        thread.start()
    go.set()
    for thread in threads:
        thread.join(10)
    assert sorted(conn.lrange(Queue("default", connection=conn).key, 0, -1)) == [f"{run_id}-a".encode(),
                                                                                  f"{run_id}-b".encode()]


def test_a_gate_whose_dependents_are_not_the_simple_case_falls_back_to_rq(
        conn: Redis, pipeline: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A root that also waits for another job: the script writes nothing, RQ opens the gate and keeps that root
    deferred (its other parent has not finished) while the other root goes."""
    run_id = _closed(conn, pipeline, tmp_path)
    other = Job.create(enqueue.gate, id=f"{run_id}--other", connection=conn, status=JobStatus.QUEUED)
    other.save()
    waiting = f"{run_id}-b"
    conn.sadd(Job.dependents_key_for(other.id), waiting)
    conn.sadd(rqstore.dependencies_key(waiting), other.id)
    conn.hset(Job.key_for(waiting), "dependency_ids", f'["{store.gate_id(run_id)}", "{other.id}"]')
    before = {k: conn.dump(k) for k in conn.keys("*")}
    assert enqueue.open_simple(conn, store.gate_id(run_id)) == -1
    assert {k: conn.dump(k) for k in conn.keys("*")} == before  # nothing written
    calls: list[str] = []
    real = Queue.enqueue_dependents
    monkeypatch.setattr(Queue, "enqueue_dependents", lambda self, job, **kw: calls.append(job.id) or real(self, job, **kw))
    enqueue.open_gate(conn, store.gate_id(run_id))
    assert calls == [store.gate_id(run_id)]
    assert conn.hget(Job.key_for(store.gate_id(run_id)), "status") == b"finished"
    assert conn.lrange(Queue("default", connection=conn).key, 0, -1) == [f"{run_id}-a".encode()]
    assert conn.hget(Job.key_for(waiting), "status") == b"deferred"
    assert conn.sismember(Job.dependents_key_for(store.gate_id(run_id)), waiting)  # RQ keeps it for later


def test_real_workers_run_what_the_script_releases_and_the_batch_ends(
        conn: Redis, redis_server: EmbeddedRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch of one-step runs with a window of 2: its first gates are opened here with RQ's
    ``enqueue_dependents`` made to fail (so by the script), every further one by the workers' batch advance."""
    tiny_model(tmp_path / "arch.ifc")
    models = tmp_path / "many"
    models.mkdir()
    for index in range(8):
        (models / f"m{index}.ifc").write_bytes((tmp_path / "arch.ifc").read_bytes())

    def broken(*args: object, **kwargs: object) -> None:
        raise AssertionError("RQ's enqueue_dependents called for a simple gate")

    monkeypatch.setenv(packs.ENV, "0")  # (a job per file: this is about each run's own gate)
    monkeypatch.setattr(Queue, "enqueue_dependents", broken)
    record = batch.start(conn, write_pipeline(tmp_path, ONE_STEP), each={"arch": str(models / "*.ifc")},
                         out=tmp_path / "runs", window=2)
    workers = Workers(redis_server.url, count=2)
    try:
        deadline = time.monotonic() + 180
        while not conn.hexists(batch.key(record.batch_id), "ended_at") and time.monotonic() < deadline:
            time.sleep(0.1)
        final = batch_status.read(conn, record.batch_id)
        assert final.status == RunState.SUCCEEDED and final.counts["succeeded"] == 8, final.counts
        assert int(conn.hget(batch.key(record.batch_id), "released") or 0) == 8
        for run in final.runs:
            assert conn.hget(Job.key_for(store.gate_id(run.run_id)), "status") == b"finished"
            job = Job.fetch(f"{run.run_id}-patch", connection=conn)  # (the job names its batch: no lookup)
            assert job.meta[enqueue.BATCH] == record.batch_id and job.meta[enqueue.LEAF] is True
    finally:
        workers.stop()


def test_a_step_nothing_waits_for_is_marked_a_leaf(conn: Redis, pipeline: Path, tmp_path: Path) -> None:
    """Its job then skips the look for waiting steps to release at its end (one round trip per job)."""
    run_id = _closed(conn, pipeline, tmp_path)
    leaf = {sid: Job.fetch(f"{run_id}-{sid}", connection=conn).meta.get(enqueue.LEAF) for sid in "abc"}
    assert leaf == {"a": None, "b": True, "c": True}
