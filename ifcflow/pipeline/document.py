"""A pipeline file, loaded and checked: syntax, types, references, cycles and input files.

Every problem in the file is collected and raised together as one :class:`PipelineError`.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import PipelineError, Problem
from ..services import SERVICES
from . import expressions, graph, limits, source
from .spec import STEP_ID_PATTERN, STEP_MODELS, Pipeline
from .stepcheck import StepChecker
from .validation import problems as validation_problems
from .validation import suggest


@dataclass
class Document:
    """A valid pipeline with its file, folder and resolved inputs (absolute paths)."""

    path: Path
    source: source.Source
    pipeline: Pipeline
    inputs: dict[str, str] = field(default_factory=dict)
    edges: dict[str, list[str]] = field(default_factory=dict)
    """step -> every step it depends on (``needs`` plus output references), in file order."""

    @property
    def base(self) -> Path:
        return self.path.parent


def load(path: str | Path, overrides: dict[str, str] | None = None, *, check_files: bool = True) -> Document:
    """Load and check a pipeline file. Raises :class:`PipelineError` listing every problem found."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PipelineError([Problem(str(path), 1, 1, f"cannot read pipeline file: {exc.strerror}")]) from None
    return parse(raw, path, overrides, check_files=check_files)


def parse(text: str | bytes, path: Path, overrides: dict[str, str] | None = None, *,
          check_files: bool = True) -> Document:
    return from_source(source.load(text, str(path)), path, overrides, check_files=check_files)


def from_source(src: source.Source, path: Path, overrides: dict[str, str] | None = None, *,
                check_files: bool = True) -> Document:
    """Check a parsed document; ``src`` may also be built from data (the HTTP API's one-step requests)."""
    if not isinstance(src.data, dict):
        raise PipelineError([src.problem((), "a pipeline file must be a mapping with 'version', 'name' and 'steps'")])
    _check_size(src)
    src.problems += [src.problem(where, f"{written} is not an expression (single braces) — did you mean "
                                 f"\"{meant}\"? Quote the value.")
                     for where, written, meant in expressions.single_braces(src.data)]
    try:
        pipeline = Pipeline.model_validate(src.data)
    except ValidationError as exc:  # one pass: the checks across steps and the files of valid steps run too
        found = src.problems + validation_problems(exc, src)
        found += _check_across(src, _Shape.raw(src.data), _raw_for_each(src.data))[0]
        if check_files:
            found += _check_valid_steps(src, path.resolve(), overrides or {})
        raise PipelineError(found) from None
    doc = Document(path.resolve(), src, pipeline)
    found = src.problems + _resolve_inputs(doc, overrides or {})
    across, doc.edges = _check_across(src, _Shape.of(pipeline), pipeline.for_each)
    found += across
    if check_files:  # for_each inputs are globs, expanded (and their files checked) when a batch is planned
        found += check_inputs(doc, overrides)
    if found:
        raise PipelineError(found)
    return doc


def check_inputs(doc: Document, overrides: dict[str, str] | None = None,
                 skip: frozenset[str] | None = None) -> list[Problem]:
    """File and selector problems of the steps (the checks of ``check_files``), for a document loaded without
    them whose paths were vetted first (the HTTP API); [] when all is fine. Inputs in ``skip`` (default: the
    ``for_each`` ones, whose values are globs) are not checked."""
    skip = frozenset(doc.pipeline.for_each) if skip is None else skip
    inputs = {name: value for name, value in doc.inputs.items() if name not in skip}
    checker = StepChecker(doc.source, doc.base, inputs, overrides or {})
    for step_id, step in doc.pipeline.steps.items():
        checker.check_step(step_id, step.with_)
    return checker.found


def rebind(doc: Document, overrides: dict[str, str]) -> Document:
    """``doc`` with some inputs replaced (paths, resolved from the current folder) and the files checked again:
    a batch plans one sub-run per file this way without parsing the pipeline file again."""
    bound = copy.copy(doc)
    bound.inputs = dict(doc.inputs)
    bound.inputs.update({name: str(Path(value).resolve()) for name, value in overrides.items()})
    found = check_inputs(bound, overrides, skip=frozenset())
    if found:
        raise PipelineError(found)
    return bound


def _check_size(src: source.Source) -> None:
    """Refuse a pipeline with more steps than the cap before anything else is checked (the checks, the plan and
    the run's records all grow with the steps)."""
    steps = src.data.get("steps")
    cap = limits.max_steps()
    if isinstance(steps, dict) and len(steps) > cap:
        raise PipelineError([src.problem(("steps",), f"the pipeline has {len(steps):,} steps; at most {cap:,} are "
                                         f"allowed ({limits.MAX_STEPS_ENV}). Split it into smaller pipelines, or "
                                         f"raise {limits.MAX_STEPS_ENV} where it runs (for HTTP submissions: on "
                                         "the server)", at_key=True)])


def _check_valid_steps(src: source.Source, path: Path, overrides: dict[str, str]) -> list[Problem]:
    """File and selector problems of the steps that validate on their own, in a file that does not."""
    raw_inputs = src.data.get("inputs")
    inputs = {k: str(v) for k, v in raw_inputs.items()} if isinstance(raw_inputs, dict) else {}
    resolved = {name: (str(Path(overrides[name]).resolve()) if name in overrides else str(path.parent / value))
                for name, value in {**inputs, **{k: v for k, v in overrides.items() if k in inputs}}.items()}
    checker = StepChecker(src, path.parent, resolved, {k: v for k, v in overrides.items() if k in inputs})
    steps = src.data.get("steps")
    for step_id, raw in (steps.items() if isinstance(steps, dict) else []):
        model = STEP_MODELS.get(str(raw.get("uses"))) if isinstance(raw, dict) else None
        if model is None:
            continue
        try:
            step = model.model_validate(raw)
        except ValidationError:
            continue
        checker.check_step(str(step_id), step.with_)  # type: ignore[attr-defined]
    return checker.found


