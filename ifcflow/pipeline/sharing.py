"""Which steps of a run can share one geometry pass over a model (tessellate once). Pure: options only.

The one rule, used by the planner (to order a clash step after the glb step whose pass serves it, so it never
holds a worker waiting for that pass) and by the work horse (``workers/geometry.py``, which makes the pass):

- a glb/gltf ``ifcconvert`` step *shares* when its settings give the shapes a clash tree is built from
  (:func:`shareable`);
- an ``ifcclash`` step is *served* by the first sharing glb step of the model that every one of its clash sets
  reads (:func:`clash_model`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..services.ifcclash import ClashOptions
from ..services.ifcconvert import ConvertOptions

GLB_FORMATS = ("glb", "gltf")
ENABLED = "IFCFLOW_SHARE_GEOMETRY"
"""Set to 0 to make every step tessellate on its own (for comparison): no sharing, no ordering."""


class StepOptions(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def service(self) -> str: ...
    @property
    def options(self) -> dict[str, Any]: ...


@dataclass
class Sharing:
    """The steps of one run that share one geometry pass over ``model``: the glb step and the clash steps."""

    model: str
    convert: tuple[str, ConvertOptions]
    clashes: dict[str, ClashOptions] = field(default_factory=dict)


def enabled() -> bool:
    return os.environ.get(ENABLED, "1").strip() != "0"


def shareable(options: ConvertOptions) -> bool:
    """The conversion's shapes are the ones a clash tree would be built from."""
    return bool(options.format() in GLB_FORMATS and options.model and not options.plan
                and options.weld_vertices is None and not options.use_world_coords
                and not options.convert_back_units and not options.disable_opening_subtractions
                and not options.sew_shells)


def clash_model(options: ClashOptions) -> str | None:
    """The one model file every clash set of the step reads, or None."""
    files = {s.file for cs in options.clash_sets for s in (*cs.a, *cs.b)}
    return files.pop() if len(files) == 1 else None


def groups(steps: Sequence[StepOptions]) -> list[Sharing]:
    """Every sharing group of a run's steps (in their order): the first sharing glb step of each model, with the
    clash steps it serves; a model without such clash steps has no group."""
    converts: list[tuple[str, ConvertOptions]] = []
    clashes: dict[str, ClashOptions] = {}
    for step in steps:
        if step.service == "ifcconvert":
            options = ConvertOptions.model_validate(step.options)
            if shareable(options):
                converts.append((step.id, options))
        elif step.service == "ifcclash":
            clash_options = ClashOptions.model_validate(step.options)
            if clash_model(clash_options) is not None:
                clashes[step.id] = clash_options
    found: list[Sharing] = []
    seen: set[str] = set()
    for convert_id, options in converts:  # the first glb step of a model is the one that shares
        if options.input in seen:
            continue
        seen.add(options.input)
        served = {i: c for i, c in clashes.items() if clash_model(c) == options.input}
        if served:
            found.append(Sharing(options.input, (convert_id, options), served))
    return found
