"""Worker of the ifcclash service: run every clash set with ifcclash and write JSON and/or BCF."""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ifcopenshell
import ifcopenshell.util.selector
import numpy as np
from ifcclash.ifcclash import Clasher, ClashSettings

from ifcflow.errors import StepError
from ifcflow.services.ifcclash import ClashOptions, ClashSet, ClashSource

from .models import open_ifc
from .runtime import Outcome, Progress, step

LOG = logging.getLogger(__name__)
shared_pass: Callable[[Progress], list[dict[str, Any]] | None] | None = None
"""The run's shared geometry pass, plugged in by :mod:`workers.geometry` (``Service.plugs``): this step's clash
sets with their clashes when the run's glb step found them, else None (the step clashes alone)."""


def clash_set_dict(clash_set: ClashSet, options: ClashOptions) -> dict[str, Any]:
    """The plain dict ifcclash expects (a fresh one: the library mutates it)."""

    def source(s: ClashSource) -> dict[str, Any]:
        found: dict[str, Any] = {"file": s.file, "mode": s.mode}
        if s.selector:
            found["selector"] = s.selector
        return found

    return {
        "name": clash_set.name, "a": [source(s) for s in clash_set.a], "b": [source(s) for s in clash_set.b],
        "mode": options.mode, "tolerance": options.tolerance, "clearance": options.clearance,
        "check_all": options.check_all, "allow_touching": options.allow_touching,
    }


def selected(model: ifcopenshell.file, source: ClashSource, where: str) -> int:
    """How many elements ``source`` selects (as ifcclash selects them); a bad selector raises StepError."""
    elements = set(model.by_type("IfcElement")) - set(model.by_type("IfcFeatureElement"))
    if not source.selector or source.mode == "a":
        return len(elements)
    try:
        chosen = set(ifcopenshell.util.selector.filter_elements(model, source.selector))
    except Exception as exc:  # the selector grammar raises parser-specific errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StepError(f"{where}: cannot understand selector {source.selector!r}: {first}") from None
    return len(chosen) if source.mode == "i" else len(elements - chosen)


def load_models(options: ClashOptions, progress: Progress) -> dict[str, ifcopenshell.file]:
    """Open every model once (clear errors for bad files) and check that each source selects something."""
    models: dict[str, ifcopenshell.file] = {}
    files = sorted({s.file for cs in options.clash_sets for s in (*cs.a, *cs.b)})
    for index, path in enumerate(files):
        progress(index, len(files) + 1, f"opening {Path(path).name}")
        models[path] = open_ifc(path)
    for clash_set in options.clash_sets:
        for side, sources in (("a", clash_set.a), ("b", clash_set.b)):
            for number, source in enumerate(sources, 1):
                where = f"clash set '{clash_set.name}', {side} source {number} ({Path(source.file).name})"
                if not selected(models[source.file], source, where):
                    what = f"selector {source.selector!r} (mode {source.mode})" if source.selector else "it"
                    raise StepError(f"{where}: {what} selects no elements; check the selector and the model")
    return models


def run_clash_sets(clasher: Clasher, progress: Progress) -> None:
    """Clash set by set, for progress and to name the set whose selection has no geometry."""
    total = len(clasher.clash_sets)
    for index, clash_set in enumerate(clasher.clash_sets):
        progress(index, total, f"clash set {clash_set['name']}")
        try:
            clasher.process_clash_set(clash_set)
        except AssertionError:
            raise StepError(f"clash set '{clash_set['name']}': one of its selections has no elements with "
                            "geometry, so there is nothing to clash; check the selectors") from None
        keep_sides(clash_set, set(clasher.groups["a"]["elements"]))


_SIDES = (("a_global_id", "b_global_id"), ("a_ifc_class", "b_ifc_class"), ("a_name", "b_name"), ("p1", "p2"))


def keep_sides(clash_set: Any, a_ids: set[str]) -> None:
    """Set a's element is ``a`` in every clash: ifcopenshell's tree may report a pair the other way round."""
    fixed: dict[str, Any] = {}
    for clash in clash_set.get("clashes", {}).values():
        if clash["a_global_id"] not in a_ids and clash["b_global_id"] in a_ids:
            for first, second in _SIDES:
                clash[first], clash[second] = clash[second], clash[first]
        fixed[f"{clash['a_global_id']}-{clash['b_global_id']}"] = clash
    clash_set["clashes"] = fixed


