"""ifcdiff: compare two revisions of a model and write the added, deleted and changed elements as JSON."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import field_validator

from .base import InputFile, Options, OutputFile, Service, option

Relationship = Literal["geometry", "attributes", "type", "property", "container", "aggregate", "classification"]


class DiffOptions(Options):
    """Compare ``old`` with ``new`` by GlobalId; ``diff`` lists added/deleted GlobalIds and what changed."""

    OUTPUTS: ClassVar[tuple[str, ...]] = ("diff",)

    old: str = option(..., "old", "old_file", description="the earlier revision", marker=InputFile((".ifc",), "ifc"))
    new: str = option(..., "new", "new_file", description="the later revision", marker=InputFile((".ifc",), "ifc"))
    output: str = option("diff.json", "output", "output_file", marker=OutputFile("diff"),
                         description="JSON diff file")
    relationships: list[Relationship] | None = option(None, description=(
        "what to compare: geometry, attributes, type, property, container, aggregate, classification "
        "(default: attributes and geometry)"))
    is_shallow: bool = option(True, description="stop at the first difference per element (faster)")
    filter_elements: str | None = option(None, description="selector limiting the compared elements, e.g. IfcWall")

    @field_validator("output")
    @classmethod
    def _json(cls, value: str) -> str:
        if not value.lower().endswith(".json") and not value.startswith("${{"):
            raise ValueError(f"output {value!r} must end in .json (ifcdiff writes JSON)")
        return value

    def outputs(self) -> dict[str, str]:
        return {"diff": self.output}


SERVICE = Service("ifcdiff", DiffOptions, "workers.ifcdiff.run", "ifcdiff",
                  summary="compare two model revisions with ifcdiff (JSON of added, deleted, changed)")
