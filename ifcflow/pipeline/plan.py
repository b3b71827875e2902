"""The planner: a checked pipeline document becomes a DAG of concrete steps. Pure: no Redis, no IFC parsing.

Every reference is resolved here, including output paths under the run folder, because RQ cannot pass results
from one job to the next.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import PipelineError
from ..services import SERVICES
from ..services.base import JOB_FUNC, InputFile, OutputFile, file_options
from . import expressions, graph, sharing
from .document import Document


class PlannedStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    name: str | None = None
    service: str
    queue: str
    func: str
    job_id: str
    needs: list[str] = Field(description="every step this one depends on: needs plus output references")
    after: list[str] = Field(default_factory=list, description=(
        "steps this one starts after, whatever their outcome (ordering only, not a need: set by the planner so "
        "a clash step served by a glb step's shared geometry pass never holds a worker while that pass runs)"))
    timeout: int
    attempts: int = 1
    backoff: list[int] = Field(default_factory=list)
    on_failure: str = "stop"
    condition: str = "success()"
    cache: bool = Field(default=True, description="may be served from the cache of identical earlier steps")
    workdir: str
    options: dict[str, Any]
    outputs: dict[str, str]

    def wire(self) -> dict[str, Any]:
        """The step as stored in its RQ job; ``after`` only when set, so that workers of the release before it
        (``extra="forbid"``) still run the steps of plans that have none."""
        return self.model_dump(exclude=None if self.after else {"after"})


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str
    pipeline: str
    file: str
    created_at: str
    out_dir: str
    inputs: dict[str, str]
    steps: list[PlannedStep]

    def step(self, step_id: str) -> PlannedStep:
        return next(s for s in self.steps if s.id == step_id)

    def wire_json(self) -> str:
        """The plan as stored with its run: each step's ``after`` only when set (see :meth:`PlannedStep.wire`)."""
        bare = {index: {"after"} for index, step in enumerate(self.steps) if not step.after}
        return self.model_dump_json(exclude={"steps": bare} if bare else None)

    @property
    def edges(self) -> dict[str, list[str]]:
        return {s.id: s.needs for s in self.steps}


