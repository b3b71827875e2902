"""Worker of the ifcconvert service: IFC geometry to glb, gltf, obj, dae, step, iges, svg or ttl.

Everything runs in-process through ``ifcopenshell.geom``: the geometry iterator feeds one of its serializers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ifcopenshell
import ifcopenshell.geom
from pygltflib import GLTF2, BufferFormat

from ifcflow.errors import StepError
from ifcflow.services.ifcconvert import ConvertOptions

from .models import open_ifc
from .runtime import Outcome, Progress, step

BREP_FORMATS = frozenset({"step", "iges", "svg"})
"""Serializers that take the iterator's native (BRep) output instead of triangulated meshes."""

SharedPass = Callable[[ConvertOptions, Path, Progress, list[str], ifcopenshell.file], tuple[int, list[str]] | None]
shared_pass: SharedPass | None = None
"""The run's shared geometry pass, plugged in by :mod:`workers.geometry` (``Service.plugs``): it converts the
model when the step shares its tessellation with clash steps and returns what :func:`convert` would; None: the
step converts alone."""
DEFAULT_EXCLUDE = ("IfcSpace", "IfcOpeningElement")
"""Left out when no include/exclude list is given, as IfcConvert does (``exclude: []`` keeps them)."""

UNAVAILABLE_SETTINGS = {
    "sew_shells": "sewing shells is not a setting in ifcopenshell 0.9 (shells are reoriented instead)",
    "merge_boolean_operands": "merging boolean operands is not a setting in ifcopenshell 0.9",
}


def make_settings(options: ConvertOptions, fmt: str, model: ifcopenshell.file, notes: list[str]) -> Any:
    """The geometry settings for ``options`` and output format ``fmt``; ignored options are added to ``notes``."""
    settings = ifcopenshell.geom.settings()
    if not options.plan and not options.model:
        raise StepError("nothing to convert: plan and model are both false; set at least one of them to true")
    if options.plan and options.model:
        settings.set("dimensionality", settings.CURVES_SURFACES_AND_SOLIDS)
    elif options.plan:
        settings.set("dimensionality", settings.CURVES)
    else:
        settings.set("dimensionality", settings.SURFACES_AND_SOLIDS)
    if options.weld_vertices is not None:  # None keeps the library default (weld)
        settings.set("weld-vertices", options.weld_vertices)
    settings.set("use-world-coords", options.use_world_coords)
    settings.set("convert-back-units", options.convert_back_units)
    settings.set("disable-opening-subtractions", options.disable_opening_subtractions)
    if options.sew_shells:
        settings.set("reorient-shells", True)
        notes.append("sew_shells: " + UNAVAILABLE_SETTINGS["sew_shells"] + "; reorient-shells was set")
    if options.merge_boolean_operands:
        notes.append("merge_boolean_operands ignored: " + UNAVAILABLE_SETTINGS["merge_boolean_operands"])
    if fmt in ("glb", "gltf"):
        settings.set("y-up", True)
    if fmt in BREP_FORMATS:
        settings.set("iterator-output", settings.NATIVE)
    if fmt == "svg":
        if options.bounds:
            settings.set("bounds", options.bounds.lower())
        if any(s.Elevation is not None for s in model.by_type("IfcBuildingStorey")):
            settings.set("section-height-from-storeys", True)
        else:  # no storey elevations to cut at: one plan cut 1 m above the origin
            settings.set("section-height", 1.0)
            notes.append("svg: no storey has an elevation; cut one section at 1 m")
    elif options.bounds:
        notes.append("bounds ignored: only used for svg output")
    return settings


def elements_of(model: ifcopenshell.file, types: list[str], what: str) -> list[ifcopenshell.entity_instance]:
    """Every product of the given IFC types (subtypes included), in file order."""
    found: dict[int, ifcopenshell.entity_instance] = {}
    for name in types:
        try:
            instances = model.by_type(name)
        except RuntimeError:
            raise StepError(f"{what}: {name} is not an entity type of the {model.schema} schema") from None
        for instance in instances:
            if instance.is_a("IfcProduct"):
                found[instance.id()] = instance
    return [found[key] for key in sorted(found)]


def selection(options: ConvertOptions, model: ifcopenshell.file) -> tuple[dict[str, Any], list[Any] | None]:
    """Iterator include/exclude keyword arguments and the products that should be converted (None: all)."""
    if options.include is not None:
        chosen = elements_of(model, options.include, "include")
        if options.exclude:
            dropped = {e.id() for e in elements_of(model, options.exclude, "exclude")}
            chosen = [e for e in chosen if e.id() not in dropped]
        return {"include": chosen}, chosen
    excluded = options.exclude if options.exclude is not None else list(DEFAULT_EXCLUDE)
    if excluded:
        dropped_list = elements_of(model, excluded, "exclude")
        dropped = {e.id() for e in dropped_list}
        return ({"exclude": dropped_list} if dropped_list else {}), [
            e for e in model.by_type("IfcProduct") if e.id() not in dropped]
    return {}, None


