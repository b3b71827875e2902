"""``GET /download/{token}``: the file behind a download link, with the token itself as the credential.

A token (``POST /create_download_link``) is 256 random bits, names exactly one file of the data folder and expires
after 30 minutes, like a presigned URL; so the link opens in a browser without ``X-API-Key``. It opens nothing
else: every other endpoint still needs the key.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, Response

from . import objects, paths
from .settings import Settings
from .uploads import token_key

router = APIRouter(tags=["files"])


def token_file(request: Request, token: str, local: bool = True) -> Path:
    """The file a live token names (404 when unknown, expired, or the file is gone or left the data folder). With
    an S3 store and ``local``, the server's copy of the object is brought up to date first (previews read it)."""
    settings: Settings = request.app.state.settings
    if len(token) > 128:
        raise HTTPException(404, "Invalid or expired download token")
    raw = request.app.state.conn.get(token_key(token))
    if raw is None:
        raise HTTPException(404, "Invalid or expired download token; create a new link (POST /create_download_link)")
    path = Path(raw.decode())
    if not paths.contained(settings.data, path):
        raise HTTPException(404, "File not found")
    s3 = objects.store(settings) if local else None
    if s3 is not None and objects.sync(settings, s3, path) is None:  # a store: the server's copy of the object
        raise HTTPException(404, "File not found")
    if local and not path.is_file():
        raise HTTPException(404, "File not found")
    return path


@router.get("/download/{token}", response_class=FileResponse,
            responses={307: {"description": "with an S3 store: a presigned URL of the object (IFCFLOW_S3_DOWNLOADS)"},
                       404: {"description": "unknown or expired token"}})
def download(request: Request, token: str) -> Response:
    """The file behind a download token (no API key needed: the token is the credential). With an S3 store: a
    307 redirect to a presigned URL of the object, or the object streamed through (``IFCFLOW_S3_DOWNLOADS``)."""
    settings: Settings = request.app.state.settings
    s3 = objects.store(settings)
    path = token_file(request, token, local=s3 is None)
    if s3 is not None:
        return objects.serve(s3, objects.data_key(settings, path))
    return FileResponse(path, filename=path.name)
