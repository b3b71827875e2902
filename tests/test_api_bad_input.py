"""Bad input over HTTP is a clear 4xx, never a 500 (issue 15 item 6): session cookies, deeply nested YAML and
JSON. In process on a real redis-server (httpx's ASGI transport)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis

from ifcflow.api import session
from ifcflow.api.app import create_app
from ifcflow.api.settings import Settings
from ifcflow.errors import PipelineError
from ifcflow.pipeline import source

KEY = "k"


def answers(conn: Redis, tmp_path: Path, requests: list[tuple[str, str, dict[str, Any], bytes | None]]
            ) -> list[httpx.Response]:
    app = create_app(Settings(data=tmp_path / "data", redis_url="unused", pipelines=tmp_path, api_keys=(KEY,)),
                     conn=conn)

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            return [await http.request(method, path, headers=headers, content=body)
                    for method, path, headers, body in requests]

    return asyncio.run(go())


@pytest.mark.parametrize("cookie", ["\xb2.x", "9" * 5000 + ".x", "1.", ".", "99999999999999999999.ab", "x" * 9000])
def test_a_bad_session_cookie_is_no_session(cookie: str) -> None:
    assert session.valid(cookie, (KEY,), b"s" * 32) is False


def test_bad_cookies_over_http_are_a_401_or_the_login_page(conn: Redis, tmp_path: Path) -> None:
    cookies = ["\xb2.x", "9" * 5000 + ".x"]
    requests = [(method, path, {"Cookie": f"{session.COOKIE}={c}".encode("latin-1")}, None)
                for c in cookies for method, path in (("GET", "/runs"), ("GET", "/ui"), ("POST", "/runs/x/cancel"))]
    got = [r.status_code for r in answers(conn, tmp_path, requests)]
    assert got == [401, 303, 401] * len(cookies)


def test_deeply_nested_yaml_is_a_pipeline_problem_at_its_place() -> None:
    text = "version: 1\nname: x\nsteps: " + "[" * 5000 + "]" * 5000 + "\n"
    with pytest.raises(PipelineError) as caught:
        source.load(text, "deep.yaml")
    [problem] = caught.value.problems
    assert (problem.file, problem.line) == ("deep.yaml", 3) and "nested more than" in problem.message
    assert problem.col == 7 + source.MAX_DEPTH  # the bracket one level too deep (the top mapping is level 1)
    source.load("version: 1\nname: x\nsteps: " + "[" * 60 + "]" * 60 + "\n", "ok.yaml")  # deep, but allowed


def test_deeply_nested_pipeline_and_json_bodies_over_http(conn: Redis, tmp_path: Path) -> None:
    headers = {"X-API-Key": KEY, "Content-Type": "application/json"}
    deep_yaml = b'{"pipeline": "version: 1\\nname: x\\nsteps: ' + b"[" * 5000 + b"]" * 5000 + b'"}'
    deep_json = b'{"pipeline": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    yaml_answer, json_answer = answers(conn, tmp_path, [("POST", "/runs", headers, deep_yaml),
                                                        ("POST", "/batches", headers, deep_json)])
    assert yaml_answer.status_code == 422
    assert ":3:" in yaml_answer.json()["detail"][0]["msg"] and "nested" in yaml_answer.json()["detail"][0]["msg"]
    assert json_answer.status_code == 400 and "nested too deeply" in json_answer.json()["detail"]
