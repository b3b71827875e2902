"""The web page's batches: ``/ui/batches`` (recent batches) and ``/ui/batches/BATCH_ID`` (a row per file, followed
live through ``GET /batches/BATCH_ID/events``; cancel and retry call the API's own endpoints).

Reads go through the HTTP API's functions (:mod:`ifcflow.api.batches`), so the page shows what the API serves.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from ..engine.states import RunState
from . import batches
from .ui import PREFIX, RECENT, age, bar_segments, conn_of, page, signed_in, to_login

router = APIRouter(prefix=PREFIX, include_in_schema=False)


@router.get("/batches", response_class=HTMLResponse)
def batches_page(request: Request, state: str = "") -> Response:
    if not signed_in(request):
        return to_login(request)
    states = [s.value for s in RunState]
    chosen = state if state in states else ""
    rows = []
    for found in batches.list_batches(request, offset=0, limit=RECENT).batches:
        if chosen and found.status != chosen:
            continue
        total = found.runs or 1
        ended = sum(n for s, n in found.counts.items() if RunState(s).terminal)
        rows.append({"summary": found, "age": age(found.created_at), "done": ended,
                     "bars": bar_segments(found.counts, total),
                     "counts_text": ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in found.counts.items() if n)})
    return page(request, "batches.html", section="batches", batches=rows, states=states, state=chosen, error=None)


@router.get("/batches/{batch_id}", response_class=HTMLResponse)
def batch_page(request: Request, batch_id: str) -> Response:
    if not signed_in(request):
        return to_login(request)
    try:
        status = batches.public_status(batches.read_status(conn_of(request), batch_id), request.app.state.settings)
    except HTTPException as exc:
        return page(request, "batches.html", exc.status_code, section="batches", batches=[],
                    states=[s.value for s in RunState], state="",
                    error=f"batch {batch_id} not found (finished batches are kept as long as their runs: 7 days)")
    doc = status.model_dump_json().replace("<", "\\u003c")  # no '<' at all inside the page's <script> block
    info = {"batch_id": status.batch_id, "pipeline": status.pipeline, "status": status.status,
            "file_name": Path(status.file).name, "created_at": status.created_at}
    folders = ["uploads/"]  # the document names files relative to the data folder; the page shows uploads by name
    return page(request, "batch.html", section="batches", batch=info, status_json=doc, folders=folders)
