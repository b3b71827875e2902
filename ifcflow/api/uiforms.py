"""What the "new run" page needs: the committed pipelines, the uploaded files, and starting a run from the form."""

from __future__ import annotations

import re
import secrets
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices, BaseModel

from ..errors import IfcflowError, PipelineError, Problem, StorageError
from ..services import SERVICES
from ..services.base import InputFile
from . import paths
from .settings import Settings

REF = re.compile(r"\$\{\{\s*inputs\.([A-Za-z0-9_-]+)\s*\}\}")
NAMED = re.compile(r"(?:^|[\s'\"(])(?:-i |inputs\.)([A-Za-z0-9_-]+)")
KINDS = {".ifc": "IFC model", ".ids": "IDS file"}


@dataclass(frozen=True)
class PipelineChoice:
    file: str
    name: str
    description: str
    inputs: dict[str, str]
    accepts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Per input, the file name endings the steps using it accept (() for any file)."""

    def kind(self, name: str) -> str:
        """``IFC model (.ifc)``, ``IDS file (.ids, .xml)``, or ``file`` for an input of any type."""
        suffixes = self.accepts.get(name, ())
        what = next((KINDS[s] for s in suffixes if s in KINDS), "file")
        return f"{what} ({', '.join(suffixes)})" if suffixes else "file"

    def offered(self, name: str, uploads: list[str]) -> list[str]:
        """The uploaded files of the right type for input ``name``."""
        suffixes = self.accepts.get(name, ())
        return [f for f in uploads if not suffixes or f.lower().endswith(suffixes)]


@dataclass
class Outcome:
    """A started run (``run_id``), or why not: problems tied to a form field (an input) in ``fields``, the others
    (``line:col`` problems or one error) in ``problems``/``error``, with the form's choices."""

    pipeline: str
    run_id: str | None = None
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    picked: dict[str, str] = field(default_factory=dict)
    fields: dict[str, list[str]] = field(default_factory=dict)


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The option models inside an annotation (``list[ClashSet]`` -> ``[ClashSet]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def _walk(model: type[BaseModel], raw: Any, found: dict[str, set[str]]) -> None:
    """Record, per input referenced by an input-file option of ``raw`` (a step's ``with:``), its accepted endings."""
    if not isinstance(raw, dict):
        return
    for name, info in model.model_fields.items():
        names = [name, *(info.validation_alias.choices if isinstance(info.validation_alias, AliasChoices) else [])]
        key = next((n for n in names if isinstance(n, str) and n in raw), None)
        if key is None:
            continue
        value = raw[key]
        marker = next((m for m in info.metadata if isinstance(m, InputFile)), None)
        if marker is not None and isinstance(value, str):
            for ref in REF.findall(value):
                found.setdefault(ref, set()).update(marker.suffixes or ("*",))
        for sub in _models(info.annotation):
            for item in value if isinstance(value, list) else [value]:
                _walk(sub, item, found)


def accepted(doc: dict[str, Any], inputs: dict[str, str]) -> dict[str, tuple[str, ...]]:
    """Per input, the endings accepted by every option that uses it (any file when one option takes any); an
    input no option uses takes its default's ending, if it has one."""
    found: dict[str, set[str]] = {}
    steps = doc.get("steps") if isinstance(doc.get("steps"), dict) else {}
    for step in (steps or {}).values():
        service = SERVICES.get(str(step.get("uses"))) if isinstance(step, dict) else None
        if service is not None:
            _walk(service.options, step.get("with"), found)
    result = {}
    for name, default in inputs.items():
        suffixes = found.get(name) or ({Path(default).suffix.lower()} if Path(default).suffix else {"*"})
        result[name] = () if "*" in suffixes else tuple(sorted(suffixes))
    return result


def _input_at(data: Any, path: str) -> list[str]:
    """The inputs a pipeline value (``steps.qto.with.ifc``) refers to."""
    node = data
    for part in path.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return []
    return REF.findall(node) if isinstance(node, str) else []


def tie(outcome: Outcome, problems: list[Problem], data: Any, folder: str) -> None:
    """Put each problem under the form field (input) it is about; the rest stay in ``outcome.problems``."""
    for problem in problems:
        shown = str(problem).replace(folder, "")
        names = (NAMED.findall(f" {problem.file}") if not problem.line else
                 _input_at(data, problem.path) or (problem.path.split(".")[1:2] if problem.path.startswith(
                     "inputs.") else []))
        names = [n for n in names if n in outcome.picked or n in (data.get("inputs") or {})]
        if names:
            for name in dict.fromkeys(names):
                outcome.fields.setdefault(name, []).append(shown)
        else:
            outcome.problems.append(shown)


def tie_error(outcome: Outcome, message: str, known: list[str]) -> None:
    """One error: under the input it names (``inputs.model: ...``), else at the top."""
    name = next((n for n in NAMED.findall(f" {message}") if n in known), None)
    if name:
        outcome.fields.setdefault(name, []).append(message)
    else:
        outcome.error = message


def pipelines_in(folder: Path) -> list[PipelineChoice]:
    """The pipeline files in ``folder`` (name, description, inputs and their defaults), by file name. A file
    that does not parse is still listed: starting it shows its problems."""
    found = []
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]) if folder.is_dir() else []:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, OSError, UnicodeDecodeError):
            loaded = None
        doc: dict[str, Any] = loaded if isinstance(loaded, dict) else {}
        inputs = doc.get("inputs") if isinstance(doc.get("inputs"), dict) else {}
        declared = {str(k): "" if v is None else str(v) for k, v in (inputs or {}).items()}
        found.append(PipelineChoice(path.name, str(doc.get("name") or path.stem), str(doc.get("description") or ""),
                                    declared, accepted(doc, declared)))
    return found


