"""``ifcflow worker``: RQ's worker, with ifcopenshell and the service modules imported before forking.

A forking RQ worker that has not imported ifcopenshell pays the import in every job; this one imports once. It
also runs RQ's scheduler (delayed retries), heart-beats often enough that a killed worker is noticed within two
minutes, and skips a step's dependents when its work horse was killed (OOM killer, SIGKILL). Plain
``rq worker QUEUE --url URL`` runs ifcflow jobs too; the status reader then does the repairs.
"""

from __future__ import annotations

import importlib
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Worker
from rq.job import Job

from .services import QUEUES, SERVICES

JOB_MONITORING_INTERVAL = 5
"""Seconds between heartbeats while a job runs; a job's heartbeat expires 60 s after the last one."""
WORKER_TTL = 60
SERVICES_FIELD = "ifcflow_services"
"""Field of RQ's worker hash where an ``ifcflow worker`` records the services it can run."""

log = logging.getLogger(__name__)
jobs_log = logging.getLogger("ifcflow.jobs")
"""One line when a job starts and one when it ends, whatever RQ's own logging level."""


def log_jobs() -> None:
    if not jobs_log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        jobs_log.addHandler(handler)
        jobs_log.setLevel(logging.INFO)
        jobs_log.propagate = False


def preload(services: Sequence[str] = ()) -> dict[str, str]:
    """Import ifcopenshell and the service modules (all, or just ``services``) once, before forking.

    Returns the services that cannot be imported here, with the reason; their steps fail with that reason in
    plain words (see :mod:`workers.dispatch`) while the other services run.
    """
    import ifcopenshell  # noqa: F401

    import workers.dispatch  # noqa: F401  (the job function of every step)

    unavailable = {}
    for service in (SERVICES[name] for name in (services or SERVICES) if name in SERVICES):
        module = service.func.rsplit(".", 1)[0]
        try:
            importlib.import_module(module)
        except ImportError as exc:
            unavailable[service.name] = str(exc)
            log.error("service %s is not available on this worker: cannot import %s: %s (install ifcflow with "
                      "its dependencies: pip install ifcflow)", service.name, module, exc)
    return unavailable


def services_of(conn: Redis, worker_key: str) -> dict[str, Any] | None:
    """What an ``ifcflow worker`` recorded at start: ``{"available": [...], "unavailable": {name: reason}}``;
    None for a worker that did not record it (a plain ``rq worker``)."""
    raw = conn.hget(worker_key, SERVICES_FIELD)
    return json.loads(raw) if raw else None


