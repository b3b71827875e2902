"""Checks of what the steps' options point at, before anything is enqueued: input files (existence, IFC header,
IDS validity) and selectors (syntax, entity and attribute names in the input model's schema).

Problems are located at the key the user wrote (whichever alias), and problems of a ``-i NAME=PATH`` value at
that flag, once, instead of at every line that uses the input.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, BaseModel

from ..errors import Problem
from ..services.base import EntityType, InputFile, Selector, file_options
from . import expressions, modelcheck
from .checks import check_file, header_schema
from .source import Source

Locate = Callable[[tuple[str | int, ...], str], Problem]


def raw_path(model: BaseModel, raw: Any, sub: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """The path of option ``sub`` (field names) as written in the YAML (the alias the user chose)."""
    found: list[str | int] = []
    node: Any = model
    for elem in sub:
        if isinstance(elem, int) or not isinstance(node, BaseModel):
            found.append(elem)
            node = node[elem] if isinstance(node, list) and isinstance(elem, int) else None
            raw = raw[elem] if isinstance(raw, list) and isinstance(elem, int) and elem < len(raw) else None
            continue
        info = type(node).model_fields.get(elem)
        names = [elem]
        if info is not None and isinstance(info.validation_alias, AliasChoices):
            names += [c for c in info.validation_alias.choices if isinstance(c, str)]
        if info is not None and info.alias:
            names.append(info.alias)
        key = next((n for n in names if isinstance(raw, dict) and n in raw), elem)
        found.append(key)
        raw = raw.get(key) if isinstance(raw, dict) else None
        node = getattr(node, elem, None)
    return tuple(found)


class StepChecker:
    """Checks the steps of one pipeline; ``inputs`` are resolved paths, ``overrides`` the ``-i`` values."""

    def __init__(self, src: Source, base: Path, inputs: dict[str, str], overrides: dict[str, str]):
        self.src = src
        self.base = base
        self.inputs = inputs
        self.overrides = overrides
        self.flagged: set[str] = set()
        self.found: list[Problem] = []
        self.selector_chars = 0

    def resolve(self, value: str) -> tuple[Path | None, str | None]:
        """(path, name of the -i input it comes from) for a value that names a file; (None, None) when it comes
        from another step or cannot be resolved here."""
        if "steps." in value:
            return None, None
        try:
            resolved = expressions.substitute(value, lambda ref: self.inputs[ref.name])
        except (KeyError, expressions.ExpressionError):
            return None, None
        if "${" in resolved:  # ${inputs.x} with single braces: reported as such
            return None, None
        refs = expressions.references({"v": value}, ())
        flag = next((expressions.parse(body).name for _, body in refs
                     if expressions.parse(body).name in self.overrides), None) if refs else None
        return self.base / resolved, flag

    def check_step(self, step_id: str, options: BaseModel) -> None:
        raw_with = (self.src.data.get("steps") or {}).get(step_id, {}).get("with") or {}
        markers = file_options(options)
        by_path = {sub: value for sub, _, value in markers}
        lists: dict[tuple[str | int, ...], tuple[EntityType, list[str]]] = {}  # entity type lists, checked whole
        for sub, marker, value in markers:
            where = ("steps", step_id, "with", *raw_path(options, raw_with, sub))
            if isinstance(marker, InputFile):
                self._file(where, value, marker)
            elif isinstance(marker, EntityType):
                lists.setdefault(sub[:-1], (marker, []))[1].append(value)
            elif isinstance(marker, Selector):
                model = by_path.get((*sub[:-1], marker.model))
                attributes: list[str] = []
                attr_where = where
                if marker.attributes:
                    attributes = list(getattr(_parent(options, sub), marker.attributes))
                    attr_where = ("steps", step_id, "with",
                                  *raw_path(options, raw_with, (*sub[:-1], marker.attributes)))
                self._selector(where, value, model, attributes, attr_where)
        for sub, (entity, names) in lists.items():
            where = ("steps", step_id, "with", *raw_path(options, raw_with, sub))
            self._entity_types(where, names, by_path.get((*sub[:-1], entity.model)))

    def _file(self, where: tuple[str | int, ...], value: str, marker: InputFile) -> None:
        path, flag = self.resolve(value)
        if path is None:
            return
        problem = check_file(path, marker.kind, marker.suffixes)
        if problem and flag:
            if flag not in self.flagged:
                self.flagged.add(flag)
                self.found.append(Problem(f"-i {flag}={self.overrides[flag]}", 0, 0, problem))
        elif problem:
            self.found.append(self.src.problem(where, problem))

    def _entity_types(self, where: tuple[str | int, ...], names: list[str], model: str | None) -> None:
        path, _ = self.resolve(model) if model else (None, None)
        schema = header_schema(path) if path is not None and path.is_file() else None
        if schema is None:
            return
        plain = [name for name in names if "${{" not in name]
        indexes = [index for index, name in enumerate(names) if "${{" not in name]
        for index, problem in modelcheck.entity_type_problems(plain, schema):
            self.found.append(self.src.problem((*where, indexes[index]), problem))

    def _selector(self, where: tuple[str | int, ...], query: str, model: str | None, attributes: list[str],
                  attr_where: tuple[str | int, ...]) -> None:
        if "${{" in query:
            return
        if len(query) > modelcheck.MAX_QUERY:
            self.found.append(self.src.problem(where, (
                f"query is {len(query):,} characters; a selector may have at most {modelcheck.MAX_QUERY:,}: select "
                "by entity type or property instead of listing elements, or split the step")))
            return
        self.selector_chars += len(query)
        if self.selector_chars > modelcheck.MAX_QUERIES:
            if self.selector_chars - len(query) <= modelcheck.MAX_QUERIES:  # (said once)
                self.found.append(self.src.problem(where, (
                    f"the pipeline's selectors total more than {modelcheck.MAX_QUERIES:,} characters; this one and "
                    "those after it are not checked: shorten them or split the pipeline")))
            return
        syntax = modelcheck.selector_syntax(query)
        if syntax:
            self.found.append(self.src.problem(where, f"query {syntax}"))
            return
        path, _ = self.resolve(model) if model else (None, None)
        schema = header_schema(path) if path is not None and path.is_file() else None
        if schema is None:
            return
        self.found.extend(self.src.problem(where, problem) for problem in modelcheck.entity_problems(query, schema))
        for index, problem in modelcheck.attribute_problems(attributes, query, schema):
            self.found.append(self.src.problem((*attr_where, index), problem))


def _parent(options: BaseModel, sub: tuple[str | int, ...]) -> Any:
    node: Any = options
    for elem in sub[:-1]:
        node = node[elem] if isinstance(elem, int) else getattr(node, elem)
    return node
