"""Opening IFC models on a worker, with errors a BIM coordinator understands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ifcopenshell

from ifcflow.errors import StepError
from ifcflow.pipeline.checks import check_ifc


def open_ifc(path: str | Path) -> ifcopenshell.file:
    """Open an IFC-SPF model; missing, non-IFC, truncated and unsupported-schema files raise StepError."""
    path = Path(path)
    if not path.is_file():
        raise StepError(f"input file {path} does not exist")
    problem = check_ifc(path)
    if problem:
        raise StepError(problem)
    try:
        return ifcopenshell.open(str(path))
    except Exception as exc:  # ifcopenshell raises several unrelated types for unreadable files
        raise StepError(f"ifcopenshell cannot read {path.name}: {exc}") from None


def nothing_selected(query: str, ifc: str, elements: Any, required: bool) -> str:
    """'' when ``elements`` is not empty; else a warning for the result message, or a StepError if ``required``."""
    if elements:
        return ""
    what = f"query {query!r} selects no elements in {Path(ifc).name}"
    if required:
        raise StepError(f"{what} (require_elements: true); check the query against the model")
    return f" (warning: {what})"
