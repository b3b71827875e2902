"""Pausing a schedule (issue 16 item 11): the scheduler lets a paused schedule's ticks pass, resumes firing when it
is resumed, and "fire now" still works while paused. Real redis-server, the real scheduler class in process."""

from __future__ import annotations

import time
from pathlib import Path

from redis import Redis

from ifcflow.batches import schedule
from ifcflow.batches.scheduler import Scheduler

from .test_schedule import folder, spec

__all__ = ["folder"]


def tick_for(scheduler: Scheduler, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        scheduler.enqueue_jobs()
        time.sleep(scheduler.calculate_sleep_interval())


def test_a_paused_schedule_does_not_fire_until_resumed(conn: Redis, folder: Path) -> None:
    schedule.add(conn, spec(folder, cron="* * * * * *", overlap="allow"))
    assert schedule.pause(conn, "nightly").paused and schedule.get(conn, "nightly").paused
    scheduler = Scheduler(conn, poll=0.1)
    tick_for(scheduler, 2.5)
    assert schedule.history(conn, "nightly") == []  # every tick passed unfired
    fired = schedule.run_now(conn, "nightly")
    assert fired.outcome == "started"  # firing it by hand still works
    [row] = schedule.listing(conn)
    assert row["paused"] is True and row["last"]["id"] == fired.id
    schedule.pause(conn, "nightly", False)
    tick_for(scheduler, 2.5)
    assert len(schedule.history(conn, "nightly")) >= 2
