"""ifcconvert: IFC geometry to glb, gltf, obj, dae, step, iges, svg or ttl (options of the original system)."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field, field_validator

from .base import EntityType, InputFile, Options, OutputFile, Service, option, stem

FORMATS = {
    ".glb": "glb", ".gltf": "gltf", ".obj": "obj", ".dae": "dae", ".stp": "step", ".step": "step",
    ".igs": "iges", ".iges": "iges", ".svg": "svg", ".ttl": "ttl",
}
UNAVAILABLE = {".usd": "usd", ".usda": "usd", ".usdc": "usd"}


class ConvertOptions(Options):
    """Convert an IFC model's geometry; the output file's extension picks the format."""

    OUTPUTS: ClassVar[tuple[str, ...]] = ("model", "log")

    input: str = option(..., "input", "input_filename", description="IFC model to convert", marker=InputFile((".ifc",), "ifc"))
    output: str | None = option(None, "output", "output_filename", marker=OutputFile("model"),
                                description="output file; its extension picks the format (default <input>.glb)")
    verbose: bool = True
    plan: bool = option(False, description="include plan (2D) representations")
    model: bool = option(True, description="include model (3D) representations")
    weld_vertices: bool | None = option(None, description="weld coincident vertices (ifcopenshell 0.9 welds by "
                                        "default; false turns it off)")
    use_world_coords: bool = False
    convert_back_units: bool = False
    sew_shells: bool = option(False, description="ifcopenshell 0.9 has no shell sewing; mapped to reorient-shells")
    merge_boolean_operands: bool = option(False, description="no such setting in ifcopenshell 0.9: accepted for "
                                          "compatibility with the original system, ignored, and noted in the log")
    disable_opening_subtractions: bool = False
    bounds: str | None = option(None, description="SVG only: WIDTHxHEIGHT of the drawing, e.g. 1024x768")
    include: list[str] | None = option(None, marker=EntityType("input"),
                                       description="only these IFC entity types, e.g. [IfcWall, IfcSlab]")
    exclude: list[str] | None = option(None, marker=EntityType("input"),
                                       description="leave out these IFC entity types, e.g. [IfcSpace]")
    log_file: str | None = option(None, marker=OutputFile("log"),
                                  description="log of skipped and failed elements (default <output>.log)")
    threads: Annotated[int, Field(ge=1, le=64)] = option(2, description="geometry iterator threads")

    @field_validator("output")
    @classmethod
    def _known_format(cls, value: str | None) -> str | None:
        if value is None or value.startswith("${{"):
            return value
        suffix = "." + value.rsplit(".", 1)[-1].lower() if "." in value else ""
        if suffix in UNAVAILABLE:
            raise ValueError("USD export is not available: ifcopenshell 0.9 from PyPI has no USD serializer. "
                             "Choose one of " + ", ".join(sorted(FORMATS)))
        if suffix not in FORMATS:
            raise ValueError(f"cannot tell the output format from {value!r}; end the file name with one of "
                             + ", ".join(sorted(FORMATS)))
        return value

    @field_validator("bounds")
    @classmethod
    def _bounds(cls, value: str | None) -> str | None:
        if value is not None:
            parts = value.lower().split("x")
            if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
                raise ValueError(f"bounds must be WIDTHxHEIGHT in pixels, e.g. 1024x768, not {value!r}")
        return value

    def outputs(self) -> dict[str, str]:
        output = self.output or f"{stem(self.input)}.glb"
        return {"model": output, "log": self.log_file or f"{output}.log"}

    def format(self) -> str:
        out = self.outputs()["model"]
        return FORMATS["." + out.rsplit(".", 1)[-1].lower()]


SERVICE = Service("ifcconvert", ConvertOptions, "workers.ifcconvert.run", "ifcconvert",
                  summary="IFC to glb, gltf, obj, dae, step, iges, svg or ttl", plugs=("workers.geometry",))
