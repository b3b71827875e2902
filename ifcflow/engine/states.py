"""The states a step and a run can be in (``str`` Enums, as they appear in JSON)."""

from __future__ import annotations

from enum import Enum


class StepState(str, Enum):
    PENDING = "pending"
    """Waiting for the steps it needs (RQ: deferred)."""
    QUEUED = "queued"
    """In its service's queue, or waiting to be retried."""
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    CACHED = "cached"
    """Not run: an identical earlier step's outputs were reused (counts as succeeded)."""
    FAILED = "failed"
    SKIPPED = "skipped"
    """Not run: its condition was false, usually because a step it needs failed."""
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({StepState.SUCCEEDED, StepState.CACHED, StepState.FAILED, StepState.SKIPPED,
                      StepState.CANCELED})


class RunState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    SUCCEEDED_WITH_FAILURES = "succeeded_with_failures"
    """Every step ended, some failed, but each of those was marked ``on_failure: continue``."""
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self not in (RunState.QUEUED, RunState.RUNNING)
