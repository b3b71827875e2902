"""Foreign Host headers and cross-site state-changing requests are refused on every route (issue 15 item 3), in
process on a real redis-server (httpx's ASGI transport)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from redis import Redis

from ifcflow.api.app import create_app
from ifcflow.api.settings import Settings
from ifcflow.errors import IfcflowError


def answers(conn: Redis, tmp_path: Path, requests: list[tuple[str, str, dict[str, str]]],
            **settings: object) -> list[httpx.Response]:
    app = create_app(Settings(data=tmp_path / "data", redis_url="unused", pipelines=tmp_path, **settings),  # type: ignore[arg-type]
                     conn=conn)

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8000") as http:
            return [await http.request(method, path, headers=headers,
                                       files={"file": ("arch.ifc", b"ISO-10303-21;")} if "upload" in path else None)
                    for method, path, headers in requests]

    return asyncio.run(go())


def test_a_foreign_host_is_refused(conn: Redis, tmp_path: Path) -> None:
    hosts = ["evil.example", "evil.example:8000", "localhost.evil.example", "10.0.0.1"]
    refused = answers(conn, tmp_path, [("GET", "/health", {"Host": h}) for h in hosts])
    assert [r.status_code for r in refused] == [400] * len(hosts)
    assert "IFCFLOW_ALLOWED_HOSTS" in refused[0].json()["detail"] and "evil.example" in refused[0].json()["detail"]
    ok = ["localhost:8000", "LOCALHOST", "127.0.0.1:9", "[::1]:8000"]
    assert [r.status_code for r in answers(conn, tmp_path, [("GET", "/health", {"Host": h}) for h in ok])] == \
        [200] * len(ok)
    listed = answers(conn, tmp_path, [("GET", "/health", {"Host": "ifc.example.com"}),
                                      ("GET", "/health", {"Host": "a.lan.example:80"}),
                                      ("GET", "/health", {"Host": "localhost"})],
                     allowed_hosts=("ifc.example.com", ".lan.example"))
    assert [r.status_code for r in listed] == [200, 200, 400]


def test_cross_site_writes_are_refused_on_every_route(conn: Redis, tmp_path: Path) -> None:
    """A key-less local server (the default): a page elsewhere cannot upload, start runs or delete schedules."""
    evil = {"Origin": "http://evil.example"}
    writes = [("POST", "/upload/ifc", evil), ("POST", "/runs", evil), ("DELETE", "/schedules/nightly", evil),
              ("POST", "/schedules/nightly/run", {"Referer": "http://evil.example/page"}),
              ("POST", "/ui/new", evil), ("POST", "/runs", {"Origin": "null"}),
              ("POST", "/runs", {"Origin": "http://localhost:8001"}),
              ("POST", "/runs", {"Origin": "https://localhost.evil.example:8000"})]
    refused = answers(conn, tmp_path, writes)
    assert [r.status_code for r in refused] == [403] * len(writes)
    assert "cross-site" in refused[0].json()["detail"]
    assert not (tmp_path / "data" / "uploads" / "arch.ifc").exists()
    # the server's own pages, and clients sending neither header (curl, n8n), still write; reads are not checked
    mine = answers(conn, tmp_path, [("POST", "/upload/ifc", {"Origin": "http://localhost:8000"}),
                                    ("POST", "/upload/ifc", {"Referer": "http://localhost:8000/ui/new"}),
                                    ("POST", "/upload/ifc", {}),
                                    ("GET", "/runs", evil)])
    assert [r.status_code for r in mine] == [200, 200, 200, 200]
    assert (tmp_path / "data" / "uploads" / "arch.ifc").is_file()


def test_allowed_hosts_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"IFCFLOW_REDIS_URL": "redis://x"}
    assert Settings.from_env(environ=env).allowed_hosts == ("localhost", "127.0.0.1", "::1")
    assert Settings.from_env(environ=env, bind="0.0.0.0").allowed_hosts == ("*",)  # keys are required there
    assert Settings.from_env(environ=env | {"IFCFLOW_ALLOWED_HOSTS": "a.example, b"}, bind="0.0.0.0").allowed_hosts \
        == ("a.example", "b")
    with pytest.raises(IfcflowError, match="IFCFLOW_ALLOWED_HOSTS"):
        Settings.from_env(environ=env | {"IFCFLOW_API_ALLOW_NETS": "10.0.0.0/8"}, bind="0.0.0.0")
