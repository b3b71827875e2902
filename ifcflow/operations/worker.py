"""``ifcflow worker``: RQ's worker, with ifcopenshell and the service modules imported before forking.

A forking RQ worker that has not imported ifcopenshell pays the import in every job; this one imports once. It
also runs RQ's scheduler (delayed retries), heart-beats often enough that a killed worker is noticed within two
minutes, reconciles a job's run as soon as the job ended (see :mod:`ifcflow.engine.reconcile`), and sweeps every
unfinished run periodically (:data:`ifcflow.engine.reconcile.INTERVAL`), so runs progress with no reader at all. Plain
``rq worker QUEUE --url URL`` runs ifcflow jobs too; then run ``ifcflow reconcile --loop`` beside them.
"""

from __future__ import annotations

import importlib
import json
import logging
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq.job import Job, JobStatus

from ..engine import changes, enqueue, packs, reconcile, rqstore
from ..services import QUEUES, SERVICES
from .horse import ResidentHorseWorker

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
    for plug in {p for name in (services or SERVICES) if name in SERVICES for p in SERVICES[name].plugs}:
        try:
            importlib.import_module(plug)
        except ImportError as exc:  # an optimisation only: the steps it plugs into run without it
            log.info("%s not loaded (%s): steps run without it", plug, exc)
    return unavailable


def services_of(conn: Redis, worker_key: str) -> dict[str, Any] | None:
    """What an ``ifcflow worker`` recorded at start: ``{"available": [...], "unavailable": {name: reason}}``;
    None for a worker that did not record it (a plain ``rq worker``)."""
    raw = conn.hget(worker_key, SERVICES_FIELD)
    return json.loads(raw) if raw else None


