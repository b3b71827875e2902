"""ifc5d: compute base quantities (lengths, areas, volumes) from geometry and write them into the model."""

from __future__ import annotations

import difflib
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path, PurePath
from typing import ClassVar

from pydantic import field_validator, model_validator

from .base import InputFile, Options, OutputFile, Selector, Service, option, stem


@lru_cache(maxsize=1)
def rule_sets() -> tuple[str, ...]:
    """The rule sets the installed ifc5d ships (its JSON files, without Blender's), found without importing it;
    () when ifc5d is not installed here (the worker checks then)."""
    spec = find_spec("ifc5d")
    if spec is None or not spec.submodule_search_locations:
        return ()
    folder = Path(next(iter(spec.submodule_search_locations)))
    return tuple(sorted(p.stem for p in folder.glob("*.json") if not p.stem.endswith("Blender")))


class QtoOptions(Options):
    """Quantify the elements matching ``query`` with an ifc5d rule set; write the model and a summary."""

    OUTPUTS: ClassVar[tuple[str, ...]] = ("model", "summary")

    ifc: str = option(..., "ifc", "input_file", description="IFC model to quantify", marker=InputFile((".ifc",), "ifc"))
    output: str | None = option(None, "output", "output_file", marker=OutputFile("model"),
                                description="model with quantity sets (default <ifc>_qto.ifc)")
    summary: str | None = option(None, marker=OutputFile("summary"),
                                 description="quantities per element, .json or .csv (default <ifc>_qto.json)")
    rules: str = option("IFC4QtoBaseQuantities", description=(
        "ifc5d rule set: IFC4QtoBaseQuantities or IFC4X3QtoBaseQuantities"))
    query: str = option("IfcElement", marker=Selector("ifc"),
                        description="selector choosing the elements to quantify, e.g. 'IfcWall, IfcSlab'")
    require_elements: bool = option(False, description="fail the step when the query selects no element "
                                                       "(otherwise: nothing is quantified and a warning)")

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, value: str) -> str:
        known = rule_sets()
        if known and value not in known and not value.startswith("${{"):
            match = difflib.get_close_matches(value, known, n=1, cutoff=0.6)
            hint = f" — did you mean '{match[0]}'?" if match else "."
            raise ValueError(f"unknown ifc5d rule set {value!r}{hint} Rule sets: {', '.join(known)}")
        return value

    @field_validator("summary")
    @classmethod
    def _summary_format(cls, value: str | None) -> str | None:
        if value and PurePath(value).suffix.lower() not in (".json", ".csv"):
            raise ValueError(f"summary {value!r} must end in .json or .csv")
        return value

    @model_validator(mode="after")
    def _distinct(self) -> QtoOptions:
        paths = self.outputs()
        if PurePath(paths["model"]).name == PurePath(paths["summary"]).name:
            raise ValueError("output and summary must have different file names")
        return self

    def outputs(self) -> dict[str, str]:
        return {"model": self.output or f"{stem(self.ifc)}_qto.ifc",
                "summary": self.summary or f"{stem(self.ifc)}_qto.json"}


SERVICE = Service("ifc5d", QtoOptions, "workers.ifc5d.run", "ifc5d",
                  summary="compute base quantities with ifc5d and write them into the model")
