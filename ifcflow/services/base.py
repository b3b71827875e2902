"""What every service shares: the options base class, file markers and the service descriptor.

A service's options model lives in ``ifcflow.services.<name>`` and is importable without ifcopenshell; the
code that runs it lives in ``workers.<name>`` and is imported by workers only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, ClassVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field


@dataclass(frozen=True)
class InputFile:
    """Marks an option as a path to an input file that must exist (unless it comes from another step)."""

    suffixes: tuple[str, ...]
    """Accepted file name endings (lower case, with the dot), or () for any."""
    kind: str = "file"
    """What the file is, for messages and cheap checks: ``ifc``, ``ids`` or ``file``."""


@dataclass(frozen=True)
class OutputFile:
    """Marks an option as the file name of an output; relative names go under the step's run folder."""

    output: str


@dataclass(frozen=True)
class Selector:
    """Marks an option as an ifcopenshell selector over the model named by the sibling option ``model``; its
    entity names (and those of the sibling option ``attributes``, if any) are checked before enqueueing."""

    model: str = "ifc"
    attributes: str | None = None


@dataclass(frozen=True)
class EntityType:
    """Marks an option as a list of IFC entity type names of the model named by the sibling option ``model``;
    each must be an entity of that model's schema (checked before enqueueing)."""

    model: str = "input"


class Options(BaseModel):
    """Base of every service's ``with:`` block. Unknown options are errors."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_default=True)

    OUTPUTS: ClassVar[tuple[str, ...]] = ()
    """Names of the outputs the service produces, referable as ``${{ steps.ID.outputs.NAME }}``."""

    def outputs(self) -> dict[str, str]:
        """Output name -> file path (relative paths are placed in the step's run folder)."""
        raise NotImplementedError


def option(default: Any = ..., *aliases: str, description: str = "", marker: Any = None, **kw: Any) -> Any:
    """A pydantic field that also accepts the original system's request field names as aliases."""
    extra: dict[str, Any] = {}
    if aliases:
        kw["validation_alias"] = AliasChoices(*aliases)
    if marker is not None:
        extra["json_schema_extra"] = {"x-ifcflow": type(marker).__name__}
    field = Field(default, description=description, **kw, **extra)
    if marker is not None:
        field.metadata.append(marker)
    return field


def stem(path: str) -> str:
    """File name without folder and extension (``a/b/model.ifc`` -> ``model``), for default output names."""
    name = PurePath(path).name if path else "output"
    return name.split(".")[0] if name and not name.startswith("${{") else "output"


JOB_FUNC = "workers.dispatch.run"
"""What RQ calls for every step; it imports the service's own module (``Service.func``) when the step runs."""


@dataclass(frozen=True)
class Service:
    """A pipeline step type: its options, the worker function that runs it and the RQ queue it goes to."""

    name: str
    options: type[Options]
    func: str
    queue: str
    timeout: int = 3600
    summary: str = ""
    plugs: tuple[str, ...] = ()
    """Worker modules imported after ``func``'s own when they can be: they plug into it (``workers.geometry``
    gives the glb and clash steps their shared geometry pass), so ``func``'s module never imports them back. One
    that cannot be imported (a missing dependency of another service) only means the steps run without it."""

    def file_fields(self) -> dict[str, InputFile | OutputFile]:
        """Option name -> its file marker, for options that name files."""
        found: dict[str, InputFile | OutputFile] = {}
        for name, info in self.options.model_fields.items():
            for meta in info.metadata:
                if isinstance(meta, (InputFile, OutputFile)):
                    found[name] = meta
        return found


def file_options(model: BaseModel, path: tuple[str | int, ...] = ()) -> list[tuple[tuple[str | int, ...], Any, str]]:
    """Every option naming a file (or holding a selector or entity type names) in ``model`` and its nested models:
    (path, marker, value); a list of entity type names gives one entry per name."""
    found: list[tuple[tuple[str | int, ...], Any, str]] = []
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        key = name
        marker = next((m for m in info.metadata if isinstance(m, (InputFile, OutputFile, Selector, EntityType))),
                      None)
        if marker is not None and isinstance(value, str):
            found.append(((*path, key), marker, value))
        elif isinstance(marker, EntityType) and isinstance(value, list):
            found.extend(((*path, key, index), marker, item) for index, item in enumerate(value)
                         if isinstance(item, str))
        elif isinstance(value, BaseModel):
            found.extend(file_options(value, (*path, key)))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, BaseModel):
                    found.extend(file_options(item, (*path, key, index)))
    return found