def new_run_id(pipeline: str, now: datetime | None = None) -> str:
    """``<pipeline>-<UTC yyyymmdd-HHMMSS>-<12 hex>``: sortable, a valid RQ job id prefix, and 48 random bits per
    second (100 runs of one pipeline in one second collide with odds of about 2 in 10^11; a collision is refused
    at submit, never overwritten)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"{pipeline}-{stamp}-{secrets.token_hex(6)}"


def job_id(run_id: str, step_id: str) -> str:
    return f"{run_id}-{step_id}"


def plan(doc: Document, run_id: str | None = None, out_root: str | Path = "ifcflow-runs",
         now: datetime | None = None, cache: bool = True, share_geometry: bool | None = None) -> Plan:
    """Expand ``doc`` into a :class:`Plan` for run ``run_id``; outputs go to ``out_root/run_id/step/``.
    ``cache=False`` (``--no-cache``) runs every step even when an identical one ran before. ``share_geometry``
    (default: unless ``IFCFLOW_SHARE_GEOMETRY=0``) orders each clash step after the glb step whose geometry pass
    serves it (:func:`order_shared_passes`)."""
    pipeline = doc.pipeline
    now = now or datetime.now(UTC)
    run_id = run_id or new_run_id(pipeline.name, now)
    run_dir = (Path(out_root) / run_id).resolve()
    planned: dict[str, PlannedStep] = {}
    for step_id in graph.topological(doc.edges):
        planned[step_id] = _plan_step(doc, step_id, run_id, run_dir, planned)
        if not cache:
            planned[step_id].cache = False
    steps = list(planned.values())
    if sharing.enabled() if share_geometry is None else share_geometry:
        steps = order_shared_passes(steps)
    return Plan(run_id=run_id, pipeline=pipeline.name, file=str(doc.path), created_at=now.isoformat(),
                out_dir=str(run_dir), inputs=dict(doc.inputs), steps=steps)


def order_shared_passes(steps: list[PlannedStep]) -> list[PlannedStep]:
    """Each clash step served by a glb step's geometry pass (:func:`ifcflow.pipeline.sharing.groups`) starts after
    that glb step (``after``, set on the steps given), unless the glb step is already upstream of it, or could be
    held back by what the clash step does not wait for anyway (a step above the glb step that is not above the
    clash step, or a glb condition other than ``success()``), or is downstream of it (a cycle); the clash step then
    makes the pass itself when it starts first. Returns the steps in an order that respects ``needs`` and
    ``after`` (ties keep the order given).

    Why: the glb step makes the pass and the clash query runs in its work horse right after it, so a clash step
    started beside it would only wait for the pass, holding a worker that other steps (quantities, csv) could use."""
    by_id = {s.id: s for s in steps}
    for group in sharing.groups(steps):
        convert = group.convert[0]
        above = _upstream(convert, by_id)
        for clash in group.clashes:
            if by_id[convert].condition != "success()" or clash in above:
                continue
            theirs = _upstream(clash, by_id)
            if convert not in theirs and above <= theirs:
                by_id[clash].after.append(convert)
    if not any(s.after for s in steps):
        return steps
    order = graph.topological({s.id: [*s.needs, *s.after] for s in steps})
    return [by_id[step_id] for step_id in order]


def _upstream(step_id: str, by_id: dict[str, PlannedStep]) -> set[str]:
    """Every step ``step_id`` waits for, transitively (needs and ``after``)."""
    seen: set[str] = set()
    todo = [*by_id[step_id].needs, *by_id[step_id].after]
    while todo:
        current = todo.pop()
        if current in seen or current not in by_id:
            continue
        seen.add(current)
        todo.extend([*by_id[current].needs, *by_id[current].after])
    return seen


def _plan_step(doc: Document, step_id: str, run_id: str, run_dir: Path, done: dict[str, PlannedStep]) -> PlannedStep:
    step = doc.pipeline.steps[step_id]
    defaults = doc.pipeline.defaults
    service = SERVICES[step.uses]
    workdir = run_dir / step_id

    def resolve(ref: expressions.Reference) -> str:
        if ref.step is None:
            return doc.inputs[ref.name]
        if ref.name not in done[ref.step].outputs:
            raise PipelineError([doc.source.problem(("steps", step_id, "with"), (
                f"step '{ref.step}' does not write its '{ref.name}' output with the options it has; "
                f"set '{ref.name}:' in its 'with:' block or refer to another output"))])
        return done[ref.step].outputs[ref.name]

    raw = expressions.substitute(doc.source.data["steps"][step_id].get("with") or {}, resolve)
    options = service.options.model_validate(raw)
    data = options.model_dump(mode="json")
    for sub, marker, value in file_options(options):
        if isinstance(marker, InputFile):
            _set(data, sub, str((doc.base / value).resolve()))
        elif isinstance(marker, OutputFile):
            if PurePath(value).is_absolute() or ".." in PurePath(value).parts:
                raise PipelineError([doc.source.problem(("steps", step_id, "with", *sub), (
                    f"output {value!r} must be a file name (or sub/folder/name) inside the step's run folder; "
                    "choose where runs go with --out"))])
            _set(data, sub, str((workdir / value).resolve()))
    resolved = service.options.model_validate(data)
    outputs = {name: str((workdir / path).resolve()) for name, path in resolved.outputs().items()}
    retry = step.retry or defaults.retry
    backoff = [] if retry is None else (retry.backoff if isinstance(retry.backoff, list) else [retry.backoff])
    return PlannedStep(
        id=step_id, name=step.name, service=service.name, queue=service.queue, func=JOB_FUNC,
        job_id=job_id(run_id, step_id), needs=list(doc.edges[step_id]),
        timeout=step.timeout or defaults.timeout or service.timeout,
        attempts=retry.attempts if retry else 1, backoff=backoff,
        on_failure=step.on_failure or defaults.on_failure or "stop", condition=step.if_ or "success()",
        cache=step.cache if step.cache is not None else defaults.cache is not False,
        workdir=str(workdir), options=resolved.model_dump(mode="json"), outputs=outputs,
    )


def _set(data: Any, path: tuple[str | int, ...], value: str) -> None:
    for key in path[:-1]:
        data = data[key]
    data[path[-1]] = value
