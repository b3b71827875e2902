"""``/docs``, ``/redoc`` and ``/openapi.json`` behind the API key when keys are set.

The API's description names every endpoint, its parameters and the data folder's layout: on a shared server it is
for those with a key (or the web page's session, which the key check accepts). A key-less server listens on
loopback only (``ifcflow serve`` refuses otherwise) and keeps FastAPI's open defaults.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from .auth import require_key

URLS = {"docs_url": "/docs", "redoc_url": "/redoc", "openapi_url": "/openapi.json"}


def install(app: FastAPI) -> None:
    """The description and its two viewers, each needing the key (401/403 as every other endpoint)."""
    guarded = [Depends(require_key)]

    @app.get(URLS["openapi_url"], include_in_schema=False, dependencies=guarded)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get(URLS["docs_url"], include_in_schema=False, dependencies=guarded)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=URLS["openapi_url"], title=f"{app.title} - docs")

    @app.get(URLS["redoc_url"], include_in_schema=False, dependencies=guarded)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=URLS["openapi_url"], title=f"{app.title} - ReDoc")
