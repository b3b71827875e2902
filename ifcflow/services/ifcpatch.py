"""ifcpatch: apply one of IfcPatch's recipes (ExtractElements, ResetAbsoluteCoordinates, ...) to a model."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import field_validator

from .base import InputFile, Options, OutputFile, Service, option, stem


class PatchOptions(Options):
    """Run an IfcPatch recipe on a model and write the patched model (general-purpose, ``default`` queue)."""

    OUTPUTS: ClassVar[tuple[str, ...]] = ("model",)

    ifc: str = option(..., "ifc", "input", "input_file", description="IFC model to patch",
                      marker=InputFile((".ifc",), "ifc"))
    recipe: str = option(..., description="recipe name, e.g. ExtractElements, ResetAbsoluteCoordinates, Optimise")
    arguments: list[Any] = option([], description="the recipe's positional arguments, e.g. ['.IfcWall']")
    output: str | None = option(None, "output", "output_file", marker=OutputFile("model"),
                                description="patched model (default <ifc>_<recipe>.ifc)")

    @field_validator("recipe")
    @classmethod
    def _recipe_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Z][A-Za-z0-9]*", value):
            raise ValueError(f"{value!r} is not an IfcPatch recipe name (CamelCase, e.g. ExtractElements)")
        return value

    def outputs(self) -> dict[str, str]:
        return {"model": self.output or f"{stem(self.ifc)}_{self.recipe}.ifc"}


SERVICE = Service("ifcpatch", PatchOptions, "workers.ifcpatch.run", "default",
                  summary="apply an IfcPatch recipe to a model (general-purpose, default queue)")
