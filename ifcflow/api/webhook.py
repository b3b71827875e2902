"""Run-level webhooks: when a run ends, its final status document is POSTed once, signed, retried through RQ.

- Destinations are checked at submit (:func:`check_url`): http(s) only, host in ``IFCFLOW_WEBHOOK_ALLOW``
  (host names, IP addresses or CIDR networks); anything else is refused, so a client cannot make the server
  call an internal address of its choosing. Redirects are never followed.
- :func:`on_run_end` is the one hook called when a run is observed to end; it enqueues the delivery job at most
  once per run end (a ``SET NX`` marker keyed by the run and its ``ended_at``), even when several processes
  observe that end.
- The delivery job (:func:`deliver`, queue ``default``, RQ ``Retry`` with backoff) signs the body with
  ``IFCFLOW_WEBHOOK_SECRET``: ``X-Ifcflow-Signature: sha256=<hex HMAC-SHA256 of the body>``.

This module imports nothing from FastAPI: workers import it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from redis import Redis

from .. import store
from ..errors import IfcflowError

if TYPE_CHECKING:
    from ..status import RunStatus

FIELD = "webhook"
"""Field of the run record holding the destination URL."""
HEADER = "X-Ifcflow-Signature"
BACKOFF = [1, 5, 30, 120, 600]
"""Seconds between delivery attempts (5 retries after the first attempt)."""
TIMEOUT = 10.0
WATCHED = "ifcflow:api:watched"
"""Runs with a webhook whose end the API server's watcher loop observes (until the reconcile loop does)."""


class WebhookRejected(IfcflowError):
    """The webhook URL is malformed or not allowed (HTTP 422 at submit)."""


def check_url(url: str, allow: tuple[str, ...] | None) -> str:
    """``url`` if it is http(s) with a host allowed by ``allow`` (None: any host, for the command line)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError as exc:
        raise WebhookRejected(f"webhook {url!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRejected(f"webhook {url!r} must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise WebhookRejected("webhook URLs must not carry credentials; the body is signed instead "
                              f"(check the {HEADER} header)")
    if allow is None or host_allowed(parts.hostname, allow):
        return url
    if not allow:
        raise WebhookRejected("webhooks are off on this server: its operator must list allowed destinations in "
                              "IFCFLOW_WEBHOOK_ALLOW (host names or CIDR networks)")
    raise WebhookRejected(f"webhook host {parts.hostname!r} is not allowed; allowed: {', '.join(allow)} "
                          "(IFCFLOW_WEBHOOK_ALLOW)")


def host_allowed(host: str, allow: tuple[str, ...]) -> bool:
    """Host names match exactly (case-insensitive); IP literals match an address or CIDR entry."""
    host = host.lower().rstrip(".")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in allow:
        entry = entry.lower().rstrip(".")
        if address is None:
            if host == entry:
                return True
            continue
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def marker_key(run_id: str, ended_at: str) -> str:
    return f"ifcflow:webhook:{run_id}:{ended_at}"


def on_run_end(conn: Redis, run_id: str, status: RunStatus) -> str | None:
    """The run ended: enqueue its webhook delivery (once per run end). Returns the delivery job id, if any."""
    record = store.parse_record(conn.hgetall(store.run_key(run_id)))  # type: ignore[arg-type]
    url = record.get(FIELD)
    if not url:
        return None
    ended = record.get("ended_at") or status.ended_at or "end"
    ttl = int(record.get("ttl", store.DEFAULT_TTL))
    if not conn.set(marker_key(run_id, ended), 1, nx=True, ex=ttl):
        return None
    from rq import Queue, Retry

    body = status.model_dump_json()
    job_id = f"{run_id}--webhook-{ended.replace('.', '')}"
    Queue("default", connection=conn).enqueue(
        deliver, url, body, run_id, job_id=job_id, retry=Retry(max=len(BACKOFF), interval=BACKOFF),
        result_ttl=ttl, failure_ttl=ttl, job_timeout=60,
        description=f"webhook of run {run_id} ({status.status.value}) to {urlsplit(url).hostname}",
        meta={"ifcflow_webhook": run_id})
    conn.hset(store.run_key(run_id), "webhook_job", job_id)
    return job_id


def deliver(url: str, body: str, run_id: str) -> dict[str, Any]:
    """The delivery job: POST ``body`` to ``url``, signed; raise (so RQ retries) on any non-2xx answer."""
    import httpx

    secret = os.environ.get("IFCFLOW_WEBHOOK_SECRET")
    if not secret:
        raise IfcflowError("IFCFLOW_WEBHOOK_SECRET is not set on this worker: webhook bodies are always signed; "
                           "set it to the secret the receiver checks")
    data = body.encode()
    headers = {"Content-Type": "application/json", HEADER: sign(data, secret), "X-Ifcflow-Run": run_id,
               "User-Agent": "ifcflow-webhook"}
    response = httpx.post(url, content=data, headers=headers, timeout=TIMEOUT, follow_redirects=False)
    if not 200 <= response.status_code < 300:
        raise IfcflowError(f"webhook {url} answered HTTP {response.status_code}; will retry")
    return {"status_code": response.status_code, "url": url}


def await_delivery(conn: Redis, run_id: str, timeout: float) -> bool:
    """Wait until the run's delivery job ended (delivered, or failed after its retries); True if delivered.

    For ``ifcflow run --webhook`` with a private Redis, whose workers stop when the command returns.
    """
    import time

    from rq.job import Job, JobStatus

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job_id: bytes | None = conn.hget(store.run_key(run_id), "webhook_job")  # type: ignore[assignment]
        if job_id is not None:
            status = Job.fetch(job_id.decode(), connection=conn).get_status()
            if status == JobStatus.FINISHED:
                return True
            if status in (JobStatus.FAILED, JobStatus.CANCELED, JobStatus.STOPPED):
                return False
        time.sleep(0.2)
    return False
