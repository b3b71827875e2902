"""Worker of the ifcdiff service: compare two revisions of a model."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import ifcopenshell.util.selector
from ifcdiff import IfcDiff

from ifcflow.errors import StepError
from ifcflow.services.ifcdiff import DiffOptions

from .models import open_ifc
from .runtime import Outcome, Progress, step

log = logging.getLogger(__name__)


def body(options: DiffOptions, outputs: dict[str, Path], progress: Progress) -> Outcome:
    """Diff ``old`` against ``new`` and write ifcdiff's JSON (added, deleted, changed)."""
    progress(0, 3, "opening models")
    old = open_ifc(options.old)
    new = open_ifc(options.new)
    if options.filter_elements:
        try:
            ifcopenshell.util.selector.filter_elements(old, options.filter_elements)
        except Exception as exc:  # lark parse errors
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StepError(f"filter_elements {options.filter_elements!r} is not a valid selector: {reason}") from None
    differ = IfcDiff(old, new, relationships=list(options.relationships) if options.relationships else None,
                     is_shallow=options.is_shallow, filter_elements=options.filter_elements)
    progress(1, 3, "comparing")
    printed = io.StringIO()
    disabled = logging.root.manager.disable
    try:
        with contextlib.redirect_stdout(printed):  # ifcdiff prints its progress
            differ.diff()
    finally:
        logging.disable(disabled)  # ifcdiff switches logging off process-wide and does not restore it on errors
    log.debug("ifcdiff: %s", printed.getvalue())
    progress(2, 3, "writing diff")
    differ.export(str(outputs["diff"]))
    data = {"added": len(differ.added_elements), "deleted": len(differ.deleted_elements),
            "changed": len(differ.change_register)}
    return Outcome(f"{data['added']} added, {data['deleted']} deleted, {data['changed']} changed", data)


run = step(body)
