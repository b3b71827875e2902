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


def test_thousands_of_unknown_entity_names_are_ten_problems_and_a_count(conn: Redis, tmp_path: Path) -> None:
    """A glb step's ``include`` list naming thousands of unknown entity types (a 2 MB body holds ~100,000): the
    first ten each get a "did you mean" (a difflib pass over the schema's ~800 names, 1.4 ms here), the rest one
    counted problem. A selector is parsed by IfcOpenShell's grammar at about 45 µs a character: one may have
    4,000 characters and a pipeline's all together 32,000, so a check stays around a second (a 290 KB query
    took 13 s to parse, three times over, before)."""
    import json
    import shutil
    import time

    from .conftest import shared_ifc

    (tmp_path / "data" / "uploads").mkdir(parents=True)
    shutil.copyfile(shared_ifc("duplex.ifc"), tmp_path / "data" / "uploads" / "model.ifc")
    names = [f"IfcThing{i}" for i in range(20_000)]
    short = ", ".join(names[:300])  # 3,288 characters: under the cap
    steps = [f"  glb: {{uses: ifcconvert, with: {{input: model.ifc, include: {json.dumps(names)}}}}}",
             f"  long: {{uses: ifccsv, with: {{ifc: model.ifc, query: {json.dumps(', '.join(names))}}}}}"]
    steps += [f"  csv{i}: {{uses: ifccsv, with: {{ifc: model.ifc, query: {json.dumps(short)}, output: c{i}.csv}}}}"
              for i in range(12)]
    text = "version: 1\nname: many\nsteps:\n" + "\n".join(steps) + "\n"
    headers = {"X-API-Key": KEY, "Content-Type": "application/json"}
    started = time.process_time()
    [answer] = answers(conn, tmp_path, [("POST", "/runs", headers, json.dumps({"pipeline": text}).encode())])
    spent = time.process_time() - started
    assert answer.status_code == 422, answer.text
    messages = [d["msg"] for d in answer.json()["detail"]]
    include = [m for m in messages if "steps.glb.with.include" in m]
    assert len(include) == 11 and any("19990 more names are not entity types of IFC2X3" in m for m in include)
    assert any("'IfcThing0' is not an entity type of IFC2X3" in m for m in include)
    [long] = [m for m in messages if "steps.long.with.query" in m]
    assert "query is 288,888 characters; a selector may have at most 4,000" in long
    checked = [m for m in messages if ".with.query" in m and "steps.long" not in m]
    assert sum("the pipeline's selectors total more than 32,000 characters" in m for m in checked) == 1
    assert any("names 290 more entity types that IFC2X3 does not define" in m for m in checked)
    assert all(len(m) < 1000 for m in messages)  # a long query is not repeated in full in every message
    assert spent < 30, spent  # (a bound far above the few seconds it takes; before the caps: about a minute)
