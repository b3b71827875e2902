"""ifccsv: export element attributes and properties to a CSV/ODS/XLSX table, and import an edited table back."""

from __future__ import annotations

from pathlib import PurePath
from typing import ClassVar, Literal

from pydantic import field_validator, model_validator

from .base import InputFile, Options, OutputFile, Selector, Service, option, stem

FORMATS = ("csv", "ods", "xlsx")


def _suffix(path: str) -> str:
    return PurePath(path).suffix.lower().lstrip(".")


def _delimiter(value: str) -> str:
    if len(value) != 1:
        raise ValueError(f"delimiter must be exactly one character, not {value!r} (e.g. ',' or ';')")
    return value


class CsvExportOptions(Options):
    """Export the attributes of the elements matching ``query`` to a table (one row per element, GlobalId first)."""

    OUTPUTS: ClassVar[tuple[str, ...]] = ("table",)

    ifc: str = option(..., "ifc", "filename", description="IFC model to export from",
                      marker=InputFile((".ifc",), "ifc"))
    output: str | None = option(None, "output", "output_filename", marker=OutputFile("table"),
                                description="table file (default <ifc>.<format>); its extension must match format")
    format: Literal["csv", "ods", "xlsx"] = option(
        "csv", description="table format; when omitted it follows the output's extension, else csv")
    delimiter: str = option(",", description="CSV column delimiter (one character)")
    null_value: str = option("-", description="text written for values the element does not have")
    query: str = option("IfcProduct", marker=Selector("ifc", attributes="attributes"),
                        description="ifcopenshell selector choosing the rows, e.g. 'IfcWall, IfcSlab'")
    require_elements: bool = option(False, description="fail the step when the query selects no element "
                                                       "(otherwise: an empty table and a warning)")
    attributes: list[str] = option(["Name", "Description"], description=(
        "columns, as selector values: 'Name', 'class', 'type.Name', 'Pset_WallCommon.FireRating', "
        "'Qto_WallBaseQuantities.Length'"))

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, value: str) -> str:
        return _delimiter(value)

    @field_validator("attributes")
    @classmethod
    def _some_attributes(cls, value: list[str]) -> list[str]:
        if not value or any(not a.strip() for a in value):
            raise ValueError("attributes must list at least one non-empty attribute, e.g. ['Name', 'Description']")
        return value

    @model_validator(mode="after")
    def _format_matches_output(self) -> CsvExportOptions:
        if not self.output or self.output.startswith("${{"):
            return self
        suffix = _suffix(self.output)
        if "format" not in self.model_fields_set and suffix in FORMATS:
            self.format = suffix  # type: ignore[assignment]  # checked against FORMATS just above
        elif suffix != self.format:
            raise ValueError(f"output {self.output!r} does not end in .{self.format}, but format is "
                             f"{self.format!r}: make them agree (e.g. output: {stem(self.output)}.{self.format})")
        return self

    def outputs(self) -> dict[str, str]:
        return {"table": self.output or f"{stem(self.ifc)}.{self.format}"}


class CsvImportOptions(Options):
    """Write the values of an edited table (as exported by ``ifccsv``) back into the model, matched by GlobalId."""

    OUTPUTS: ClassVar[tuple[str, ...]] = ("model",)

    ifc: str = option(..., "ifc", "ifc_filename", description="IFC model to update",
                      marker=InputFile((".ifc",), "ifc"))
    table: str = option(..., "table", "csv_filename", description="table with GlobalId in the first column",
                        marker=InputFile((".csv", ".ods", ".xlsx"), "file"))
    output: str | None = option(None, "output", "output_filename", marker=OutputFile("model"),
                                description="updated model (default <ifc>_updated.ifc)")
    delimiter: str = option(",", description="CSV column delimiter (one character), as used on export")
    null_value: str = option("-", description="text that means 'no value' (the attribute is cleared), as on export")

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, value: str) -> str:
        return _delimiter(value)

    def outputs(self) -> dict[str, str]:
        return {"model": self.output or f"{stem(self.ifc)}_updated.ifc"}


SERVICE = Service("ifccsv", CsvExportOptions, "workers.ifccsv.run", "ifccsv",
                  summary="export element attributes and properties to CSV, ODS or XLSX with ifccsv")
IMPORT_SERVICE = Service("ifccsv-import", CsvImportOptions, "workers.ifccsv.run_import", "ifccsv",
                         summary="write an edited ifccsv table back into a model")
