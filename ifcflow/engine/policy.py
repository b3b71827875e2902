"""Which waiting steps must be skipped, and which must be released, given the states of the others. Pure.

The rules (GitHub-Actions-like):
- a step's ``if:`` is ``success()`` (default), ``failure()`` or ``always()``, evaluated over its needs;
- ``success()``: every need succeeded (a failed need with ``on_failure: continue`` counts as succeeded);
  decided as soon as one need failed, was skipped or was canceled: the step is skipped, naming the root cause;
- ``failure()``: once every need ended, true when any upstream step (transitively) failed; false only once every
  upstream step ended (a need can end early, skipped, while a step above it is still running);
- ``always()``: runs once every need ended, whatever happened;
- a step that must run although a need was skipped or canceled is *released*: RQ never enqueues it by itself;
  so is one whose ``after`` step (ordering only, any outcome: :func:`ifcflow.pipeline.plan.order_shared_passes`)
  was, once its ``after`` steps all ended;
- a *held* step (:func:`held`: a ``failure()`` step with a step above its needs) is never started by RQ at all:
  RQ waits only for a step's needs (one dependency per need, so a long chain costs linear memory), which would
  start it while a step further up may still fail; it also waits on a gate that is never opened, and is released
  here once its condition is decided.
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
    @property
    def after(self) -> list[str]: ...


@dataclass(frozen=True)
class Decision:
    step: str
    action: str  # "skip" or "release"
    reason: str = ""


def held(step: StepLike, by_id: Mapping[str, StepLike]) -> bool:
    """Whether RQ must never start ``step`` by itself: a ``failure()`` step one of whose needs has needs (then a
    step above its needs may still be running when they all ended). A ``failure()`` step whose needs need nothing
    waits in RQ for them, which are all its upstream steps, and decides its condition when it starts."""
    return step.condition == "failure()" and any(by_id[n].needs for n in step.needs if n in by_id)


def _failed_upstream(step: StepLike, by_id: Mapping[str, StepLike],
                     states: Mapping[str, StepState]) -> tuple[bool, bool]:
    """(whether a step upstream of ``step`` failed, transitively; whether every upstream step ended)."""
    seen: set[str] = set()
    todo = list(step.needs)
    failed, ended = False, True
    while todo:
        need = todo.pop()
        if need in seen:
            continue
        seen.add(need)
        state = states.get(need, StepState.PENDING)
        failed = failed or state == StepState.FAILED
        ended = ended and state.terminal
        todo.extend(by_id[need].needs if need in by_id else ())
    return failed, ended


def verdict(step: StepLike, by_id: Mapping[str, StepLike], states: Mapping[str, StepState],
            causes: Mapping[str, str], upstream: tuple[bool, bool] | None = None) -> tuple[str, str]:
    """``("run"|"skip"|"wait", reason)`` for a step that has not started, from the states of its needs.
    ``upstream`` is what :func:`_failed_upstream` would answer, when the caller knows it already."""
    needs = [(n, states.get(n, StepState.PENDING)) for n in step.needs]
    ended = all(s.terminal for _, s in needs)
    if step.condition == "always()":
        return ("run", "") if ended else ("wait", "")
    if step.condition == "failure()":
        culprit, everything_ended = upstream if upstream is not None else _failed_upstream(step, by_id, states)
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


def decide(steps: Sequence[StepLike], states: Mapping[str, StepState], causes: Mapping[str, str],
           lost: frozenset[str] = frozenset()) -> list[Decision]:
    """Decisions for every step still pending, cascading in topological order (``steps`` must be in it).

    ``lost`` names steps whose RQ job vanished: RQ will never enqueue their dependents, so one that must run is
    released like the dependents of skipped and canceled steps. One pass over the steps and their needs: what is
    upstream of each step (a failure, whether all ended) is carried along, not walked again per step.
    """
    by_id = {s.id: s for s in steps}
    states = dict(states)
    causes = dict(causes)
    above: dict[str, tuple[bool, bool]] = {}  # step -> (it or a step above it failed, it and all above ended)

    def upstream(step: StepLike) -> tuple[bool, bool]:
        marks = [above.get(n) or _alone(states.get(n)) for n in step.needs]
        return any(failed for failed, _ in marks), all(ended for _, ended in marks)

    decisions: list[Decision] = []
    for step in steps:
        if states.get(step.id) in (StepState.PENDING, None):
            action, reason = verdict(step, by_id, states, causes, upstream(step))
            if action == "skip":
                states[step.id] = StepState.SKIPPED
                causes[step.id] = reason
                decisions.append(Decision(step.id, "skip", reason))
            elif action == "run" and _released(step, by_id, states, lost):
                decisions.append(Decision(step.id, "release"))
        failed, ended = upstream(step)
        own = _alone(states.get(step.id))
        above[step.id] = (own[0] or failed, own[1] and ended)
    return decisions


def _released(step: StepLike, by_id: Mapping[str, StepLike], states: Mapping[str, StepState],
              lost: frozenset[str]) -> bool:
    """Whether a step that must run now needs releasing: RQ will not start it by itself (it is held, or a step it
    waits for in RQ, a need or an ``after`` step, was skipped, canceled or lost). Never while an ``after`` step
    has not ended: it starts after those, whatever their outcome."""
    if not all(states.get(a, StepState.PENDING).terminal for a in step.after if a in by_id):
        return False
    gone = (StepState.SKIPPED, StepState.CANCELED)
    return held(step, by_id) or any(states.get(n) in gone or n in lost for n in (*step.needs, *step.after))


def _alone(state: StepState | None) -> tuple[bool, bool]:
    state = state or StepState.PENDING
    return state == StepState.FAILED, state.terminal
