"""Cheap checks of input files before anything is enqueued: existence, IFC header, schema, IDS validity.

Nothing here imports ifcopenshell: the client only reads file headers. Workers check again when they open files.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

SCHEMAS = ("IFC2X3", "IFC4", "IFC4X3_ADD2")
"""IFC schemas that ifcopenshell 0.9 opens."""

_SCHEMA = re.compile(rb"FILE_SCHEMA\s*\(\s*\(\s*'([^']*)'", re.IGNORECASE)


def check_file(path: Path, kind: str, suffixes: tuple[str, ...]) -> str | None:
    """What is wrong with an input file, or None when it looks usable."""
    if "\x00" in str(path):
        return "path contains a NUL byte"
    if suffixes and path.suffix.lower() not in suffixes:
        return f"{path.name} should end with {' or '.join(suffixes)}"
    if not path.exists():
        return f"input file {path} does not exist"
    if not path.is_file():
        return f"{path} is not a file"
    if kind == "ifc":
        return check_ifc(path)
    if kind == "ids":
        return check_ids(path)
    return None


def header_schema(path: Path) -> str | None:
    """The IFC schema named in a model's header (``IFC4``, ...), or None when it names none or cannot be read."""
    try:
        with path.open("rb") as handle:
            match = _SCHEMA.search(handle.read(65536))
    except OSError:
        return None
    return match.group(1).decode("ascii", "replace").upper() if match else None


def check_ifc(path: Path) -> str | None:
    """Header checks: STEP magic, a schema ifcopenshell supports, and an END-ISO-10303-21 trailer."""
    try:
        with path.open("rb") as handle:
            head = handle.read(65536)
            handle.seek(max(0, path.stat().st_size - 4096))
            tail = handle.read()
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"
    if not head.lstrip(b"\xef\xbb\xbf \r\n\t").startswith(b"ISO-10303-21;"):
        return f"{path.name} is not an IFC-SPF file (it does not start with ISO-10303-21;)"
    match = _SCHEMA.search(head)
    if not match:
        return f"{path.name} has no FILE_SCHEMA in its header; the file is damaged"
    schema = match.group(1).decode("ascii", "replace").upper()
    if schema not in SCHEMAS:
        return f"{path.name} uses IFC schema {schema}, which ifcopenshell 0.9 cannot read (supported: {', '.join(SCHEMAS)})"
    if b"END-ISO-10303-21;" not in tail:
        return f"{path.name} is truncated (no END-ISO-10303-21; at the end); export or copy it again"
    return None


@lru_cache(maxsize=1)
def _ids_schema() -> object | None:
    spec = find_spec("ifctester")
    if spec is None or not spec.submodule_search_locations:
        return None
    import xmlschema

    xsd = Path(next(iter(spec.submodule_search_locations))) / "ids.xsd"
    return xmlschema.XMLSchema(str(xsd)) if xsd.exists() else None


def check_ids(path: Path) -> str | None:
    """XSD-check an IDS file against the IDS 1.0 schema that ifctester ships."""
    schema = _ids_schema()
    if schema is None:
        return None
    import xmlschema

    try:
        errors = list(schema.iter_errors(str(path)))  # type: ignore[attr-defined]
    except (xmlschema.XMLSchemaException, SyntaxError, OSError) as exc:
        return f"{path.name} is not valid IDS 1.0: {str(exc).splitlines()[0]}"
    if errors:
        first = errors[0]
        where = f"line {first.sourceline}: " if getattr(first, "sourceline", None) else ""
        return f"{path.name} is not valid IDS 1.0: {where}{first.reason}"
    return None
