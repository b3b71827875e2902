"""Turning pydantic's validation errors into located, actionable problems with hints."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import Problem
from ..services import SERVICES
from .source import Path, Source
from .spec import STEP_MODELS, Pipeline, StepBase


def suggest(word: str, choices: typing.Iterable[str]) -> str:
    """`` — did you mean 'x'?`` when a close match exists, else ''."""
    match = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" — did you mean '{match[0]}'?" if match else ""


def data_path(data: Any, loc: tuple[Any, ...]) -> Path:
    """The path into the YAML data for a pydantic ``loc`` (which also names union members)."""
    path: list[str | int] = []
    for elem in loc:
        if isinstance(data, dict) and elem in data:
            data = data[elem]
            path.append(elem)
        elif isinstance(data, list) and isinstance(elem, int) and 0 <= elem < len(data):
            data = data[elem]
            path.append(elem)
        elif elem == "[key]":
            path.append("[key]")
            break
        elif isinstance(elem, str) and (elem in SERVICES or elem.startswith(("function-", "list[", "int", "str"))):
            continue
        else:
            path.append(elem)
            break
    return tuple(path)


def _unwrap(annotation: Any) -> list[Any]:
    """Model classes reachable from an annotation through Optional, list, dict and Annotated."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, list, dict, tuple):
        return [m for arg in typing.get_args(annotation) for m in _unwrap(arg)]
    return [annotation] if isinstance(annotation, type) and issubclass(annotation, BaseModel) else []


def model_at(data: Any, path: Path) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at ``path`` (for listing its known keys)."""
    model: type[BaseModel] | None = Pipeline
    node = data
    for depth, elem in enumerate(path):
        if model is None:
            return None
        if path[:1] == ("steps",) and depth == 1:
            uses = node.get(elem, {}).get("uses") if isinstance(node, dict) and isinstance(node.get(elem), dict) else None
            model = STEP_MODELS.get(str(uses)) if uses else None
            node = node.get(elem) if isinstance(node, dict) else None
            continue
        if isinstance(elem, int):
            node = node[elem] if isinstance(node, list) and elem < len(node) else None
            continue
        field = next((f for n, f in model.model_fields.items() if elem in (n, f.alias)), None)
        if field is None:
            return None
        candidates = _unwrap(field.annotation)
        model = candidates[0] if candidates else None
        node = node.get(elem) if isinstance(node, dict) else None
    return model


def known_keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or n for n, f in model.model_fields.items()]


def problems(error: ValidationError, source: Source) -> list[Problem]:
    """One located problem per pydantic error, phrased for people who write pipeline files."""
    found: list[Problem] = []
    for err in error.errors(include_url=False):
        path = data_path(source.data, tuple(err["loc"]))
        found.append(_problem(err, path, source))
    return found


def _problem(err: Any, path: Path, source: Source) -> Problem:
    kind, value = err["type"], err.get("input")
    if kind == "union_tag_invalid":
        uses = value.get("uses") if isinstance(value, dict) else value
        return source.problem((*path, "uses"), f"unknown service '{uses}'{suggest(str(uses), SERVICES)} "
                              f"Known services: {', '.join(SERVICES)}.")
    if kind == "union_tag_not_found":
        return source.problem(path, f"step '{path[-1]}' has no 'uses:'; add the service it runs, one of: "
                              + ", ".join(SERVICES), at_key=True)
    if kind == "extra_forbidden" and len(path) == 3 and path[0] == "steps":
        hint = _not_under_with(source, path)
        if hint:
            return hint
    if kind == "extra_forbidden" and len(path) == 4 and path[0] == "steps" and path[2] == "with" \
            and path[3] in known_keys(StepBase):
        return source.problem(path, f"'{path[3]}' is a key of step '{path[1]}', not an option of its service: write "
                              "it beside 'with:' (two spaces less), not under it", at_key=True)
    if kind == "extra_forbidden":
        key, parent = path[-1], path[:-1]
        model = model_at(source.data, parent)
        choices = known_keys(model) if model else []
        noun, owner = _describe(parent, source)
        listing = f" Allowed: {', '.join(choices)}." if choices else ""
        return source.problem(path, f"unknown {noun} '{key}'{owner}{suggest(str(key), choices)}{listing}", at_key=True)
    if kind == "missing":
        noun, owner = _describe(path[:-1], source)
        return source.problem(path[:-1], f"missing required {noun} '{path[-1]}'{owner}")
    if path and path[-1] == "[key]":
        msg = err["msg"]  # lower-case its first letter only: a pattern such as [A-Za-z] must stay as it is
        return source.problem(path, f"invalid name {value!r}: {msg[:1].lower()}{msg[1:]}", at_key=True)
    if kind in ("model_type", "dict_type") and value is None and path[-1:] == ("with",):
        return source.problem(path, "'with:' is empty: indent the service's options under it (two more spaces "
                              "than 'with:')", at_key=True)
    message = err["msg"].removeprefix("Value error, ")
    return source.problem(path, f"{'.'.join(str(p) for p in path) or 'file'}: {message}")


def _not_under_with(source: Source, path: Path) -> Problem | None:
    """An option of the step's service written as a step key: it is not indented under ``with:``."""
    step = source.data["steps"].get(path[1]) if isinstance(source.data.get("steps"), dict) else None
    service = SERVICES.get(str(step.get("uses"))) if isinstance(step, dict) else None
    if service is None or path[2] not in known_keys(service.options) + _aliases(service.options):
        return None
    return source.problem(path, f"'{path[2]}' is an option of {service.name}, not a step key: indent it under "
                          "'with:' (two more spaces than 'with:')", at_key=True)


def _aliases(model: type[BaseModel]) -> list[str]:
    found = []
    for info in model.model_fields.values():
        choices = getattr(info.validation_alias, "choices", None) or []
        found += [c for c in choices if isinstance(c, str)]
    return found


def _describe(parent: Path, source: Source) -> tuple[str, str]:
    """(noun, owner) for messages: ("option", " for ifcclash"), ("key", " in step 'x'"), ..."""
    if parent[:1] == ("steps",) and len(parent) >= 3 and parent[2] == "with":
        step = source.data["steps"][parent[1]]
        return "option", f" for {step.get('uses')} in step '{parent[1]}'"
    if parent[:1] == ("steps",) and len(parent) == 2:
        return "key", f" in step '{parent[1]}'"
    if parent:
        return "key", f" in '{'.'.join(str(p) for p in parent)}'"
    return "top-level key", ""
