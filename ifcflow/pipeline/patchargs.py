"""What an IfcPatch recipe's ``arguments`` may be when a run is submitted over HTTP: an allow-list.

A recipe's positional arguments are free values to IfcPatch, and some of them name files (``MergeProjects``
reads other models, ``SplitByBuildingStorey`` writes a folder of models) or hosts (``Ifc2Sql``). Over HTTP only
the recipes listed here run, and each argument must be of its listed kind; path arguments are resolved by the
caller (inside the data folder) through :class:`Resolver`. The terminal (``ifcflow run``) is not restricted.

Pure: no ifcopenshell import, no Redis.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import NotAllowed

TEXT, NUMBER, BOOL, OPERATION, INPUT, INPUTS, OUTPUT_DIR = (
    "text", "number", "bool", "operation", "input", "inputs", "output_dir")
KINDS = {
    TEXT: "a plain value (a selector, a name), never a path",
    NUMBER: "a number (or a numeric string)",
    BOOL: "true or false",
    OPERATION: "a JSON object as a string, e.g. '{\"selector\": \"IfcWall\", ...}' (or empty)",
    INPUT: "a file in the data folder: a name in uploads/, or /uploads/x, /output/..., /examples/x",
    INPUTS: "a list of files in the data folder (each as for 'input')",
    OUTPUT_DIR: "a folder inside the step's output folder (relative name, or /output/...)",
}

_COORDS = (NUMBER,) * 3
_OPS = (OPERATION,) * 5
BUILTIN: dict[str, tuple[str, ...]] = {
    "AddGeometricRepresentationToAlignment": (), "AddLinearPlacementFallbackPosition": (),
    "AddZeroLengthSegmentToAlignment": (), "AssignConstituentFractions": (), "ConvertLengthUnit": (TEXT,),
    "ConvertNestToAggregate": (), "ConvertPropertiesToQuantities": (TEXT, TEXT), "DowngradeIndexedPolyCurve": (),
    "ExtractElements": (TEXT, BOOL), "FixArchiCADToRevitDoorSwings": (), "FixArchiCADToRevitSpaces": (),
    "FixRevitClassificationCodeTypes": (), "MergeDuplicateTypes": (TEXT, BOOL), "MergeProjects": (INPUTS,),
    "MergeStyles": (), "Migrate": (TEXT,), "OffsetObjectPlacements": (*_COORDS, BOOL, *_COORDS),
    "OffsetStoreyElevations": (NUMBER,), "Optimise": (), "PatchStationReferentPosition": (), "PurgeData": (),
    "RecycleNonRootedElements": (), "RegenerateGlobalIds": (BOOL,), "RemoveRevitUniformatClassification": (),
    "RemoveSiteRepresentation": (), "ResetAbsoluteCoordinates": (TEXT, BOOL, NUMBER, *_COORDS),
    "ResetSpatialElementLocations": (TEXT, BOOL), "SetFalseOrigin": (TEXT, *(NUMBER,) * 8, BOOL),
    "SetRefElevation": (NUMBER,), "SetWorldCoordinateSystem": (*_COORDS, *_COORDS),
    "SplitByBuildingStorey": (OUTPUT_DIR,), "TessellateElements": (TEXT, BOOL), "UnsharePsets": (TEXT,),
}
"""IfcPatch's built-in recipes allowed over HTTP, with the kind of each positional argument. Left out on purpose:
Ifc2Sql (names a database host or file), ExtractPropertiesToSQLite (writes into the worker's working folder),
AGS2IFC (reads a documents folder), FixRevitTINs / FixRevit2025TINs (need Blender)."""


@dataclass(frozen=True)
class Param:
    name: str
    kind: str
    default: Any = None
    description: str = ""


_OP_HELP = "one operation as a JSON string"
CUSTOM: dict[str, tuple[str, tuple[Param, ...]]] = {
    "SetColorBySelector": ("Give the elements chosen by a selector a surface colour (one style per colour).", tuple(
        Param(f"operation{i}", OPERATION, "" if i > 1 else None,
              f'{_OP_HELP}: {{"selectors": "IfcWall", "hex": "FF0000"}}') for i in range(1, 6))),
    "SetPropertyBySelector": ("Set (or create) a property on the elements chosen by a selector.", tuple(
        Param(f"operation{i}", OPERATION, "" if i > 1 else None,
              (f'{_OP_HELP}: {{"selector": "IfcWall", "property": "Pset_WallCommon.Status", '
               '"data_type": "IfcText", "value": "Approved"}')) for i in range(1, 6))),
    "SetAttributeBySelector": ("Set an attribute (Name, Description, ...) of the elements chosen by a selector.",
                               tuple(Param(f"operation{i}", OPERATION, "" if i > 1 else None,
                                           f'{_OP_HELP}: {{"selector": "IfcWall", "attribute": "Name", "value": "W"}}')
                                     for i in range(1, 6))),
    "RemoveElements": (("Remove the elements chosen by a selector in place, with their geometry, their types left "
                        "without occurrences and the fillings of removed openings."), (
        Param("query", TEXT, "IfcSpace", "selector of the elements to remove"),
        Param("clean_geometry", BOOL, True, "also remove their representations"),
        Param("clean_orphaned_types", BOOL, True, "remove types no element uses any more"),
        Param("fix_orphaned_fillings", BOOL, True, "remove doors/windows whose opening was removed"))),
    "MergeTasksFromPrevious": (("Carry the previous revision's tasks (IfcTask assigned to elements) into this "
                                "model, matching elements by GlobalId, using an ifcdiff JSON report."), (
        Param("prev_path", INPUT, None, "the previous revision's IFC model"),
        Param("diff_path", INPUT, None, "ifcdiff JSON report between the previous and this model"),
        Param("pm_code_prefix", TEXT, "PM", "prefix of the identification of new tasks"),
        Param("description_template", TEXT, "{type}", "description of new tasks ({type}: the change)"),
        Param("revision_name", TEXT, "", "name of the work schedule (default: 'Revision')"),
        Param("ignored_properties", TEXT, "", "comma-separated property names whose changes are ignored"))),
}
"""ifcflow's own recipes (``workers/recipes/``), with the original system's names and argument conventions."""


PLAIN_OPTIONS: dict[str, frozenset[str]] = {
    "ifcconvert": frozenset({"verbose", "plan", "model", "weld_vertices", "use_world_coords", "convert_back_units",
                             "sew_shells", "merge_boolean_operands", "disable_opening_subtractions", "bounds",
                             "include", "exclude", "threads"}),
    "ifctester": frozenset({"report_type", "gate"}),
    "ifcpatch": frozenset({"recipe", "arguments"}),  # arguments: vetted per recipe by :func:`vet`
    "ifcclash": frozenset({"clash_sets", "mode", "tolerance", "clearance", "check_all", "allow_touching",
                           "smart_grouping", "max_cluster_distance"}),  # clash_sets' files are marked options
    "ifccsv": frozenset({"format", "delimiter", "null_value", "require_elements", "attributes"}),
    "ifccsv-import": frozenset({"delimiter", "null_value"}),
    "ifcdiff": frozenset({"relationships", "is_shallow", "filter_elements"}),
    "ifc5d": frozenset({"rules", "require_elements"}),
    "ifc2json": frozenset(),
}
"""Every service option that is neither a marked file nor a selector, known to name no path and no host. Over
HTTP an option of a service that is in neither group (a new option nobody classified) is refused."""


def unknown_options(service: str, options: dict[str, object], marked: set[str]) -> list[str]:
    """Options of ``service`` that are not classified as safe for HTTP submissions (see :data:`PLAIN_OPTIONS`)."""
    plain = PLAIN_OPTIONS.get(service)
    if plain is None:
        return sorted(options)
    return sorted(name for name in options if name not in plain and name not in marked)


class Resolver:
    """How a path argument becomes a safe absolute path (raises on a path outside the data folder)."""

    def __init__(self, input_file: Callable[[str, str], str], output_dir: Callable[[str, str], str]):
        self.input_file, self.output_dir = input_file, output_dir


def kinds(recipe: str, custom: dict[str, tuple[str, ...]] | None = None) -> tuple[str, ...] | None:
    """The argument kinds of an allowed recipe, or None when the recipe is not allowed over HTTP."""
    if recipe in CUSTOM:
        return tuple(p.kind for p in CUSTOM[recipe][1])
    if custom and recipe in custom:
        return custom[recipe]
    return BUILTIN.get(recipe)


def _refuse(recipe: str, message: str) -> NotAllowed:
    return NotAllowed(f"ifcpatch recipe {recipe}: {message}")


def _value(recipe: str, index: int, kind: str, value: Any, resolver: Resolver, where: str) -> Any:
    plain = isinstance(value, (str, int, float, bool)) or value is None
    if kind in (TEXT, NUMBER, BOOL) and not plain:
        raise _refuse(recipe, f"argument {index + 1} must be {KINDS[kind]}, not {type(value).__name__}")
    if kind == NUMBER and isinstance(value, str) and value.strip():
        try:
            float(value)
        except ValueError:
            raise _refuse(recipe, f"argument {index + 1} must be {KINDS[kind]}, not {value!r}") from None
    if kind == OPERATION:
        if isinstance(value, dict):
            value = json.dumps(value)
        if not isinstance(value, str):
            raise _refuse(recipe, f"argument {index + 1} must be {KINDS[kind]}")
        if value.strip():
            try:
                parsed = json.loads(value)
            except ValueError as exc:
                raise _refuse(recipe, f"argument {index + 1} is not JSON ({exc}): {value[:80]!r}") from None
            if not isinstance(parsed, dict):
                raise _refuse(recipe, f"argument {index + 1} must be {KINDS[kind]}: {value[:80]!r}")
    if kind == INPUT:
        if not isinstance(value, str):
            raise _refuse(recipe, f"argument {index + 1} must be {KINDS[kind]}")
        return resolver.input_file(value, f"{where}[{index}]")
    if kind == INPUTS:
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str) for v in items):
            raise _refuse(recipe, f"argument {index + 1} must be {KINDS[kind]}")
        return [resolver.input_file(v, f"{where}[{index}][{n}]") for n, v in enumerate(items)]
    if kind == OUTPUT_DIR:
        if not isinstance(value, str) or not value:
            raise _refuse(recipe, f"argument {index + 1} must be {KINDS[kind]}")
        return resolver.output_dir(value, f"{where}[{index}]")
    return value


def allowed_text(custom: dict[str, tuple[str, ...]] | None = None) -> str:
    names = sorted({*BUILTIN, *CUSTOM, *(custom or {})})
    return ", ".join(names)


def vet(recipe: str, arguments: list[Any], resolver: Resolver, where: str = "arguments",
        custom: dict[str, tuple[str, ...]] | None = None) -> list[Any]:
    """``arguments`` checked against the recipe's allow-listed kinds, path arguments resolved; raises
    :class:`NotAllowed` naming the recipe and what is allowed."""
    expected = kinds(recipe, custom)
    if expected is None:
        raise NotAllowed(f"ifcpatch recipe {recipe!r} is not allowed over HTTP (unknown, or it names a host or a "
                         f"path outside the data folder). Allowed recipes: {allowed_text(custom)}. Run it from the "
                         "terminal (ifcflow run) on the server instead")
    if len(arguments) > len(expected):
        shape = ", ".join(f"{k} ({KINDS[k]})" for k in expected) or "none"
        raise _refuse(recipe, f"takes at most {len(expected)} argument(s), got {len(arguments)}; arguments: {shape}")
    done = [_value(recipe, i, expected[i], v, resolver, where) for i, v in enumerate(arguments)]
    if OUTPUT_DIR in expected and expected.index(OUTPUT_DIR) == len(done):  # never the worker's working folder
        done.append(resolver.output_dir(".", where))
    return done
