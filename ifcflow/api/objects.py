"""The HTTP API with an S3 store (``IFCFLOW_STORAGE=s3://bucket/prefix``): uploads, pins and downloads by key.

The server's data folder keeps its layout; with a store, every file of it clients name (``uploads/x.ifc``,
``output/<kind>/x``, ``examples/x``) is the object whose key is its path relative to the data folder, and the
store is the truth:

- ``POST /upload/*`` spools the body to a temporary file (sha256 computed as it arrives, never held in memory),
  then stores it in one PUT with that ChecksumSHA256 (the server checks it; the object appears only complete); the
  server keeps the file as its local copy.
- a submission heads each input's key (missing: 404 "Input file not found", as for a missing file), brings the server's
  local copy up to that object (it checks the pipeline's files and selectors on it) and pins key, sha256 and
  version id in the run record; workers fetch the pinned objects, never the server's folder.
- outputs are keys (``runs/<run_id>/<step>/<name>``, ``output/<kind>/<name>``); a download answers a 307 redirect
  to a presigned URL, or streams the object through the server (``IFCFLOW_S3_DOWNLOADS``).

Keys come only from paths :mod:`ifcflow.api.paths` vetted inside the data folder, through
:func:`ifcflow.engine.storage.object_key`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from fastapi import HTTPException
from fastapi.responses import RedirectResponse, StreamingResponse
from starlette.responses import Response

from ..engine import staging
from ..engine.outbox import describe
from ..engine.storage import (
    ENDPOINT_ENV,
    PUBLIC_ENDPOINT_ENV,
    MissingObject,
    S3Storage,
    StoredObject,
    content_disposition,
    object_key,
)
from ..engine.storage import parse as parse_storage
from ..errors import IfcflowError, StorageError
from ..pipeline.plan import Plan
from . import paths
from .settings import Settings

DOWNLOADS_ENV = "IFCFLOW_S3_DOWNLOADS"
LINK_SECONDS = 30 * 60
_stores: dict[str, S3Storage] = {}


def store(settings: Settings) -> S3Storage | None:
    """The server's S3 store, or None with a local folder (today's paths)."""
    url = settings.storage_url
    if not url.startswith("s3://"):
        return None
    found = _stores.get(url)
    if found is None:
        made = parse_storage(url)
        assert isinstance(made, S3Storage)
        found = _stores[url] = made
    return found


def downloads_mode(environ: dict[str, str] | None = None) -> Literal["redirect", "stream"]:
    """``IFCFLOW_S3_DOWNLOADS``: ``redirect`` (307 to a presigned URL), ``stream`` (through the server) or ``auto``
    (the default: redirect when clients can reach the store, i.e. ``IFCFLOW_S3_PUBLIC_ENDPOINT`` is set or the
    store is AWS; else stream, as an in-cluster endpoint is no address for clients)."""
    env = os.environ if environ is None else environ
    value = (env.get(DOWNLOADS_ENV) or "auto").strip().lower()
    if value in ("redirect", "stream"):
        return value  # type: ignore[return-value]
    if value != "auto":
        raise IfcflowError(f"{DOWNLOADS_ENV}={value!r}: use redirect, stream or auto")
    return "redirect" if env.get(PUBLIC_ENDPOINT_ENV) or not env.get(ENDPOINT_ENV) else "stream"


def data_key(settings: Settings, path: str | Path) -> str:
    """The key of a file of the data folder: its path relative to the folder (vetted again as a key); a run
    folder's file ``output/runs/<run_id>/<step>/<name>`` is ``runs/<run_id>/<step>/<name>``, as workers store it
    (:func:`ifcflow.engine.staging.output_key`)."""
    base, runs = os.path.realpath(settings.data), os.path.realpath(settings.runs)
    target = os.path.realpath(path)
    if target.startswith(runs.rstrip("/") + "/"):
        return object_key("runs", os.path.relpath(target, runs))
    if not target.startswith(base.rstrip("/") + "/"):
        raise paths.UnsafePath(f"{paths.shown(settings.data, path)} is outside the data folder")
    return object_key(os.path.relpath(target, base))


def unavailable(exc: StorageError) -> HTTPException:
    return HTTPException(503, f"the object store is unavailable: {exc}")


def sync(settings: Settings, s3: S3Storage, path: Path) -> StoredObject | None:
    """Head the object of ``path`` and bring the server's local copy up to it. Returns the object, or None when
    there is none (a local file without an object is not an input: the submission answers 404)."""
    key = data_key(settings, path)
    try:
        found = s3.head(key)
        if found is None:
            return None
        local = describe(path) if path.is_file() else None
        if local is None or local["sha256"] != found.sha256:
            s3.get(key, path, version_id=found.version_id, sha256=found.sha256 or None)
    except StorageError as exc:
        raise unavailable(exc) from None
    return found


def sync_inputs(settings: Settings, plan: Plan) -> None:
    """Every input of ``plan`` inside the data folder synced (see :func:`sync`) before the plan's files are
    checked; nothing without a store. A missing object is left to :func:`pins` (404)."""
    s3 = store(settings)
    if s3 is None:
        return
    for value in staging.input_paths(plan):
        if paths.contained(settings.data, value):
            sync(settings, s3, Path(value))


def pins(settings: Settings, plan: Plan) -> dict[str, str]:
    """The run record field pinning every input (key, sha256, version id), {} without a store. An input of the data
    folder must be an object (404 otherwise); others (a committed pipeline's own files) are uploaded by sha256."""
    s3 = store(settings)
    if s3 is None:
        return {}
    known: dict[str, StoredObject] = {}
    try:
        for value in staging.input_paths(plan):
            if paths.contained(settings.data, value):
                found = s3.head(data_key(settings, value))
                if found is None:
                    raise HTTPException(404, f"Input file not found: {paths.shown(settings.data, value)}")
                known[value] = found
        return staging.pin_inputs(s3, plan, known=known, root=os.path.realpath(settings.data))
    except StorageError as exc:
        raise unavailable(exc) from None


def serve(s3: S3Storage, key: str, version_id: str | None = None, filename: str | None = None) -> Response:
    """A download of the object: 307 to a presigned URL, or its bytes streamed through (``IFCFLOW_S3_DOWNLOADS``);
    404 when there is no such object."""
    name = filename or key.rsplit("/", 1)[-1]
    try:
        if downloads_mode() == "redirect":
            if s3.head(key) is None:
                raise HTTPException(404, "File not found")
            url = s3.presign(key, expires=LINK_SECONDS, version_id=version_id, filename=name)
            return RedirectResponse(url, status_code=307)
        chunks, found = s3.open(key, version_id)
    except MissingObject:
        raise HTTPException(404, "File not found") from None
    except StorageError as exc:
        raise unavailable(exc) from None
    headers = {"Content-Length": str(found.size), "Content-Disposition": content_disposition(name)}
    if found.sha256:
        headers["X-Checksum-Sha256"] = found.sha256
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)


def facts(s3: S3Storage, stored: StoredObject) -> dict[str, object]:
    """The original system's fields of a stored object (upload answers, job results)."""
    return {"storage": "s3", "bucket": s3.bucket, "object_key": stored.key, "object_url": s3.describe(stored.key),
            "sha256": stored.sha256, "size_bytes": stored.size, "version_id": stored.version_id}


def read_text(s3: S3Storage, key: str, limit: int) -> str | None:
    """A small object's text (None when it is missing or larger than ``limit`` bytes: read it by download)."""
    try:
        found = s3.head(key)
        if found is None or found.size > limit:
            return None
        chunks, _ = s3.open(key, found.version_id)
        return b"".join(chunks).decode("utf-8", "replace")
    except StorageError:
        return None
