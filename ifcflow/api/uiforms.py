"""What the "new run" page needs: the committed pipelines, the uploaded files, and starting a run from the form."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import IfcflowError, PipelineError


@dataclass(frozen=True)
class PipelineChoice:
    file: str
    name: str
    description: str
    inputs: dict[str, str]


@dataclass
class Outcome:
    """A started run (``run_id``), or why not: ``line:col`` problems or one error, with the form's choices."""

    pipeline: str
    run_id: str | None = None
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    picked: dict[str, str] = field(default_factory=dict)


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
        found.append(PipelineChoice(path.name, str(doc.get("name") or path.stem), str(doc.get("description") or ""),
                                    {str(k): "" if v is None else str(v) for k, v in (inputs or {}).items()}))
    return found


def uploads_in(folder: Path, limit: int = 500) -> list[str]:
    """Names of the files in the uploads folder (newest first, at most ``limit``)."""
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    files.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return [p.name for p in files[:limit]]


async def save_upload(upload: Any, uploads: Path, limit: int) -> str:
    """Store a browser upload in ``uploads`` under its (checked) base name; over ``limit`` bytes it is refused
    and nothing is left behind."""
    from .paths import upload_name

    name = upload_name(upload.filename)
    staged = getattr(upload, "staged", None)
    if staged is not None:  # streamed into its own temporary file within the limit (ifcflow.api.formstream)
        staged.replace(uploads / name)
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
        temp.replace(uploads / name)
    finally:
        temp.unlink(missing_ok=True)
    return name


async def start_from_form(request: Any, form: Any) -> Outcome:
    """Start the chosen committed pipeline with the uploaded or picked inputs (``POST /runs`` with ``file``)."""
    from fastapi import HTTPException
    from fastapi.concurrency import run_in_threadpool

    from .problems import public
    from .runs import RunRequest, start_run

    settings = request.app.state.settings
    outcome = Outcome(pipeline=str(form.get("pipeline") or ""))
    try:
        for key, value in form.multi_items():
            kind, _, name = key.partition(":")
            if kind == "upload" and getattr(value, "filename", None):
                outcome.picked[name] = await save_upload(value, settings.uploads, settings.max_upload)
            elif kind == "pick" and isinstance(value, str) and value:
                outcome.picked.setdefault(name, value)
        body = RunRequest(pipeline=None, file=outcome.pipeline, inputs=outcome.picked, webhook=None)
        started = await run_in_threadpool(start_run, request, body)
        outcome.run_id = started.run_id
    except PipelineError as exc:  # paths shown relative to the pipelines folder: the server's layout is not news
        outcome.problems = [public(str(p), (settings.data, settings.pipelines)) for p in exc.problems]
    except HTTPException as exc:
        outcome.error = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    except IfcflowError as exc:
        outcome.error = public(str(exc), (settings.data, settings.pipelines))
    return outcome