def require_sklearn() -> None:
    if importlib.util.find_spec("sklearn") is None:
        raise StepError("smart_grouping needs scikit-learn, which is not installed on the ifcclash worker; "
                        "set smart_grouping: false or install scikit-learn there")


def smart_group(clasher: Clasher, options: ClashOptions) -> int:
    """Group nearby clashes (adds ``smart_group`` to every clash); returns the number of groups."""
    require_sklearn()
    groups = clasher.smart_group_clashes(clasher.clash_sets, options.max_cluster_distance)
    return sum(len(found[0]) for found in groups.values() if found)


def write_json(clash_sets: list[dict[str, Any]], path: Path) -> None:
    """The report in ifcclash's JSON layout (a list of clash sets with their clashes), minus the open models."""
    plain = [{**cs, "a": [_source(s) for s in cs["a"]], "b": [_source(s) for s in cs.get("b", [])]}
             for cs in clash_sets]
    with path.open("w", encoding="utf-8") as handle:
        json.dump(plain, handle, indent=2)


def _source(source: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in source.items() if k != "ifc"}


def write_bcf(clash_sets: list[dict[str, Any]], path: Path) -> int:
    """One BCF 2.1 file with a topic per clash (every clash set in it); returns the number of topics."""
    try:
        from bcf.v2.bcfxml import BcfXml
    except ImportError:
        raise StepError("BCF export needs bcf-client, which is not installed on the ifcclash worker") from None
    bcfxml = BcfXml.create_new(clash_sets[0]["name"] if len(clash_sets) == 1 else "Clashes")
    topics = 0
    for clash_set in clash_sets:
        for clash in clash_set.get("clashes", {}).values():
            title = f"{clash['a_ifc_class']}/{clash['a_name']} and {clash['b_ifc_class']}/{clash['b_name']}"
            topic = bcfxml.add_topic(title, f"{clash_set['name']}: {title} ({clash['type']})", "ifcflow")
            topic.add_viewpoint_from_point_and_guids(np.array(clash["p1"]), clash["a_global_id"],
                                                     clash["b_global_id"])
            topics += 1
    bcfxml.save(path)
    return topics


def body(options: ClashOptions, outputs: dict[str, Path], progress: Progress) -> Outcome:
    """Run the clash sets, then write the report (JSON or BCF) and the optional BCF file."""
    if options.smart_grouping:
        require_sklearn()  # before any work is done
    # the run's glb step may have found these clashes already
    shared = shared_pass(progress) if shared_pass is not None else None
    models = {} if shared is not None else load_models(options, progress)  # (a shared pass checked selectors)
    settings = ClashSettings()
    settings.logger = LOG
    settings.output = str(outputs["report"])
    clasher = Clasher(settings)
    clasher.ifcs.update(models)
    if shared is not None:
        clasher.clash_sets = shared
    else:
        clasher.clash_sets = [clash_set_dict(cs, options) for cs in options.clash_sets]
        run_clash_sets(clasher, progress)
    groups = smart_group(clasher, options) if options.smart_grouping else None
    sets: list[dict[str, Any]] = [dict(cs) for cs in clasher.clash_sets]
    progress(len(sets), len(sets) + 1, "writing report")
    if options.output.lower().endswith(".bcf"):
        write_bcf(sets, outputs["report"])
    else:
        write_json(sets, outputs["report"])
    if "bcf" in outputs:
        write_bcf(sets, outputs["bcf"])
    counts = {cs["name"]: len(cs.get("clashes", {})) for cs in sets}
    total = sum(counts.values())
    data: dict[str, Any] = {"clashes": total, "clash_sets": counts, "shared_geometry": shared is not None}
    if groups is not None:
        data["smart_groups"] = groups
    listing = ", ".join(f"{name}: {count}" for name, count in counts.items())
    return Outcome(f"{total} clash{'es' if total != 1 else ''} in {len(counts)} clash set"
                   f"{'s' if len(counts) != 1 else ''} ({listing})", data)


run = step(body)
