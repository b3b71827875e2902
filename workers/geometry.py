"""Tessellate once: a glb step and the clash steps of one run over the same model share one geometry pass.

Tessellation is what glb conversion and clash detection both pay for (on a 2.4 MB model about 2.4 s each; the
clash query itself is under 0.1 s). When a run has an ``ifcconvert`` step to glb/gltf with geometry settings the
clash tree can use, and ``ifcclash`` steps whose clash sets all read that same model file, the first of those
steps to start makes every shared product in one pass over the model: the glb, and the clash sets of each clash
step (clashes included). The other steps wait for that pass (a file lock), then only read their product. The steps
stay separate jobs: status, retries, reports and the content cache do not change. Which steps share is decided by
:mod:`ifcflow.pipeline.sharing`; the planner starts the clash steps after the glb step (``after``), so the glb
step is the one that makes the pass and no clash step holds a worker while it runs.

- Where: ``<run folder>/.geometry/<sha256 of the model file>/`` (one lock file, one glb, one JSON per product).
  The model's sha256 is computed when each step starts, so a model changed in between (a different sha256) gets
  a new folder and is tessellated again; nothing is shared across runs (each run has its own folder).
- Products are written under a temporary name and renamed; a product exists only complete. When the pass fails
  (a bad selector, no geometry) no product is written for the failing part and each step runs alone, reporting
  its own error as before. A retried step reads its product if the model is unchanged, otherwise runs alone.
- After the job: when the glb step makes the pass in a resident work horse, it ends once the glb is written; the
  clash query is the horse's after-job work (:func:`ifcflow.operations.horse.after_job`), holding the lock until
  the clash products are written, so the glb step's time is the glb's own. A horse that dies there drops the lock
  and the clash steps, finding no product, run alone.
- Memory: the pass keeps the shapes the clash sets select (one model's triangulation, which the clash tree holds
  anyway) and no more; they and the model are held only by the after-job work (or the job) and freed with it.
  Disk: one glb (hard-linked into the step folder, so not stored twice) and one clash JSON per clash step, removed
  with the run folder.
- Only ``use_world_coords``, ``convert_back_units``, ``weld_vertices``, ``disable_opening_subtractions``,
  ``sew_shells`` and ``plan`` at their defaults qualify (they change the shapes, not only the file); y-up and
  include/exclude do not change a shape's triangles. Clash elements the glb pass did not tessellate (e.g. an
  ``IfcSpace`` picked by a selector) are tessellated for the tree with ifcclash's own settings.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import ifcopenshell
import ifcopenshell.geom
import ifcopenshell.util.selector
from ifcclash.ifcclash import Clasher, ClashSettings
from redis import Redis
from rq import get_current_job
from rq.timeouts import JobTimeoutException

from ifcflow.engine import cache, store
from ifcflow.operations import horse
from ifcflow.pipeline import sharing
from ifcflow.pipeline.plan import Plan
from ifcflow.services.ifcclash import ClashOptions
from ifcflow.services.ifcconvert import ConvertOptions

from . import ifcclash, ifcconvert
from .runtime import Progress

LOG = logging.getLogger(__name__)
FOLDER = ".geometry"


@dataclass
class Group:
    """The steps of one run that share one geometry pass over ``model``."""

    model: str
    folder: Path
    convert: tuple[str, ConvertOptions]
    clashes: dict[str, ClashOptions] = field(default_factory=dict)

    def product(self, step_id: str, options: ConvertOptions | ClashOptions, suffix: str) -> Path:
        digest = hashlib.sha256(json.dumps(options.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()
        return self.folder / f"{step_id}-{digest[:16]}{suffix}"

    def glb(self) -> Path:
        return self.product(self.convert[0], self.convert[1], ".glb")

    def clash(self, step_id: str) -> Path:
        return self.product(step_id, self.clashes[step_id], ".json")


def group_of(plan: Plan, step_id: str, conn: Redis | None = None) -> Group | None:
    """The sharing group of ``step_id`` in ``plan`` (:func:`ifcflow.pipeline.sharing.groups`; the model's sha256
    is read now), or None."""
    for found in sharing.groups(plan.steps):
        if (step_id == found.convert[0] or step_id in found.clashes) and Path(found.model).is_file():
            folder = Path(plan.out_dir) / FOLDER / cache.sha256(found.model, conn)
            return Group(found.model, folder, found.convert, found.clashes)
    return None


def current_group() -> tuple[Group, str] | None:
    """The group of the step the current RQ job runs, with its step id (None outside RQ or when disabled)."""
    job = get_current_job()
    meta = (job.meta or {}) if job is not None else {}
    if job is None or not sharing.enabled() or not meta.get("ifcflow_run"):
        return None
    try:
        plan = store.load_plan(job.connection, meta["ifcflow_run"])
        group = group_of(plan, meta["ifcflow_step"], job.connection)
    except Exception:  # sharing is an optimisation: when in doubt, the step runs alone
        LOG.exception("geometry sharing not possible for job %s", job.id)
        return None
    return (group, meta["ifcflow_step"]) if group is not None else None


def ensure(group: Group, progress: Progress, model: ifcopenshell.file | None = None, defer: bool = False) -> None:
    """Make the group's products unless they exist; other steps of the group wait meanwhile (a file lock).

    ``model`` is the group's model when the calling step has it open already (the glb step), so the pass does not
    open it a second time (about 3 s and 1 GB for a 100 MB model). ``defer`` (the glb step): the clash query runs
    after the job, in the resident work horse (:func:`ifcflow.operations.horse.after_job`), which holds the lock
    until the clash products are written; the glb step ends once its glb is. A horse that dies meanwhile releases
    the lock with its death, and a clash step that finds no product runs alone."""
    group.folder.mkdir(parents=True, exist_ok=True)
    lock, owned = (group.folder / "lock").open("a"), True
    try:
        progress(0, 100, "waiting for the shared geometry pass", force=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
        failed = group.glb().with_suffix(".failed")
        if group.glb().with_suffix(".glb.json").exists() or failed.exists():
            return
        kept = tessellate(group, progress, model)  # (the model, the shapes the clash sets select)
        if kept is None:
            failed.touch()  # each step of the group now runs alone, once
            return
        if defer and horse.after_job(functools.partial(_query_after_job, group, *kept, lock)):
            owned = False  # released by the after-job work
            return
        query(group, *kept, progress)
    finally:
        if owned:
            _unlock(lock)


def _unlock(lock: IO[str]) -> None:
    fcntl.flock(lock, fcntl.LOCK_UN)
    lock.close()


def _query_after_job(group: Group, model: ifcopenshell.file, shapes: dict[int, Any], lock: IO[str]) -> None:
    """The clash query of a glb step's pass, run by its horse after the job (no progress: the job has ended)."""
    try:
        query(group, model, shapes, Progress(None))
    finally:
        _unlock(lock)


