"""The web page over plain HTTP (no browser needed): sign-in, the session cookie as API credentials, open access
without keys, unknown runs, the XSS-safe embedding of a status document."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ifcflow.standalone.embedded import EmbeddedRedis

from .apiserver import ApiServer
from .conftest import ROOT

KEY = "ui-test-key"


@pytest.fixture()
def redis_url() -> Iterator[str]:
    with EmbeddedRedis() as redis:
        yield redis.url


def test_api_accepts_the_session_cookie_but_not_from_another_site(redis_url: str, tmp_path: Path) -> None:
    with ApiServer(redis_url, tmp_path / "data", workers=0, env={"IFCFLOW_API_KEYS": KEY}) as server, \
            httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/runs").status_code == 401
        page = client.get("/ui")
        assert page.status_code == 303 and page.headers["location"] == "/ui/login?next=/ui"
        wrong = client.post("/ui/login", data={"key": "nope", "next": "/ui"})
        assert wrong.status_code == 401 and "ifcflow_session" not in client.cookies
        signed = client.post("/ui/login", data={"key": KEY, "next": "//evil.example/x"})
        assert signed.status_code == 303 and signed.headers["location"] == "/ui"  # no open redirect
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and KEY not in cookie
        assert client.get("/runs").status_code == 200
        assert client.get("/ui").status_code == 200
        foreign = client.post("/runs/nope/cancel", headers={"Origin": "https://evil.example"})
        assert foreign.status_code == 403  # cross-site: refused before the key check
        assert client.post("/runs/nope/cancel", headers={"Origin": server.url}).status_code == 404
        missing = client.get("/ui/runs/nope")
        assert missing.status_code == 404 and "run nope not found" in missing.text
        client.post("/ui/logout")
        assert client.get("/runs").status_code == 401


def test_without_keys_the_page_is_open_on_loopback(redis_url: str, tmp_path: Path) -> None:
    env = {"IFCFLOW_API_KEYS": "", "IFC_PIPELINE_API_KEY": "", "IFCFLOW_PIPELINES": str(ROOT / "pipelines")}
    with ApiServer(redis_url, tmp_path / "data", workers=0, env=env) as server:
        runs = httpx.get(f"{server.url}/ui", timeout=10)
        assert runs.status_code == 200 and "Sign out" not in runs.text
        new = httpx.get(f"{server.url}/ui/new?pipeline=revision-diff.yaml", timeout=10)
        assert new.status_code == 200
        assert 'name="upload:old"' in new.text and 'name="upload:new"' in new.text
        assert httpx.get(f"{server.url}/", timeout=10, follow_redirects=True).url.path == "/ui"
        assert "text/css" in httpx.get(f"{server.url}/ui/static/ui.css", timeout=10).headers["content-type"]
        forged = httpx.post(f"{server.url}/ui/new", data={"pipeline": "revision-diff.yaml"}, timeout=10,
                            headers={"Origin": "https://evil.example"})
        assert forged.status_code == 403 and httpx.get(f"{server.url}/runs", timeout=10).json()["runs"] == []


def test_allowed_networks_pass_without_signing_in_as_for_the_api(redis_url: str, tmp_path: Path) -> None:
    env = {"IFCFLOW_API_KEYS": KEY, "IFCFLOW_API_ALLOW_NETS": "127.0.0.1/32"}
    with ApiServer(redis_url, tmp_path / "data", workers=0, env=env) as server:
        assert httpx.get(f"{server.url}/runs", timeout=10).status_code == 200
        assert httpx.get(f"{server.url}/ui", timeout=10).status_code == 200


def test_status_document_cannot_close_the_script_tag(redis_url: str, tmp_path: Path) -> None:
    uploads = tmp_path / "data" / "uploads"
    with ApiServer(redis_url, tmp_path / "data", workers=0, env={"IFCFLOW_API_KEYS": ""}) as server:
        from .factories import tiny_model

        tiny_model(uploads / "a.ifc")
        text = ('version: 1\nname: x\ndescription: "</script><script>alert(1)</script>"\n'
                'steps:\n  s: {uses: ifc2json, with: {ifc: a.ifc, output: "</script>.json"}}\n')
        started = httpx.post(f"{server.url}/runs", json={"pipeline": text}, timeout=30)
        assert started.status_code == 202, started.text
        page = httpx.get(f"{server.url}/ui/runs/{started.json()['run_id']}", timeout=10).text
        assert "</script>.json" not in page and "\\u003c/script>.json" in page  # every '<' escaped in the JSON


def test_every_page_sends_a_strict_content_security_policy(redis_url: str, tmp_path: Path) -> None:
    """Pages carry no inline script, event handler or style attribute, and say so to the browser: an injected string
    could not run (the browser tests also assert the browser reported no refusal on any page they show)."""
    import re

    from ifcflow.api.ui import CSP

    from .factories import tiny_model

    tiny_model(tmp_path / "data" / "uploads" / "a.ifc")
    env = {"IFCFLOW_API_KEYS": "", "IFC_PIPELINE_API_KEY": "", "IFCFLOW_PIPELINES": str(ROOT / "pipelines")}
    with ApiServer(redis_url, tmp_path / "data", workers=0, env=env) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        text = "version: 1\nname: x\nsteps:\n  s: {uses: ifc2json, with: {ifc: a.ifc}}\n"
        run_id = client.post("/runs", json={"pipeline": text}).json()["run_id"]
        pages = ["/ui", f"/ui/runs/{run_id}", "/ui/runs/nope", "/ui/batches", "/ui/new",
                 "/ui/new?pipeline=revision-diff.yaml", "/ui/schedules", "/ui/login",
                 "/ui/lineage/uploads/a.ifc", "/ui/lineage/uploads/.secret"]
        for path in pages:
            page = client.get(path)
            assert page.status_code in (200, 400, 404), (path, page.status_code)
            assert page.headers.get("content-security-policy") == CSP, (path, page.status_code, page.text[:200])
            inline = re.findall(r"<[^>]*\s(?:style|on[a-z]+)\s*=", page.text)
            assert not inline, (path, inline)
        assert "'unsafe-inline'" not in CSP and "script-src 'self'" in CSP and "style-src 'self'" in CSP
