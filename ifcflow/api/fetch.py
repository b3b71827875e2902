"""``POST /download-from-url``: the server fetches a model or IDS file from a URL into ``uploads/``.

Off unless the operator lists hosts in ``IFCFLOW_DOWNLOAD_ALLOW`` (host names, IP addresses or CIDRs, as for
webhooks). Each hop is checked: http(s) only, the host on the list, every address it resolves to public or itself
on the list (so an allowed name cannot point at an internal address); a redirect is followed only to the same
host (at most 5). The body is streamed into a hidden temporary file in ``uploads/`` and stops at
``IFCFLOW_MAX_UPLOAD`` bytes (413); it must look like the file type its name says (IFC: ``ISO-10303-21;``; IDS: XML
with an ``<ids`` element) or it is discarded (422). Only then is it renamed into place.
"""

from __future__ import annotations

import contextlib
import secrets
from pathlib import Path
from urllib.parse import SplitResult, urljoin, urlsplit

import httpx
from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from ..engine import outbound
from ..engine.outbound import Address
from ..errors import StorageError
from . import objects, paths
from .auth import require_key
from .problems import unprocessable
from .settings import Settings

router = APIRouter(dependencies=[Depends(require_key)], tags=["files"])
HOPS = 5
TIMEOUT = 30.0
SNIFF = 4096


class FetchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="http(s) URL of an .ifc or .ids file; its host must be in IFCFLOW_DOWNLOAD_ALLOW")
    output_filename: str | None = Field(None, description="name in uploads/ (default: the URL's file name)")


class Fetched(BaseModel):
    message: str
    file_path: str
    original_filename: str
    filename: str
    size: int


def check_host(url: str, allow: tuple[str, ...]) -> tuple[SplitResult, Address]:
    """The URL's parts and the checked address to connect to; HTTPException 403/422 saying why not and how."""
    try:
        parts = outbound.split_url(url, "url")
    except outbound.DestinationRefused as exc:
        raise unprocessable(str(exc), "url") from None
    host = parts.hostname or ""
    if not allow:
        raise HTTPException(403, "downloads from URLs are off on this server; its operator can allow hosts with "
                            "IFCFLOW_DOWNLOAD_ALLOW (host names, IP addresses or CIDRs, comma-separated, each with an "
                            "optional :port), e.g. IFCFLOW_DOWNLOAD_ALLOW=files.example.com")
    if not outbound.url_allowed(parts, allow):
        raise HTTPException(403, f"host {host!r} is not allowed{outbound.port_hint(parts, allow)}; add it to "
                            f"IFCFLOW_DOWNLOAD_ALLOW (allowed now: {', '.join(allow)})")
    try:
        return parts, outbound.resolve(parts, allow)
    except outbound.DestinationRefused as exc:
        code = 422 if "does not resolve" in str(exc) else 403
        raise HTTPException(code, f"{exc} in IFCFLOW_DOWNLOAD_ALLOW") from None


def _kind(name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix == ".ifc":
        return "ifc"
    if suffix in (".ids", ".xml"):
        return "ids"
    raise unprocessable(f"output_filename {name!r} must end in .ifc or .ids (the file types this endpoint fetches)",
                        "output_filename")


def _looks_like(kind: str, head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if kind == "ifc":
        return text.startswith(b"ISO-10303-21;")
    lower = head.lower()
    return text.startswith(b"<") and (b"<ids" in lower or b":ids" in lower)


def _stream(response: httpx.Response, temp: Path, limit: int) -> int:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the file is {declared} bytes; the limit is {limit} (IFCFLOW_MAX_UPLOAD)")
    size = 0
    with temp.open("wb") as out:
        for chunk in response.iter_bytes(65536):
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, f"the file exceeds {limit} bytes (IFCFLOW_MAX_UPLOAD); nothing was kept")
            out.write(chunk)
    return size


def fetch(url: str, settings: Settings, target: Path, kind: str) -> int:
    """Fetch ``url`` (checked hop by hop) into ``target``; returns its size."""
    parts, address = check_host(url, settings.download_allow)
    first = (parts.hostname or "").lower()
    temp = target.parent / f".fetch-{secrets.token_hex(8)}.part"
    try:
        with httpx.Client(follow_redirects=False, timeout=TIMEOUT, trust_env=False) as client:
            for _ in range(HOPS):
                response = client.send(outbound.pinned_request(client, "GET", parts, address), stream=True)
                with contextlib.closing(response):
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("location", ""))
                        parts, address = check_host(url, settings.download_allow)
                        if (parts.hostname or "").lower() != first:
                            raise HTTPException(403, f"the server redirected to another host ({parts.hostname})"
                                                "; redirects are followed only on the same host")
                        continue
                    if response.status_code != 200:
                        raise HTTPException(502, f"{urlsplit(url).hostname} answered {response.status_code}; check the URL")
                    size = _stream(response, temp, settings.max_upload)
                    with temp.open("rb") as handle:
                        if not _looks_like(kind, handle.read(SNIFF)):
                            raise unprocessable(f"the fetched file is not an {kind.upper()} file (checked its "
                                                "first bytes); nothing was kept", "url")
                    paths.replace_file(temp, target, "url")
                    return size
        raise unprocessable(f"more than {HOPS} redirects; give the file's final URL", "url")
    except httpx.HTTPError as exc:
        raise HTTPException(502, f"cannot fetch {urlsplit(url).hostname}: {type(exc).__name__}") from None
    finally:
        temp.unlink(missing_ok=True)


@router.post("/download-from-url", response_model=Fetched, responses={
    403: {"description": "host not allowed"}, 413: {"description": "too large"}, 502: {"description": "fetch failed"}})
def download_from_url(request: Request, body: FetchRequest) -> Fetched:
    """Fetch an IFC or IDS file from an allowed host into ``uploads/`` (the original's "download from URL")."""
    settings: Settings = request.app.state.settings
    check_host(body.url, settings.download_allow)  # a malformed URL is a 422 before anything else
    original = Path(urlsplit(body.url).path).name
    name = paths.upload_name(body.output_filename or original or "download.ifc")
    kind = _kind(name)
    target = paths.inside(settings.uploads, name, "output_filename")
    size = fetch(body.url, settings, target, kind)
    s3 = objects.store(settings)
    if s3 is not None:  # an S3 store: the fetched file is an upload like any other (uploads/<name>)
        try:
            s3.put(target, objects.data_key(settings, target))
        except StorageError as exc:
            raise objects.unavailable(exc) from None
    return Fetched(message=f"{kind.upper()} file {name} downloaded successfully", file_path=f"/uploads/{name}",
                   original_filename=original or name, filename=name, size=size)