def convert_shared(options: ConvertOptions, target: Path, progress: Progress, notes: list[str],
                   model: ifcopenshell.file | None = None) -> tuple[int, list[str]] | None:
    """For the glb step of a group: link the shared glb to ``target``; (count, written ids) or None.

    ``model``: the step's model, already open (used by the pass instead of opening the file again)."""
    found = current_group()
    if found is None or found[0].convert[0] != found[1]:
        return None
    group = found[0]
    ensure(group, progress, model, defer=True)
    sidecar = group.glb().with_suffix(".glb.json")
    if not sidecar.exists():
        return None
    cache._link(group.glb(), target)
    facts = json.loads(sidecar.read_text(encoding="utf-8"))
    notes.extend(facts["notes"])
    return len(facts["written"]), list(facts["written"])


def clash_shared(progress: Progress) -> list[dict[str, Any]] | None:
    """For a clash step of a group: its clash sets with their clashes, as the shared pass found them, or None."""
    found = current_group()
    if found is None or found[1] not in found[0].clashes:
        return None
    group, step_id = found
    ensure(group, progress)
    product = group.clash(step_id)
    if not product.exists():
        return None
    sets: list[dict[str, Any]] = json.loads(product.read_text(encoding="utf-8"))
    return sets


def _write(path: Path, text: str) -> None:
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)


def wanted_ids(model: ifcopenshell.file, group: Group) -> set[int]:
    """Ids of the elements the group's clash sets select; a clash step whose selector fails leaves the group."""
    wanted: set[int] = set()
    for step_id, options in list(group.clashes.items()):
        try:
            for clash_set in options.clash_sets:
                for source in (*clash_set.a, *clash_set.b):
                    wanted |= {e.id() for e in SharedClasher.elements(model, source.model_dump())}
        except Exception as exc:  # the step runs alone and explains its selector
            LOG.info("clash step %s not shared: %s", step_id, exc)
            del group.clashes[step_id]
    return wanted


