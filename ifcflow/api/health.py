"""``GET /health`` in the original shape (public, no secrets): Redis, and whether a worker listens on each queue."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker

router = APIRouter(tags=["original"])

ORIGINAL_QUEUES = ("ifcconvert", "ifcclash", "ifccsv", "ifctester", "ifcdiff", "ifc5d", "ifc2json", "ifcpatch",
                   "default")
ALIASES = {"ifcpatch": "default"}
"""ifcflow runs IfcPatch on ``default`` (general purpose): ``ifcpatch_queue`` reports that queue."""


def check(conn: Redis) -> dict[str, Any]:
    services: dict[str, str] = {"api-gateway": "healthy"}
    try:
        conn.ping()
        listening = {name for worker in Worker.all(connection=conn) for name in worker.queue_names()}
        known = {q.decode() for q in conn.smembers(Queue.redis_queues_keys)}  # type: ignore[union-attr]
    except RedisError as exc:
        services["redis"] = f"unhealthy ({type(exc).__name__})"
        return {"status": "unhealthy", "services": services}
    services["redis"] = "healthy"
    for name in ORIGINAL_QUEUES:
        queue = ALIASES.get(name, name)
        if queue in listening:
            services[f"{name}_queue"] = "healthy"
        elif f"rq:queue:{queue}" in known or queue == "default":
            services[f"{name}_queue"] = "degraded (queue exists, no active worker)"
        else:
            services[f"{name}_queue"] = "waiting (no jobs yet)"
    values = [v for k, v in services.items() if k != "api-gateway"]
    if all(v in ("healthy", "waiting (no jobs yet)") for v in values):
        overall = "healthy"
    elif any(v.startswith("degraded") for v in values):
        overall = "degraded"
    else:
        overall = "unhealthy"
    return {"status": overall, "services": services}


@router.get("/health")
def health(request: Request) -> dict[str, Any]:
    """API, Redis and queue health; public (no key needed), names no secret."""
    return check(request.app.state.conn)
