"""Submitting work over HTTP: a pipeline (or one original-API request) becomes a planned, enqueued run.

Everything goes through the normal code path (document -> plan -> all-or-nothing enqueue); this module adds
what a server must enforce: every file a run reads lies in the data folder (or, for a committed pipeline, its
own folder), every file it writes lies in ``<data>/output/``, and run ids have enough entropy for many
submissions per second.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from redis import Redis

from ..engine import enqueue
from ..engine import webhooks as webhook
from ..errors import IfcflowError, NotAllowed, PipelineError
from ..pipeline import document, patchargs, source
from ..pipeline.plan import Plan, PlannedStep
from ..pipeline.plan import plan as make_plan
from ..services import SERVICES
from ..services.base import InputFile, OutputFile, Selector, file_options
from . import objects, paths
from .settings import Settings

NOTES = "notes"
"""Run record field: JSON list of request fields ifcflow accepted but could not honour."""


def new_run_id(name: str) -> str:
    """``<name>-<UTC yyyymmdd-HHMMSS>-<12 hex>``: sortable, and unique at thousands of submissions a second."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{name}-{stamp}-{secrets.token_hex(6)}"


def plan_text(settings: Settings, text: str, base: Path, inputs: dict[str, str] | None, name_hint: str,
              roots: tuple[Path, ...], out_root: Path | None = None) -> Plan:
    """Check and plan pipeline ``text`` whose relative paths resolve in ``base``; every input it reads must be
    inside one of ``roots``, checked before any file is opened. Raises PipelineError / UnsafePath."""
    overrides = {name: str(paths.input_file(settings.uploads, value, f"inputs.{name}"))
                 for name, value in (inputs or {}).items()}
    try:
        doc = document.parse(text, base / name_hint, overrides, check_files=False)
        return plan_document(settings, doc, roots, out_root or settings.runs)
    except ValueError as exc:  # a path the OS cannot take (NUL byte); pydantic's errors are PipelineErrors here
        raise paths.UnsafePath(f"pipeline: a path cannot be used ({exc}); use plain file names") from None


def plan_document(settings: Settings, doc: document.Document, roots: tuple[Path, ...], out_root: Path,
                  folder: Path | None = None) -> Plan:
    """Plan a document loaded without file checks: vet every path first, then check the input files.
    With ``folder`` (an original request, whose inputs its endpoint resolved in ``uploads/`` already), a one-step
    plan's outputs are moved there (see :func:`relocate`) before they are vetted."""
    planned = make_plan(doc, run_id=new_run_id(doc.pipeline.name), out_root=out_root)
    if folder is not None:
        planned = relocate(planned, folder)
    planned = resolve_arguments(settings, planned, roots)
    writable = (settings.output,) if folder is None else (settings.output, settings.uploads)
    check_inside(planned, roots, writable, inputs=folder is None, settings=settings)  # before any input file is opened
    objects.sync_inputs(settings, planned)  # an S3 store: the server's copies are its objects (or gone)
    problems = document.check_inputs(doc)
    if problems:
        raise PipelineError(problems)
    return planned


def _resolver(settings: Settings, roots: tuple[Path, ...], workdir: str, strict: bool) -> patchargs.Resolver:
    """Path arguments of a recipe: inputs inside ``roots`` (names in uploads/, the original's /uploads/, /output/,
    /examples/ prefixes, or absolute inside), output folders inside the step's folder or output/. ``strict``: the
    value must already be the resolved absolute path (a plan that is not rewritten, e.g. a batch's)."""

    def same(value: str, found: str, where: str) -> str:
        if strict and found != value:
            raise paths.UnsafePath(f"{where}: {value!r} must be a path inside the data folder given as "
                                   "${{ inputs.x }} or ${{ steps.s.outputs.x }} here")
        return found

    def input_file(value: str, where: str) -> str:
        if PurePosixPath(value).is_absolute() and paths.container(settings.data, value, where) is None:
            if not paths.check_input(settings.data, roots, value, where):
                raise paths.UnsafePath(f"{where}: {value!r} is outside the data folder; upload the file and name it "
                                       "relative to uploads/ (or as /uploads/x, /output/..., /examples/x)")
            return same(value, value, where)
        found = str(paths.input_file(settings.uploads, value, where))
        if not paths.check_input(settings.data, roots, found, where):
            raise paths.UnsafePath(f"{where}: {value!r} is outside the data folder")
        return same(value, found, where)

    def output_dir(value: str, where: str) -> str:
        base = Path(workdir)
        if value in (".", workdir):
            found = str(base)
        elif PurePosixPath(value).is_absolute() and paths.check_within((settings.output,), value, where):
            found = value
        else:
            mapped = paths.container(settings.data, value, where)
            found = str(mapped if mapped is not None else paths.inside(base, value, where))
        if not paths.check_within((settings.output,), found, where):
            raise paths.UnsafePath(f"{where}: {value!r} is outside the data folder's output/; name a folder "
                                   "relative to the step's output folder")
        if not paths.contained(base, found):  # another run's folder or a server cache is not the client's
            paths.writable_output(settings.data, Path(found), where)
        return same(value, found, where)

    return patchargs.Resolver(input_file, output_dir)


