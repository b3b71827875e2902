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


MAX_QUERY = 4_000
"""Characters one selector may have. IfcOpenShell's selector grammar takes about 45 µs per character to parse
here, so a check's time is bounded by what a pipeline's selectors total (:data:`MAX_QUERIES`)."""
MAX_QUERIES = 32_000
"""Characters all selectors of one pipeline may total (about 1.5 s of parsing)."""


@lru_cache(maxsize=64)
def _parse(query: str) -> tuple[Any | None, str | None]:
    """(parse tree, None) or (None, why the query is not a selector); parsed once for the syntax, entity and
    attribute checks (the tree is only read)."""
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


REPORTED = 10
"""Unknown entity names reported one by one per option (each with a "did you mean"); the rest are counted, so a
request naming thousands costs the server no more than ten."""
SUGGESTED = 64
"""Names longer than this get no "did you mean" (no IFC entity name is that long)."""


def _declared(schema: Any, name: str) -> bool:
    try:
        schema.declaration_by_name(name)
    except RuntimeError:
        return False
    return True


def _shown(text: str, limit: int = 120) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "…"


def entity_problems(query: str, schema_name: str) -> list[str]:
    """Entity names in ``query`` that the schema does not define, with a "did you mean" (the first
    :data:`REPORTED`; the others counted)."""
    tree, problem = _parse(query)
    schema = _schema(schema_name)
    if tree is None or schema is None:
        return [problem] if problem else []
    unknown = [name for name in _classes(tree) if not _declared(schema, name)]
    found = []
    for name in unknown[:REPORTED]:
        named = name if len(name) <= SUGGESTED else _shown(name, SUGGESTED)
        found.append(f"query {_shown(query)} names {named}, which is not an entity of {schema_name} (the input "
                     f"model's schema){_did_you_mean(name, _entity_names(schema_name))}")
    if len(unknown) > REPORTED:
        found.append(f"query {_shown(query)} names {len(unknown) - REPORTED} more entity types that {schema_name} "
                     "does not define")
    return found


def entity_type_problems(names: list[str], schema_name: str) -> list[tuple[int, str]]:
    """(index, why) for the names of ``names`` that are not entity types of the schema (the first
    :data:`REPORTED` with a "did you mean"; then one problem counting the others, at the next unknown name)."""
    schema = _schema(schema_name)
    if schema is None:
        return []
    unknown = [(index, name) for index, name in enumerate(names) if not _declared(schema, name)]
    found = [(index, f"{_shown(name, SUGGESTED)} is not an entity type of {schema_name} (the input model's schema)"
                     f"{_did_you_mean(name, _entity_names(schema_name))}") for index, name in unknown[:REPORTED]]
    if len(unknown) > REPORTED:
        found.append((unknown[REPORTED][0], f"{len(unknown) - REPORTED} more names are not entity types of "
                                            f"{schema_name} either"))
    return found


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
    if len(word) > SUGGESTED:
        return "."
    by_lower = {c.lower(): c for c in choices}
    match = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" — did you mean '{by_lower[match[0]]}'?" if match else "."
