"""The original system's job endpoints, unchanged for its clients: each request is a one-step ifcflow run.

A request is checked (unknown fields 422, input files must exist in ``uploads/``: 404, hostile names 400),
planned and enqueued through the normal document -> plan -> enqueue path; its outputs go to
``<data>/output/<kind>/`` as in the original; the answer is the step's RQ job id.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import APIRouter, Body, Depends, HTTPException, Request
from pydantic import BaseModel

from . import objects, paths, recipes, submission
from .auth import require_key
from .requests import (
    IFC2JSONRequest,
    IfcClashRequest,
    IfcConvertRequest,
    IfcCsvImportRequest,
    IfcCsvRequest,
    IfcDiffRequest,
    IfcPatchListRecipesRequest,
    IfcPatchRequest,
    IfcQtoRequest,
    IfcTesterRequest,
    Original,
)
from .settings import Settings

router = APIRouter(dependencies=[Depends(require_key)], tags=["original"])


class JobId(BaseModel):
    job_id: str


JOB: dict[str, Any] = {"response_model": None, "responses": {200: {"model": JobId}}}
"""Documented as JobId, returned as a plain dict: no response validation (a thread hop per request)."""


def _input(settings: Settings, field: str, name: str) -> str:
    path = paths.input_file(settings.uploads, name, field)
    paths.check_input(settings.data, (settings.data,), str(path), field)  # never a hidden server file
    s3 = objects.store(settings)
    if not path.is_file() if s3 is None else objects.sync(settings, s3, path) is None:
        raise HTTPException(404, f"Input file not found: {name}")
    return str(path)


def _outputs(settings: Settings, body: Original, fields: tuple[str, ...], kind: str) -> tuple[Path, dict[str, str]]:
    """The folder the outputs go to (``output/<kind>/`` unless the client named another with the original's
    ``/output/...`` or ``/uploads/...`` form) and each output field's name relative to it. Every output's final
    path is checked once the folder is settled (a later field could move the folder under an earlier name)."""
    folder = Path(os.path.realpath(settings.output / kind))
    targets: dict[str, Path | str] = {}
    for field in fields:
        value = getattr(body, field)
        if not isinstance(value, str):
            continue
        mapped = paths.container(settings.data, value, field)
        if mapped is None:
            targets[field] = str(paths.relative(value, field))
            continue
        if not any(paths.contained(root, mapped) for root in (settings.output, settings.uploads)):
            raise paths.UnsafePath(f"{field}: {value!r}: outputs are written under /output/... (or over an upload "
                                   "in /uploads/...), never into /examples/")
        if paths.contained(settings.uploads, mapped) and mapped.parent != Path(os.path.realpath(settings.uploads)):
            raise paths.UnsafePath(f"{field}: {value!r}: an output over an upload is a file directly in /uploads/ "
                                   "(no folders there); write into /output/... instead")
        targets[field] = mapped
        if not (mapped.parent == folder or folder in mapped.parents):
            folder = mapped.parent
    names: dict[str, str] = {}
    for field, target in targets.items():
        final = Path(os.path.realpath(folder / target))
        if final.parent != folder and folder not in final.parents:
            raise paths.UnsafePath(f"{field}: {getattr(body, field)!r} is not in the folder of the other outputs "
                                   f"({paths.shown(settings.data, folder)}/); name the outputs in one folder")
        paths.writable_output(settings.data, final, field)
        names[field] = str(final.relative_to(folder))
    return folder, names


def submit(request: Request, body: Original, name: str, service: str, kind: str, inputs: tuple[str, ...],
           outputs: tuple[str, ...], options: dict[str, Any] | None = None) -> dict[str, str]:
    """Check ``body``, plan a one-step run of ``service`` writing into ``output/<kind>/``, enqueue it."""
    settings: Settings = request.app.state.settings
    chosen = body.options() if options is None else options
    folder, names = _outputs(settings, body, outputs, kind)
    chosen.update(names)
    for field in inputs:
        chosen[field] = _input(settings, field, getattr(body, field))
    plan = submission.one_step(settings, name, service, chosen, folder)
    submission.start(request.app.state.conn, settings, plan, body.webhook, body.ignored())
    return {"job_id": plan.steps[0].job_id}


@router.post("/ifcconvert", **JOB)
def ifcconvert(request: Request, body: IfcConvertRequest) -> dict[str, str]:
    """Convert an IFC model (glb, gltf, obj, dae, step, iges, svg, ttl by the output's extension)."""
    return submit(request, body, "ifcconvert", "ifcconvert", "converted", ("input_filename",),
                  ("output_filename", "log_file"))


def _table_kind(body: IfcCsvRequest) -> str:
    suffix = PurePosixPath(body.output_filename).suffix.lower().lstrip(".")
    if "format" not in body.model_fields_set and suffix in ("csv", "ods", "xlsx"):
        return suffix
    return body.format


@router.post("/ifccsv", **JOB)
def ifccsv(request: Request, body: IfcCsvRequest) -> dict[str, str]:
    """Export element attributes to CSV, ODS or XLSX (``output/<format>/``)."""
    return submit(request, body, "ifccsv", "ifccsv", _table_kind(body), ("filename",), ("output_filename",))


@router.post("/ifccsv/import", **JOB)
def ifccsv_import(request: Request, body: IfcCsvImportRequest) -> dict[str, str]:
    """Write an edited table back into a model (``output/ifc_updated/``)."""
    return submit(request, body, "ifccsv-import", "ifccsv-import", "ifc_updated", ("ifc_filename", "csv_filename"),
                  ("output_filename",))


@router.post("/ifcclash", **JOB)
def ifcclash(request: Request, body: IfcClashRequest) -> dict[str, str]:
    """Clash detection between clash sets of uploaded models (``output/clash/``)."""
    settings: Settings = request.app.state.settings
    options = body.options()
    for index, clash_set in enumerate(options["clash_sets"]):
        for side in ("a", "b"):
            for source in clash_set[side]:
                source["file"] = _input(settings, f"clash_sets[{index}].{side}.file", source["file"])
    return submit(request, body, "ifcclash", "ifcclash", "clash", (), ("output_filename",), options)


@router.post("/ifctester", **JOB)
def ifctester(request: Request, body: IfcTesterRequest) -> dict[str, str]:
    """Check a model against an IDS file (``output/ids/``)."""
    return submit(request, body, "ifctester", "ifctester", "ids", ("ifc_filename", "ids_filename"),
                  ("output_filename",))


@router.post("/ifcdiff", **JOB)
def ifcdiff(request: Request, body: IfcDiffRequest) -> dict[str, str]:
    """Differences between two revisions, as JSON (``output/diff/``)."""
    return submit(request, body, "ifcdiff", "ifcdiff", "diff", ("old_file", "new_file"), ("output_file",))


@router.post("/ifc2json", **JOB)
def ifc2json(request: Request, body: IFC2JSONRequest) -> dict[str, str]:
    """A model as ifcJSON (``output/json/``)."""
    return submit(request, body, "ifc2json", "ifc2json", "json", ("filename",), ("output_filename",))


@router.post("/calculate-qtos", **JOB)
def calculate_qtos(request: Request, body: IfcQtoRequest) -> dict[str, str]:
    """Base quantities written into the model (``output/qto/``)."""
    return submit(request, body, "calculate-qtos", "ifc5d", "qto", ("input_file",), ("output_file",))


@router.post("/patch/execute", **JOB)
def patch_execute(request: Request, body: IfcPatchRequest) -> dict[str, str]:
    """Apply an IfcPatch recipe (``output/patch/``)."""
    return submit(request, body, "patch", "ifcpatch", "patch", ("input_file",), ("output_file",))


@router.post("/patch/recipes/list")
def patch_recipes(body: IfcPatchListRecipesRequest = Body(default_factory=IfcPatchListRecipesRequest)) -> dict[str, Any]:
    """IfcPatch's built-in recipes with their parameters (answers at once; no worker needed)."""
    return recipes.listing(body.include_builtin, body.include_custom)



@router.post("/revit/execute", status_code=501, response_model=None,
             responses={501: {"description": "ifcflow has no Revit worker"}})
def revit_execute() -> None:
    """The original's Revit endpoint needs a Windows worker running Autodesk Revit, which ifcflow does not have."""
    raise HTTPException(501, "POST /revit/execute needs a Windows worker running Autodesk Revit; ifcflow has none "
                        "(export IFC from Revit and upload it with POST /upload/ifc instead)")