class IfcflowWorker(ResidentHorseWorker):
    """An RQ worker whose jobs run in a resident work horse (:mod:`.horse`), that reconciles a job's run as soon
    as the job ended, stops for good when asked to, and records in its RQ worker hash which services it can run
    (``ifcflow workers`` shows them)."""

    unavailable: dict[str, str] | None = None
    """Services whose module could not be imported (set by :func:`run_worker` after :func:`preload`)."""
    stop_asked = False
    current: tuple[Job, Any] | None = None
    _after: ThreadPoolExecutor | None = None
    _pending: Future[None] | None = None
    _busy = 0
    """Jobs started whose end is not handled yet (:data:`ifcflow.engine.changes.BUSY_FIELD` is set while > 0)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._busy_lock = threading.Lock()

    def register_birth(self) -> None:
        super().register_birth()
        if self.unavailable is not None:
            record = {"available": [name for name in SERVICES if name not in self.unavailable],
                      "unavailable": self.unavailable}
            self.connection.hset(self.key, SERVICES_FIELD, json.dumps(record))

    early = False
    """True from the start of :meth:`bootstrap` until RQ installs its own signal handlers, just before its loop."""

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        # RQ registers the worker (and starts its scheduler) before it installs its signal handlers: a SIGTERM in
        # between killed the worker outright, leaving its registration behind. Catch it from the start instead.
        self.early = True
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        super().bootstrap(*args, **kwargs)

    def _install_signal_handlers(self) -> None:
        super()._install_signal_handlers()
        self.early = False

    def request_stop(self, signum: Any, frame: Any) -> None:
        self.stop_asked = True  # RQ raises StopRequested when idle and sets _stop_requested only when busy
        if self.early:
            self._stop_requested = True  # not in the loop yet: it stops at its first turn, cleanly
            return
        super().request_stop(signum, frame)

    def setup_work_horse_signals(self) -> None:
        super().setup_work_horse_signals()  # in every new work horse, resident or forked per job:
        from workers import ticker

        ticker.per_horse()  # one progress ticker for all the horse's steps

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        super().prepare_job_execution(job, remove_from_intermediate_queue)  # in the horse: the job is started
        changes.publish(self.connection, (job.meta or {}).get("ifcflow_run"))

    def handle_job_success(self, job: Job, queue: Any, started_job_registry: Any, execution: Any) -> None:
        super().handle_job_success(job, queue, started_job_registry, execution)  # in the horse: the step ended
        changes.publish(self.connection, (job.meta or {}).get("ifcflow_run"))

    def execute_job(self, job: Job, queue: Any) -> None:
        meta = job.meta or {}
        what = f"job {job.id}" + (f" (run {meta['ifcflow_run']})" if meta.get("ifcflow_run") else "")
        started = time.monotonic()
        jobs_log.info("%s started on queue %s", what, job.origin)
        with self._busy_lock:
            self._busy += 1
            try:
                self.connection.hset(self.key, changes.BUSY_FIELD, job.id)
            except RedisError:
                pass  # RQ's own bookkeeping below meets the same error and handles it
        self.current = (job, queue)
        super().execute_job(job, queue)
        self.current = None
        if not self.is_horse:
            self._after_job(job, what, started)

    def _after_job(self, job: Job, what: str, started: float) -> None:
        """Hand the job's end (log, reconcile, batch window, announce) to the after-job thread, so the worker
        dequeues the next job and its horse runs it meanwhile; at most one end is pending (ends stay in order)."""
        self.flush_ends()
        if self._after is None:
            self._after = ThreadPoolExecutor(1, thread_name_prefix="ifcflow-job-end")
        self._pending = self._after.submit(self._ended, job, what, started)

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        """RQ's dequeue; a burst (``timeout`` None) first waits for the last job's end, which may enqueue more work
        (a batch's next gate, a ``failure()`` step): the burst must not end before it."""
        if timeout is None:
            self.flush_ends()
        return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)

    def flush_ends(self) -> None:
        """Wait until the end of the last job is handled."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def unsubscribe(self) -> None:
        # RQ sends UNSUBSCRIBE, then stops its pub/sub thread and waits for it: when the reply came before the stop,
        # the thread waited out its 60 s read first (the worker took a minute to exit). Stop it first.
        if self.pubsub_thread is not None:
            self.pubsub_thread.stop(timeout=0)
        super().unsubscribe()

    def teardown(self) -> None:
        if not self.is_horse:
            self.flush_ends()
            if self._after is not None:
                self._after.shutdown(wait=True)
                self._after = None
        super().teardown()

    def _ended(self, job: Job, what: str, started: float) -> None:
        """In the worker's after-job thread, once the job's horse ended: log it, reconcile its run, announce the
        change. Never raises (what fails here is retried by the periodic pass)."""
        try:
            self._handle_end(job, what, started)
        except Exception:
            log.exception("could not handle the end of job %s", job.id)
        finally:
            with self._busy_lock:
                self._busy -= 1
                try:
                    if not self._busy:  # (the next job may have started meanwhile: it keeps the field)
                        self.connection.hdel(self.key, changes.BUSY_FIELD)
                except RedisError:
                    pass

    def _handle_end(self, job: Job, what: str, started: float) -> None:
        meta = job.meta or {}
        try:
            state = job.get_status(refresh=True)
        except Exception:  # Redis gone: say what we know
            state = None
        jobs_log.info("%s ended %s after %.1fs", what, getattr(state, "value", state) or "(status unknown)",
                      time.monotonic() - started)
        ended = False
        try:  # RQ concedes contended dependent enqueues to maintenance (minutes); do it now
            rqstore.drain_ready(self.connection, tuple(self.queue_names()))
            if meta.get("ifcflow_run"):
                status = reconcile.run(self.connection, meta["ifcflow_run"], announce=False)  # (announced below)
                ended = status is not None and status.terminal  # (then that pass ended it, hooks included)
            if meta.get(packs.META) and state == JobStatus.FAILED:  # its horse died: save the rest of the pack
                for member in packs.salvage(self.connection, job, _died(job)):
                    reconcile.run(self.connection, member)
        except Exception:  # the job's end is recorded; the periodic pass retries the repairs
            log.exception("could not reconcile after job %s", job.id)
        self._advance_batch(job, ended)
        changes.publish(self.connection, meta.get("ifcflow_run"))

    def _advance_batch(self, job: Job, ended: bool = False) -> None:
        """A job of a batch's sub-run ended: release the batch's next sub-runs if that run ended. Never waits for
        another worker's advance of the batch: it leaves a dirty mark, and that worker advances again. ``ended``:
        this worker's reconcile pass just ended the run (the advance need not reconcile it again)."""
        meta = job.meta or {}
        run_id = meta.get("ifcflow_run")
        try:  # (the job says which batch; a retried one, enqueued without, is looked up)
            batch_id = meta.get(enqueue.BATCH) or (
                self.connection.hget(f"ifcflow:run:{run_id}", "batch") if run_id else None)
            if batch_id:
                from ..batches.lifecycle import advance

                advance(self.connection, batch_id.decode() if isinstance(batch_id, bytes) else batch_id, wait=0.0,
                        ended=frozenset([run_id]) if ended and run_id else frozenset())
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
        changes.publish(self.connection, (job.meta or {}).get("ifcflow_run"))

    def stop_horse(self) -> tuple[Job, Any] | None:
        """Kill a work horse left running after the worker lost Redis, and wait for it; returns its job."""
        return self.current if self.stop_resident() else None