def tessellate(group: Group, progress: Progress, model: ifcopenshell.file | None = None
               ) -> tuple[ifcopenshell.file, dict[int, Any]] | None:
    """The pass's first part: write the glb (and its sidecar), keeping the shapes the clash sets need; returns the
    model and those shapes, or None when the glb could not be made (each step then runs alone)."""
    try:
        model = ifcconvert.open_ifc(group.model) if model is None else model
    except Exception:
        return None
    wanted = wanted_ids(model, group)
    shapes: dict[int, Any] = {}

    def keep(shape: Any) -> None:
        if shape.id in wanted:
            shapes[shape.id] = shape

    notes: list[str] = []
    temp = group.glb().with_name(group.glb().name + ".tmp")
    try:
        _, written = ifcconvert.convert(group.convert[1], model, temp, progress, notes, on_shape=keep)
    except JobTimeoutException:  # the step's own time is up: no fallback, no failed mark
        temp.unlink(missing_ok=True)
        raise
    except Exception:
        LOG.exception("shared geometry pass over %s failed; the steps run alone", group.model)
        temp.unlink(missing_ok=True)
        return None
    os.replace(temp, group.glb())
    _write(group.glb().with_suffix(".glb.json"), json.dumps({"written": written, "notes": notes}))
    return model, shapes


def query(group: Group, model: ifcopenshell.file, shapes: dict[int, Any], progress: Progress) -> None:
    """The pass's second part: every clash step's clash sets over the kept shapes, each written to its product (a
    clash step whose sets fail here gets none, and runs alone to report it)."""
    for step_id, options in group.clashes.items():
        settings = ClashSettings()
        settings.logger = ifcclash.LOG
        clasher = SharedClasher(settings, shapes)
        clasher.ifcs[group.model] = model
        clasher.clash_sets = [ifcclash.clash_set_dict(cs, options) for cs in options.clash_sets]
        try:
            ifcclash.run_clash_sets(clasher, progress)
        except JobTimeoutException:
            raise
        except Exception as exc:  # the clash step runs alone and reports this itself
            LOG.info("clash step %s not shared: %s", step_id, exc)
            continue
        plain = [{**cs, "a": [_source(s) for s in cs["a"]], "b": [_source(s) for s in cs.get("b", [])]}
                 for cs in clasher.clash_sets]
        _write(group.clash(step_id), json.dumps(plain))


def _source(source: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in source.items() if k != "ifc"}


class SharedClasher(Clasher):
    """ifcclash's Clasher, filling its tree from shapes already tessellated instead of a new iterator."""

    def __init__(self, settings: ClashSettings, shapes: dict[int, Any]):
        super().__init__(settings)
        self.shapes = shapes

    @staticmethod
    def elements(ifc_file: ifcopenshell.file, source: dict[str, Any]) -> set[Any]:
        """The elements a clash source selects, exactly as ifcclash selects them."""
        mode, selector = source.get("mode"), source.get("selector")
        everything = set(ifc_file.by_type("IfcElement")) - set(ifc_file.by_type("IfcFeatureElement"))
        if not mode or mode == "a" or not selector:
            return everything
        chosen = set(ifcopenshell.util.selector.filter_elements(ifc_file, selector))
        return everything - chosen if mode == "e" else chosen

    def add_collision_objects(self, name: str, ifc_file: ifcopenshell.file, source: Any) -> None:
        assert self.tree
        elements = self.elements(ifc_file, source)
        added = 0
        for element in elements:
            shape = self.shapes.get(element.id())
            if shape is not None:
                self.tree.add_element(shape)
                added += 1
        missing = [e for e in elements if e.id() not in self.shapes]
        if missing:  # not in the glb pass (e.g. IfcSpace): tessellate these as ifcclash would
            iterator = ifcopenshell.geom.iterator(self.geom_settings, ifc_file, 1, include=missing)
            if iterator.initialize():
                while True:
                    shape = iterator.get()
                    self.shapes[shape.id] = shape
                    self.tree.add_element(shape)
                    added += 1
                    if not iterator.next():
                        break
        assert added, "no element of the selection has geometry"  # as ifcclash's own iterator asserts
        self.groups[name]["elements"].update({e.GlobalId: e for e in elements})


ifcconvert.shared_pass = convert_shared  # (plugged in, so those modules never import this one)
ifcclash.shared_pass = clash_shared