def uploads_in(folder: Path, limit: int = 500) -> list[str]:
    """Names of the files in the uploads folder (newest first, at most ``limit``)."""
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    files.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return [p.name for p in files[:limit]]


async def store_upload(settings: Settings, path: Path) -> None:
    """With an S3 store: the saved upload goes into it too (``uploads/<name>``), as ``POST /upload/*`` does."""
    from fastapi.concurrency import run_in_threadpool

    from . import objects

    s3 = objects.store(settings)
    if s3 is not None:
        try:
            await run_in_threadpool(s3.put, path, objects.data_key(settings, path))
        except StorageError as exc:
            raise objects.unavailable(exc) from None


async def save_upload(upload: Any, uploads: Path, limit: int) -> str:
    """Store a browser upload in ``uploads`` under its (checked) base name; over ``limit`` bytes it is refused
    and nothing is left behind."""
    name = paths.upload_name(upload.filename)
    staged = getattr(upload, "staged", None)
    if staged is not None:  # streamed into its own temporary file within the limit (ifcflow.api.formstream)
        paths.replace_file(staged, uploads / name, "upload")
        return name
    temp = uploads / f".ui-upload-{secrets.token_hex(8)}"  # one per upload: two same-name uploads never share it
    size = 0
    try:
        with temp.open("wb") as out:
            while chunk := await upload.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise IfcflowError(f"{name} is larger than the upload limit ({limit} bytes, IFCFLOW_MAX_UPLOAD)")
                out.write(chunk)
        paths.replace_file(temp, uploads / name, "upload")
    finally:
        temp.unlink(missing_ok=True)
    return name


def _unwanted(choice: PipelineChoice | None, pipeline: str, name: str, filename: str) -> str | None:
    """Why an uploaded file is not stored: no such pipeline or input, or not of a type the input's steps read."""
    if choice is None:
        return f"no committed pipeline {pipeline!r}; choose one of the list (the file was not stored)"
    if name not in choice.inputs:
        return f"{pipeline} has no input {name!r} (the file was not stored)"
    if not choice.offered(name, [filename]):
        return (f"{filename} is the wrong type for {name}: expected an {choice.kind(name)}; upload a file ending in "
                f"{' or '.join(choice.accepts[name])} (the file was not stored)")
    return None


async def start_from_form(request: Any, form: Any) -> Outcome:
    """Start the chosen committed pipeline with the uploaded or picked inputs (``POST /runs`` with ``file``).
    Problems are tied to the input they are about; paths are shown relative to the server's folders."""
    from fastapi import HTTPException
    from fastapi.concurrency import run_in_threadpool

    from .problems import public
    from .runs import RunRequest, start_run

    settings = request.app.state.settings
    outcome = Outcome(pipeline=str(form.get("pipeline") or ""))
    choice = next((p for p in pipelines_in(settings.pipelines) if p.file == outcome.pipeline), None)
    known = list(choice.inputs) if choice else []
    for key, value in form.multi_items():
        kind, _, name = key.partition(":")
        try:
            if kind == "upload" and getattr(value, "filename", None):
                refused = _unwanted(choice, outcome.pipeline, name, str(value.filename))
                if refused:  # nothing is stored for an input the pipeline does not have, or of the wrong type
                    if choice is not None and name in choice.inputs:
                        outcome.fields.setdefault(name, []).append(refused)
                    else:  # no field of the form to show it at
                        outcome.error = refused
                    continue
                outcome.picked[name] = await save_upload(value, settings.uploads, settings.max_upload)
                await store_upload(settings, settings.uploads / outcome.picked[name])
            elif kind == "pick" and isinstance(value, str) and value:
                outcome.picked.setdefault(name, value)
        except IfcflowError as exc:
            outcome.fields.setdefault(name, []).append(str(exc))
    for name, picked in outcome.picked.items():
        if choice and name in choice.accepts and picked not in choice.offered(name, [picked]):
            outcome.fields.setdefault(name, []).append(
                f"{picked} is the wrong type for {name}: expected an {choice.kind(name)}; upload or pick a file "
                f"ending in {' or '.join(choice.accepts[name])}")
    if outcome.fields or outcome.error:
        return outcome
    def shown(text: str) -> str:
        return public(text, (settings.data, settings.pipelines))

    try:
        body = RunRequest(pipeline=None, file=outcome.pipeline, inputs=outcome.picked, webhook=None)
        started = await run_in_threadpool(start_run, request, body)
        outcome.run_id = started.run_id
    except PipelineError as exc:  # paths shown relative to the server's folders: its layout is not news
        data = yaml.safe_load((settings.pipelines / outcome.pipeline).read_text(encoding="utf-8"))
        tie(outcome, [Problem(shown(p.file), p.line, p.col, shown(p.message), p.path) for p in exc.problems],
            data if isinstance(data, dict) else {}, f"{settings.pipelines}/")
    except HTTPException as exc:
        tie_error(outcome, shown(exc.detail if isinstance(exc.detail, str) else str(exc.detail)), known)
    except IfcflowError as exc:
        tie_error(outcome, shown(str(exc)), known)
    return outcome
