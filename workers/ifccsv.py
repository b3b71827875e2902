"""Workers of the ifccsv services: export a table from a model, and import an edited table back into it."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import ifcopenshell
import ifcopenshell.util.selector
from ifccsv import IfcCsv

from ifcflow.errors import StepError
from ifcflow.services.ifccsv import CsvExportOptions, CsvImportOptions

from .models import nothing_selected, open_ifc
from .runtime import Outcome, Progress, step


def select(model: ifcopenshell.file, query: str) -> list[ifcopenshell.entity_instance]:
    """Elements matching an ifcopenshell selector query; a query that does not parse raises StepError."""
    try:
        return list(ifcopenshell.util.selector.filter_elements(model, query))
    except Exception as exc:  # lark raises its own parse errors
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StepError(f"query {query!r} is not a valid ifcopenshell selector: {reason}") from None


def body(options: CsvExportOptions, outputs: dict[str, Path], progress: Progress) -> Outcome:
    """Export one row per selected element (GlobalId, then the requested attributes) to csv, ods or xlsx."""
    progress(0, 3, "opening model")
    model = open_ifc(options.ifc)
    elements = sorted(select(model, options.query), key=lambda e: e.id())  # stable order among equal sort keys
    warning = nothing_selected(options.query, options.ifc, elements, options.require_elements)
    progress(1, 3, f"exporting {len(elements)} elements")
    exporter = IfcCsv()
    export_table(exporter, model, elements, options, outputs["table"])
    rows = len(list(exporter.results))
    columns = len(exporter.headers)
    return Outcome(f"exported {rows} elements x {columns} columns to {options.format}{warning}",
                   {"rows": rows, "columns": columns, "format": options.format})



def export_table(exporter: IfcCsv, model: ifcopenshell.file, elements: list[ifcopenshell.entity_instance],
                 options: CsvExportOptions, output: Path) -> None:
    """Run IfcCsv.export (GlobalId first); fall back to sorting rows by GlobalId when the first column mixes types."""
    attributes = [a for a in options.attributes if a != "GlobalId"]  # always the first column anyway
    settings: dict[str, Any] = {"output": str(output), "format": options.format, "delimiter": options.delimiter,
                                "null": options.null_value}
    try:
        try:
            exporter.export(model, elements, list(attributes), **settings)  # export() inserts into the list
        except TypeError:  # ifccsv sorts by the first attribute: numbers next to null_value cannot be compared
            exporter.export(model, elements, ["GlobalId", *attributes], include_global_id=False, **settings)
    except ImportError as exc:
        raise StepError(f"cannot write {options.format}: {exc.name or exc} is not installed on the worker") from None
    except (TypeError, ValueError) as exc:  # values the csv/ods/xlsx writer rejects
        raise StepError(f"cannot export attributes {attributes} to {options.format}: {exc}. Choose attributes "
                        "with plain values (text, numbers, booleans), e.g. Name or Pset_WallCommon.FireRating") from None


def read_table(path: Path, delimiter: str) -> tuple[list[str], list[list[Any]]]:
    """Headers and rows of a csv, ods or xlsx table, every cell as written (blank cells as '')."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with path.open(newline="", encoding="utf-8-sig") as handle:
                lines = [row for row in csv.reader(handle, delimiter=delimiter) if row]
            return (lines[0], lines[1:]) if lines else ([], [])
        import pandas as pd

        frame = pd.read_excel(path, engine="odf" if suffix == ".ods" else "openpyxl", dtype=object,
                              keep_default_na=False, na_filter=False)
    except ImportError as exc:
        raise StepError(f"cannot read {path.name}: {exc.name or exc} is not installed on the worker") from None
    except (OSError, ValueError, UnicodeDecodeError, csv.Error) as exc:
        raise StepError(f"cannot read table {path.name}: {exc}") from None
    except Exception as exc:  # zip/xml errors of a damaged spreadsheet
        raise StepError(f"cannot read table {path.name}: {type(exc).__name__}: {exc}") from None
    return [str(h) for h in frame.columns], [list(row) for row in frame.itertuples(index=False)]


def import_body(options: CsvImportOptions, outputs: dict[str, Path], progress: Progress) -> Outcome:
    """Set every cell of the table on the element whose GlobalId is in the row's first column."""
    table = Path(options.table)
    if not table.is_file():
        raise StepError(f"table {table} does not exist")
    headers, rows = read_table(table, options.delimiter)
    if not headers or headers[0].strip() != "GlobalId":
        raise StepError(f"table {table.name} must have GlobalId as its first column (as ifccsv exports it); "
                        f"found {headers[0] if headers else 'no header row'!r}")
    progress(0, len(rows) + 1, "opening model")
    model = open_ifc(options.ifc)
    importer = IfcCsv()
    attributes: list[str | None] = [None] * len(headers)
    updated, missing = 0, 0
    for number, row in enumerate(rows, start=2):
        row = (row + [""] * len(headers))[: len(headers)]
        try:
            model.by_guid(str(row[0]).strip())
        except RuntimeError:
            missing += 1
            continue
        row[0] = str(row[0]).strip()
        try:
            importer.process_row(model, row, headers, attributes, options.null_value, "", "YES", "NO", ", ")
        except Exception as exc:  # the selector raises assorted errors for values it cannot set
            raise StepError(f"row {number} of {table.name} (GlobalId {row[0]}): cannot set its values: "
                            f"{type(exc).__name__}: {exc}") from None
        updated += 1
        progress(number - 1, len(rows) + 1, f"updated {updated} elements")
    if rows and not updated:
        raise StepError(f"none of the {len(rows)} GlobalIds in {table.name} is in {Path(options.ifc).name}: "
                        "was the table exported from this model?")
    model.write(str(outputs["model"]))
    message = f"updated {updated} elements from {len(headers) - 1} columns"
    if missing:
        message += f"; {missing} rows skipped (GlobalId not in the model)"
    return Outcome(message, {"rows": len(rows), "updated": updated, "missing": missing})


run = step(body)
run_import = step(import_body)
