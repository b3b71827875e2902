"""The original system's design, minimal, for comparison in ``bench_api``: FastAPI + RQ, checks the input file
exists and enqueues; ``GET /jobs/{id}/status`` fetches the RQ job. Run: ``uvicorn bench.minimal_gateway:app``
with ``IFCFLOW_REDIS_URL`` and ``IFCFLOW_DATA`` set."""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from redis import Redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job

conn = Redis.from_url(os.environ["IFCFLOW_REDIS_URL"])
uploads = os.path.join(os.environ["IFCFLOW_DATA"], "uploads")
queue = Queue("ifc2json", connection=conn)
app = FastAPI()


class Ifc2Json(BaseModel):
    filename: str
    output_filename: str


def noop(request: dict[str, Any]) -> dict[str, Any]:  # pragma: no cover - never run in the benchmark
    return {"success": True, "message": "ok", "data": request}


@app.post("/ifc2json")
def ifc2json(request: Ifc2Json) -> dict[str, str]:
    if not os.path.exists(os.path.join(uploads, os.path.basename(request.filename))):
        raise HTTPException(404, f"Input file not found: {request.filename}")
    job = queue.enqueue("bench.minimal_gateway.noop", request.model_dump(), job_timeout="1h", result_ttl=86400)
    return {"job_id": job.id}


@app.get("/jobs/{job_id}/status")
def status(job_id: str) -> dict[str, Any]:
    try:
        job = Job.fetch(job_id, connection=conn)
    except NoSuchJobError:
        raise HTTPException(404, f"Job {job_id} not found") from None
    answer: dict[str, Any] = {"job_id": job_id, "status": job.get_status(), "created_at": job.created_at,
                              "started_at": job.started_at, "ended_at": job.ended_at}
    if answer["status"] == "finished":
        answer["result"] = job.return_value()
    return answer
