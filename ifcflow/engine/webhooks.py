"""The one webhook sender of ifcflow (runs, schedule fires, the runs and batches schedules start).

Rules, the same for every webhook:

- Destinations are checked at submit (:func:`check_url`): http(s) only, no credentials, host allowed by the
  allow-list (``IFCFLOW_WEBHOOK_ALLOW`` for HTTP submissions: host names, IP addresses or CIDR networks; ``None``
  for the terminal: any host).
- At send time (:func:`post`) the host is resolved ONCE, every address it resolves to is checked against the
  allow-list again (a host name listed by name is allowed whatever it resolves to, except to link-local,
  multicast, unspecified or reserved addresses that are not listed themselves; an unlisted name or an IP
  literal must resolve only to listed addresses/networks), and the connection goes to that checked address (the
  ``Host`` header and the TLS server name stay the URL's host), so DNS cannot change the answer in between.
- Redirects are never followed: a 3xx answer is a failed delivery, nothing is sent to where it points.
- Bodies are signed ``X-Ifcflow-Signature: sha256=<hex HMAC-SHA256 of the body with IFCFLOW_WEBHOOK_SECRET>``.

Run webhooks: :func:`on_run_end` (a built-in run-end hook, see :mod:`ifcflow.engine.events`) enqueues the delivery job
at most once per run end (a ``SET NX`` marker keyed by the run and its ``ended_at``); the job (:func:`deliver`,
queue ``default``, RQ ``Retry`` with backoff) raises on any non-2xx answer so RQ retries it. Schedule webhooks
(:func:`ifcflow.batches.schedule.notify`) are sent once, by the scheduler, with :func:`post` too.

This module imports nothing from FastAPI: workers import it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit

from redis import Redis

from ..errors import IfcflowError
from . import outbound, store
from .outbound import Address

if TYPE_CHECKING:
    import httpx

    from .status import RunStatus

FIELD = "webhook"
"""Field of the run record holding the destination URL."""
ALLOW_FIELD = "webhook_allow"
"""Field of the run record holding the allow-list (JSON) the destination was checked against at submit."""
HEADER = "X-Ifcflow-Signature"
SECRET_ENV = "IFCFLOW_WEBHOOK_SECRET"
BACKOFF = [1, 5, 30, 120, 600]
"""Seconds between delivery attempts (5 retries after the first attempt)."""
TIMEOUT = 10.0
WATCHED = "ifcflow:api:watched"
"""Runs with a webhook whose end the API server's watcher loop observes (until the reconcile loop does)."""

class WebhookRejected(outbound.DestinationRefused):
    """The webhook URL is malformed or not allowed (HTTP 422 at submit; a failed delivery at send time)."""


def _parts(url: str) -> SplitResult:
    try:
        return outbound.split_url(url, "webhook")
    except outbound.DestinationRefused as exc:
        raise WebhookRejected(str(exc) + (f"; the body is signed instead (check the {HEADER} header)"
                                          if "credentials" in str(exc) else "")) from None


def _refused(parts: SplitResult, allow: tuple[str, ...], why: str = "") -> WebhookRejected:
    host = parts.hostname or ""
    if not allow:
        return WebhookRejected("webhooks are off on this server: its operator must list allowed destinations in "
                               "IFCFLOW_WEBHOOK_ALLOW (host names, IP addresses or CIDR networks, each with an "
                               "optional :port)")
    return WebhookRejected(f"webhook host {host!r}{why} is not allowed{outbound.port_hint(parts, allow)}; allowed: "
                           f"{', '.join(allow)} (IFCFLOW_WEBHOOK_ALLOW)")


def check_url(url: str, allow: tuple[str, ...] | None) -> str:
    """``url`` if it is http(s) with a host and port allowed by ``allow`` (None: any host, for the command line).

    At submit, names are matched by name and IP literals against networks; names are not resolved here (the
    sender resolves them and checks the addresses at send time)."""
    parts = _parts(url)
    if allow is None or outbound.url_allowed(parts, allow):
        return url
    raise _refused(parts, allow)


