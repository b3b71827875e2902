"""API keys and the opt-in key-less networks, in process (httpx's ASGI transport sets the client address)."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import httpx
import pytest
from redis import Redis

from ifcflow.api.app import create_app
from ifcflow.api.auth import valid
from ifcflow.api.settings import Settings, parse_networks
from ifcflow.errors import IfcflowError


def status(conn: Redis, tmp_path: Path, client: str, headers: dict[str, str], path: str = "/runs",
           nets: tuple[str, ...] = ("127.0.0.0/8",)) -> int:
    settings = Settings(data=tmp_path, redis_url="unused", api_keys=("k1", "k2"),
                        allow_nets=tuple(ipaddress.ip_network(n) for n in nets))
    app = create_app(settings, conn=conn)

    async def go() -> int:
        transport = httpx.ASGITransport(app=app, client=(client, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            return (await http.get(path, headers=headers)).status_code

    return asyncio.run(go())


def test_allowed_network_needs_no_key_others_do(conn: Redis, tmp_path: Path) -> None:
    assert status(conn, tmp_path, "127.0.0.1", {}) == 200
    assert status(conn, tmp_path, "10.1.2.3", {}) == 401
    assert status(conn, tmp_path, "10.1.2.3", {"X-API-Key": "k2"}) == 200
    assert status(conn, tmp_path, "127.0.0.1", {"X-API-Key": "wrong"}) == 403  # a wrong key is never waved through
    assert status(conn, tmp_path, "127.0.0.1", {}, nets=()) == 401  # loopback is not special unless listed
    assert status(conn, tmp_path, "10.1.2.3", {}, path="/health") == 200


def test_key_comparison_and_network_settings() -> None:
    assert valid("k2", ("k1", "k2")) and not valid("k", ("k1", "k2")) and not valid("", ("k1",))
    with pytest.raises(IfcflowError, match="IFCFLOW_API_ALLOW_NETS"):
        parse_networks(["localhost"], "IFCFLOW_API_ALLOW_NETS")
    settings = Settings.from_env(environ={"IFCFLOW_REDIS_URL": "redis://x", "IFCFLOW_API_KEYS": "a, b",
                                          "IFC_PIPELINE_API_KEY": "c", "IFCFLOW_MAX_UPLOAD": "10"})
    assert settings.api_keys == ("a", "b", "c") and settings.max_upload == 10
    with pytest.raises(IfcflowError, match="IFCFLOW_REDIS_URL"):
        Settings.from_env(environ={})


def test_docs_and_openapi_need_the_key_when_keys_are_set(conn: Redis, tmp_path: Path) -> None:
    """On a shared server the API description is for key holders (or the web page's session); open without keys
    (a key-less server listens on loopback only)."""
    for path in ("/openapi.json", "/docs", "/redoc"):
        assert status(conn, tmp_path, "10.1.2.3", {}, path=path) == 401
        assert status(conn, tmp_path, "10.1.2.3", {"X-API-Key": "wrong"}, path=path) == 403
        assert status(conn, tmp_path, "10.1.2.3", {"X-API-Key": "k1"}, path=path) == 200

    async def described(app_keys: tuple[str, ...], headers: dict[str, str]) -> httpx.Response:
        app = create_app(Settings(data=tmp_path, redis_url="unused", api_keys=app_keys), conn=conn)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as http:
            return await http.get("/openapi.json", headers=headers)

    keyed = asyncio.run(described(("k1",), {"X-API-Key": "k1"})).json()
    assert "/runs" in keyed["paths"] and "/openapi.json" not in keyed["paths"]
    assert asyncio.run(described((), {})).status_code == 200
