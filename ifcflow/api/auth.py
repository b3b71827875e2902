"""API keys: ``X-API-Key`` compared in constant time with ``IFCFLOW_API_KEYS`` / ``IFC_PIPELINE_API_KEY``.

With keys set, every endpoint but ``/health`` needs one (401 without, 403 with a wrong one), whatever the client
address, unless that address is in ``IFCFLOW_API_ALLOW_NETS`` (the original's "loopback needs no key", opt-in).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from .settings import Settings

header = APIKeyHeader(name="X-API-Key", auto_error=False, description="one of IFCFLOW_API_KEYS")


def valid(key: str, keys: tuple[str, ...]) -> bool:
    """Constant-time comparison with every configured key (no early exit)."""
    found = False
    for candidate in keys:
        found |= hmac.compare_digest(key.encode(), candidate.encode())
    return found


def _allowed_address(settings: Settings, host: str | None) -> bool:
    if not settings.allow_nets or not host:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in net for net in settings.allow_nets)


async def require_key(request: Request, key: str | None = Security(header)) -> None:
    settings: Settings = request.app.state.settings
    if not settings.api_keys:
        return
    also: Callable[[Request], bool] | None = getattr(request.app.state, "also_authenticated", None)
    if also is not None and also(request):  # the web page's session cookie (ifcflow.api.ui)
        return
    if key is None:
        if _allowed_address(settings, request.client.host if request.client else None):
            return
        raise HTTPException(401, "API key required: send it in the X-API-Key header")
    if not valid(key, settings.api_keys):
        raise HTTPException(403, "Invalid API key")
