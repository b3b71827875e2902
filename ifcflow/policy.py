"""Which waiting steps must be skipped, and which must be released, given the states of the others. Pure.

The rules (GitHub-Actions-like):
- a step's ``if:`` is ``success()`` (default), ``failure()`` or ``always()``, evaluated over its needs;
- ``success()``: every need succeeded (a failed need with ``on_failure: continue`` counts as succeeded);
  decided as soon as one need failed, was skipped or was canceled: the step is skipped, naming the root cause;
- ``failure()``: once every need ended, true when any upstream step (transitively) failed; false only once every
  upstream step ended (a need can end early, skipped, while a step above it is still running);
- ``always()``: runs once every need ended, whatever happened;
- a step that must run although a need was skipped or canceled is *released*: RQ never enqueues it by itself
  (for ``failure()``, RQ waits for every upstream step, so one skipped anywhere upstream calls for a release).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from .states import StepState


class StepLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def needs(self) -> list[str]: ...
    @property
    def condition(self) -> str: ...
    @property
    def on_failure(self) -> str: ...


@dataclass(frozen=True)
class Decision:
    step: str
    action: str  # "skip" or "release"
    reason: str = ""


def _failed_upstream(step: StepLike, by_id: Mapping[str, StepLike],
                     states: Mapping[str, StepState]) -> tuple[str | None, bool]:
    """(the first step upstream of ``step`` that failed, transitively, or None; whether every upstream step ended)."""
    seen: set[str] = set()
    todo = list(step.needs)
    culprit, ended = None, True
    while todo:
        need = todo.pop(0)
        if need in seen:
            continue
        seen.add(need)
        state = states.get(need, StepState.PENDING)
        if state == StepState.FAILED and culprit is None:
            culprit = need
        ended = ended and state.terminal
        todo.extend(by_id[need].needs if need in by_id else ())
    return culprit, ended


def verdict(step: StepLike, by_id: Mapping[str, StepLike], states: Mapping[str, StepState],
            causes: Mapping[str, str]) -> tuple[str, str]:
    """``("run"|"skip"|"wait", reason)`` for a step that has not started, from the states of its needs."""
    needs = [(n, states.get(n, StepState.PENDING)) for n in step.needs]
    ended = all(s.terminal for _, s in needs)
    if step.condition == "always()":
        return ("run", "") if ended else ("wait", "")
    if step.condition == "failure()":
        culprit, everything_ended = _failed_upstream(step, by_id, states)
        if culprit and ended:
            return "run", ""
        if not everything_ended:  # a step further up may still fail (needs can end early, skipped)
            return "wait", ""
        return ("run", "") if culprit else ("skip", "condition failure() is false: no upstream step failed")
    for need, state in needs:
        if state == StepState.FAILED and by_id[need].on_failure != "continue":
            return "skip", f"upstream step '{need}' failed"
        if state == StepState.SKIPPED:
            return "skip", causes.get(need) or f"upstream step '{need}' was skipped"
        if state == StepState.CANCELED:
            return "skip", f"upstream step '{need}' was canceled"
    return ("run", "") if ended else ("wait", "")


def _waits_on(step: StepLike, by_id: Mapping[str, StepLike]) -> set[str]:
    """The steps RQ waits for before it starts ``step``: its needs, or for ``failure()`` every step upstream."""
    if step.condition != "failure()":
        return set(step.needs)
    found: set[str] = set()
    todo = list(step.needs)
    while todo:
        need = todo.pop()
        if need not in found:
            found.add(need)
            todo.extend(by_id[need].needs if need in by_id else ())
    return found


def decide(steps: Sequence[StepLike], states: Mapping[str, StepState], causes: Mapping[str, str],
           lost: frozenset[str] = frozenset()) -> list[Decision]:
    """Decisions for every step still pending, cascading in topological order (``steps`` must be in it).

    ``lost`` names steps whose RQ job vanished: RQ will never enqueue their dependents, so one that must run is
    released like the dependents of skipped and canceled steps.
    """
    by_id = {s.id: s for s in steps}
    states = dict(states)
    causes = dict(causes)
    decisions: list[Decision] = []
    for step in steps:
        if states.get(step.id) not in (StepState.PENDING, None):
            continue
        action, reason = verdict(step, by_id, states, causes)
        if action == "skip":
            states[step.id] = StepState.SKIPPED
            causes[step.id] = reason
            decisions.append(Decision(step.id, "skip", reason))
        elif action == "run" and any(states.get(n) in (StepState.SKIPPED, StepState.CANCELED) or n in lost
                                     for n in _waits_on(step, by_id)):
            decisions.append(Decision(step.id, "release"))
    return decisions