def make_worker(conn: Redis, queues: Sequence[str] = QUEUES, name: str | None = None) -> IfcflowWorker:
    return IfcflowWorker(list(queues) or list(QUEUES), connection=conn, name=name,
                         job_monitoring_interval=JOB_MONITORING_INTERVAL, worker_ttl=WORKER_TTL)


def run_worker(url: str, queues: Sequence[str], burst: bool = False, name: str | None = None,
               logging_level: str = "INFO", services: Sequence[str] = (),
               reconcile_interval: float = reconcile.INTERVAL) -> bool:
    """Preload, then work ``queues`` (all of ifcflow's when empty) with the scheduler enabled.

    RQ retries a lost connection while it waits for jobs but quits when one breaks elsewhere (heartbeat,
    maintenance); this loop then stops the job's work horse (so a job never runs twice, or ends under a dead
    worker's name), waits for Redis to come back, fails that job through RQ (retried if it has attempts left) and
    starts a fresh worker. It returns when the worker stops on request (SIGTERM/SIGINT, busy or idle) or a burst
    ends. Unless ``burst``, a thread sweeps unfinished runs every ``reconcile_interval`` seconds.
    """
    from ..engine import lifeline
    from ..engine.connection import connect

    lifeline.from_environment()  # a local run's worker dies with ifcflow run, its horses and scheduler with it
    log_jobs()
    unknown = [q for q in queues if q not in QUEUES]
    if unknown:
        log.warning("queues %s are not ifcflow queues (%s); listening anyway", unknown, ", ".join(QUEUES))
    unavailable = preload(services)
    stop = threading.Event()
    if not burst and reconcile_interval > 0:
        threading.Thread(target=reconcile.loop, args=(connect(url, check=False), reconcile_interval, stop),
                         name="ifcflow-reconcile", daemon=True).start()
    worked = False
    try:
        for restart in range(1_000_000):
            # a restarted worker gets a new name: the old one may still look alive in a persisted Redis
            worker = make_worker(connect(url), queues, name if restart == 0 or name is None else f"{name}-{restart}")
            worker.unavailable = unavailable
            try:
                worked |= worker.work(burst=burst, with_scheduler=True, logging_level=logging_level)
            except RedisError as exc:
                log.error("lost Redis at %s: %s", url, exc)
            abandoned = worker.stop_horse()
            # an idle worker's warm shutdown raises StopRequested without setting _stop_requested: check all
            if burst or worker.stop_asked or worker._stop_requested or worker._shutdown_requested_date is not None:
                return worked
            _await_redis(url)
            log.warning("Redis at %s is back; restarting the worker", url)
            if abandoned is not None:
                _fail_abandoned(worker, *abandoned)
    finally:
        stop.set()
    return worked


def _await_redis(url: str) -> None:
    from ..engine.connection import connect
    from ..errors import RedisUnavailable

    delay = 1.0
    while True:
        time.sleep(delay)
        try:
            connect(url)
            return
        except RedisUnavailable:
            delay = min(delay * 2, 5.0)  # Redis back: work resumes within 5 s (a PING every 5 s costs nothing)


def _fail_abandoned(worker: IfcflowWorker, job: Job, queue: Any) -> None:
    """The job whose horse was stopped after Redis was lost fails now (RQ retries it if it has attempts left)."""
    try:
        job.refresh()
        if job.get_status() != JobStatus.STARTED:
            return
        worker.handle_job_failure(job, queue, exc_string="work horse stopped: its worker lost the Redis connection")
        run_id = (job.meta or {}).get("ifcflow_run")
        if run_id:
            reconcile.run(worker.connection, run_id)
    except Exception:  # the periodic pass and RQ's maintenance fail it later
        log.exception("could not fail job %s after losing Redis", job.id)


def _died(job: Job) -> str:
    """Why a pack job failed, as its running member's error."""
    try:
        result = job.latest_result()
        lines = [line for line in ((result.exc_string if result else None) or "").splitlines() if line.strip()]
    except Exception:  # noqa: BLE001 - a plainer message then
        lines = []
    cause = lines[-1].strip().rstrip("; ") if lines else "the pack job failed"
    return f"the work horse died while running this file ({cause}); the rest of its pack goes on"
