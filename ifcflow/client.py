"""The public Python API (re-exported by ``ifcflow/__init__.py``): check, plan, submit and follow runs and batches.

The CLI (``ifcflow run/status/cancel/retry/report``) is a thin layer over these same functions. Heavy modules
(redis, rq, pydantic models, ifcopenshell) are imported when a function is called, never by ``import ifcflow``.

>>> import ifcflow
>>> ifcflow.validate("pipelines/coordination.yaml")
[]
>>> with ifcflow.local(workers=2) as cluster:                       # a private Redis and two workers
...     status = cluster.run("pipelines/publish.yaml").wait(timeout=600)
>>> status.status.value
'succeeded'
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Union

from .errors import IfcflowError, PipelineError, Problem, RunTimeout

if TYPE_CHECKING:
    from redis import Redis

    from .batches.batch_status import BatchStatus
    from .engine.status import RunStatus
    from .pipeline.plan import Plan
    from .standalone.local import LocalCluster

RedisLike = Union[str, "Redis", None]
"""A Redis URL (``redis://host:6379/0``, ``unix:///path.sock``), a redis-py client, or None for
``$IFCFLOW_REDIS_URL``."""
PathLike = Union[str, "os.PathLike[str]"]
OUT = "ifcflow-runs"
"""Default folder of run outputs: ``<out>/<run_id>/<step>/``."""
TTL = 7 * 86400
"""Default time finished runs' records, jobs and results are kept in Redis (seconds; as ``--ttl``)."""


def _connect(redis: RedisLike) -> Redis:
    from .engine import connection

    if redis is not None and not isinstance(redis, str):
        return redis
    url = connection.configured_url(redis)
    if not url:
        raise IfcflowError("no Redis configured: pass redis='redis://host:6379/0' (or set IFCFLOW_REDIS_URL), or "
                           "run locally with: with ifcflow.local() as cluster: cluster.run(...)")
    return connection.connect(url)


def validate(file: PathLike, inputs: Mapping[str, str] | None = None) -> list[Problem]:
    """Every problem of a pipeline file (and of its input files) in one pass; ``[]`` when it can run.

    Each :class:`Problem` has ``file``, ``line``, ``col`` (1-based), ``message`` (with the hint: "did you mean ...")
    and ``path`` (the key, e.g. ``steps.clash.uses``); ``str(problem)`` is ``file:line:col: message``.

    >>> [str(p) for p in ifcflow.validate("broken.yaml")]
    ["broken.yaml:7:11: unknown service 'ifcclsh' — did you mean 'ifcclash'? ... (at steps.clash.uses)"]
    """
    try:
        plan(file, inputs)  # planning is pure; it checks output paths too
    except PipelineError as exc:
        return exc.problems
    return []


def plan(file: PathLike, inputs: Mapping[str, str] | None = None, *, out: PathLike = OUT,
         run_id: str | None = None, cache: bool = True) -> Plan:
    """Check ``file`` and expand it into a :class:`Plan` (the DAG of concrete steps), without Redis.

    ``inputs`` override the pipeline's inputs (paths relative to the current folder); outputs are planned under
    ``out/<run_id>/<step>/``. Raises :class:`PipelineError` (``.problems``) when the file is invalid.

    >>> p = ifcflow.plan("pipelines/coordination.yaml", inputs={"arch": "a.ifc"})
    >>> [(s.id, s.queue) for s in p.steps]
    [('validate', 'ifctester'), ('clash', 'ifcclash'), ('glb', 'ifcconvert')]
    """
    from .pipeline import document
    from .pipeline.plan import plan as make_plan

    return make_plan(document.load(Path(file), dict(inputs or {})), run_id=run_id, out_root=Path(out), cache=cache)


def submit(target: Plan | PathLike, *, redis: RedisLike = None, inputs: Mapping[str, str] | None = None,
           out: PathLike = OUT, ttl: int = TTL, cache: bool = True, record: Mapping[str, str] | None = None) -> Run:
    """Enqueue a run (a :class:`Plan`, or a pipeline file planned with ``inputs``, ``out``, ``cache``) on ``redis``
    and return its :class:`Run` handle at once. All or nothing: a bad file or a failure enqueues nothing.

    Workers (``ifcflow worker --redis URL``) must see the input and output paths. ``record`` adds fields to the
    run's record (the CLI's ``--webhook`` uses it).

    >>> run = ifcflow.submit("pipelines/publish.yaml", redis="redis://localhost:6379/0")
    >>> run.wait(timeout=600).status
    <RunState.SUCCEEDED: 'succeeded'>
    """
    from .engine import enqueue
    from .pipeline.plan import Plan

    planned = target if isinstance(target, Plan) else plan(target, inputs, out=out, cache=cache)
    conn = _connect(redis)
    enqueue.submit(conn, planned, ttl=ttl, record=dict(record) if record else None)
    return Run(planned.run_id, conn, plan=planned)


def submit_batch(file: PathLike, each: Mapping[str, str] | None = None, *, redis: RedisLike = None,
                 inputs: Mapping[str, str] | None = None, out: PathLike = OUT, ttl: int = TTL,
                 max_runs: int = 1000, window: int = 0, cache: bool = True) -> Batch:
    """One run of ``file`` per file each glob matches (the product for several globs; the pipeline's
    ``for_each:`` works too), all enqueued in one transaction under one batch id; returns its :class:`Batch`.

    Globs are relative to the current folder, ``**`` spans folders. ``window`` sub-runs are released at a time
    (0: twice the registered workers, at least 2).

    >>> batch = ifcflow.submit_batch("pipelines/coordination.yaml", each={"arch": "models/*.ifc"}, redis=url)
    >>> [(r.label, r.status.value) for r in batch.wait().runs]
    [('models/a.ifc', 'succeeded'), ('models/b.ifc', 'failed')]
    """
    from .batches import batch

    conn = _connect(redis)
    record = batch.start(conn, Path(file), dict(inputs or {}), dict(each or {}), out=Path(out), ttl=ttl,
                         max_runs=max_runs, window=window, cache=cache)
    return Batch(record.batch_id, conn)


class Run:
    """A handle on one run: ``ifcflow.Run(run_id, redis=URL)``. Cheap to make; every method reads Redis anew.

    With ``redis=None`` and no ``$IFCFLOW_REDIS_URL`` the handle reads the run's recorded ``status.json`` under
    ``out`` (what a local run leaves when its private Redis is gone); then only :meth:`status` and :meth:`report`
    work.

    >>> run = ifcflow.Run("coordination-20260101-020000-0a1b2c3d4e5f", redis="redis://localhost:6379/0")
    >>> run.cancel()            # the steps canceled
    ['clash', 'glb']
    >>> run.retry(step="clash") # re-runs clash and what depends on it, in the same run
    ['clash']
    >>> print(run.report("markdown"))
    """

    def __init__(self, run_id: str, redis: RedisLike = None, *, out: PathLike = OUT, plan: Plan | None = None):
        from .engine import connection

        self.id = run_id
        self.out = Path(out)
        self._plan = plan
        self._redis: Redis | None = None
        self._url = None if redis is not None and not isinstance(redis, str) else connection.configured_url(redis)
        self._folder: Path | None = None  # read status.json from here once a local cluster has stopped
        self._closed: Callable[[], bool] = lambda: False
        if redis is not None and not isinstance(redis, str):
            self._redis = redis

    def __repr__(self) -> str:
        return f"Run({self.id!r})"

    @property
    def redis(self) -> Redis:
        """The Redis client the run is on (connected on first use)."""
        if self._redis is None:
            if self._url is None:
                raise IfcflowError(f"run {self.id}: no Redis configured, so only its recorded status (status.json "
                                   f"under {self.out}) can be read; pass redis=URL to act on it")
            self._redis = _connect(self._url)
        return self._redis

    def _local(self) -> bool:
        return (self._redis is None and self._url is None) or self._closed()

    def status(self, traceback: bool = False) -> RunStatus:
        """The run's :class:`RunStatus` now (``.status``, ``.steps[id].status/.message/.error``, ``.outputs``).

        Raises :class:`RunNotFound` when Redis has no such run."""
        from .engine.status import StatusReader

        if self._local():
            from .engine import runfolder

            if self._folder is not None:
                return runfolder.read_status(self._folder.parent, self.id)
            return runfolder.read_status(self.out, self.id)
        return StatusReader(self.redis, self.id, self._plan).read(traceback)

    def wait(self, timeout: float | None = None, *, on_update: Callable[[RunStatus], None] | None = None,
             poll: float = 2.0) -> RunStatus:
        """Poll until the run ended and return its final :class:`RunStatus` (whatever its state: check
        ``.status``). ``on_update(status)`` is called at every poll; polls back off up to ``poll`` seconds.

        Raises :class:`RunTimeout` (with ``.status``, the last one read) when ``timeout`` seconds pass first;
        the run goes on."""
        from .engine.status import StatusReader, wait

        if self._local():
            return self.status()
        status = wait(StatusReader(self.redis, self.id, self._plan), timeout=timeout, on_update=on_update,
                      max_delay=poll)
        if not status.terminal:
            raise RunTimeout(self.id, timeout or 0.0, status)
        return status

    def cancel(self, *, reason: str = "canceled by user", wait: float = 10.0) -> list[str]:
        """Stop running steps, cancel waiting ones, remove their partial outputs; the run ends ``canceled``.
        Returns the steps canceled (``reason`` is their error)."""
        from .engine.control import cancel

        return cancel(self.redis, self.id, wait=wait, reason=reason)

    def retry(self, step: str | None = None, *, ttl: int = TTL) -> list[str]:
        """Re-run the failed, skipped and canceled steps (or ``step``) and what depends on them, in the same run,
        keeping what succeeded. Returns the steps re-enqueued ([] while they still wait or run)."""
        from .engine.control import retry

        return retry(self.redis, self.id, step, ttl=ttl)

    def report(self, fmt: str = "markdown") -> str:
        """The run's report: ``"junit"`` (XML for CI), ``"markdown"`` (for pull requests) or ``"html"``."""
        from .views.report import render

        return render(self.status(traceback=True), fmt)


class Batch:
    """A handle on a batch (one run per file): ``ifcflow.Batch(batch_id, redis=URL)``.

    >>> batch = ifcflow.Batch("coordination-20260101-020000-b1a2b3c4", redis=url)
    >>> batch.status().counts
    {'succeeded': 2, 'failed': 1, ...}
    """

    def __init__(self, batch_id: str, redis: RedisLike = None):
        self.id = batch_id
        self._given = redis
        self._redis: Redis | None = None if redis is None or isinstance(redis, str) else redis

    def __repr__(self) -> str:
        return f"Batch({self.id!r})"

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            self._redis = _connect(self._given)
        return self._redis

    def status(self) -> BatchStatus:
        """The :class:`BatchStatus` now: ``.status``, ``.counts`` and a row per sub-run (``.runs``)."""
        from .batches import batch_status

        return batch_status.read(self.redis, self.id)

    def runs(self) -> list[Run]:
        """A :class:`Run` handle per sub-run, in file order."""
        return [Run(row.run_id, self.redis) for row in self.status().runs]

    def wait(self, timeout: float | None = None, *, on_update: Callable[[BatchStatus], None] | None = None,
             poll: float = 2.0) -> BatchStatus:
        """Poll until every sub-run ended; each poll also repairs unfinished sub-runs and releases the next ones
        (so batches progress with plain ``rq worker``s). Raises :class:`RunTimeout` when ``timeout`` passes."""
        from .batches import batch_status, lifecycle

        delay, deadline = 0.05, None if timeout is None else time.monotonic() + timeout
        while True:
            lifecycle.advance(self.redis, self.id, repair=True)
            status = batch_status.read(self.redis, self.id)
            if on_update is not None:
                on_update(status)
            if status.terminal:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise RunTimeout(self.id, timeout or 0.0, status)
            time.sleep(delay)
            delay = min(delay * 1.25, poll)

    def cancel(self) -> list[str]:
        """Cancel every sub-run that has not ended; returns their run ids."""
        from .batches import lifecycle

        return lifecycle.cancel(self.redis, self.id)

    def retry(self) -> dict[str, list[str]]:
        """Re-run the failed runs' failed, skipped and canceled steps; returns run id -> steps re-enqueued."""
        from .batches import lifecycle

        return lifecycle.retry(self.redis, self.id)

    def report(self, fmt: str = "markdown") -> str:
        """``"junit"`` (one <testsuite> per file), ``"markdown"`` or ``"html"``."""
        from .batches import batch_report

        return batch_report.render(self.redis, self.status(), fmt)


class Cluster:
    """A private Redis plus worker processes on this machine (see :func:`local`); gone when the block ends."""

    def __init__(self, workers: int | None = None, *, log_file: PathLike | None = None):
        from .standalone.local import LocalCluster

        self._cluster: LocalCluster = LocalCluster(workers, log_file=Path(log_file) if log_file else None)
        self._redis: Redis | None = None
        self._runs: list[Run] = []
        self._stopped = False

    @property
    def url(self) -> str:
        """The private Redis's URL (``unix:///tmp/ifcflow-redis-.../redis.sock``)."""
        return self._cluster.url

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            raise IfcflowError("the local cluster is not running: use it inside 'with ifcflow.local() as cluster:'")
        return self._redis

    def __enter__(self) -> Cluster:
        from .engine import connection

        self._cluster.__enter__()
        self._redis = connection.connect(self._cluster.url)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        from .engine import reconcile

        try:
            if kind is None:  # each ended run's end (status.json, hooks) is done before the workers go
                for run in self._runs:
                    reconcile.run(self.redis, run.id)
        finally:
            self._stopped, self._redis = True, None
            self._cluster.__exit__(kind, exc, tb)

    def submit(self, target: Plan | PathLike, *, inputs: Mapping[str, str] | None = None, out: PathLike = OUT,
               ttl: int = TTL, cache: bool = True) -> Run:
        """As :func:`submit`, on this cluster. The handle reads the run folder's ``status.json`` once the cluster
        has stopped."""
        run = submit(target, redis=self.redis, inputs=inputs, out=out, ttl=ttl, cache=cache)
        run._folder = Path(run._plan.out_dir) if run._plan else None
        run._closed = lambda: self._stopped
        self._runs.append(run)
        return run

    def run(self, file: PathLike, inputs: Mapping[str, str] | None = None, *, out: PathLike = OUT,
            cache: bool = True) -> Run:
        """Check, plan and enqueue ``file`` on this cluster; returns its :class:`Run` (call ``.wait()``)."""
        return self.submit(file, inputs=inputs, out=out, cache=cache)

    def submit_batch(self, file: PathLike, each: Mapping[str, str] | None = None, **options: Any) -> Batch:
        """As :func:`submit_batch`, on this cluster."""
        return submit_batch(file, each, redis=self.redis, **options)


def local(workers: int | None = None, *, log_file: PathLike | None = None) -> Cluster:
    """A private ``redis-server`` (unix socket, nothing on disk) plus ``workers`` ``ifcflow worker`` processes
    (default: one per core), the way ``ifcflow run`` works with no Redis configured. Use it as a context manager:
    everything is stopped and removed when the block ends (also on errors and Ctrl-C).

    >>> with ifcflow.local(workers=2) as cluster:
    ...     status = cluster.run("pipelines/publish.yaml").wait()
    >>> status.steps["glb"].outputs["model"]
    '/home/me/project/ifcflow-runs/publish-.../glb/arch.glb'
    """
    return Cluster(workers, log_file=log_file)