def create_serializer(fmt: str, path: Path, settings: Any) -> Any:
    if fmt == "obj":
        return ifcopenshell.geom.serializers.obj(str(path), str(path.with_suffix(".mtl")), settings)
    return getattr(ifcopenshell.geom.serializers, "glb" if fmt == "gltf" else fmt)(str(path), settings)


def glb_to_gltf(glb: Path, gltf: Path) -> None:
    """Rewrite a binary glTF as a text glTF with its buffer embedded as a data URI."""
    document = GLTF2.load_binary(str(glb))
    document.convert_buffers(BufferFormat.DATAURI)
    document.save_json(str(gltf))


def convert(options: ConvertOptions, model: ifcopenshell.file, target: Path, progress: Progress,
            log: list[str], on_shape: Callable[[Any], None] | None = None) -> tuple[int, list[str]]:
    """Serialize the model's geometry to ``target``; returns (elements written, their ids).

    ``on_shape`` sees every tessellated shape as well (see :mod:`workers.geometry`: one pass, several steps)."""
    fmt = options.format()
    settings = make_settings(options, fmt, model, log)
    kwargs, wanted = selection(options, model)
    serializer = create_serializer(fmt, target, settings)
    serializer.setFile(model)
    written: list[str] = []
    iterator = None
    if wanted is None or wanted:
        iterator = ifcopenshell.geom.iterator(settings, model, options.threads, **kwargs)
    started = iterator.initialize() if iterator is not None else False
    if iterator is not None and started and options.convert_back_units:
        serializer.setUnitNameAndMagnitude(iterator.unit_name(), float(iterator.unit_magnitude()))
    else:
        serializer.setUnitNameAndMagnitude("METER", 1.0)
    serializer.writeHeader()
    if iterator is not None and started:
        while True:
            shape = iterator.get()
            serializer.write(shape)
            if on_shape is not None:
                on_shape(shape)
            written.append(f"#{shape.id}")
            progress(iterator.progress(), 100, f"{len(written)} elements converted to {fmt}")
            if not iterator.next():
                break
    serializer.finalize()
    del serializer  # some serializers only close their file when destroyed
    if iterator is not None:
        text = iterator.getLog().strip()
        if text:
            log.append("geometry library messages:")
            log.extend("  " + line for line in text.splitlines())
    return len(written), written


def missing(model: ifcopenshell.file, wanted: list[Any] | None, written: list[str]) -> list[str]:
    """Products with a representation that produced no geometry."""
    done = set(written)
    candidates = wanted if wanted is not None else model.by_type("IfcProduct")
    lines = []
    for product in candidates:
        if getattr(product, "Representation", None) is None or product.is_a("IfcOpeningElement"):
            continue
        if f"#{product.id()}" not in done:
            lines.append(f"  #{product.id()} {product.is_a()} {product.GlobalId} {product.Name or ''}".rstrip())
    return lines


def body(options: ConvertOptions, outputs: dict[str, Path], progress: Progress) -> Outcome:
    """Convert the model's geometry to the format the output's extension names, and log what was left out."""
    fmt = options.format()
    progress(0, 100, "opening model")
    model = open_ifc(options.input)
    started = time.monotonic()
    log: list[str] = [f"ifcconvert {Path(options.input).name} -> {outputs['model'].name} ({fmt})"]
    notes: list[str] = []
    shared = None
    target = outputs["model"]
    if fmt == "gltf":
        target = target.with_name(target.name + ".tmp.glb")
    try:
        shared = shared_pass(options, target, progress, notes, model) if shared_pass is not None else None
        count, written = shared or convert(options, model, target, progress, notes)
        if fmt == "gltf":
            progress(99, 100, "writing text glTF")
            glb_to_gltf(target, outputs["model"])
    except StepError:
        raise
    except Exception as exc:
        raise StepError(f"converting {Path(options.input).name} to {fmt} failed: {type(exc).__name__}: {exc}") from None
    finally:
        if fmt == "gltf":
            target.unlink(missing_ok=True)
    if not outputs["model"].exists():
        raise StepError(f"the {fmt} serializer wrote no file; nothing was converted")
    kwargs, wanted = selection(options, model)
    skipped = missing(model, wanted, written)
    elapsed = time.monotonic() - started
    log.append(f"{count} elements converted in {elapsed:.1f} s")
    log.extend(notes)
    log.append(f"{len(skipped)} elements with a representation produced no geometry" + (":" if skipped else ""))
    if options.verbose:
        log.extend(skipped)
    outputs["log"].write_text("\n".join(log) + "\n", encoding="utf-8")
    message = f"converted {count} elements to {fmt}"
    if skipped:
        message += f" ({len(skipped)} without geometry, see the log)"
    if count == 0:
        message += "; the output is empty"
    return Outcome(message, {"elements": count, "format": fmt, "without_geometry": len(skipped),
                             "seconds": round(elapsed, 2), "shared_geometry": shared is not None})


run = step(body)