class IfcflowWorker(Worker):
    """An RQ worker that repairs a run at once when a job of it ends badly outside the job's own code, and
    records in its RQ worker hash which services it can run (``ifcflow workers`` shows them)."""

    unavailable: dict[str, str] | None = None
    """Services whose module could not be imported (set by :func:`run_worker` after :func:`preload`)."""

    def register_birth(self) -> None:
        super().register_birth()
        if self.unavailable is not None:
            record = {"available": [name for name in SERVICES if name not in self.unavailable],
                      "unavailable": self.unavailable}
            self.connection.hset(self.key, SERVICES_FIELD, json.dumps(record))

    def execute_job(self, job: Job, queue: Any) -> None:
        meta = job.meta or {}
        what = f"job {job.id}" + (f" (run {meta['ifcflow_run']})" if meta.get("ifcflow_run") else "")
        started = time.monotonic()
        jobs_log.info("%s started on queue %s", what, job.origin)
        super().execute_job(job, queue)
        if not self.is_horse:
            try:
                state = job.get_status(refresh=True)
            except Exception:  # Redis gone: say what we know
                state = None
            jobs_log.info("%s ended %s after %.1fs", what, getattr(state, "value", state) or "(status unknown)",
                          time.monotonic() - started)
            try:  # RQ concedes contended dependent enqueues to maintenance (minutes); do it now
                from .propagate import drain_ready

                drain_ready(self.connection, tuple(self.queue_names()))
            except Exception:
                log.exception("could not drain ready registries after job %s", job.id)
            self._advance_batch(job)

    def _advance_batch(self, job: Job) -> None:
        """A job of a batch's sub-run ended: release the batch's next sub-runs if that run ended."""
        run_id = (job.meta or {}).get("ifcflow_run")
        try:
            batch_id = self.connection.hget(f"ifcflow:run:{run_id}", "batch") if run_id else None
            if batch_id:
                from .batch import advance

                advance(self.connection, batch_id.decode() if isinstance(batch_id, bytes) else batch_id)
        except Exception:
            log.exception("could not advance the batch of run %s after job %s", run_id, job.id)

    def handle_job_failure(self, job: Job, queue: Any, started_job_registry: Any = None, exc_string: str = "",
                           execution: Any = None) -> None:
        if not self.is_horse and exc_string and (job.meta or {}).get("ifcflow_run"):
            try:  # the horse died before it could record this attempt's error (OOM killer, SIGKILL)
                job.meta.setdefault("errors", []).append(exc_string.strip().splitlines()[0].rstrip("; "))
                job.save_meta()
            except Exception:
                log.exception("could not record the error of job %s", job.id)
        super().handle_job_failure(job, queue, started_job_registry=started_job_registry, exc_string=exc_string,
                                   execution=execution)
        run_id = (job.meta or {}).get("ifcflow_run")
        if not run_id or self.is_horse:
            return
        try:
            from .status import StatusReader

            StatusReader(self.connection, run_id).read()
        except Exception:  # the failure itself is recorded; repairs are retried by every status read
            log.exception("could not update run %s after job %s failed", run_id, job.id)


def make_worker(conn: Redis, queues: Sequence[str] = QUEUES, name: str | None = None) -> IfcflowWorker:
    return IfcflowWorker(list(queues) or list(QUEUES), connection=conn, name=name,
                         job_monitoring_interval=JOB_MONITORING_INTERVAL, worker_ttl=WORKER_TTL)


def run_worker(url: str, queues: Sequence[str], burst: bool = False, name: str | None = None,
               logging_level: str = "INFO", services: Sequence[str] = ()) -> bool:
    """Preload, then work ``queues`` (all of ifcflow's when empty) with the scheduler enabled.

    RQ retries a lost connection while it waits for jobs but quits when one breaks elsewhere (heartbeat,
    maintenance); this loop then waits for Redis to come back and starts a fresh worker, so workers survive a
    Redis restart. It returns when the worker stops on request (SIGTERM/SIGINT) or a burst ends.
    """
    from . import lifeline
    from .connection import connect
    from .errors import RedisUnavailable

    lifeline.from_environment()  # a local run's worker dies with ifcflow run, its horses and scheduler with it
    log_jobs()
    unknown = [q for q in queues if q not in QUEUES]
    if unknown:
        log.warning("queues %s are not ifcflow queues (%s); listening anyway", unknown, ", ".join(QUEUES))
    unavailable = preload(services)
    worked = False
    for restart in range(1_000_000):
        # a restarted worker gets a new name: the old one may still look alive in a persisted Redis
        worker = make_worker(connect(url), queues, name if restart == 0 or name is None else f"{name}-{restart}")
        worker.unavailable = unavailable
        try:
            worked |= worker.work(burst=burst, with_scheduler=True, logging_level=logging_level)
        except RedisError as exc:
            log.error("lost Redis at %s: %s", url, exc)
        # an idle worker's warm shutdown raises StopRequested without setting _stop_requested: check both
        if burst or worker._stop_requested or worker._shutdown_requested_date is not None:
            return worked
        delay = 1.0
        while True:  # wait for Redis to come back, then start a fresh worker
            time.sleep(delay)
            try:
                connect(url)
                break
            except RedisUnavailable:
                delay = min(delay * 2, 30.0)
        log.warning("Redis at %s is back; restarting the worker", url)
    return worked
