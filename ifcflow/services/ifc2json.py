"""ifc2json: an IFC model as ifcJSON-4 (buildingSMART layout), written entity by entity."""

from __future__ import annotations

from typing import ClassVar

from .base import InputFile, Options, OutputFile, Service, option, stem


class Ifc2JsonOptions(Options):
    """Export every rooted entity of a model to ifcJSON; other entities are nested inside them."""

    OUTPUTS: ClassVar[tuple[str, ...]] = ("json",)

    ifc: str = option(..., "ifc", "filename", description="IFC model to export", marker=InputFile((".ifc",), "ifc"))
    output: str | None = option(None, "output", "output_filename", marker=OutputFile("json"),
                                description="ifcJSON file (default <ifc>.json)")

    def outputs(self) -> dict[str, str]:
        return {"json": self.output or f"{stem(self.ifc)}.json"}


SERVICE = Service("ifc2json", Ifc2JsonOptions, "workers.ifc2json.run", "ifc2json",
                  summary="IFC to ifcJSON-4 (buildingSMART layout)")
