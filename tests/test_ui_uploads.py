"""Uploads through the page's "new run" form (issue 15 item 4): streamed, stopped at IFCFLOW_MAX_UPLOAD before the
whole body arrived, and two same-name uploads never share one temporary file."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

from ifcflow.api.uiforms import save_upload
from ifcflow.standalone.embedded import EmbeddedRedis

from .apiserver import ApiServer

LIMIT = 1_000_000


def test_an_oversized_form_upload_is_refused_at_the_limit_before_the_body_ends(redis_server: EmbeddedRedis,
                                                                                tmp_path: Path) -> None:
    """Declare 60 MB, send 3 MB, then wait: the answer (413) comes without the rest of the body."""
    env = {"IFCFLOW_API_KEYS": "", "IFCFLOW_MAX_UPLOAD": str(LIMIT)}
    with ApiServer(redis_server.url, tmp_path / "data", workers=0, env=env) as server:
        boundary = b"b0undary"
        head = (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="pipeline"\r\n\r\np.yaml\r\n--' + boundary
                + b'\r\nContent-Disposition: form-data; name="upload:arch"; filename="big.ifc"\r\n'
                b"Content-Type: application/octet-stream\r\n\r\n")
        total = 60_000_000
        request = (f"POST /ui/new HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Length: {total}\r\n"
                   f"Content-Type: multipart/form-data; boundary={boundary.decode()}\r\n\r\n").encode() + head
        with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
            sock.sendall(request)
            for _ in range(3):
                sock.sendall(b"x" * 1_000_000)
            started = time.monotonic()
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"IFCFLOW_MAX_UPLOAD" in answer or time.monotonic() - started < 15
        uploads = tmp_path / "data" / "uploads"
        time.sleep(0.5)
        assert sorted(p.name for p in uploads.iterdir()) == []  # neither big.ifc nor a temporary file is left


class SlowUpload:
    """A browser upload read in small chunks, yielding to the event loop between them (as a network does)."""

    def __init__(self, filename: str, fill: bytes, size: int) -> None:
        self.filename, self.fill, self.left = filename, fill, size

    async def read(self, size: int) -> bytes:
        await asyncio.sleep(0)
        chunk = self.fill * min(1000, self.left)
        self.left -= len(chunk)
        return chunk


def test_two_same_name_uploads_never_share_a_temporary_file(tmp_path: Path) -> None:
    async def both() -> None:
        await asyncio.gather(save_upload(SlowUpload("m.ifc", b"A", 200_000), tmp_path, LIMIT),
                             save_upload(SlowUpload("m.ifc", b"B", 200_000), tmp_path, LIMIT))

    asyncio.run(both())
    stored = (tmp_path / "m.ifc").read_bytes()
    assert stored in (b"A" * 200_000, b"B" * 200_000)  # one whole upload, never a mixture of the two
    assert [p.name for p in tmp_path.iterdir()] == ["m.ifc"]


def test_form_uploads_are_stored_only_for_the_pipelines_inputs_of_their_type(redis_server: EmbeddedRedis,
                                                                              tmp_path: Path) -> None:
    """A file for an input the pipeline does not have, or of a type its steps do not read, is not stored; a folder
    in place of the name is a field error (it was a 500 that left the temporary file), never a traceback."""
    import httpx

    from .conftest import ROOT

    env = {"IFCFLOW_API_KEYS": "", "IFCFLOW_PIPELINES": str(ROOT / "pipelines")}
    uploads = tmp_path / "data" / "uploads"
    with ApiServer(redis_server.url, tmp_path / "data", workers=0, env=env) as server:
        (uploads / "taken.ifc").mkdir(parents=True)

        def send(name: str, filename: str, pipeline: str = "revision-diff.yaml") -> httpx.Response:
            return httpx.post(f"{server.url}/ui/new", data={"pipeline": pipeline},
                              files={f"upload:{name}": (filename, b"<html>x</html>")}, timeout=30)

        for answer, says in ((send("old", "evil.html"), "wrong type for old"),
                             (send("nosuch", "a.ifc"), "has no input &#39;nosuch&#39;"),
                             (send("old", "a.ifc", pipeline="missing.yaml"), "no committed pipeline"),
                             (send("old", "taken.ifc"), "names a folder there")):
            assert answer.status_code == 422, answer.text
            assert says in answer.text and "Traceback" not in answer.text, answer.text
        assert sorted(p.name for p in uploads.iterdir()) == ["taken.ifc"]  # nothing stored, no temporary file
