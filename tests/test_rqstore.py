"""Contract: ifcflow's bulk read of RQ's storage (ifcflow/engine/rqstore.py) agrees field by field with RQ's own
``Job.fetch`` / ``Result.fetch_latest`` on every job state. A new RQ release must pass this before the pin moves."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis import Redis
from rq import Queue, Retry, SimpleWorker, Worker
from rq.job import Job, JobStatus
from rq.results import Result

from ifcflow.engine import rqstore, status


def returns() -> dict[str, Any]:
    return {"success": True, "message": "done", "data": {"n": 1}}


def raises() -> None:
    raise ValueError("broken on purpose")


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _aware(value: datetime | None) -> datetime | None:
    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)


def jobs_in_every_state(conn: Redis) -> dict[str, Job]:
    queue = Queue("default", connection=conn)
    other = Queue("ifcpatch-contract", connection=conn)
    jobs: dict[str, Job] = {}
    jobs["queued"] = queue.enqueue(returns, meta={"ifcflow_run": "r", "progress": {"done": 1}})
    jobs["deferred"] = queue.enqueue(returns, depends_on=jobs["queued"])
    jobs["scheduled"] = queue.enqueue_in(timedelta(hours=1), returns)
    jobs["canceled"] = queue.enqueue(returns)
    jobs["canceled"].cancel()
    jobs["finished"] = other.enqueue(returns, result_ttl=600)
    jobs["failed"] = other.enqueue(raises, failure_ttl=600)
    jobs["retried"] = other.enqueue(raises, retry=Retry(max=2), meta={"errors": ["first"]})
    SimpleWorker([other], connection=conn).work(burst=True, max_jobs=3, logging_level="ERROR")
    third = Queue("contract-started", connection=conn)
    jobs["started"] = third.enqueue(returns)
    jobs["stopped"] = third.enqueue(returns)
    for name in ("started", "stopped"):
        worker = Worker([third], connection=conn, name=f"contract-{uuid.uuid4().hex[:8]}")
        worker.register_birth()
        taken = worker.dequeue_job_and_maintain_ttl(None)
        assert taken is not None and taken[0].id == jobs[name].id
        execution = worker.prepare_execution(taken[0])
        worker.prepare_job_execution(taken[0])
        if name == "stopped":  # RQ's own path for a job stopped by send_stop_job_command
            worker._stopped_job_id = taken[0].id
            worker.handle_job_failure(taken[0], third, exc_string="stopped", execution=execution)
    return jobs


def test_bulk_read_matches_job_fetch_on_every_state(conn: Redis) -> None:
    jobs = jobs_in_every_state(conn)
    expected_states = {"queued": "queued", "deferred": "deferred", "scheduled": "scheduled", "canceled": "canceled",
                       "finished": "finished", "failed": "failed", "retried": "queued", "started": "started",
                       "stopped": "stopped"}
    _, _, views = rqstore.BulkReader(conn).read(("no-such-hash", "no-such-hash-2"), [j.id for j in jobs.values()])
    assert {name: v.status for name, v in zip(jobs, views)} == expected_states
    for (name, job), view in zip(jobs.items(), views):
        fetched = Job.fetch(job.id, connection=conn)
        assert view.status == fetched.get_status().value, name
        if view.status in ("deferred", "created"):  # waiting jobs: only the status is read (small replies)
            continue
        assert _when(view.enqueued_at) == _aware(fetched.enqueued_at), name
        assert _when(view.started_at) == _aware(fetched.started_at), name
        assert _when(view.ended_at) == _aware(fetched.ended_at), name
        assert view.worker_name == (fetched.worker_name or None), name
        assert view.meta == fetched.meta, name
        assert view.retries_left == fetched.retries_left, name
        latest = Result.fetch_latest(fetched) if view.status in ("finished", "failed") else None
        assert view.return_value == (latest.return_value if latest else None), name
        assert view.exc_string == (latest.exc_string if latest else None), name
    by_name = dict(zip(jobs, views))
    assert by_name["finished"].return_value == returns()
    assert "broken on purpose" in (by_name["failed"].exc_string or "")
    assert by_name["retried"].retries_left == 1 and by_name["retried"].meta == {"errors": ["first"]}
    assert by_name["queued"].meta["progress"] == {"done": 1}


def test_missing_job_reads_as_absent(conn: Redis) -> None:
    _, _, views = rqstore.BulkReader(conn).read(("a", "b"), ["no-such-job"])
    assert views[0].status is None


def test_unknown_rq_status_is_an_error_in_the_document(conn: Redis) -> None:
    job = Queue("default", connection=conn).enqueue(returns)
    conn.hset(job.key, "status", "hibernating")  # what a newer RQ might write
    view = rqstore.BulkReader(conn).read(("a", "b"), [job.id])[2][0]
    state, error, _ = status._state(view, None, None)
    assert error is not None and "unknown RQ job status 'hibernating'" in error and rqstore.RQ_VERSION in error
    assert state.value == "pending" and error != "pending"


@pytest.mark.parametrize("serializer", ["rq.serializers.JSONSerializer"])
def test_meta_and_results_decode_through_the_jobs_serializer(conn: Redis, serializer: str) -> None:
    queue = Queue("default", connection=conn, serializer=serializer)
    job = queue.enqueue(returns, meta={"progress": {"done": 2}})
    SimpleWorker([queue], connection=conn, serializer=serializer).work(burst=True, logging_level="ERROR")
    view = rqstore.BulkReader(conn, serializer=serializer).read(("a", "b"), [job.id])[2][0]
    assert view.status == JobStatus.FINISHED.value
    assert view.meta["progress"] == {"done": 2} and view.return_value == returns()


def test_a_step_failing_for_good_shows_its_traceback_before_rq_records_it() -> None:
    """Between the step recording its last attempt's failure (meta ``failing``) and RQ marking the job failed, a
    reader sees the step failed, with the step's own traceback (the HTTP API's job status shows it)."""
    from ifcflow.pipeline.plan import PlannedStep

    planned = PlannedStep.model_validate({
        "id": "bad", "service": "ifcpatch", "queue": "default", "func": "workers.dispatch.run",
        "job_id": "r-bad", "options": {}, "workdir": "/tmp/r/bad", "timeout": 60, "needs": [], "outputs": {}})
    started = "2026-12-05T10:00:00.000000Z"
    view = rqstore.JobView(status="started", started_at=started, meta={
        status.FAILING: started, "errors": ["no such recipe"],
        status.FAILING_TRACEBACK: "Traceback (most recent call last):\n  ...\nStepError: no such recipe\n"})
    step = status._step(planned, view, None, None, with_traceback=True)
    assert step.status.value == "failed" and step.error == "no such recipe"
    assert step.traceback and step.traceback.startswith("Traceback")
