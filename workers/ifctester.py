"""Worker of the ifctester service: check one model against one IDS file and write a report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ifctester import ids, reporter

from ifcflow.errors import StepError
from ifcflow.services.ifctester import TesterOptions

from .models import open_ifc
from .runtime import Outcome, Progress, step


def open_ids(path: str | Path) -> ids.Ids:
    """Open and XSD-check an IDS 1.0 file; anything unreadable or invalid raises StepError."""
    path = Path(path)
    if not path.is_file():
        raise StepError(f"ids file {path} does not exist")
    try:
        return ids.open(str(path), validate=True)
    except ids.IdsXmlValidationError as exc:
        raise StepError(f"ids file {path.name} is not valid IDS 1.0: {_first_problem(exc)}") from None
    except (SyntaxError, OSError, ValueError) as exc:  # XML syntax errors derive from SyntaxError
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StepError(f"ids file {path.name} is not valid IDS 1.0: {reason}") from None
    except Exception as exc:  # the IDS passed the XSD but ifctester cannot interpret it
        raise StepError(f"ifctester cannot read ids file {path.name}: {type(exc).__name__}: {exc}") from None


def _first_problem(exc: ids.IdsXmlValidationError) -> str:
    error: Any = exc.xml_error
    reason = getattr(error, "reason", None) or str(error).splitlines()[0]
    where = getattr(error, "path", None)
    line = getattr(error, "sourceline", None)
    at = f" (at {where}{f', line {line}' if line else ''})" if where else ""
    return f"{reason}{at}"


def summarize(document: ids.Ids) -> dict[str, int]:
    """Counts of specifications after validation; a specification without a status counts as failed."""
    specs = list(document.specifications)
    failed = [s for s in specs if not s.status]
    return {
        "specifications": len(specs),
        "passed": len(specs) - len(failed),
        "failed": len(failed),
        "required_failed": sum(1 for s in failed if s.get_usage() == "required"),
        "optional_failed": sum(1 for s in failed if s.get_usage() == "optional"),
        "prohibited_failed": sum(1 for s in failed if s.get_usage() == "prohibited"),
    }


def write_report(document: ids.Ids, report_type: str, path: Path) -> None:
    """Write the validation report in the requested format."""
    report: reporter.Reporter
    if report_type == "json":
        report = reporter.Json(document)
    elif report_type == "html":
        report = reporter.Html(document)
    elif report_type == "bcf":
        report = reporter.Bcf(document)
    elif report_type == "txt":
        report = reporter.Txt(document)
    else:  # the options model only allows the four above
        raise StepError(f"unknown report type {report_type!r}; use json, html, bcf or txt")
    report.report()
    try:
        report.to_file(str(path))
    except ImportError as exc:
        raise StepError(f"cannot write a {report_type} report: {exc.name or exc} is not installed on the worker") from None


def body(options: TesterOptions, outputs: dict[str, Path], progress: Progress) -> Outcome:
    """Validate the model against the IDS, write the report, and gate on failed required specifications."""
    progress(0, 4, "reading IDS")
    document = open_ids(options.ids)
    progress(1, 4, "opening model")
    model = open_ifc(options.ifc)
    progress(2, 4, f"checking {len(document.specifications)} specifications")
    document.validate(model, filepath=options.ifc)
    progress(3, 4, f"writing {options.report_type} report")
    write_report(document, options.report_type, outputs["report"])
    data = summarize(document)
    total, failed = data["specifications"], data["failed"]
    names = failing(document)
    if options.gate and data["required_failed"]:
        raise StepError(f"{failed} of {total} specifications failed: {names}; report: "
                        f"{published(outputs['report'])}", keep_outputs=True)
    message = f"{data['passed']} of {total} specifications passed"
    if failed:
        message += f" ({failed} failed, {data['required_failed']} of them required: {names})"
    return Outcome(message, data)


def failing(document: ids.Ids, limit: int = 5) -> str:
    """The failing specifications by name and usage: ``'walls are rated' (required), ...``."""
    failed = [f"{s.name!r} ({s.get_usage()})" for s in document.specifications if not s.status]
    more = f" and {len(failed) - limit} more" if len(failed) > limit else ""
    return ", ".join(failed[:limit]) + more


def published(temp: Path) -> Path:
    """Where a file written to the step's private folder (``<step>/.partial-*/...``) is published."""
    for folder in temp.parents:
        if folder.name.startswith(".partial-"):
            return folder.parent / temp.relative_to(folder)
    return temp


run = step(body)
