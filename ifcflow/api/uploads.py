"""Files in and out: ``POST /upload/{file_type}`` (streamed to disk, size-limited) and download links.

An upload is parsed as it arrives (python-multipart's streaming parser) straight into a hidden temporary file
in ``uploads/``, which is renamed into place only when complete: nothing is held in memory, an upload over
``IFCFLOW_MAX_UPLOAD`` stops at the limit with 413 and leaves nothing behind. Download tokens live in Redis
(``ifcflow:download:<token>``, 30 minutes), so any API process can serve them.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from python_multipart.multipart import MultipartParser, parse_options_header

from ..errors import StorageError
from . import objects, paths
from .auth import require_key
from .problems import unprocessable
from .requests import DownloadRequest
from .settings import Settings

router = APIRouter(dependencies=[Depends(require_key)], tags=["files"])

KINDS = {"ifc": (".ifc",), "ids": (".ids", ".xml"), "bcf": (".bcf", ".bcfzip"), "csv": (".csv", ".ods", ".xlsx")}
TOKEN_TTL = 30 * 60


class Uploaded(BaseModel):
    message: str
    file_path: str
    original_filename: str
    filename: str
    size: int
    sha256: str | None = None
    storage: str | None = Field(None, description="'s3' when the server keeps files in an S3 store")
    bucket: str | None = None
    object_key: str | None = Field(None, description="the object's key in the store (relative to its prefix)")
    object_url: str | None = None
    size_bytes: int | None = None
    version_id: str | None = Field(None, description="the object's version (a versioned bucket)")
    known: bool | None = Field(None, description="the history knows these contents (in the runs listed)")
    runs: list[str] | None = None


class DownloadLink(BaseModel):
    download_token: str
    preview_url: str
    expiry: datetime


class TooLarge(Exception):
    pass


class _Receiver:
    """Callbacks of the streaming parser: the first ``file`` part goes into a temporary file."""

    def __init__(self, folder: Path, limit: int):
        self.folder = folder
        self.limit = limit
        self.headers: dict[bytes, bytes] = {}
        self.field = b""
        self.value = b""
        self.filename: str | None = None
        self.temp: Path | None = None
        self.out: IO[bytes] | None = None
        self.size = 0
        self.digest = hashlib.sha256()
        self.done = False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[self.field.lower()] = self.value
        self.field, self.value = b"", b""

    def on_headers_finished(self) -> None:
        _, params = parse_options_header(self.headers.get(b"content-disposition", b""))
        if params.get(b"name") == b"file" and not self.done and self.out is None:
            self.filename = params.get(b"filename", b"").decode("utf-8", "replace")
            self.temp = self.folder / f".upload-{secrets.token_hex(8)}"
            self.out = self.temp.open("wb")
        self.headers = {}

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.out is None:
            return
        self.size += end - start
        if self.size > self.limit:
            raise TooLarge()
        self.digest.update(data[start:end])
        self.out.write(data[start:end])

    def on_part_end(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None
            self.done = True

    def discard(self) -> None:
        if self.out is not None:
            self.out.close()
        if self.temp is not None:
            self.temp.unlink(missing_ok=True)


async def _receive(request: Request, folder: Path, limit: int) -> _Receiver:
    kind, params = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or b"boundary" not in params:
        raise unprocessable("send the file as multipart/form-data in a field named 'file' (curl -F file=@model.ifc)",
                            "file")
    receiver = _Receiver(folder, limit)
    callbacks: Any = {name: getattr(receiver, name) for name in (
        "on_header_field", "on_header_value", "on_header_end", "on_headers_finished", "on_part_data", "on_part_end")}
    parser = MultipartParser(params[b"boundary"], callbacks)
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except TooLarge:
        receiver.discard()
        raise HTTPException(413, f"the upload is larger than the limit of {limit} bytes (IFCFLOW_MAX_UPLOAD)") from None
    except HTTPException:
        receiver.discard()
        raise
    except Exception as exc:
        receiver.discard()
        raise HTTPException(400, f"the multipart body could not be read ({type(exc).__name__}); send it with "
                            "curl -F file=@model.ifc") from None
    if receiver.temp is None or not receiver.done:
        receiver.discard()
        raise unprocessable("no complete 'file' field in the form; send curl -F file=@model.ifc", "file")
    return receiver


UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {"file": {"type": "string", "format": "binary"}}}}}}}


@router.post("/upload/{file_type}", response_model=Uploaded, openapi_extra=UPLOAD_BODY)
async def upload(request: Request, file_type: str) -> Uploaded:
    """Store a file in ``uploads/`` under its own name (directory parts stripped); ifc, ids, bcf or csv."""
    settings: Settings = request.app.state.settings
    if file_type not in KINDS:
        raise HTTPException(400, f"Unsupported file type: {file_type}; use one of {', '.join(KINDS)}")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > settings.max_upload + 64 * 1024:
        raise HTTPException(413, f"the upload is larger than the limit of {settings.max_upload} bytes "
                            "(IFCFLOW_MAX_UPLOAD)")
    settings.uploads.mkdir(parents=True, exist_ok=True)
    received = await _receive(request, settings.uploads, settings.max_upload)
    assert received.temp is not None
    try:
        name = paths.upload_name(received.filename)
        if not name.lower().endswith(KINDS[file_type]):
            raise HTTPException(400, f"File must have one of these extensions: {', '.join(KINDS[file_type])}")
        target = paths.inside(settings.uploads, name, "upload")
        if target.is_dir():
            raise paths.UnsafePath(f"upload: {name!r} names a folder in uploads/, not a file; rename the file")
    except BaseException:
        received.discard()
        raise
    sha256 = received.digest.hexdigest()
    stored = await _store(settings, received.temp, target, sha256) if objects.store(settings) else {}
    paths.replace_file(received.temp, target, "upload")
    from .history import upload_facts  # dedupe: already known contents say so (issue 19)

    return Uploaded(message=f"{file_type.upper()} file {name} uploaded successfully", file_path=f"/uploads/{name}",
                    original_filename=received.filename or name, filename=name, size=received.size,
                    **{**await upload_facts(request, target, sha256), **stored})


async def _store(settings: Settings, temp: Path, target: Path, sha256: str) -> dict[str, Any]:
    """Put the complete upload into the S3 store under ``uploads/<name>`` (one PUT with its ChecksumSHA256: the
    object appears only whole); the temporary file is removed when that fails (503)."""
    s3 = objects.store(settings)
    assert s3 is not None
    try:
        stored = await run_in_threadpool(s3.put, temp, objects.data_key(settings, target), sha256)
    except StorageError as exc:
        temp.unlink(missing_ok=True)
        raise objects.unavailable(exc) from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return objects.facts(s3, stored)


def token_key(token: str) -> str:
    return f"ifcflow:download:{token}"


@router.post("/create_download_link", response_model=DownloadLink)
def create_download_link(request: Request, body: DownloadRequest) -> DownloadLink:
    """A 30-minute token for a file of the data folder (``output/...`` or ``uploads/...``)."""
    settings: Settings = request.app.state.settings
    path = paths.data_file(settings.data, body.file_path)
    s3 = objects.store(settings)
    if not path.is_file() if s3 is None else not _stored(settings, s3, path):
        raise HTTPException(404, "File not found")
    token = secrets.token_urlsafe(32)
    request.app.state.conn.set(token_key(token), str(path), ex=TOKEN_TTL)
    base = os.environ.get("IFCFLOW_PUBLIC_URL") or str(request.base_url)
    return DownloadLink(download_token=token, preview_url=f"{base.rstrip('/')}/preview/{token}",
                        expiry=datetime.now(UTC) + timedelta(seconds=TOKEN_TTL))


def _stored(settings: Settings, s3: objects.S3Storage, path: Path) -> bool:
    try:
        return s3.head(objects.data_key(settings, path)) is not None
    except StorageError as exc:
        raise objects.unavailable(exc) from None