def resolve(url: str, allow: tuple[str, ...] | None) -> Address:
    """Resolve the URL's host once and check every address (:func:`ifcflow.engine.outbound.resolve`)."""
    parts = _parts(url)
    if allow is not None and not outbound.url_allowed(parts, allow) and outbound.port_hint(parts, allow):
        raise _refused(parts, allow)  # the host is listed, on other ports only
    try:
        return outbound.resolve(parts, allow)
    except outbound.DestinationRefused as exc:
        raise WebhookRejected(f"webhook {exc}") from None


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(url: str, body: bytes, headers: dict[str, str], allow: tuple[str, ...] | None,
         timeout: float = TIMEOUT) -> httpx.Response:
    """POST ``body`` to ``url``: resolved once, every address checked, connected to the checked address, no
    redirects. Raises :class:`WebhookRejected` for a destination not allowed, ``httpx.HTTPError`` when it cannot
    be reached; any answer (3xx included) is returned."""
    import httpx

    parts = _parts(url)
    address = resolve(url, allow)
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        return client.send(outbound.pinned_request(client, "POST", parts, address, headers, body))


def signed_headers(body: bytes, secret: str | None, agent: str) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "User-Agent": agent}
    if secret:
        headers[HEADER] = sign(body, secret)
    return headers


def marker_key(run_id: str, ended_at: str) -> str:
    return f"ifcflow:webhook:{run_id}:{ended_at}"


def record_fields(url: str, allow: tuple[str, ...] | None) -> dict[str, str]:
    """The run-record fields of a checked destination (and the allow-list to check it against when sending)."""
    fields = {FIELD: check_url(url, allow)}
    if allow is not None:
        fields[ALLOW_FIELD] = json.dumps(list(allow))
    return fields


def on_run_end(conn: Redis, run_id: str, status: RunStatus) -> str | None:
    """The run ended: enqueue its webhook delivery (once per run end). Returns the delivery job id, if any."""
    record = store.run_record(conn, run_id)
    url = record.get(FIELD)
    if not url:
        return None
    allow = tuple(json.loads(record[ALLOW_FIELD])) if ALLOW_FIELD in record else None
    ended = record.get("ended_at") or status.ended_at or "end"
    ttl = int(record.get("ttl", store.DEFAULT_TTL))
    if not conn.set(marker_key(run_id, ended), 1, nx=True, ex=ttl):
        return None
    from rq import Queue, Retry

    body = status.model_dump_json()
    job_id = f"{run_id}--webhook-{ended.replace('.', '')}"
    Queue("default", connection=conn).enqueue(
        deliver, url, body, run_id, allow, job_id=job_id, retry=Retry(max=len(BACKOFF), interval=BACKOFF),
        result_ttl=ttl, failure_ttl=ttl, job_timeout=60,
        description=f"webhook of run {run_id} ({status.status.value}) to {urlsplit(url).hostname}",
        meta={"ifcflow_webhook": run_id})
    conn.hset(store.run_key(run_id), "webhook_job", job_id)
    return job_id


def deliver(url: str, body: str, run_id: str, allow: list[str] | tuple[str, ...] | None = None) -> dict[str, Any]:
    """The delivery job: POST ``body`` to ``url``, signed; raise (so RQ retries) on any non-2xx answer."""
    secret = os.environ.get(SECRET_ENV)
    if not secret:
        raise IfcflowError(f"{SECRET_ENV} is not set on this worker: webhook bodies are always signed; "
                           "set it to the secret the receiver checks")
    data = body.encode()
    headers = signed_headers(data, secret, "ifcflow-webhook") | {"X-Ifcflow-Run": run_id}
    response = post(url, data, headers, None if allow is None else tuple(allow))
    if not 200 <= response.status_code < 300:
        where = f" (redirect to {response.headers.get('location')!r} not followed)" if response.is_redirect else ""
        raise IfcflowError(f"webhook {url} answered HTTP {response.status_code}{where}; will retry")
    return {"status_code": response.status_code, "url": url}


def send_once(url: str, payload: dict[str, Any], allow: tuple[str, ...] | None, agent: str,
              timeout: float = 5.0) -> tuple[bool, str]:
    """POST ``payload`` as JSON once (signed when ``IFCFLOW_WEBHOOK_SECRET`` is set): (delivered, why not)."""
    import httpx

    body = json.dumps(payload).encode()
    try:
        response = post(url, body, signed_headers(body, os.environ.get(SECRET_ENV), agent), allow, timeout)
    except (WebhookRejected, httpx.HTTPError) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    if 200 <= response.status_code < 300:
        return True, ""
    where = f" (redirect to {response.headers.get('location')!r} not followed)" if response.is_redirect else ""
    return False, f"answered HTTP {response.status_code}{where}"


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