def _resolve_inputs(doc: Document, overrides: dict[str, str]) -> list[Problem]:
    found = []
    declared = doc.pipeline.inputs
    for name in overrides:
        if name not in declared:
            found.append(Problem(f"-i {name}={overrides[name]}", 0, 0, f"input '{name}' is not declared in "
                                 f"{doc.path.name}'s 'inputs:'{suggest(name, declared)} Declared: "
                                 f"{', '.join(declared) or 'none'}."))
    for name, default in declared.items():
        value = overrides.get(name, default)
        doc.inputs[name] = value if not value else str((doc.base / value) if name not in overrides else Path(value).resolve())
    return found


@dataclass
class _Shape:
    """What the checks across steps need: the declared inputs (None when unreadable) and each step's service and
    needs, from a valid pipeline or, best-effort, from the raw data of a file that does not validate."""

    inputs: dict[str, str] | None
    steps: dict[str, tuple[str | None, list[tuple[int, str]]]]

    @classmethod
    def of(cls, pipeline: Pipeline) -> _Shape:
        return cls(pipeline.inputs, {sid: (s.uses, list(enumerate(s.needs))) for sid, s in pipeline.steps.items()})

    @classmethod
    def raw(cls, data: dict[str, Any]) -> _Shape:
        inputs = data.get("inputs", {})
        steps: dict[str, tuple[str | None, list[tuple[int, str]]]] = {}
        for sid, raw in (data["steps"].items() if isinstance(data.get("steps"), dict) else []):
            step = raw if isinstance(raw, dict) else {}
            needs = step.get("needs") or []
            needs = [needs] if isinstance(needs, str) else needs if isinstance(needs, list) else []
            steps[str(sid)] = (str(step.get("uses")) if "uses" in step else None,
                               [(i, n) for i, n in enumerate(needs) if isinstance(n, str) and re.match(STEP_ID_PATTERN, n)])
        return cls({str(k): str(v) for k, v in inputs.items()} if isinstance(inputs, dict) else None, steps)


def _check_across(src: source.Source, shape: _Shape, for_each: list[str]) -> tuple[list[Problem], dict[str, list[str]]]:
    """Problems across steps (needs, references, cycles, for_each names), and each step's dependencies."""
    found, edges = _check_graph(src, shape)
    if shape.inputs is not None:
        found += [src.problem(("for_each",), f"for_each names '{name}', which is not declared in 'inputs:'"
                              f"{suggest(name, shape.inputs)} Declare it with a glob as its value, e.g. models/*.ifc.")
                  for name in for_each if name not in shape.inputs]
    return found, edges


def _raw_for_each(data: dict[str, Any]) -> list[str]:
    value = data.get("for_each") or []
    return [value] if isinstance(value, str) else [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _check_graph(src: source.Source, shape: _Shape) -> tuple[list[Problem], dict[str, list[str]]]:
    found: list[Problem] = []
    edges: dict[str, list[str]] = {}
    steps = shape.steps
    for step_id, (_uses, needs) in steps.items():
        deps: dict[str, None] = {}  # ordered and O(1) to look up: a step may need thousands
        for index, need in needs:
            where = ("steps", step_id, "needs", index)
            if need == step_id:
                found.append(src.problem(where, f"step '{step_id}' cannot need itself"))
            elif need not in steps:
                found.append(src.problem(where, f"step '{step_id}' needs unknown step '{need}'{suggest(need, steps)}"))
            else:
                deps.setdefault(need)
        raw_step = src.data["steps"][step_id]
        raw_with = (raw_step.get("with") if isinstance(raw_step, dict) else None) or {}
        for sub, body in expressions.references(raw_with, ("steps", step_id, "with")):
            problem, dep = _check_reference(src, shape, step_id, sub, body)
            if problem:
                found.append(problem)
            elif dep:
                deps.setdefault(dep)
        edges[step_id] = list(deps)
    for loop in graph.cycles(edges):
        found.append(src.problem(("steps", loop[0]), "dependency cycle: " + " -> ".join(loop)
                                 + "; remove one of these needs or references", at_key=True))
    return found, edges


def _check_reference(src: source.Source, shape: _Shape, step_id: str, where: tuple[str | int, ...],
                     body: str) -> tuple[Problem | None, str | None]:
    try:
        ref = expressions.parse(body)
    except expressions.ExpressionError as exc:
        return src.problem(where, str(exc)), None
    if ref.step is None:
        if shape.inputs is not None and ref.name not in shape.inputs:
            return src.problem(where, f"unknown input '{ref.name}'{suggest(ref.name, shape.inputs)} "
                               f"Declare it under 'inputs:'."), None
        return None, None
    steps = shape.steps
    if ref.step == step_id:
        return src.problem(where, f"step '{step_id}' cannot use its own output '{ref.name}'"), None
    if ref.step not in steps:
        return src.problem(where, f"reference to unknown step '{ref.step}'{suggest(ref.step, steps)}"), None
    service = SERVICES.get(str(steps[ref.step][0]))
    if service is None:  # an unknown service, reported on its own: its outputs cannot be checked
        return None, ref.step
    outputs = service.options.OUTPUTS
    if ref.name not in outputs:
        return src.problem(where, f"step '{ref.step}' ({service.name}) has no output '{ref.name}'"
                           f"{suggest(ref.name, outputs)} Outputs: {', '.join(outputs)}."), None
    return None, ref.step
