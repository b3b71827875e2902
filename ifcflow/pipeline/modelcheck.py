"""Checks of selectors and attribute names before anything is enqueued, with IfcOpenShell's own selector grammar
and schema definitions (no model is opened: the schema is the one named in the input file's header).

IfcOpenShell is imported lazily, on the first check (``ifcflow validate`` and ``ifcflow run``), never by
``import ifcflow``. Without IfcOpenShell the checks are skipped; workers check again.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from typing import Any

SPECIAL_KEYS = frozenset({
    "Name", "building", "class", "classification", "container", "count", "group", "id", "parent",
    "predefined_type", "profiles", "site", "space", "storey", "styles", "system", "type", "zone", "item", "i",
    "material", "mat", "materials", "mats", "rotation_x", "rotation_y", "rotation_z", "types", "occurrences", "x",
    "y", "z", "easting", "northing", "elevation",
})
"""Keys ifcopenshell's selector values understand besides entity attributes and Pset.Property."""
EXAMPLE = "e.g. 'IfcWall, IfcSlab' or 'IfcWall, Name=\"Wall 1\"'"


@lru_cache(maxsize=1)
def _selector() -> Any | None:
    try:
        import ifcopenshell.util.selector as selector
    except ImportError:
        return None
    return selector


@lru_cache(maxsize=8)
def _schema(name: str) -> Any | None:
    try:
        import ifcopenshell.ifcopenshell_wrapper as wrapper
    except ImportError:
        return None
    try:
        return wrapper.schema_by_name(name)
    except (RuntimeError, IndexError):
        return None


@lru_cache(maxsize=8)
def _entity_names(schema_name: str) -> tuple[str, ...]:
    schema = _schema(schema_name)
    return tuple(entity.name() for entity in schema.entities()) if schema is not None else ()


def _parse(query: str) -> tuple[Any | None, str | None]:
    """(parse tree, None) or (None, why the query is not a selector)."""
    selector = _selector()
    if selector is None:
        return None, None
    import lark

    try:
        return selector.filter_elements_grammar.parse(query), None
    except lark.exceptions.UnexpectedEOF:
        where = "the query ends too early"
    except lark.exceptions.UnexpectedCharacters as exc:
        where = f"unexpected {exc.char!r} at column {exc.column}"
    except lark.exceptions.UnexpectedToken as exc:
        where = (f"unexpected {str(exc.token)!r} at column {exc.column}" if exc.column not in (None, -1)
                 else "the query ends too early")
    except lark.exceptions.LarkError as exc:
        where = str(exc).strip().splitlines()[0]
    return None, f"{query!r} is not a valid ifcopenshell selector: {where}; write a selector {EXAMPLE}"


def selector_syntax(query: str) -> str | None:
    """Why ``query`` is not an ifcopenshell selector, or None (also when IfcOpenShell is not installed)."""
    return _parse(query)[1]


def _classes(tree: Any) -> list[str]:
    return [str(node.children[0]) for node in tree.find_data("ifc_class")]


def entity_problems(query: str, schema_name: str) -> list[str]:
    """Entity names in ``query`` that the schema does not define, with a "did you mean"."""
    tree, problem = _parse(query)
    schema = _schema(schema_name)
    if tree is None or schema is None:
        return [problem] if problem else []
    found = []
    for name in _classes(tree):
        try:
            schema.declaration_by_name(name)
        except RuntimeError:
            found.append(f"query {query!r} names {name}, which is not an entity of {schema_name} (the input model's "
                         f"schema){_did_you_mean(name, _entity_names(schema_name))}")
    return found


def entity_type_problem(name: str, schema_name: str) -> str | None:
    """Why ``name`` is not an entity type of the schema (with a "did you mean"), or None."""
    schema = _schema(schema_name)
    if schema is None:
        return None
    try:
        schema.declaration_by_name(name)
    except RuntimeError:
        return (f"{name!r} is not an entity type of {schema_name} (the input model's schema)"
                f"{_did_you_mean(name, _entity_names(schema_name))}")
    return None


def attribute_problems(attributes: list[str], query: str, schema_name: str) -> list[tuple[int, str]]:
    """(index, problem) of plain attribute names (no ``Pset.Property``) that none of the query's entities has."""
    tree, _ = _parse(query)
    schema = _schema(schema_name)
    if tree is None or schema is None:
        return []
    entities = []
    for name in _classes(tree):
        try:
            entities.append(schema.declaration_by_name(name))
        except RuntimeError:
            continue  # reported by entity_problems
    if not entities or any(not hasattr(e, "all_attributes") for e in entities):
        return []
    known = sorted({a.name() for e in entities for a in e.all_attributes()})
    found = []
    for index, attribute in enumerate(attributes):
        if "." in attribute or attribute in SPECIAL_KEYS or attribute in known or not attribute[:1].isupper():
            continue
        classes = ", ".join(e.name() for e in entities)
        found.append((index, f"attribute {attribute!r} is not an attribute of {classes} in {schema_name}"
                             f"{_did_you_mean(attribute, known)} For a property write PsetName.PropertyName, "
                             "e.g. Pset_WallCommon.FireRating"))
    return found


def _did_you_mean(word: str, choices: tuple[str, ...] | list[str]) -> str:
    by_lower = {c.lower(): c for c in choices}
    match = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" — did you mean '{by_lower[match[0]]}'?" if match else "."
