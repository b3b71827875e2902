"""The pure decision rules (no Redis): cascades, releases, and waiting for steps further up."""

from __future__ import annotations

from dataclasses import dataclass, field

from ifcflow.engine.policy import Decision, decide
from ifcflow.engine.states import StepState as S


@dataclass
class Step:
    id: str
    needs: list[str] = field(default_factory=list)
    condition: str = "success()"
    on_failure: str = "stop"
    after: list[str] = field(default_factory=list)


def test_failure_condition_waits_for_steps_further_up() -> None:
    # s0 still runs; s1 was skipped, so s3 (needs s0, s1) was skipped early; s10 (failure(), needs s3) must wait:
    # s0 may still fail.
    steps = [Step("s0", on_failure="continue"), Step("s1", condition="failure()"), Step("s3", ["s0", "s1"]),
             Step("s10", ["s3"], condition="failure()")]
    states = {"s0": S.RUNNING, "s1": S.SKIPPED, "s3": S.SKIPPED, "s10": S.PENDING}
    assert decide(steps, states, {}) == []
    assert decide(steps, {**states, "s0": S.FAILED}, {}) == [Decision("s10", "release")]
    assert decide(steps, {**states, "s0": S.SUCCEEDED}, {}) == [
        Decision("s10", "skip", "condition failure() is false: no upstream step failed")]


def test_skips_cascade_with_the_root_cause() -> None:
    steps = [Step("a"), Step("b", ["a"]), Step("c", ["b"]), Step("d", ["c"], condition="always()")]
    decisions = decide(steps, {"a": S.FAILED, "b": S.PENDING, "c": S.PENDING, "d": S.PENDING}, {})
    assert decisions == [Decision("b", "skip", "upstream step 'a' failed"),
                         Decision("c", "skip", "upstream step 'a' failed"), Decision("d", "release")]


def test_continue_counts_as_success_and_lost_needs_release() -> None:
    steps = [Step("a", on_failure="continue"), Step("b", ["a"]), Step("c", ["a"], condition="always()")]
    assert decide(steps, {"a": S.FAILED, "b": S.PENDING, "c": S.PENDING}, {}) == []
    assert decide(steps, {"a": S.FAILED, "b": S.PENDING, "c": S.PENDING}, {}, frozenset({"a"})) == [
        Decision("b", "release"), Decision("c", "release")]


def test_failure_step_is_released_when_a_step_further_up_was_skipped() -> None:
    # RQ holds a failure() step until every upstream step ended; a canceled (skipped) one never counts as ended
    steps = [Step("a"), Step("b", ["a"]), Step("c", ["b"], condition="always()"), Step("d", ["c"], condition="failure()")]
    states = {"a": S.FAILED, "b": S.SKIPPED, "c": S.FAILED, "d": S.PENDING}
    assert decide(steps, states, {"b": "upstream step 'a' failed"}) == [Decision("d", "release")]


def test_an_after_step_orders_without_deciding() -> None:
    """``after`` (a clash step after the glb step whose geometry pass serves it) never skips: the step waits while
    its after step runs, RQ starts it when that succeeded or failed, and it is released when that was skipped or
    canceled (RQ never enqueues the dependents of a canceled job)."""
    steps = [Step("a"), Step("glb", ["a"]), Step("clash", after=["glb"])]
    assert decide(steps, {"a": S.RUNNING, "glb": S.PENDING, "clash": S.PENDING}, {}) == []
    assert decide(steps, {"a": S.SUCCEEDED, "glb": S.RUNNING, "clash": S.PENDING}, {}) == []
    assert decide(steps, {"a": S.SUCCEEDED, "glb": S.FAILED, "clash": S.PENDING}, {}) == []  # RQ starts it
    assert decide(steps, {"a": S.FAILED, "glb": S.PENDING, "clash": S.PENDING}, {}) == [
        Decision("glb", "skip", "upstream step 'a' failed"), Decision("clash", "release")]
    assert decide(steps, {"a": S.SUCCEEDED, "glb": S.CANCELED, "clash": S.PENDING}, {}) == [
        Decision("clash", "release")]
    # a step with a skipped need and an after step still running waits (released once that one ended)
    steps = [Step("x"), Step("glb"), Step("clash", ["x"], condition="always()", after=["glb"])]
    assert decide(steps, {"x": S.SKIPPED, "glb": S.RUNNING, "clash": S.PENDING}, {}) == []
    assert decide(steps, {"x": S.SKIPPED, "glb": S.SUCCEEDED, "clash": S.PENDING}, {}) == [
        Decision("clash", "release")]
