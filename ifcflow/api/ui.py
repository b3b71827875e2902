"""The web page of ``ifcflow serve``: runs, one run live (DAG, steps, outputs, reports, cancel, retry), new runs.

Server-rendered HTML (Jinja2 templates and static files shipped in the package: no CDN, no build step); the run
page's small script follows the API's event stream. Same keys as the API: a browser signs in once with a key and
gets a session cookie (see :mod:`ifcflow.api.session`), which the API's own endpoints accept too, so the page
calls them directly (events, cancel, retry, outputs, reports).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from ..engine import store
from ..engine.states import RunState, StepState
from ..engine.status import RunStatus, StatusReader
from ..errors import IfcflowError, RunNotFound
from . import auth, dag, formstream, session
from .uiforms import pipelines_in, start_from_form, uploads_in

HERE = Path(__file__).parent
PREFIX = "/ui"
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(prefix=PREFIX, include_in_schema=False)
RECENT = 50


def settings_of(request: Request) -> Any:
    return request.app.state.settings


def conn_of(request: Request) -> Any:
    return request.app.state.conn


def signed_in(request: Request) -> bool:
    """As the API decides: no keys configured, a client address in IFCFLOW_API_ALLOW_NETS, or a valid session."""
    settings = settings_of(request)
    if not settings.api_keys or auth._allowed_address(settings, request.client.host if request.client else None):
        return True
    return session.valid(request.cookies.get(session.COOKIE), settings.api_keys, secret_of(request))


def secret_of(request: Request) -> bytes:
    """The session secret (from Redis once per process: :func:`ifcflow.api.session.shared_secret`)."""
    state = request.app.state
    if getattr(state, "session_secret", None) is None:
        state.session_secret = session.shared_secret(conn_of(request))
    secret: bytes = state.session_secret
    return secret


CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
"""Every page's Content-Security-Policy: only this site's own scripts and styles (no inline script, event handler or
style attribute), nothing embedded elsewhere, forms posted only here: an injected string can do nothing."""


def page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    keys = settings_of(request).api_keys
    context.update(ui=PREFIX, api="", logged_in=bool(keys) and session.valid(request.cookies.get(session.COOKIE), keys,
                                                                             secret_of(request)))
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    response.headers["Content-Security-Policy"] = CSP
    return response


def to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{PREFIX}/login?next={quote(target)}", status_code=303)


def safe_next(target: str) -> str:
    """Only a path of this site after signing in (no open redirect)."""
    return target if target.startswith(PREFIX) and not target.startswith("//") and "\\" not in target else PREFIX


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = PREFIX) -> Response:
    return page(request, "login.html", next=safe_next(next), error=None)


@router.post("/login")
def login(request: Request, key: str = Form(""), next: str = Form(PREFIX)) -> Response:
    keys: tuple[str, ...] = settings_of(request).api_keys
    if keys and not session.key_listed(key, keys):
        return page(request, "login.html", 401, next=safe_next(next),
                    error="That key is not one of this server's API keys (IFCFLOW_API_KEYS). Check it and try again.")
    response = RedirectResponse(safe_next(next), status_code=303)
    if keys:
        response.set_cookie(session.COOKIE, session.issue(key, secret_of(request)), max_age=session.LIFETIME, httponly=True,
                            samesite="strict", secure=request.url.scheme == "https", path="/")
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(session.COOKIE, path="/")
    return response


def age(iso: str | None, now: datetime | None = None) -> str:
    if not iso:
        return ""
    seconds = ((now or datetime.now(UTC)) - datetime.fromisoformat(iso.replace("Z", "+00:00"))).total_seconds()
    if seconds < 45:
        return "just now"
    if seconds < 3600:
        return f"{round(seconds / 60)} min ago"
    if seconds < 86400:
        return f"{round(seconds / 3600)} h ago"
    return f"{round(seconds / 86400)} d ago"


def duration(status: RunStatus) -> str:
    ends = [s.ended_at for s in status.steps.values() if s.ended_at]
    starts = [s.started_at for s in status.steps.values() if s.started_at]
    if not starts:
        return ""
    end = status.ended_at or (max(ends) if status.terminal and ends else None)
    begin = datetime.fromisoformat(min(starts).replace("Z", "+00:00"))
    finish = datetime.fromisoformat(end.replace("Z", "+00:00")) if end else datetime.now(UTC)
    seconds = max((finish - begin).total_seconds(), 0.0)
    return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds // 60)} min {round(seconds % 60)} s"


def bar_segments(counts: dict[str, int], total: int) -> list[tuple[str, float, float]]:
    """A counts bar's segments: (state, x %, width %), drawn as SVG rects (the page's CSP refuses style attributes)."""
    segments, x = [], 0.0
    for state, n in counts.items():
        if n:
            width = round(100 * n / total, 1)
            segments.append((state, round(x, 1), width))
            x += width
    return segments


def summary(status: RunStatus) -> dict[str, Any]:
    """What a row of the runs table shows."""
    total = len(status.steps) or 1
    bars = bar_segments({state: n for state, n in status.counts.items() if state != "pending"}, total)
    ended = sum(n for s, n in status.counts.items() if StepState(s).terminal)
    return {"run_id": status.run_id, "pipeline": status.pipeline, "status": status.status,
            "file_name": Path(status.file).name, "created_at": status.created_at, "age": age(status.created_at),
            "duration": duration(status), "total": len(status.steps), "done": ended, "bars": bars,
            "counts_text": ", ".join(f"{n} {s}" for s, n in status.counts.items() if n)}


@router.get("", response_class=HTMLResponse)
def runs_page(request: Request, state: str = "") -> Response:
    if not signed_in(request):
        return to_login(request)
    states = [s.value for s in RunState]
    chosen = state if state in states else ""
    conn = conn_of(request)
    rows = []
    for run_id in store.recent_runs(conn, RECENT):
        try:
            status = StatusReader(conn, run_id).read()
        except IfcflowError:  # expired with its results
            continue
        if not chosen or status.status.value == chosen:
            rows.append(summary(status))
    return page(request, "runs.html", section="runs", runs=rows, states=states, state=chosen, error=None)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: str) -> Response:
    if not signed_in(request):
        return to_login(request)
    try:
        reader = StatusReader(conn_of(request), run_id)
        status = reader.read()
    except RunNotFound:
        return page(request, "runs.html", 404, section="runs", runs=[], states=[s.value for s in RunState],
                    state="", error=f"run {run_id} not found (finished runs are kept 7 days)")
    drawing = dag.svg({sid: (s.service, s.status.value, s.needs) for sid, s in status.steps.items()},
                      {sid: s.after for sid, s in status.steps.items() if s.after})
    doc = status.model_dump_json().replace("<", "\\u003c")  # file names are user text: no </script>, no <!--
    info = {"run_id": status.run_id, "pipeline": status.pipeline, "status": status.status,
            "file_name": Path(status.file).name, "created_at": status.created_at}
    targets = lineage_targets(settings_of(request).data, reader.plan.inputs,
                              {sid: s.outputs for sid, s in status.steps.items()})
    return page(request, "run.html", section="runs", status=info, svg=drawing, status_json=doc,
                targets_json=json.dumps(targets).replace("<", "\\u003c"))


def lineage_targets(data: Path, inputs: dict[str, str], outputs: dict[str, dict[str, str]]) -> dict[str, Any]:
    """What the run page's "lineage" actions name: each input's and output's path relative to the data folder (the
    key ``GET /lineage/...`` and ``/ui/lineage/...`` take); None for a file outside it (no lineage link)."""
    root = os.path.realpath(data).rstrip("/") + "/"

    def relative(path: str) -> str | None:
        real = os.path.realpath(path) if os.path.isabs(path) else ""
        return real[len(root):] if real.startswith(root) else None

    return {"inputs": {name: relative(path) for name, path in inputs.items()},
            "outputs": {sid: {name: relative(path) for name, path in named.items()} for sid, named in outputs.items()}}


@router.get("/new", response_class=HTMLResponse)
def new_page(request: Request, pipeline: str = "") -> Response:
    if not signed_in(request):
        return to_login(request)
    return new_form(request, pipeline)


def new_form(request: Request, pipeline: str, status_code: int = 200, problems: list[str] | None = None,
             error: str | None = None, picked: dict[str, str] | None = None,
             fields: dict[str, list[str]] | None = None) -> HTMLResponse:
    """The form; ``fields`` holds the problems tied to an input (shown at its field), the others at the top."""
    settings = settings_of(request)
    found = pipelines_in(settings.pipelines)
    chosen = next((p for p in found if p.file == pipeline), found[0] if found else None)
    return page(request, "new.html", status_code, section="new", pipelines=found, chosen=chosen,
                uploads=uploads_in(settings.uploads), folder=settings.pipelines, problems=problems or [],
                error=error, picked=picked or {}, fields=fields or {})


@router.post("/new")
async def start_run(request: Request) -> Response:
    if not signed_in(request):
        return to_login(request)
    if not same_site(request):  # a form posted by another site (matters most on a key-less local server)
        return HTMLResponse("refused: this form was sent by another site", status_code=403)
    try:  # streamed: each file stops at IFCFLOW_MAX_UPLOAD, nothing spooled whole first
        form = await formstream.read(request, settings_of(request).uploads, settings_of(request).max_upload)
    except (formstream.FormTooLarge, formstream.FormUnreadable) as exc:
        code = 413 if isinstance(exc, formstream.FormTooLarge) else 400
        return new_form(request, "", code, error=str(exc))
    try:
        outcome = await start_from_form(request, form)
    finally:
        form.discard()
    if outcome.run_id:
        return RedirectResponse(f"{PREFIX}/runs/{quote(outcome.run_id)}", status_code=303)
    return new_form(request, outcome.pipeline, 422, outcome.problems, outcome.error, outcome.picked, outcome.fields)


def session_ok(request: Request) -> bool:
    """The API's key check is also passed by the page's session cookie. A cookie-authenticated request that
    changes something must come from this site (``Origin``, when the browser sends it, names this host); the
    cookie is ``SameSite=Strict`` besides."""
    cookie = request.cookies.get(session.COOKIE)
    return bool(cookie and session.valid(cookie, settings_of(request).api_keys, secret_of(request))
                and same_site(request))


def same_site(request: Request) -> bool:
    origin = request.headers.get("origin")
    if request.method in ("GET", "HEAD", "OPTIONS") or not origin:
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


def install(app: FastAPI) -> None:
    """Serve the page under ``/ui`` (``/`` redirects there) and let the API accept the page's session cookie."""
    app.state.also_authenticated = session_ok  # not a dependency override: FastAPI re-analyses those per request
    app.include_router(router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=str(HERE / "static")), name="ui-static")

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse(PREFIX, status_code=307)
