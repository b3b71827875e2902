"""``GET /preview/{token}/model.glb`` needs no API key, so converting an IFC model for it is guarded: several
concurrent requests of one uncached model start ONE conversion subprocess (the others wait and serve the cached glb),
conversions at once are capped (over the cap: 503 with Retry-After), and the cache file is written by a rename, with
no temporary file left behind. Conversion subprocesses are counted from outside, in /proc, by their command line."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from redis import Redis

from ifcflow.api import preview_glb
from ifcflow.api.app import create_app
from ifcflow.api.settings import Settings
from ifcflow.api.uploads import TOKEN_TTL, token_key
from ifcflow.standalone.embedded import EmbeddedRedis

from .apiserver import ApiServer
from .conftest import shared_ifc

KEY = "preview-convert-key"
MODEL = "wall-extruded-solid.ifc"


class Converters:
    """The ``workers.preview`` processes converting a file under ``folder``, seen in /proc while watching."""

    def __init__(self, folder: Path):
        self.folder = str(folder)
        self.seen: set[int] = set()
        self.most = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.watch, daemon=True)

    def running(self) -> set[int]:
        found = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                args = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"workers.preview" in args and any(self.folder.encode() in a for a in args):
                found.add(int(entry.name))
        return found

    def watch(self) -> None:
        while not self.stop.is_set():
            now = self.running()
            self.seen |= now
            self.most = max(self.most, len(now))
            time.sleep(0.02)

    def __enter__(self) -> Converters:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def model_copy(folder: Path, name: str, mark: str = "") -> Path:
    """A copy of a small real model; ``mark`` (an IFC comment) gives it a sha256 of its own (uncached)."""
    path = folder / name
    path.write_bytes(shared_ifc(MODEL).read_bytes() + f"/* {mark} */\n".encode())
    return path


@pytest.fixture()
def api(tmp_path: Path) -> Iterator[ApiServer]:
    (tmp_path / "data" / "uploads").mkdir(parents=True)
    with EmbeddedRedis() as server, ApiServer(server.url, tmp_path / "data", {"IFCFLOW_API_KEYS": KEY},
                                              workers=0) as started:
        yield started


def test_concurrent_previews_of_one_uncached_model_convert_it_once(api: ApiServer) -> None:
    model_copy(api.data / "uploads", "wall.ifc", secrets.token_hex(4))
    answer = httpx.post(f"{api.url}/create_download_link", json={"file_path": "/uploads/wall.ifc"},
                        headers={"X-API-Key": KEY}, timeout=30)
    assert answer.status_code == 200, answer.text
    url = answer.json()["preview_url"] + "/model.glb"
    with Converters(api.data) as converters, ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: httpx.get(url, timeout=300), range(6)))
    assert [a.status_code for a in answers] == [200] * 6, [a.text[:200] for a in answers]
    assert len({a.content for a in answers}) == 1 and answers[0].content[:4] == b"glTF"
    assert len(converters.seen) == 1, f"{len(converters.seen)} conversion subprocesses for one model"
    cache = api.data / "output" / ".preview"
    assert [p.suffix for p in cache.glob("*.glb")] == [".glb"]
    assert not list(cache.glob("*.tmp*")), "a temporary file was left in the cache folder"
    again = httpx.get(url, timeout=60)  # served from the cache, no new subprocess
    assert again.content == answers[0].content


def test_conversions_at_once_are_capped_with_a_503(tmp_path: Path, conn: Redis,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preview_glb, "_slots", threading.BoundedSemaphore(1))
    monkeypatch.setattr(preview_glb, "SLOT_WAIT", 0.3)
    data = tmp_path / "data"
    (data / "uploads").mkdir(parents=True)
    urls = []
    for index in range(2):
        token = secrets.token_urlsafe(16)
        conn.set(token_key(token), str(model_copy(data / "uploads", f"m{index}.ifc", str(index))), ex=TOKEN_TTL)
        urls.append(f"/preview/{token}/model.glb")
    app = create_app(Settings(data=data, redis_url="unused"), conn=conn)
    with TestClient(app, base_url="http://127.0.0.1") as client, Converters(data) as converters, \
            ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(client.get, urls))
        assert sorted(a.status_code for a in answers) == [200, 503], [a.text for a in answers]
        refused = next(a for a in answers if a.status_code == 503)
        assert refused.headers["Retry-After"] == str(preview_glb.RETRY_AFTER)
        assert "retry in" in refused.json()["detail"] and "Traceback" not in refused.text
        retried = client.get(urls[answers.index(refused)])  # the slot is free again
    assert retried.status_code == 200 and retried.content[:4] == b"glTF"
    assert converters.most == 1 and len(converters.seen) == 2
    assert len(list((data / "output" / ".preview").glob("*.glb"))) == 2


def test_a_failed_conversion_leaves_nothing_in_the_cache(tmp_path: Path, conn: Redis) -> None:
    data = tmp_path / "data"
    (data / "uploads").mkdir(parents=True)
    broken = data / "uploads" / "broken.ifc"
    broken.write_text("ISO-10303-21;\nthis is not a model\n")
    token = secrets.token_urlsafe(16)
    conn.set(token_key(token), str(broken), ex=TOKEN_TTL)
    client = TestClient(create_app(Settings(data=data, redis_url="unused"), conn=conn), base_url="http://127.0.0.1")
    answer = client.get(f"/preview/{token}/model.glb")
    assert answer.status_code == 404 and "cannot be shown in 3D" in answer.json()["detail"], answer.text
    cache = data / "output" / ".preview"
    assert not list(cache.glob("*.glb")) and not list(cache.glob("*.tmp*")), list(cache.iterdir())
