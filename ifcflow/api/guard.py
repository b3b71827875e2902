"""Refuse foreign ``Host`` headers and cross-site state-changing requests, on every route (an ASGI middleware).

- ``Host`` must be one of ``IFCFLOW_ALLOWED_HOSTS`` (else 400): a web page on another name cannot reach this server
  by re-pointing its DNS at it (DNS rebinding). ``*`` allows any name; ``.example.com`` or ``*.example.com`` a
  name and its subdomains.
- ``POST``/``PUT``/``PATCH``/``DELETE`` whose ``Origin`` (or, without one, ``Referer``) names another site than this
  server (its ``Host``, or ``IFCFLOW_PUBLIC_URL``) are refused (403): a page elsewhere cannot upload, start runs or
  fire schedules with the visitor's browser, even on a key-less local server. Requests without either header
  (curl, n8n, scripts) are not from a browser page and pass.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HOSTS_ENV = "IFCFLOW_ALLOWED_HOSTS"


def host_name(host: str) -> str:
    """The name part of a ``Host`` value: ``[::1]:8000`` -> ``::1``, ``Example.com.:80`` -> ``example.com``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    name = host_name(host)
    if not name:
        return "*" in allowed
    for entry in allowed:
        entry = host_name(entry) if not entry.startswith("*") else entry.lower()
        if entry == "*" or name == entry:
            return True
        suffix = entry[1:] if entry.startswith("*.") else entry if entry.startswith(".") else ""
        if suffix and (name.endswith(suffix) or name == suffix[1:]):
            return True
    return False


def _netloc(url: str) -> str:
    """``scheme://host[:port]`` -> ``host:port`` with the scheme's default port dropped, lower case."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ""
    host = (parts.hostname or "").lower()
    if not host:
        return ""
    host = f"[{host}]" if ":" in host else host
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return host if port in (None, default) else f"{host}:{port}"


def _own(host_header: str) -> set[str]:
    """This server's netlocs as a browser names them: the request's ``Host`` (port 80/443 or not) and the public
    URL's."""
    host = host_header.strip().lower()
    own = {host, _netloc(f"http://{host}"), _netloc(f"https://{host}")}
    public = os.environ.get("IFCFLOW_PUBLIC_URL")
    if public:
        own.add(_netloc(public))
    own.discard("")
    return own


class Guard:
    """The middleware: ``app.add_middleware(Guard, allowed_hosts=(...))``."""

    def __init__(self, app: App, allowed_hosts: tuple[str, ...]) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # (no websockets here; lifespan passes)
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        if not host_allowed(host, self.allowed_hosts):
            await _refuse(send, 400, f"Host {host_name(host) or '(none)'!r} is not served here; the server's "
                          f"operator can add it to {HOSTS_ENV} (comma-separated host names)")
            return
        if scope.get("method", "GET").upper() in UNSAFE:
            source = headers.get("origin") or headers.get("referer")
            if source is not None and _netloc(source) not in _own(host):
                what = "Origin" if "origin" in headers else "Referer"
                await _refuse(send, 403, f"cross-site request refused: {what} {source!r} is not this server "
                              f"({host}); send it from this server's own pages or without an Origin header (scripts)"
                              f", or, behind a proxy, set IFCFLOW_PUBLIC_URL to the address browsers use")
                return
        await self.app(scope, receive, send)


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
