"""The web page's lineage of a file: ``/ui/lineage/{key-or-sha256}`` (a path in the data folder such as
``output/runs/RUN/clash/clashes.json``, or a sha256), the graph of what produced it and what was derived from it.

The page is a shell; ``static/lineage.js`` reads ``GET /lineage/...`` (the history database, so it works after Redis
was flushed) and draws the graph as inline SVG. A target the API would refuse (outside the data folder, hidden) is
answered 400 here too, and the page's script shows the API's reason. Like every page it is served with
:data:`ifcflow.api.ui.CSP`.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from ..history import lineage
from . import paths
from .ui import PREFIX, page, signed_in, to_login

router = APIRouter(prefix=PREFIX, include_in_schema=False)


@router.get("/lineage/{target:path}", response_class=HTMLResponse)
def lineage_page(request: Request, target: str, direction: Literal["up", "down", "both"] = "both",
                 depth: int = Query(10, ge=1, le=lineage.MAX_DEPTH)) -> Response:
    if not signed_in(request):
        return to_login(request)
    code = 200
    if not lineage.SHA256.match(target):
        try:
            paths.data_file(request.app.state.settings.data, target, "target")
        except paths.UnsafePath:
            code = 400  # nothing is read; the script asks the API, which says why
    shown = target if lineage.SHA256.match(target) else target.rsplit("/", 1)[-1]
    return page(request, "lineage.html", code, section="runs", target=target, shown=shown, direction=direction,
                depth=depth)
