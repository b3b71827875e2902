"""Example inputs for the committed pipelines: an architecture model, a revision of it, an MEP model that clashes
with it, and an IDS with one failing (optional) specification. Everything is deterministic: GlobalIds come from
names, the header carries a fixed time stamp, so two runs write identical bytes.

Lengths are in metres everywhere (the models' length unit is the metre, not ifcopenshell's millimetre default).
ifcopenshell is imported inside the functions so that importing this module stays cheap.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import ifcopenshell

Point2 = tuple[float, float]
Point3 = tuple[float, float, float]

NAMESPACE = uuid.UUID("5f1d6c8e-3a7b-4f43-9a51-0c1f1c0f1c0f")
TIME_STAMP = "2024-01-01T00:00:00"
EPOCH = 1704067200  # TIME_STAMP as seconds since 1970
DEFAULT_FIRE_RATING = "REI60"
WALL_HEIGHT = 3.0
WALL_THICKNESS = 0.2


@dataclass(frozen=True)
class WallSpec:
    """One wall of a demo model: ``key`` fixes its GlobalId across revisions, ``name`` may change."""

    key: str
    name: str
    p1: Point2
    p2: Point2
    fire_rating: str | None = DEFAULT_FIRE_RATING
    external: bool = True


# The room: 6 m x 4 m, walls on their axes, counter-clockwise. The west wall has no fire rating (the IDS fails it).
ARCH_WALLS: tuple[WallSpec, ...] = (
    WallSpec("south", "South wall", (0.0, 0.0), (6.0, 0.0)),
    WallSpec("east", "East wall", (6.0, 0.0), (6.0, 4.0)),
    WallSpec("north", "North wall", (6.0, 4.0), (0.0, 4.0)),
    WallSpec("west", "West wall", (0.0, 4.0), (0.0, 0.0), fire_rating=None),
)
UNRATED_WALL = "West wall"
# The revision: east wall deleted, north wall renamed, an internal partition added.
ARCH_V2_WALLS: tuple[WallSpec, ...] = (
    ARCH_WALLS[0],
    WallSpec("north", "North wall (revised)", (6.0, 4.0), (0.0, 4.0)),
    ARCH_WALLS[3],
    WallSpec("partition", "Partition wall", (3.0, 0.1), (3.0, 3.9), fire_rating="EI30", external=False),
)
# Doors: (key, name, host wall key, distance along the wall to the door's start, width, height).
DOORS: tuple[tuple[str, str, str, float, float, float], ...] = (
    ("door-south", "Entrance door", "south", 1.0, 0.9, 2.1),
    ("door-north", "Back door", "north", 4.5, 0.8, 2.1),
)
# MEP: (key, class, name, start, end, size). Sizes: (width, height) of a duct, (diameter,) of a pipe.
MEP_SEGMENTS: tuple[tuple[str, str, str, Point3, Point3, tuple[float, ...]], ...] = (
    ("supply", "IfcDuctSegment", "Supply duct", (4.0, -1.5, 2.4), (4.0, 5.5, 2.4), (0.4, 0.3)),
    ("exhaust", "IfcDuctSegment", "Exhaust duct", (1.0, 1.0, 2.6), (5.0, 1.0, 2.6), (0.3, 0.2)),
    ("water", "IfcPipeSegment", "Water pipe", (-1.0, 2.0, 1.0), (3.0, 2.0, 1.0), (0.05,)),
)
CROSSING = ("Supply duct", "Water pipe")  # through the south and north walls, through the west wall
CLEAR = ("Exhaust duct",)  # inside the room, touches nothing


def guid(key: str) -> str:
    """A stable IFC GlobalId (22 characters) derived from ``key``."""
    import ifcopenshell.guid

    return str(ifcopenshell.guid.compress(uuid.uuid5(NAMESPACE, key).hex))


def _entity(file: ifcopenshell.file, ifc_class: str, name: str, key: str | None = None) -> Any:
    import ifcopenshell.api.root

    element = ifcopenshell.api.root.create_entity(file, ifc_class=ifc_class, name=name)
    element.GlobalId = guid(f"{ifc_class}/{key or name}")
    return element


def _body(file: ifcopenshell.file) -> Any:
    """The Model/Body/MODEL_VIEW context (``new_model`` creates it)."""
    import ifcopenshell.util.representation

    return ifcopenshell.util.representation.get_context(file, "Model", "Body", "MODEL_VIEW")


def _place(file: ifcopenshell.file, product: Any, origin: Any, x_axis: Any, z_axis: Any = (0.0, 0.0, 1.0)) -> None:
    """Place ``product`` at ``origin`` (metres) with local X along ``x_axis`` and Z along ``z_axis``."""
    import ifcopenshell.api.geometry
    import numpy as np

    z = np.array(z_axis, dtype=float) / np.linalg.norm(z_axis)
    x = np.array(x_axis, dtype=float)
    x = x - z * float(x @ z)
    x /= np.linalg.norm(x)
    matrix = np.eye(4)
    matrix[:3, 0], matrix[:3, 1], matrix[:3, 2], matrix[:3, 3] = x, np.cross(z, x), z, origin
    ifcopenshell.api.geometry.edit_object_placement(file, product=product, matrix=matrix.round(9) + 0.0)


def new_model(schema: str = "IFC4", name: str = "Demo project") -> tuple[ifcopenshell.file, Any]:
    """An empty model in metres: project, site, building and a ground floor storey; returns (file, storey)."""
    import ifcopenshell.api.aggregate
    import ifcopenshell.api.context
    import ifcopenshell.api.project
    import ifcopenshell.api.unit

    file = ifcopenshell.api.project.create_file(version=cast(Any, schema))
    if schema == "IFC2X3":
        _owner_history(file)
    project = _entity(file, "IfcProject", name)
    ifcopenshell.api.unit.assign_unit(file, length={"is_metric": True, "raw": "METERS"})
    units = project.UnitsInContext
    units.Units = sorted(units.Units, key=lambda unit: unit.id())  # assign_unit goes through a set
    model = ifcopenshell.api.context.add_context(file, context_type="Model")
    ifcopenshell.api.context.add_context(
        file, context_type="Model", context_identifier="Body", target_view="MODEL_VIEW", parent=model)
    site = _entity(file, "IfcSite", "Site")
    building = _entity(file, "IfcBuilding", "Building")
    storey = _entity(file, "IfcBuildingStorey", "Ground floor")
    storey.Elevation = 0.0
    ifcopenshell.api.aggregate.assign_object(file, relating_object=project, products=[site])
    ifcopenshell.api.aggregate.assign_object(file, relating_object=site, products=[building])
    ifcopenshell.api.aggregate.assign_object(file, relating_object=building, products=[storey])
    for product in (site, building, storey):
        _place(file, product, (0.0, 0.0, 0.0), (1.0, 0.0, 0.0))
    return file, storey


def _owner_history(file: ifcopenshell.file) -> None:
    """IFC2X3 requires an owner history on every rooted entity: person, organisation, application. ifcopenshell's
    default owner settings find them in the file itself; they are not overridden process-wide (an override bound
    to this file's entities broke every later edit of another file in the same process)."""
    import ifcopenshell.api.owner

    person = ifcopenshell.api.owner.add_person(file, identification="demo", family_name="Demo", given_name="ifcflow")
    organisation = ifcopenshell.api.owner.add_organisation(file, identification="ifcflow", name="ifcflow")
    ifcopenshell.api.owner.add_person_and_organisation(file, person=person, organisation=organisation)
    ifcopenshell.api.owner.add_application(
        file, application_developer=organisation, version="0.1", application_full_name="ifcflow demo",
        application_identifier="ifcflow")


def _contain(file: ifcopenshell.file, storey: Any, product: Any) -> None:
    import ifcopenshell.api.spatial

    ifcopenshell.api.spatial.assign_container(file, relating_structure=storey, products=[product])


def _assign(file: ifcopenshell.file, product: Any, representation: Any) -> None:
    import ifcopenshell.api.geometry

    ifcopenshell.api.geometry.assign_representation(file, product=product, representation=representation)


def add_wall(file: ifcopenshell.file, storey: Any, name: str, p1: Point2, p2: Point2, height: float = WALL_HEIGHT,
             thickness: float = WALL_THICKNESS, fire_rating: str | None = DEFAULT_FIRE_RATING,
             is_external: bool = True, key: str | None = None) -> Any:
    """An IfcWall centred on the axis ``p1``-``p2`` (metres) with an extruded rectangular body and
    Pset_WallCommon (IsExternal, and FireRating unless ``fire_rating`` is None)."""
    import ifcopenshell.api.geometry
    import ifcopenshell.api.pset

    wall = _entity(file, "IfcWall", name, key)
    _contain(file, storey, wall)
    length = ((p2[0] - p1[0]) ** 2 + (p2[1] - p1[1]) ** 2) ** 0.5
    body = ifcopenshell.api.geometry.add_wall_representation(
        file, context=_body(file), length=length, height=height, thickness=thickness, offset=-thickness / 2)
    _assign(file, wall, body)
    _place(file, wall, (p1[0], p1[1], 0.0), (p2[0] - p1[0], p2[1] - p1[1], 0.0))
    properties: dict[str, Any] = {"IsExternal": is_external}
    if fire_rating is not None:
        properties["FireRating"] = fire_rating
    pset = ifcopenshell.api.pset.add_pset(file, product=wall, name="Pset_WallCommon")
    ifcopenshell.api.pset.edit_pset(file, pset=pset, properties=properties)
    return wall


def add_door(file: ifcopenshell.file, storey: Any, wall: Any, name: str, along: float, width: float = 0.9,
             height: float = 2.1, thickness: float = WALL_THICKNESS, key: str | None = None) -> Any:
    """An IfcDoor filling an IfcOpeningElement cut into ``wall`` (of ``thickness``), ``along`` metres from the
    wall's start."""
    import ifcopenshell.api.feature
    import ifcopenshell.api.geometry
    import ifcopenshell.util.placement

    matrix = ifcopenshell.util.placement.get_local_placement(wall.ObjectPlacement)
    x_axis, y_axis = matrix[:3, 0], matrix[:3, 1]
    start = matrix[:3, 3] + x_axis * along
    opening = _entity(file, "IfcOpeningElement", f"Opening for {name}", key)
    cut = ifcopenshell.api.geometry.add_wall_representation(
        file, context=_body(file), length=width, height=height, thickness=thickness + 0.1,
        offset=-(thickness + 0.1) / 2)
    _assign(file, opening, cut)
    _place(file, opening, start, x_axis)
    ifcopenshell.api.feature.add_feature(file, feature=opening, element=wall)
    door = _entity(file, "IfcDoor", name, key)
    door.OverallWidth, door.OverallHeight = width, height
    _contain(file, storey, door)
    panel = ifcopenshell.api.geometry.add_door_representation(
        file, context=_body(file), overall_width=width, overall_height=height)
    _assign(file, door, panel)
    _place(file, door, start - y_axis * thickness / 2, x_axis)
    ifcopenshell.api.feature.add_filling(file, opening=opening, element=door)
    return door


def add_slab(file: ifcopenshell.file, storey: Any, name: str, outline: Sequence[Point2], depth: float = 0.2,
             key: str | None = None) -> Any:
    """An IfcSlab whose top is at the storey's level, extruded from ``outline`` (metres)."""
    import ifcopenshell.api.geometry

    slab = _entity(file, "IfcSlab", name, key)
    slab.PredefinedType = "FLOOR"
    _contain(file, storey, slab)
    closed = [*outline, outline[0]]
    body = ifcopenshell.api.geometry.add_slab_representation(
        file, context=_body(file), depth=depth, polyline=[(float(x), float(y)) for x, y in closed])
    _assign(file, slab, body)
    _place(file, slab, (0.0, 0.0, -depth), (1.0, 0.0, 0.0))
    return slab


def add_duct(file: ifcopenshell.file, storey: Any, name: str, start: Point3, end: Point3,
             size: Sequence[float], ifc_class: str = "IfcDuctSegment", key: str | None = None) -> Any:
    """A straight flow segment from ``start`` to ``end`` (metres, centre line): a rectangular duct for
    ``size=(width, height)``, a round pipe or duct for ``size=(diameter,)``. IFC2X3 gets an IfcFlowSegment."""
    import ifcopenshell.api.geometry

    if file.schema == "IFC2X3":  # no IfcDuctSegment / IfcPipeSegment occurrences before IFC4
        ifc_class = "IfcFlowSegment"
    segment = _entity(file, ifc_class, name, key)
    if ifc_class != "IfcFlowSegment":
        segment.PredefinedType = "RIGIDSEGMENT"
    _contain(file, storey, segment)
    origin = file.createIfcAxis2Placement2D(file.createIfcCartesianPoint((0.0, 0.0)))  # required in IFC2X3
    if len(size) == 1:
        profile = file.createIfcCircleProfileDef("AREA", None, origin, size[0] / 2)
    else:
        profile = file.createIfcRectangleProfileDef("AREA", None, origin, size[0], size[1])
    direction = tuple(e - s for s, e in zip(start, end))
    length = sum(d * d for d in direction) ** 0.5
    body = ifcopenshell.api.geometry.add_profile_representation(
        file, context=_body(file), profile=profile, depth=length, cardinal_point=5)
    _assign(file, segment, body)
    up = (1.0, 0.0, 0.0) if abs(direction[2]) > 0.999 * length else (0.0, 0.0, 1.0)
    x_axis = (up[1] * direction[2] - up[2] * direction[1], up[2] * direction[0] - up[0] * direction[2],
              up[0] * direction[1] - up[1] * direction[0])  # across the segment (horizontal unless vertical)
    _place(file, segment, start, x_axis, direction)
    return segment


def stabilise_guids(file: ifcopenshell.file) -> None:
    """Replace the random GlobalIds ifcopenshell.api gave property sets and relationships with ones derived from
    what they belong to (objects already have name-derived ones), so they agree between runs and revisions."""
    for pset in file.by_type("IfcPropertySetDefinition"):
        owners = sorted(o.GlobalId for rel in file.get_inverse(pset) if rel.is_a("IfcRelDefinesByProperties")
                        for o in rel.RelatedObjects)
        pset.GlobalId = guid(f"{pset.is_a()}/{pset.Name}/{','.join(owners)}")
    seen: set[str] = set()
    for rel in file.by_type("IfcRelationship"):
        # single-valued ends only: one IfcRelContainedInSpatialStructure per storey keeps its id when walls change
        values = [rel[index] for index in range(len(rel))]
        ends = [v.GlobalId for v in values if isinstance(v, type(rel)) and v.is_a("IfcRoot")]
        key = f"{rel.is_a()}/{','.join(ends)}"
        while key in seen:
            key += "+"
        seen.add(key)
        rel.GlobalId = guid(key)


def sort_relationship_sets(file: ifcopenshell.file) -> None:
    """Order the unordered (SET) members of relationships by step id: ifcopenshell.api collects them through
    Python sets of entity instances, whose order changes from one model build to the next."""
    for rel in file.by_type("IfcRelationship"):
        if rel.is_a("IfcRelNests"):  # an ordered LIST
            continue
        for index in range(len(rel)):
            value = rel[index]
            if isinstance(value, tuple) and len(value) > 1 and all(isinstance(v, type(rel)) for v in value):
                rel[index] = sorted(value, key=lambda v: v.id())


def _write(file: ifcopenshell.file, path: Path) -> Path:
    """Write with stable GlobalIds and a fixed header (name, time stamp): the bytes only depend on the content."""
    sort_relationship_sets(file)
    stabilise_guids(file)
    for history in file.by_type("IfcOwnerHistory"):  # IFC2X3 only; keep its dates out of the bytes
        history.CreationDate, history.LastModifiedDate = EPOCH, EPOCH
    file.header.file_name.name = path.name
    file.header.file_name.time_stamp = TIME_STAMP
    path.parent.mkdir(parents=True, exist_ok=True)
    file.write(str(path))
    return path


def build_arch(walls: Sequence[WallSpec] = ARCH_WALLS, name: str = "Demo project") -> ifcopenshell.file:
    """The architecture model: a slab, ``walls`` and the doors whose host wall is among them."""
    file, storey = new_model("IFC4", name)
    xs = [c for w in walls for c in (w.p1[0], w.p2[0])]
    ys = [c for w in walls for c in (w.p1[1], w.p2[1])]
    add_slab(file, storey, "Ground slab", [(min(xs), min(ys)), (max(xs), min(ys)), (max(xs), max(ys)),
                                           (min(xs), max(ys))])
    hosts = {}
    for spec in walls:
        hosts[spec.key] = add_wall(file, storey, spec.name, spec.p1, spec.p2, fire_rating=spec.fire_rating,
                                   is_external=spec.external, key=spec.key)
    for key, door_name, host, along, width, height in DOORS:
        if host in hosts:
            add_door(file, storey, hosts[host], door_name, along, width, height, key=key)
    return file


def build_mep(name: str = "Demo project") -> ifcopenshell.file:
    """The MEP model: ducts and a pipe; the ``CROSSING`` ones pass through walls of the architecture model."""
    file, storey = new_model("IFC4", name)
    for key, ifc_class, segment_name, start, end, size in MEP_SEGMENTS:
        add_duct(file, storey, segment_name, start, end, size, ifc_class=ifc_class, key=key)
    return file


def write_tiny(path: Path) -> Path:
    """A one-wall IFC4 model (with geometry and Pset_WallCommon) for quick runs and benchmarks."""
    file, storey = new_model("IFC4", "Tiny project")
    add_wall(file, storey, "Wall", (0.0, 0.0), (4.0, 0.0), key="tiny")
    return _write(file, Path(path))


def write_demo(folder: Path) -> dict[str, Path]:
    """Write arch.ifc, arch_v2.ifc, mep.ifc and rules.ids into ``folder``; returns {stem: path}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rules = folder / "rules.ids"
    rules.write_text(RULES_IDS, encoding="utf-8")
    return {
        "arch": _write(build_arch(ARCH_WALLS), folder / "arch.ifc"),
        "arch_v2": _write(build_arch(ARCH_V2_WALLS), folder / "arch_v2.ifc"),
        "mep": _write(build_mep(), folder / "mep.ifc"),
        "rules": rules,
    }


def _spec(name: str, entity: str, requirement: str, usage: str = "required", description: str = "") -> str:
    occurs = 'minOccurs="1" maxOccurs="unbounded"' if usage == "required" else 'minOccurs="0" maxOccurs="unbounded"'
    return f"""\
    <specification name="{name}" ifcVersion="IFC4" description="{description}">
      <applicability {occurs}>
        <entity><name><simpleValue>{entity}</simpleValue></name></entity>
      </applicability>
      <requirements>
        {requirement}
      </requirements>
    </specification>
"""


_NAME = '<attribute cardinality="required"><name><simpleValue>Name</simpleValue></name></attribute>'
_FIRE = ('<property dataType="IFCLABEL" cardinality="required"><propertySet><simpleValue>Pset_WallCommon'
         '</simpleValue></propertySet><baseName><simpleValue>FireRating</simpleValue></baseName></property>')

SPEC_NAMED = "Walls have a name"
SPEC_FIRE = "Walls have a fire rating"
SPEC_STOREY = "Storeys exist"
# "Walls have a fire rating" is optional (minOccurs=0): it fails on the west wall, but as an optional
# specification it does not trip the ifctester gate of the coordination pipeline.
RULES_IDS = f"""\
<?xml version="1.0" encoding="UTF-8"?>
<ids xmlns="http://standards.buildingsmart.org/IDS" xmlns:xs="http://www.w3.org/2001/XMLSchema"
     xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
     xsi:schemaLocation="http://standards.buildingsmart.org/IDS http://standards.buildingsmart.org/IDS/1.0/ids.xsd">
  <info>
    <title>ifcflow demo rules</title>
    <version>1.0</version>
    <description>Example rules for the demo architecture model</description>
  </info>
  <specifications>
{_spec(SPEC_NAMED, "IFCWALL", _NAME, description="Every wall is named")}\
{_spec(SPEC_FIRE, "IFCWALL", _FIRE, "optional", description="Pset_WallCommon.FireRating is given")}\
{_spec(SPEC_STOREY, "IFCBUILDINGSTOREY", _NAME, description="The model has at least one named storey")}\
  </specifications>
</ids>
"""
