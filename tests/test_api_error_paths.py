"""Error answers over HTTP name paths relative to the data folder (or the pipelines folder), never the server's
absolute paths (issue 15 item 7). In process on a real redis-server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from redis import Redis

from ifcflow.api.app import create_app
from ifcflow.api.problems import public
from ifcflow.api.settings import Settings


def answers(conn: Redis, root: Path, bodies: list[tuple[str, dict[str, Any]]]) -> list[httpx.Response]:
    app = create_app(Settings(data=root / "data", redis_url="unused", pipelines=root / "pipes"), conn=conn)

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as http:
            return [await http.post(path, json=body) for path, body in bodies]

    return asyncio.run(go())


def test_error_messages_name_paths_relative_to_the_data_folder(conn: Redis, tmp_path: Path) -> None:
    (tmp_path / "pipes").mkdir()
    (tmp_path / "pipes" / "bad.yaml").write_text("version: 1\nname: x\nsteps:\n  a: {uses: ifcconvrt}\n")
    typo = {"pipeline": "version: 1\nname: x\nsteps:\n  a: {uses: ifcconvrt}\n"}
    missing = {"pipeline": "version: 1\nname: x\nsteps:\n  a: {uses: ifc2json, with: {ifc: missing.ifc}}\n"}
    dotdot = {"pipeline": "version: 1\nname: x\nsteps:\n  a: {uses: ifc2json, with: {ifc: ../../etc/passwd}}\n"}
    got = answers(conn, tmp_path, [("/runs", typo), ("/runs", {"file": "bad.yaml"}), ("/runs", missing),
                                   ("/runs", dotdot), ("/batches", typo)])
    assert [r.status_code for r in got] == [422, 422, 422, 400, 422]
    assert all(str(tmp_path) not in r.text for r in got), [r.text for r in got]
    assert got[0].json()["detail"][0]["msg"].startswith("uploads/pipeline.yaml:4:13: unknown service 'ifcconvrt'")
    assert got[0].json()["detail"][0]["loc"] == ["body", "uploads/pipeline.yaml", 4, 13]
    assert got[1].json()["detail"][0]["msg"].startswith("bad.yaml:4:13:")  # as the client named it
    assert "input file uploads/missing.ifc does not exist" in got[2].json()["detail"][0]["msg"]
    assert "'../etc/passwd' is outside the data folder" in got[3].json()["detail"]


def test_public_paths() -> None:
    roots = (Path("/srv/ifc/data"), Path("/srv/ifc/pipelines"))
    assert public("/srv/ifc/data/uploads/p.yaml:5:11: x", roots) == "uploads/p.yaml:5:11: x"
    assert public("in /srv/ifc/pipelines/a.yaml and '/srv/ifc/secret'", roots) == "in a.yaml and '../secret'"
    assert public("see POST /upload/ifc or /etc/passwd", roots) == "see POST /upload/ifc or /etc/passwd"
