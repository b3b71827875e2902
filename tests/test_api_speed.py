"""The HTTP path does no per-request work that does not depend on the request (issue 20 item 3)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from redis import Redis

from ifcflow.api import session
from ifcflow.api.app import create_app
from ifcflow.api.settings import Settings
from ifcflow.standalone.embedded import EmbeddedRedis

KEY = "speed-key"


def test_the_page_session_passes_the_key_check_without_a_dependency_override(tmp_path: Path) -> None:
    """FastAPI re-analyses every overridden dependency (signature, annotations) on each request of every route;
    the page's session cookie is accepted by the key check itself instead."""
    with EmbeddedRedis() as server:
        settings = Settings.from_env(data=tmp_path / "data", redis_url=server.url, environ={"IFCFLOW_API_KEYS": KEY})
        app = create_app(settings)
        assert app.dependency_overrides == {}
        secret = session.shared_secret(Redis.from_url(server.url))

        async def get(headers: dict[str, str], cookies: dict[str, str] | None = None) -> int:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1",
                                         headers=headers, cookies=cookies) as client:
                return (await client.get("/runs")).status_code

        assert asyncio.run(get({})) == 401
        assert asyncio.run(get({"X-API-Key": "wrong"})) == 403
        assert asyncio.run(get({"X-API-Key": KEY})) == 200
        assert asyncio.run(get({}, {session.COOKIE: session.issue(KEY, secret)})) == 200
        assert asyncio.run(get({}, {session.COOKIE: session.issue("not-a-key", secret)})) == 401


def test_a_private_redis_keeps_run_records_and_finished_jobs_compact() -> None:
    """A run record holds its compressed plan (hundreds of bytes), a finished job its result and meta: with
    Redis's default (values up to 64 bytes) such hashes become hash tables, about 1.3 KB each instead of ~0.7."""
    with EmbeddedRedis() as server:
        conn = Redis.from_url(server.url)
        conn.hset("ifcflow:run:x", mapping={"plan": "z:" + "A" * 600, "ttl": "604800", "created_at": "1.5"})
        assert conn.object("encoding", "ifcflow:run:x") in (b"listpack", b"ziplist")
        conn.close()
