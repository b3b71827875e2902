"""Recipes that change the elements a selector chooses: SetColorBySelector, SetPropertyBySelector,
SetAttributeBySelector (each takes up to five JSON operations, the original system's convention)."""

from __future__ import annotations

import logging
from typing import Any

import ifcopenshell
import ifcopenshell.api.pset
import ifcopenshell.api.style
import ifcopenshell.util.element
import ifcopenshell.util.selector

from ifcflow.errors import StepError

from . import operations


def select(file: ifcopenshell.file, query: Any, recipe: str) -> list[ifcopenshell.entity_instance]:
    if not isinstance(query, str) or not query.strip():
        raise StepError(f"{recipe}: each operation needs a selector, e.g. \"IfcWall\"")
    try:
        return list(ifcopenshell.util.selector.filter_elements(file, query))
    except Exception as exc:  # noqa: BLE001 -- the selector grammar's own error, in one line
        raise StepError(f"{recipe}: selector {query!r} is not valid: {' '.join(str(exc).split())[:200]}") from None


class _Base:
    NAME = ""

    def __init__(self, file: ifcopenshell.file, logger: logging.Logger | None, *arguments: Any):
        self.file = file
        self.logger = logger or logging.getLogger(__name__)
        self.ops = operations(self.NAME, arguments)
        self.changed = 0

    def get_output(self) -> ifcopenshell.file:
        return self.file


def _rgb(value: Any) -> tuple[float, float, float]:
    text = str(value or "").strip().lstrip("#")
    if len(text) != 6 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise StepError(f"SetColorBySelector: hex {value!r} is not a colour; give six hex digits, e.g. \"FF0000\"")
    return tuple(int(text[i:i + 2], 16) / 255.0 for i in (0, 2, 4))  # type: ignore[return-value]


class SetColorBySelector(_Base):
    """Give the selected elements a surface colour: one IfcSurfaceStyle per colour, on their body items."""

    NAME = "SetColorBySelector"

    def style(self, hex_value: Any) -> ifcopenshell.entity_instance:
        red, green, blue = _rgb(hex_value)
        name = f"ifcflow colour #{str(hex_value).strip().lstrip('#').upper()}"
        for existing in self.file.by_type("IfcSurfaceStyle"):
            if existing.Name == name:
                return existing
        style = ifcopenshell.api.style.add_style(self.file, name=name)
        colour = {"Name": None, "Red": red, "Green": green, "Blue": blue}
        ifcopenshell.api.style.add_surface_style(self.file, style=style, ifc_class="IfcSurfaceStyleShading",
                                                 attributes={"SurfaceColour": colour, "Transparency": 0.0})
        return style

    def patch(self) -> None:
        for op in self.ops:
            style = self.style(op.get("hex"))
            for element in select(self.file, op.get("selectors", op.get("selector")), self.NAME):
                reps = element.Representation.Representations if getattr(element, "Representation", None) else []
                body = [r for r in reps if r.RepresentationIdentifier == "Body"] or list(reps)
                for rep in body:
                    ifcopenshell.api.style.assign_representation_styles(self.file, shape_representation=rep,
                                                                        styles=[style])
                self.changed += bool(body)


def _candidates(value: Any) -> list[Any]:
    found = [value]
    if isinstance(value, str):
        text = value.strip()
        for convert in (int, float):
            try:
                found.append(convert(text))
            except ValueError:
                pass
        if text.lower() in ("true", "false"):
            found.append(text.lower() == "true")
    return found


def _typed(file: ifcopenshell.file, data_type: Any, value: Any) -> Any:
    """``value`` as an IFC value of ``data_type`` (IfcText, IfcLabel, IfcBoolean, IfcReal, ...), or as given."""
    if not data_type:
        return value
    for candidate in _candidates(value):
        try:
            return file.create_entity(str(data_type), candidate)
        except Exception:  # noqa: BLE001, S112 -- the wrong Python type for this IFC type: try the next reading
            continue
    raise StepError(f"SetPropertyBySelector: {value!r} cannot be a {data_type} (IFC value types: IfcText, IfcLabel, "
                    "IfcBoolean, IfcInteger, IfcReal, IfcLengthMeasure, ...)")


class SetPropertyBySelector(_Base):
    """Set (create when missing) ``Pset.Property`` on the selected elements, typed by ``data_type``."""

    NAME = "SetPropertyBySelector"

    def patch(self) -> None:
        for op in self.ops:
            pset_name, _, prop = str(op.get("property", "")).partition(".")
            value = _typed(self.file, op.get("data_type"), op.get("value"))
            if not pset_name or not prop:
                raise StepError(f"{self.NAME}: property {op.get('property')!r} must be Pset.Name, e.g. "
                                "\"Pset_WallCommon.Status\"")
            for element in select(self.file, op.get("selector", op.get("selectors")), self.NAME):
                found = ifcopenshell.util.element.get_pset(element, pset_name, should_inherit=False)
                pset = self.file.by_id(found["id"]) if found else ifcopenshell.api.pset.add_pset(
                    self.file, product=element, name=pset_name)
                ifcopenshell.api.pset.edit_pset(self.file, pset=pset, properties={prop: value})
                self.changed += 1


class SetAttributeBySelector(_Base):
    """Set an attribute (Name, Description, ObjectType, Tag, ...) of the selected elements."""

    NAME = "SetAttributeBySelector"

    def patch(self) -> None:
        for op in self.ops:
            attribute = str(op.get("attribute", ""))
            for element in select(self.file, op.get("selector", op.get("selectors")), self.NAME):
                index = element.get_argument_index(attribute) if attribute else -1
                if not 0 <= index < len(element):
                    raise StepError(f"{self.NAME}: {element.is_a()} has no attribute {attribute!r}")
                if attribute == "GlobalId":
                    raise StepError(f"{self.NAME}: GlobalId is not changed by this recipe")
                try:
                    setattr(element, attribute, op.get("value"))
                except (TypeError, ValueError, RuntimeError) as exc:
                    raise StepError(f"{self.NAME}: {attribute} = {op.get('value')!r}: {exc}") from None
                self.changed += 1


RECIPES: dict[str, type[_Base]] = {c.NAME: c for c in (SetColorBySelector, SetPropertyBySelector,
                                                        SetAttributeBySelector)}
