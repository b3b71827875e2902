"""``GET /preview/{token}``: a download link's file shown in the browser (the ``preview_url`` of
``POST /create_download_link``). The token is the credential, as for ``/download/{token}``.

- glb/gltf and IFC: a 3D view (three.js r187, vendored under ``/ui/static/vendor/three/``, MIT; no CDN). An IFC
  model is converted to glb on its first preview, in a subprocess (``python -m workers.preview``, ifcopenshell's
  glb serializer), and cached in ``output/.preview/<sha256 of the file>.glb``; later previews reuse it. One
  conversion per model at a time, at most a few at once (``preview_glb``).
- HTML (an ifctester report): served as is, sandboxed (``Content-Security-Policy: sandbox``: its own origin, no
  access to the server's cookies or API).
- CSV and JSON: a table (the first 2,000 rows).
- Anything else: a page with the download link.
"""

from __future__ import annotations

import csv
import html
import json
import secrets
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from .auth import require_key
from .downloads import token_file
from .preview_glb import glb
from .uploads import TOKEN_TTL, token_key

router = APIRouter(tags=["files"])
ROWS = 2000
THREE = "/ui/static/vendor/three"
PAGE_CSP = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' blob: data:"

VIEWER = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{name} - ifcflow preview</title>
<style>html,body{{margin:0;height:100%;background:#f3f4f6;font:14px system-ui,sans-serif}}
#bar{{position:fixed;top:0;left:0;right:0;padding:8px 12px;background:#fff;border-bottom:1px solid #ddd;z-index:1}}
#view{{position:fixed;top:37px;bottom:0;left:0;right:0}}</style>
<script type="importmap">{{"imports": {{"three": "{three}/build/three.module.js"}}}}</script></head>
<body><div id="bar"><strong>{name}</strong> &middot; <span id="state">loading the model...</span> &middot;
<a href="/download/{token}">download</a></div><div id="view"></div>
<script type="module">
import * as THREE from "three";
import {{ GLTFLoader }} from "{three}/examples/jsm/loaders/GLTFLoader.js";
import {{ OrbitControls }} from "{three}/examples/jsm/controls/OrbitControls.js";
const box = document.getElementById("view"), state = document.getElementById("state");
const renderer = new THREE.WebGLRenderer({{antialias: true, preserveDrawingBuffer: true}});
renderer.setPixelRatio(window.devicePixelRatio); renderer.setSize(box.clientWidth, box.clientHeight);
box.appendChild(renderer.domElement);
const scene = new THREE.Scene(); scene.background = new THREE.Color(0xf3f4f6);
scene.add(new THREE.HemisphereLight(0xffffff, 0x888888, 2.2));
const sun = new THREE.DirectionalLight(0xffffff, 1.5); sun.position.set(30, 50, 20); scene.add(sun);
const camera = new THREE.PerspectiveCamera(45, box.clientWidth / box.clientHeight, 0.01, 100000);
const controls = new OrbitControls(camera, renderer.domElement);
function draw() {{ renderer.render(scene, camera); }}
controls.addEventListener("change", draw);
window.addEventListener("resize", () => {{ camera.aspect = box.clientWidth / box.clientHeight;
  camera.updateProjectionMatrix(); renderer.setSize(box.clientWidth, box.clientHeight); draw(); }});
new GLTFLoader().load("/preview/{token}/model.glb", (gltf) => {{
  scene.add(gltf.scene);
  const bounds = new THREE.Box3().setFromObject(gltf.scene), size = bounds.getSize(new THREE.Vector3());
  const centre = bounds.getCenter(new THREE.Vector3()), radius = Math.max(size.x, size.y, size.z) || 1;
  camera.position.copy(centre).add(new THREE.Vector3(radius, radius * 0.8, radius * 1.2));
  camera.near = radius / 1000; camera.far = radius * 100; camera.updateProjectionMatrix();
  controls.target.copy(centre); controls.update();
  let meshes = 0; gltf.scene.traverse((o) => {{ if (o.isMesh) meshes += 1; }});
  state.textContent = meshes + " meshes (drag to orbit, scroll to zoom)"; document.body.dataset.loaded = meshes;
  draw();
}}, undefined, (error) => {{ state.textContent = "cannot show the model: " + error; document.body.dataset.failed = "1"; }});
</script></body></html>"""


def _page(title: str, body: str) -> HTMLResponse:
    text = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
            "body{font:14px system-ui,sans-serif;margin:16px}table{border-collapse:collapse}td,th{border:1px solid "
            "#ccc;padding:3px 6px;text-align:left;vertical-align:top}th{background:#eee;position:sticky;top:0}</style>"
            f"</head><body>{body}</body></html>")
    return HTMLResponse(text, headers={"Content-Security-Policy": PAGE_CSP})


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>"


def _csv(path: Path) -> str:
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        sample = handle.read(4096)
        handle.seek(0)
        try:
            dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t|")
        except csv.Error:
            dialect = csv.excel
        rows = [row for _, row in zip(range(ROWS + 1), csv.reader(handle, dialect))]
    return _table(rows[0], rows[1:]) if rows else "<p>(empty)</p>"


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)[:500]


def _json(path: Path) -> str:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        return f"<p>not valid JSON: {html.escape(str(exc))}</p>"
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
        data = next(iter(data.values()))
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        columns = list(dict.fromkeys(k for r in data[:ROWS] for k in r))
        return _table(columns, [[_cell(r.get(c, "")) for c in columns] for r in data[:ROWS]])
    if isinstance(data, dict):
        return _table(["key", "value"], [[k, _cell(v)] for k, v in list(data.items())[:ROWS]])
    if isinstance(data, list):
        return _table(["value"], [[_cell(v)] for v in data[:ROWS]])
    return f"<pre>{html.escape(json.dumps(data, indent=2))}</pre>"


@router.get("/preview/{token}", response_class=HTMLResponse, responses={404: {"description": "unknown token"}})
def preview(request: Request, token: str) -> Any:
    """The file behind a download token, shown in the browser (no API key needed: the token is the credential)."""
    path = token_file(request, token)
    suffix, name = path.suffix.lower(), html.escape(path.name)
    if suffix in (".glb", ".gltf", ".ifc"):
        return HTMLResponse(VIEWER.format(name=name, token=html.escape(token), three=THREE),
                            headers={"Content-Security-Policy": PAGE_CSP})
    if suffix in (".html", ".htm"):
        return FileResponse(path, media_type="text/html",
                            headers={"Content-Security-Policy": "sandbox allow-scripts allow-popups"})
    if suffix in (".csv", ".tsv"):
        return _page(path.name, f"<h3>{name}</h3>{_csv(path)}")
    if suffix == ".json":
        return _page(path.name, f"<h3>{name}</h3>{_json(path)}")
    return _page(path.name, f"<h3>{name}</h3><p>No preview for this file type. <a href='/download/{html.escape(token)}'>"
                 "Download it</a>.</p>")


@router.get("/preview/{token}/model.glb", response_class=FileResponse,
            responses={404: {"description": "unknown"}, 503: {"description": "too many conversions at once; retry"}})
async def preview_model(request: Request, token: str) -> FileResponse:
    """The glb the 3D preview loads (an IFC model converted on first use, one conversion per model at a time)."""
    path = token_file(request, token)
    if path.suffix.lower() == ".ifc":
        path = await glb(request.app.state.settings.output, path)
    elif path.suffix.lower() not in (".glb", ".gltf"):
        raise HTTPException(404, "this file has no 3D preview")
    return FileResponse(path, media_type="model/gltf-binary")


keyed = APIRouter(dependencies=[Depends(require_key)], tags=["files"])


@keyed.get("/runs/{run_id}/outputs/{step}/{name}/preview", status_code=303, response_class=RedirectResponse,
           responses={404: {"description": "no such output (yet)"}})
def preview_output(request: Request, run_id: str, step: str, name: str) -> RedirectResponse:
    """A run output's preview: a fresh download token for it, then a redirect to ``/preview/{token}`` (the web
    page's "preview" link next to each output)."""
    from .runs import output_file

    path, stored = output_file(request, run_id, step, name)
    if not stored and not path.is_file():
        raise HTTPException(404, f"output {name!r} of step {step!r} does not exist (yet)")
    token = secrets.token_urlsafe(32)
    request.app.state.conn.set(token_key(token), str(path), ex=TOKEN_TTL)
    return RedirectResponse(f"/preview/{token}", status_code=303)
