"""Worker of the ifc5d service: compute base quantities and write them into the model as quantity sets."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import ifcopenshell
import ifcopenshell.util.selector
from ifc5d import qto

from ifcflow.errors import StepError
from ifcflow.services.ifc5d import QtoOptions

from .models import nothing_selected, open_ifc
from .runtime import Outcome, Progress, step


def rule_set(name: str) -> dict[str, Any]:
    rules = qto.rules.get(name)  # type: ignore[call-overload,unused-ignore]
    if rules is None or name.endswith("Blender"):
        valid = ", ".join(n for n in qto.rules if not n.endswith("Blender"))
        raise StepError(f"unknown ifc5d rule set {name!r}; use one of: {valid}")
    return dict(rules)


def summarize(results: qto.ResultsDict) -> list[dict[str, Any]]:
    """One entry per quantified element: GlobalId, class, name and quantity set -> quantity -> value."""
    entries = [{"GlobalId": element.GlobalId, "class": element.is_a(), "name": element.Name,
                "quantities": {qset: dict(values) for qset, values in qtos.items()}}
               for element, qtos in results.items()]
    return sorted(entries, key=lambda e: (e["class"], e["name"] or "", e["GlobalId"]))


def write_summary(entries: list[dict[str, Any]], path: Path) -> None:
    if path.suffix.lower() == ".csv":
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["GlobalId", "class", "name", "qset", "quantity", "value"])
            for entry in entries:
                for qset, values in entry["quantities"].items():
                    for quantity, value in values.items():
                        writer.writerow([entry["GlobalId"], entry["class"], entry["name"] or "", qset, quantity, value])
    else:
        path.write_text(json.dumps(entries, indent=2), encoding="utf-8")


def body(options: QtoOptions, outputs: dict[str, Path], progress: Progress) -> Outcome:
    """Quantify the selected elements, add/update their quantity sets and write the model and the summary."""
    rules = rule_set(options.rules)
    progress(0, 4, "opening model")
    model = open_ifc(options.ifc)
    try:
        elements = set(ifcopenshell.util.selector.filter_elements(model, options.query))
    except Exception as exc:  # lark parse errors
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StepError(f"query {options.query!r} is not a valid ifcopenshell selector: {reason}") from None
    warning = nothing_selected(options.query, options.ifc, elements, options.require_elements)
    progress(1, 4, f"quantifying {len(elements)} elements")
    results = qto.quantify(model, elements, rules)
    progress(2, 4, "writing quantity sets")
    qto.edit_qtos(model, results)
    entries = summarize(results)
    progress(3, 4, "writing model")
    model.write(str(outputs["model"]))
    write_summary(entries, outputs["summary"])
    quantities = sum(len(v) for e in entries for v in e["quantities"].values())
    data = {"selected": len(elements), "quantified": len(entries), "quantities": quantities}
    return Outcome(f"{quantities} quantities on {len(entries)} of {len(elements)} selected elements{warning}", data)


run = step(body)
