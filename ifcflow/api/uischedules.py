"""The web page's schedules: ``/ui/schedules`` lists them (cron, next fire, last fire and the state of what it
started) with buttons to fire one now and to pause or resume it.

The buttons are plain same-site forms whose handlers call the HTTP API's own functions
(:func:`ifcflow.api.schedules.fire_now`, ``pause_schedule``, ``resume_schedule``): no second path to the library.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from . import schedules
from .ui import PREFIX, age, page, same_site, signed_in, to_login

router = APIRouter(prefix=PREFIX, include_in_schema=False)
ACTIONS = {"run": schedules.fire_now, "pause": schedules.pause_schedule, "resume": schedules.resume_schedule}


def rows_of(request: Request) -> list[dict[str, Any]]:
    """A row per schedule; paths in a failed fire's reason are shown relative to uploads/ (as they were given)."""
    rows = []
    for info in schedules.list_schedules(request):
        last = info.last
        if last and last.reason:
            reason = last.reason.replace("uploads/", "")  # (answers name data folder paths relative to it)
            last = last.model_copy(update={"reason": reason})
        rows.append({"info": info, "pipeline": Path(info.pipeline).name, "last": last,
                     "last_age": age(last.at) if last else "", "kind": "batch" if info.each else "run"})
    return rows


@router.get("/schedules", response_class=HTMLResponse)
def schedules_page(request: Request, done: str = "", name: str = "") -> Response:
    if not signed_in(request):
        return to_login(request)
    rows = rows_of(request)
    notice = None
    acted = next((row for row in rows if row["info"].name == name), None)
    if acted and done == "run" and acted["last"]:
        notice = acted["last"]
    elif acted and done in ("pause", "resume"):
        notice = f"{name} is {'paused: its ticks pass unfired' if acted['info'].paused else 'active again'}."
    return page(request, "schedules.html", section="schedules", rows=rows, fired=notice if done == "run" else None,
                said=notice if done != "run" else None, acted=name, error=None)


@router.post("/schedules/{name}/{action}")
def act(request: Request, name: str, action: str) -> Response:
    """Fire now, pause or resume, then back to the list (which says what came of it)."""
    if not signed_in(request):
        return to_login(request)
    if not same_site(request):  # a form posted by another site (matters most on a key-less local server)
        return HTMLResponse("refused: this form was sent by another site", status_code=403)
    handler = ACTIONS.get(action)
    if handler is None:
        return page(request, "schedules.html", 404, section="schedules", rows=rows_of(request), fired=None,
                    said=None, acted=name, error=f"unknown action {action!r}: fire now (run), pause or resume")
    try:
        handler(request, name)
    except HTTPException as exc:
        return page(request, "schedules.html", exc.status_code, section="schedules", rows=rows_of(request),
                    fired=None, said=None, acted=name, error=str(exc.detail))
    return RedirectResponse(f"{PREFIX}/schedules?done={action}&name={quote(name)}", status_code=303)
