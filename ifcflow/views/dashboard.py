"""RQ Dashboard (rq-dashboard, a Flask app) bound to the ifcflow Redis, fixed for rq 3.0.

rq-dashboard 0.9.0's job detail endpoint decodes ``Job.dependency_ids`` as bytes, but rq 3.0 returns ``str``: every
job with a dependency answers 500 there, and every ifcflow step depends on its run's start gate or its needs. This
module registers a corrected view for that one endpoint (same JSON fields; a result kept in the job hash is shown
too); the rest is rq-dashboard's.
"""

from __future__ import annotations

import json
from typing import Any

ENDPOINT = "rq_dashboard.job_info"


def returned(job: Any) -> Any:
    """The job's return value: from RQ's results stream, else from the job hash's ``result`` field (RQ's older
    place for it, where a compacted finished job keeps it)."""
    value = job.return_value()
    if value is None:
        raw = job.connection.hget(job.key, "result")
        value = job.serializer.loads(raw) if raw is not None else None
    return value


def job_info(instance_number: int, job_id: str) -> Any:
    """rq-dashboard's ``/<n>/data/job/<id>.json`` with dependency ids read as rq 3.0 gives them (``str``)."""
    from flask import current_app, jsonify
    from rq.exceptions import NoSuchJobError
    from rq.job import Job
    from rq_dashboard.web import config, format_job_description, serialize_date

    conn = current_app.redis_conn  # type: ignore[attr-defined]
    job = Job.fetch(job_id, serializer=config.serializer, connection=conn)
    latest = job.latest_result()
    encoder = current_app.config.get("RQ_DASHBOARD_JSON_ENCODER", json.JSONEncoder)
    result: dict[str, Any] = {
        "id": job.id, "created_at": serialize_date(job.created_at), "enqueued_at": serialize_date(job.enqueued_at),
        "started_at": serialize_date(job.started_at), "ended_at": serialize_date(job.ended_at),
        "origin": job.origin, "status": job.get_status(), "result": returned(job),
        "exc_info": latest.exc_string if latest else None, "description": format_job_description(job),
        "metadata": json.dumps(job.get_meta(), cls=encoder),
    }
    dep_ids = [dep.split(":")[-1].strip() for dep in job.dependency_ids]
    if dep_ids:
        result["depends_on"] = dep_ids
        states = []
        for dep_id in dep_ids:
            try:
                Job.fetch(dep_id, serializer=config.serializer, connection=conn)
                states.append("active")
            except NoSuchJobError:
                states.append("expired")
        result["depends_on_status"] = states
    return jsonify(**result), {"Cache-Control": "no-store"}


def dashboard_app(url: str, username: str | None = None, password: str | None = None) -> Any:
    """The rq-dashboard Flask app on the Redis at ``url`` (ifcflow jobs use RQ's default serializer)."""
    from rq_dashboard.cli import make_flask_app
    from rq_dashboard.web import setup_rq_connection

    app = make_flask_app(None, username, password, "")
    app.config["RQ_DASHBOARD_REDIS_URL"] = url
    app.config["DEPRECATED_OPTIONS"] = []
    app.config["RQ_DASHBOARD_DISABLE_DELETE"] = False
    setup_rq_connection(app)
    app.view_functions[ENDPOINT] = job_info
    return app
