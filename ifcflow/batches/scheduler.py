"""``ifcflow scheduler``: fires the schedules stored in Redis, on RQ 3's cron scheduler.

What comes from :mod:`rq.cron` (rq 3.0): the loop, signal handling, the scheduler registry with heartbeats (so RQ's
own tools list it) and each schedule's next tick (``CronJob``, croniter, local time, DST-safe). What ifcflow adds:

- schedules live in Redis and are re-read at every tick (added, changed and removed ones take effect within
  ``poll`` seconds, no restart);
- a due tick is *claimed* before it fires (``SET NX`` on schedule + tick time): RQ's cron has no leader election,
  so with several schedulers on one Redis each tick still fires exactly once;
- the fire itself (:func:`ifcflow.batches.schedule.fire`) runs in the scheduler: it re-reads the pipeline and re-expands
  globs, and records any failure instead of raising;
- waiting ``overlap: queue`` fires start when the previous run ends, and webhooks hear about runs that ended.
"""

from __future__ import annotations

import logging

from redis import Redis
from redis.exceptions import RedisError
from rq.cron import CronJob, CronScheduler
from rq.exceptions import StopRequested
from rq.utils import now

from . import schedule

log = logging.getLogger(__name__)


def _placeholder(name: str) -> None:  # pragma: no cover - never enqueued: fires run in the scheduler
    """What RQ's registry shows as a schedule's function."""


class Scheduler(CronScheduler):
    """RQ's CronScheduler over ifcflow's schedules, with a once-per-tick claim."""

    def __init__(self, connection: Redis, poll: float = 1.0, name: str = "", logging_level: str | int = "INFO"):
        super().__init__(connection, logging_level=logging_level, name=name)
        self.poll = poll
        self.specs: dict[str, schedule.ScheduleSpec] = {}
        self.jobs: dict[str, CronJob] = {}
        self.fires: list[schedule.Fire] = []
        self.broken: dict[str, str] = {}

    def refresh(self) -> None:
        """Follow the schedules in Redis: new ones get a CronJob, changed crons a new one, removed ones go."""
        self.specs, broken = schedule.read_all(self.connection)
        for name, reason in broken.items():
            if self.broken.get(name) != reason:  # said once per record, not every poll
                log.error("schedule %s: %s", name, reason)
        self.broken = broken
        for name, spec in self.specs.items():
            if name not in self.jobs or self.jobs[name].cron != spec.cron:
                self.jobs[name] = CronJob(queue_name="default", func=_placeholder, kwargs={"name": name},
                                          cron=spec.cron, name=f"ifcflow-schedule:{name}")
        for name in set(self.jobs) - set(self.specs):
            del self.jobs[name]
        self._cron_jobs = list(self.jobs.values())

    def enqueue_jobs(self) -> list[CronJob]:
        """Fire every due schedule whose tick this scheduler claims; tend queued fires and webhooks."""
        fired: list[CronJob] = []
        try:
            self.refresh()
        except (RedisError, ValueError) as exc:
            log.error("cannot read schedules: %s", exc)
            return fired
        for name, job in self.jobs.items():
            if not job.should_run() or job.next_enqueue_time is None:
                continue
            tick = job.next_enqueue_time
            try:
                if self.specs[name].paused:  # its tick passes unfired
                    pass
                elif schedule.claim(self.connection, name, tick.timestamp()):
                    self.fires.append(schedule.fire(self.connection, self.specs[name], tick.timestamp()))
                    fired.append(job)
            except StopRequested:  # SIGTERM/SIGINT (raised by RQ's handler wherever we are): stop
                raise
            except Exception:  # Redis trouble: this tick is lost for this schedule, the scheduler goes on
                log.exception("schedule %s: tick %s could not be fired", name, tick)
            job.set_enqueue_time(max(now(), tick))
        for spec in self.specs.values():
            try:
                if spec.overlap == "queue":
                    schedule.start_queued(self.connection, spec)
                schedule.notify_ended(self.connection, spec)
            except StopRequested:
                raise
            except Exception:
                log.exception("schedule %s: could not tend its queued fire or webhook", spec.name)
        return fired

    def heartbeat(self) -> None:
        try:
            super().heartbeat()
        except RedisError as exc:  # Redis restarting: keep going, the next tick retries
            log.error("heartbeat failed: %s", exc)

    def calculate_sleep_interval(self) -> float:
        return min(super().calculate_sleep_interval(), self.poll)

