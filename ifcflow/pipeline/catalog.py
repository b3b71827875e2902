"""The services and their options as people read them (``ifcflow services``), generated from the option models
as the JSON Schema is: name, other accepted names, type, default and meaning."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import AliasChoices, BaseModel

from ..services import SERVICES, Service


def type_name(annotation: Any) -> str:
    """``list of ClashSet``, ``json|html|bcf|txt``, ``text``, ``number`` ... for an option's annotation."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is typing.Literal:
        return "|".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        named = [type_name(a) for a in args if a is not type(None)]
        return " or ".join(named)
    if origin is list:
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation.__name__
    return {str: "text", int: "integer", float: "number", bool: "true|false"}.get(annotation, str(annotation))


def options(model: type[BaseModel]) -> list[dict[str, str]]:
    """One row per option: name, aliases, type, default, description."""
    rows = []
    for name, info in model.model_fields.items():
        aliases = [a for a in (info.validation_alias.choices if isinstance(info.validation_alias, AliasChoices)
                               else []) if isinstance(a, str) and a != name]
        if info.is_required():
            default = "(required)"
        elif info.default_factory is not None:
            default = repr(info.default_factory())  # type: ignore[call-arg]
        elif isinstance(info.default, bool):
            default = str(info.default).lower()
        else:
            default = "-" if info.default is None else repr(info.default)
        rows.append({"name": name, "aliases": ", ".join(aliases), "type": type_name(info.annotation),
                     "default": default, "description": info.description or ""})
    return rows


def nested(model: type[BaseModel]) -> list[type[BaseModel]]:
    """Models used inside ``model``'s options (e.g. ClashSet, ClashSource), in order of appearance."""
    found: list[type[BaseModel]] = []

    def walk(annotation: Any) -> None:
        for arg in typing.get_args(annotation):
            walk(arg)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel) and annotation not in found:
            found.append(annotation)
            for info in annotation.model_fields.values():
                walk(info.annotation)

    for info in model.model_fields.values():
        walk(info.annotation)
    return found


def describe(service: Service) -> str:
    """The text of ``ifcflow services NAME``."""
    outputs = ", ".join(service.options.OUTPUTS)
    lines = [f"{service.name}: {service.summary}", f"  queue {service.queue}; outputs: {outputs}; default timeout "
             f"{service.timeout // 60} min", "", "  options (under with:):"]
    lines += _rows(options(service.options))
    for model in nested(service.options):
        lines += ["", f"  {model.__name__}: {' '.join((model.__doc__ or '').strip().split(chr(10) * 2)[0].split())}"]
        lines += _rows(options(model))
    return "\n".join(lines)


def _rows(rows: list[dict[str, str]]) -> list[str]:
    out = []
    for row in rows:
        also = f" (also: {row['aliases']})" if row["aliases"] else ""
        out.append(f"    {row['name']}{also}: {row['type']}, default {row['default']}")
        if row["description"]:
            out.append(f"        {row['description']}")
    return out


def listing() -> str:
    """The text of ``ifcflow services``: one line per service."""
    width = max(len(name) for name in SERVICES)
    lines = [f"{name:<{width}}  queue {s.queue:<10}  {s.summary}" for name, s in SERVICES.items()]
    return "\n".join([*lines, "", "options of one service: ifcflow services NAME"])
