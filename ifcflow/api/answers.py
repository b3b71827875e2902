"""The OpenAPI document lists every answer an operation can give: the error answers are added once per router
(``app.include_router(router, responses=of_router(router))``), from what its routes are (keyed, state-changing,
with parameters), instead of on each route by hand.

- 400: a ``Host`` not in ``IFCFLOW_ALLOWED_HOSTS``, an unreadable body, a path leading outside the data folder;
- 401/403: routes behind ``X-API-Key`` (403 also for cross-site state-changing requests);
- 404: a run, batch, schedule, job, file or pipeline that is not there;
- 409: a state that does not allow it (e.g. nothing to retry);
- 413: an upload or body over its limit (state-changing routes);
- 422: a body or parameter that does not validate, a pipeline with problems;
- 503: Redis unavailable.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from .auth import require_key

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
WHY = {
    400: "Bad request: a Host not in IFCFLOW_ALLOWED_HOSTS, an unreadable body, or a path leading outside the data "
         "folder",
    401: "No API key (send X-API-Key)",
    403: "A wrong API key, or a cross-site state-changing request",
    404: "Not found",
    409: "Conflict: the current state does not allow it",
    413: "Too large: an upload over IFCFLOW_MAX_UPLOAD or a body over its limit",
    422: "Invalid body or parameters (a pipeline's problems as file:line:col)",
    503: "Redis is unavailable; try again shortly",
}


class ErrorAnswer(BaseModel):
    """Every error answer: one message, or a list of ``{loc, msg, type}`` for invalid input."""

    model_config = ConfigDict(extra="forbid")

    detail: str | list[dict[str, Any]] = Field(description="what went wrong and what to do next")


def codes(route: APIRoute, keyed: bool) -> set[int]:
    """The error answers ``route`` can give (``keyed``: behind ``X-API-Key``)."""
    found = {400, 503}
    if keyed:
        found |= {401, 403, 404, 409, 422}
    if (route.methods or set()) & UNSAFE:
        found |= {403, 404, 409, 413, 422}
    if "{" in route.path_format or route.dependant.query_params:
        found |= {404, 422}
    return found


def of_router(router: APIRouter) -> dict[int | str, dict[str, Any]]:
    """The error answers of ``router``'s routes, for ``app.include_router(router, responses=...)`` (one place per
    router: FastAPI adds them to each of its routes' documented answers; a route's own entries win)."""
    keyed = any(getattr(dep, "dependency", None) is require_key for dep in router.dependencies)
    found: set[int] = set()
    for route in router.routes:
        if isinstance(route, APIRoute) and route.include_in_schema:
            found |= codes(route, keyed)
    return {code: {"model": ErrorAnswer, "description": WHY[code]} for code in sorted(found)}


def methods_of(app: FastAPI, path: str) -> list[str]:
    """The methods the OpenAPI document lists for the concrete ``path`` (for a 405's ``Allow`` header)."""
    found: set[str] = set()
    for template, operations in app.openapi().get("paths", {}).items():
        pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path):
            found |= {method.upper() for method in operations}
    return sorted(found)