def free_options(settings: Settings, step: PlannedStep, roots: tuple[Path, ...], strict: bool) -> dict[str, Any]:
    """The step's options with every free option that can name a path or a host vetted (allow-listed over HTTP);
    today only IfcPatch's ``arguments`` are free (every other path option is a marked file, vetted by
    :func:`check_inside`)."""
    service = SERVICES[step.service]
    marked = {name for name, info in service.options.model_fields.items()
              if any(isinstance(m, (InputFile, OutputFile, Selector)) for m in info.metadata)}
    unknown = patchargs.unknown_options(step.service, step.options, marked)
    if unknown:
        raise NotAllowed(f"steps.{step.id}: option(s) {', '.join(unknown)} of service {step.service} are not allowed "
                         "over HTTP (not known to name no path or host); run the pipeline from the terminal")
    if step.service != "ifcpatch":
        return step.options
    where = f"steps.{step.id}.with.arguments"
    options = dict(step.options)
    options["arguments"] = patchargs.vet(str(options["recipe"]), list(options.get("arguments") or []),
                                         _resolver(settings, roots, step.workdir, strict), where, custom_kinds(settings))
    return options


def custom_kinds(settings: Settings) -> dict[str, tuple[str, ...]]:
    """The server folder's own recipes (IFCFLOW_PATCH_RECIPES), each argument a plain value."""
    from . import recipes

    return {r["name"]: tuple(patchargs.TEXT for _ in r["parameters"]) for r in recipes.folder_recipes()}


def resolve_arguments(settings: Settings, plan: Plan, roots: tuple[Path, ...]) -> Plan:
    """``plan`` with the path arguments of its recipes resolved inside the data folder (refused otherwise)."""
    steps = [s.model_copy(update={"options": free_options(settings, s, roots, strict=False)}) for s in plan.steps]
    return plan.model_copy(update={"steps": steps})


def check_inside(plan: Plan, roots: tuple[Path, ...], output: Path | tuple[Path, ...], inputs: bool = True,
                 settings: Settings | None = None) -> None:
    """Refuse a plan reading outside ``roots`` (unless ``inputs`` were vetted already), writing outside ``output``
    or using a recipe (or recipe argument) not allowed over HTTP."""
    writable = output if isinstance(output, tuple) else (output,)
    for step in plan.steps:
        if settings is not None:
            free_options(settings, step, roots, strict=True)
        options = SERVICES[step.service].options.model_validate(step.options) if inputs else None
        for sub, marker, value in file_options(options) if options is not None else []:
            where = f"steps.{step.id}.with.{'.'.join(str(s) for s in sub)}"
            if isinstance(marker, InputFile) and "${{" not in value:
                within = paths.check_input(settings.data, roots, value, where) if settings is not None else \
                    paths.check_within(roots, value, where)
                if not within:
                    raise paths.UnsafePath(f"{where}: {value!r} is outside the data folder; upload the file "
                                           "(POST /upload/...) and name it relative to uploads/")
        for name, path in step.outputs.items():
            if not paths.check_within(writable, path, f"steps.{step.id} output {name}"):
                raise paths.UnsafePath(f"steps.{step.id} output {name}: {path!r} is outside the data folder")


def one_step(settings: Settings, name: str, service: str, options: dict[str, Any], folder: Path) -> Plan:
    """A one-step run of ``service`` with ``options`` (inputs already resolved), writing into ``folder``.

    The pipeline is built as data (no YAML to parse); a problem is reported at the option's path."""
    data = {"version": 1, "name": name, "steps": {service: {"uses": service, "with": options}}}
    try:
        doc = document.from_source(source.Source(f"{name} request", data), settings.uploads / f"{name}.yaml",
                                   check_files=False)
        return plan_document(settings, doc, (settings.data,), settings.runs, folder)
    except ValueError as exc:
        raise paths.UnsafePath(f"{name}: a path cannot be used ({exc}); use plain file names") from None


def relocate(plan: Plan, folder: Path) -> Plan:
    """Move a one-step plan's outputs from its run folder into ``folder`` (the original's ``output/<kind>/``).

    The run folder (``plan.out_dir``, ``output/runs/<run_id>/``) stays the run's own: its record (``status.json``)
    goes there, never into the shared ``folder``, where it would replace a client's file of that name."""
    step = plan.steps[0]
    old, new = step.workdir, str(folder.resolve())

    def move(value: Any) -> Any:
        if isinstance(value, str) and (value == old or value.startswith(old + "/")):
            return new + value[len(old):]
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        if isinstance(value, list):
            return [move(v) for v in value]
        return value

    moved = PlannedStep.model_validate({**step.model_dump(), "workdir": new, "options": move(step.options),
                                        "outputs": move(step.outputs)})
    return plan.model_copy(update={"steps": [moved]})


def start(conn: Redis, settings: Settings, plan: Plan, hook: str | None = None,
          notes: list[str] | None = None) -> None:
    """Enqueue ``plan`` (all or nothing), recording its webhook and notes in the run record."""
    record: dict[str, str] = objects.pins(settings, plan)  # an S3 store: inputs pinned by key, sha256, version
    if hook:
        record.update(webhook.record_fields(hook, settings.webhook_allow))
    if notes:
        record[NOTES] = json.dumps(notes)
    for step in plan.steps:
        try:
            Path(step.workdir).mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):  # e.g. an output "in" a file: /uploads/model.ifc/x.glb
            raise paths.UnsafePath(f"step {step.id}: its output folder names an existing file, not a folder; "
                                   "choose another output name") from None
    enqueue.submit(conn, plan, ttl=settings.ttl, record=record)
    if hook:
        conn.sadd(webhook.WATCHED, plan.run_id)



def watch_again(conn: Redis, run_id: str) -> None:
    """A retried run with a webhook is live again: watch it until its next end."""
    from ..engine import store

    if conn.hexists(store.run_key(run_id), webhook.FIELD):
        conn.sadd(webhook.WATCHED, run_id)


def notes_of(record: dict[str, str]) -> list[str]:
    try:
        return list(json.loads(record.get(NOTES, "[]")))
    except ValueError:
        raise IfcflowError("corrupt notes in run record") from None
