"""ifctester: validate an IFC model against an IDS file and write a report."""

from __future__ import annotations

from typing import ClassVar, Literal

from .base import InputFile, Options, OutputFile, Service, option, stem

EXTENSIONS = {"json": "json", "html": "html", "bcf": "bcf", "txt": "txt"}


class TesterOptions(Options):
    """Check a model against IDS specifications; with ``gate`` the step fails when a required one fails."""

    OUTPUTS: ClassVar[tuple[str, ...]] = ("report",)

    ifc: str = option(..., "ifc", "ifc_filename", description="IFC model to check", marker=InputFile((".ifc",), "ifc"))
    ids: str = option(..., "ids", "ids_filename", description="IDS 1.0 file", marker=InputFile((".ids", ".xml"), "ids"))
    output: str | None = option(None, "output", "output_filename", marker=OutputFile("report"),
                                description="report file (default <ifc>_ids.<report_type>)")
    report_type: Literal["json", "html", "bcf", "txt"] = option("json", description="report format")
    gate: bool = option(True, description="fail the step when any required specification fails")

    def outputs(self) -> dict[str, str]:
        return {"report": self.output or f"{stem(self.ifc)}_ids.{EXTENSIONS[self.report_type]}"}


SERVICE = Service("ifctester", TesterOptions, "workers.ifctester.run", "ifctester",
                  summary="IDS validation with ifctester (json, html, bcf or txt report)")
