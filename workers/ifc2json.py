"""Worker of the ifc2json service: an ifcJSON-4 exporter (buildingSMART layout) on ifcopenshell 0.9.

Every IfcRoot instance becomes one object of ``data``, in STEP id order; references to other rooted entities are
``{"type": ..., "ref": <uuid>}``, everything else is nested inline. The file is written entity by entity, and the
same input always gives the same bytes (the time stamp comes from the IFC header, not the clock).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

import ifcopenshell
import ifcopenshell.guid
import ifcopenshell.ifcopenshell_wrapper as wrapper

from ifcflow.errors import StepError
from ifcflow.services.ifc2json import Ifc2JsonOptions

from .models import open_ifc
from .runtime import Outcome, Progress, step

FORMAT_VERSION = "0.0.1"


def expand_guid(compressed: str) -> str:
    """A 22-character IFC GlobalId as a dashed UUID; anything that is not a valid GlobalId is kept as it is."""
    try:
        return str(uuid.UUID(hex=ifcopenshell.guid.expand(compressed)))
    except (ValueError, TypeError, IndexError, KeyError):
        return compressed


def lower_camel(name: str) -> str:
    return name[:1].lower() + name[1:]


@lru_cache(maxsize=4096)
def attribute_keys(schema: str, ifc_class: str) -> tuple[str, ...]:
    """lowerCamelCase JSON keys of an entity type's explicit attributes, in schema order."""
    declaration = wrapper.schema_by_name(schema).declaration_by_name(ifc_class).as_entity()
    if declaration is None:
        raise StepError(f"{ifc_class} is not an entity type of {schema}")
    return tuple(lower_camel(a.name()) for a in declaration.all_attributes())


class Encoder:
    """Turns entity instances into ifcJSON objects (plain dicts and lists, ready for ``json.dumps``)."""

    def __init__(self, schema: str):
        self.schema = schema
        self.active: set[int] = set()

    def entity(self, inst: ifcopenshell.entity_instance) -> dict[str, Any]:
        """The full object of an entity: its type, then every attribute that has a value."""
        ifc_class = inst.is_a()
        obj: dict[str, Any] = {"type": ifc_class}
        self.active.add(inst.id())
        try:
            for index, key in enumerate(attribute_keys(self.schema, ifc_class)):
                value = inst[index]
                if value is None:
                    continue
                obj[key] = expand_guid(value) if key == "globalId" else self.value(value)
        finally:
            self.active.discard(inst.id())
        return obj

    def value(self, value: Any) -> Any:
        if isinstance(value, ifcopenshell.entity_instance):
            return self.reference(value)
        if isinstance(value, (tuple, list)):
            return [self.value(v) for v in value]
        if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
            return str(value)  # JSON has no NaN or infinity
        return value

    def reference(self, inst: ifcopenshell.entity_instance) -> dict[str, Any]:
        """A rooted entity by reference, a typed value (select of a defined type) or a nested entity."""
        if inst.id() == 0:
            return {"type": inst.is_a(), "value": self.value(inst.wrappedValue)}
        if inst.is_a("IfcRoot"):
            return {"type": inst.is_a(), "ref": expand_guid(inst.GlobalId)}
        if inst.id() in self.active:  # a cycle of unrooted entities (invalid IFC): cut it
            return {"type": inst.is_a(), "ref": f"#{inst.id()}"}
        return self.entity(inst)


def rooted(model: ifcopenshell.file) -> list[ifcopenshell.entity_instance]:
    """Every IfcRoot instance, in STEP id order (the order of the file, and stable)."""
    return sorted(model.by_type("IfcRoot"), key=lambda inst: inst.id())


def header(model: ifcopenshell.file) -> dict[str, Any]:
    """The ifcJSON header fields, from the IFC header only, so that the output is reproducible."""
    file_name = model.header.file_name
    return {
        "type": "ifcJSON",
        "version": FORMAT_VERSION,
        "schemaIdentifier": model.schema_identifier,
        "originatingSystem": str(file_name.originating_system or ""),
        "preprocessorVersion": f"ifcflow ifc2json (IfcOpenShell {ifcopenshell.version})",
        "timeStamp": str(file_name.time_stamp or ""),
    }


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def write_json(model: ifcopenshell.file, stream: IO[str], progress: Progress) -> int:
    """Write the ifcJSON document to ``stream``: the header, then one line per rooted entity. Returns the count."""
    encoder = Encoder(model.schema_identifier)
    head = dumps(header(model))
    stream.write(head[:-1] + ',"data":[')
    entities = rooted(model)
    total = len(entities)
    for index, inst in enumerate(_encoded(encoder, entities)):
        stream.write(("\n" if index == 0 else ",\n") + inst)
        progress(index + 1, total, f"{index + 1} of {total} entities")
    stream.write("\n]}\n")
    return total


def _encoded(encoder: Encoder, entities: list[ifcopenshell.entity_instance]) -> Iterator[str]:
    for inst in entities:
        try:
            yield dumps(encoder.entity(inst))
        except RecursionError:
            raise StepError(f"#{inst.id()} {inst.is_a()} nests too deeply to export as ifcJSON") from None


def body(options: Ifc2JsonOptions, outputs: dict[str, Path], progress: Progress) -> Outcome:
    """Export the model as ifcJSON, one rooted entity after another."""
    progress(0, None, "opening model")
    model = open_ifc(options.ifc)
    target = outputs["json"]
    with target.open("w", encoding="utf-8", newline="\n") as stream:
        count = write_json(model, stream, progress)
    size = target.stat().st_size
    return Outcome(f"exported {count} rooted entities to ifcJSON", {"entities": count, "bytes": size})


run = step(body)
