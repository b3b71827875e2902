"""Recipes that remove elements or carry tasks between revisions: RemoveElements, MergeTasksFromPrevious."""

from __future__ import annotations

import json
import logging
from typing import Any

import ifcopenshell
import ifcopenshell.api.root
import ifcopenshell.api.sequence
import ifcopenshell.util.element

from ifcflow.errors import StepError

from .selectors import select


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "no", "")
    return bool(value)


class RemoveElements:
    """Remove the selected elements in place (with their representations and relationships, through
    ``ifcopenshell.api.root.remove_product``), then the types no element uses any more and the doors/windows
    filling the openings of removed elements."""

    NAME = "RemoveElements"

    def __init__(self, file: ifcopenshell.file, logger: logging.Logger | None, query: str = "IfcSpace",
                 clean_geometry: Any = True, clean_orphaned_types: Any = True, fix_orphaned_fillings: Any = True):
        self.file, self.logger, self.query = file, logger or logging.getLogger(__name__), query
        self.clean_geometry, self.types, self.fillings = (_flag(clean_geometry), _flag(clean_orphaned_types),
                                                          _flag(fix_orphaned_fillings))
        self.removed = 0

    def _openings(self, element: ifcopenshell.entity_instance) -> list[ifcopenshell.entity_instance]:
        found = []
        for rel in getattr(element, "HasOpenings", None) or []:
            opening = rel.RelatedOpeningElement
            found.append(opening)
            if self.fillings:
                found += [f.RelatedBuildingElement for f in opening.HasFillings or []]
        return found

    def patch(self) -> None:
        chosen = select(self.file, self.query, self.NAME)
        doomed: dict[int, ifcopenshell.entity_instance] = {}
        for element in chosen:
            for item in (*reversed(self._openings(element)), element):  # fillings, openings, then the element
                doomed[item.id()] = item
        types = {t.id(): t for e in doomed.values() if (t := ifcopenshell.util.element.get_type(e)) is not None}
        for key, element in doomed.items():
            try:
                self.file.by_id(key)
            except RuntimeError:  # removed with an element before it (an opening with its wall)
                continue
            if not self.clean_geometry and getattr(element, "Representation", None) is not None:
                element.Representation = None  # keep the shapes as unassigned data, as asked
            ifcopenshell.api.root.remove_product(self.file, product=element)
            self.removed += 1
        if self.types:
            for kind in types.values():
                if not ifcopenshell.util.element.get_types(kind):
                    ifcopenshell.api.root.remove_product(self.file, product=kind)
        self.logger.info("RemoveElements: removed %d elements", self.removed)

    def get_output(self) -> ifcopenshell.file:
        return self.file


class MergeTasksFromPrevious:
    """Carry the previous revision's tasks into this model: each IfcTask of the previous model assigned to elements
    is re-created in a work schedule named ``revision_name`` and assigned to the elements of this model with the
    same GlobalId; each element the ifcdiff report lists as added or changed (ignoring changes only in
    ``ignored_properties``) gets a new task ``<pm_code_prefix><n>`` described by ``description_template``."""

    NAME = "MergeTasksFromPrevious"

    def __init__(self, file: ifcopenshell.file, logger: logging.Logger | None, prev_path: str = "",
                 diff_path: str = "", pm_code_prefix: str = "PM", description_template: str = "{type}",
                 revision_name: str | None = None, ignored_properties: Any = None):
        if not prev_path or not diff_path:
            raise StepError(f"{self.NAME}: give the previous model and the ifcdiff JSON report as the first two "
                            "arguments")
        self.file, self.logger = file, logger or logging.getLogger(__name__)
        self.prev_path, self.diff_path, self.prefix = prev_path, diff_path, pm_code_prefix or "PM"
        self.template, self.revision = description_template or "{type}", revision_name or "Revision"
        ignored = ignored_properties or []
        self.ignored = set(ignored.split(",") if isinstance(ignored, str) else ignored) - {""}
        self.carried = self.created = 0

    def _diff(self) -> dict[str, Any]:
        try:
            with open(self.diff_path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError) as exc:
            raise StepError(f"{self.NAME}: cannot read the ifcdiff report {self.diff_path}: {exc}") from None
        if not isinstance(data, dict):
            raise StepError(f"{self.NAME}: {self.diff_path} is not an ifcdiff JSON report")
        return data

    def _changes(self, diff: dict[str, Any]) -> dict[str, str]:
        found = {guid: "added" for guid in diff.get("added", []) if isinstance(guid, str)}
        for guid, change in (diff.get("changed") or {}).items():
            kinds = [k.removesuffix("_changed") for k, v in (change or {}).items() if v and k.endswith("_changed")]
            props = change.get("properties_changed") if isinstance(change, dict) else None
            if kinds == ["properties"] and isinstance(props, dict) and set(props) <= self.ignored:
                continue
            found[guid] = ", ".join(kinds) or "changed"
        return found

    def _task(self, schedule: Any, name: str, ident: str, text: str, guids: list[str]) -> None:
        task = ifcopenshell.api.sequence.add_task(self.file, work_schedule=schedule, name=name, identification=ident,
                                                  description=text)
        for guid in guids:
            try:
                product = self.file.by_guid(guid)
            except RuntimeError:
                continue
            ifcopenshell.api.sequence.assign_product(self.file, relating_product=product, related_object=task)

    def patch(self) -> None:
        try:
            previous = ifcopenshell.open(self.prev_path)
        except Exception as exc:  # noqa: BLE001 -- ifcopenshell's own parse errors, in one line
            raise StepError(f"{self.NAME}: cannot open the previous model {self.prev_path}: {exc}") from None
        changes = self._changes(self._diff())
        schedule = ifcopenshell.api.sequence.add_work_schedule(self.file, name=self.revision)
        for task in previous.by_type("IfcTask"):
            guids = [o.GlobalId for rel in task.HasAssignments or [] if rel.is_a("IfcRelAssignsToProduct")
                     for o in [rel.RelatingProduct]]
            guids += [o.GlobalId for rel in getattr(task, "OperatesOn", None) or [] for o in rel.RelatedObjects]
            self._task(schedule, task.Name or "", task.Identification or "", task.Description or "", guids)
            self.carried += 1
        for number, (guid, kind) in enumerate(sorted(changes.items()), start=1):
            self._task(schedule, f"{kind}: {guid}", f"{self.prefix}{number}", self.template.format(type=kind), [guid])
            self.created += 1

    def get_output(self) -> ifcopenshell.file:
        return self.file


RECIPES: dict[str, type] = {"RemoveElements": RemoveElements, "MergeTasksFromPrevious": MergeTasksFromPrevious}
