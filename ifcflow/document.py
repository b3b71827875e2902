"""A pipeline file, loaded and checked: syntax, types, references, cycles and input files.

Every problem in the file is collected and raised together as one :class:`PipelineError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from . import expressions, graph, source
from .checks import check_file
from .errors import PipelineError, Problem
from .services import SERVICES
from .services.base import InputFile, file_options
from .spec import Pipeline
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
    try:
        pipeline = Pipeline.model_validate(src.data)
    except ValidationError as exc:
        raise PipelineError(src.problems + validation_problems(exc, src)) from None
    doc = Document(path.resolve(), src, pipeline)
    found = src.problems + _resolve_inputs(doc, overrides or {})
    found += _check_graph(doc)
    if check_files and not found:
        found += check_inputs(doc)
    if found:
        raise PipelineError(found)
    return doc


def _resolve_inputs(doc: Document, overrides: dict[str, str]) -> list[Problem]:
    found = []
    declared = doc.pipeline.inputs
    for name in overrides:
        if name not in declared:
            found.append(doc.source.problem(("inputs",), f"input '{name}' given on the command line is not declared "
                                            f"in 'inputs:'{suggest(name, declared)} Declared: {', '.join(declared) or 'none'}."))
    for name, default in declared.items():
        value = overrides.get(name, default)
        doc.inputs[name] = value if not value else str((doc.base / value) if name not in overrides else Path(value).resolve())
    return found


def _check_graph(doc: Document) -> list[Problem]:
    found: list[Problem] = []
    steps = doc.pipeline.steps
    for step_id, step in steps.items():
        deps: list[str] = []
        for index, need in enumerate(step.needs):
            where = ("steps", step_id, "needs", index)
            if need == step_id:
                found.append(doc.source.problem(where, f"step '{step_id}' cannot need itself"))
            elif need not in steps:
                found.append(doc.source.problem(where, f"step '{step_id}' needs unknown step '{need}'"
                                                f"{suggest(need, steps)}"))
            elif need not in deps:
                deps.append(need)
        raw_with = doc.source.data["steps"][step_id].get("with") or {}
        for sub, body in expressions.references(raw_with, ("steps", step_id, "with")):
            problem, dep = _check_reference(doc, step_id, sub, body)
            if problem:
                found.append(problem)
            elif dep and dep not in deps:
                deps.append(dep)
        doc.edges[step_id] = deps
    for loop in graph.cycles(doc.edges):
        first = loop[0]
        found.append(doc.source.problem(("steps", first), "dependency cycle: " + " -> ".join(loop)
                                        + "; remove one of these needs or references", at_key=True))
    return found


def _check_reference(doc: Document, step_id: str, where: tuple[str | int, ...], body: str) -> tuple[Problem | None, str | None]:
    try:
        ref = expressions.parse(body)
    except expressions.ExpressionError as exc:
        return doc.source.problem(where, str(exc)), None
    if ref.step is None:
        if ref.name not in doc.pipeline.inputs:
            return doc.source.problem(where, f"unknown input '{ref.name}'{suggest(ref.name, doc.pipeline.inputs)} "
                                      f"Declare it under 'inputs:'."), None
        return None, None
    steps = doc.pipeline.steps
    if ref.step == step_id:
        return doc.source.problem(where, f"step '{step_id}' cannot use its own output '{ref.name}'"), None
    if ref.step not in steps:
        return doc.source.problem(where, f"reference to unknown step '{ref.step}'{suggest(ref.step, steps)}"), None
    service = SERVICES[steps[ref.step].uses]
    outputs = service.options.OUTPUTS
    if ref.name not in outputs:
        return doc.source.problem(where, f"step '{ref.step}' ({service.name}) has no output '{ref.name}'"
                                  f"{suggest(ref.name, outputs)} Outputs: {', '.join(outputs)}."), None
    return None, ref.step


def check_inputs(doc: Document) -> list[Problem]:
    """Problems with the input files a document names (exist, type, header), for a document loaded with
    ``check_files=False`` whose paths were vetted first (the HTTP API); [] when all are fine."""
    found = []
    for step_id, step in doc.pipeline.steps.items():
        for sub, marker, value in file_options(step.with_):
            if not isinstance(marker, InputFile) or "steps." in value:
                continue
            where = ("steps", step_id, "with", *sub)
            try:
                resolved = expressions.substitute(value, lambda ref: doc.inputs[ref.name])
            except (KeyError, expressions.ExpressionError):
                continue
            problem = check_file(doc.base / resolved, marker.kind, marker.suffixes)
            if problem:
                found.append(doc.source.problem(where, problem))
    return found
