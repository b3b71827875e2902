"""Outbound HTTP (ifcflow.engine.outbound): ports on the allow-list, and ``POST /download-from-url`` connecting only to
the address it checked (DNS cannot change the answer between the check and the connection)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi import HTTPException

from ifcflow.api.fetch import fetch
from ifcflow.api.settings import Settings
from ifcflow.engine import outbound
from ifcflow.errors import IfcflowError

MODEL = b"ISO-10303-21;\nHEADER;ENDSEC;DATA;ENDSEC;END-ISO-10303-21;\n"


class Files:
    """A file server on one loopback address that records the requests it got."""

    def __init__(self, host: str, body: bytes):
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.headers.get("Host", ""))
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def servers() -> Iterator[tuple[Files, Files]]:
    """``public`` (the allowed answer) and ``internal`` on another loopback address, on the same port if possible."""
    public = Files("127.0.0.1", MODEL)
    try:
        internal = Files("127.0.0.2", b"ISO-10303-21;\nSECRET")
    except OSError as exc:  # pragma: no cover - 127.0.0.2 is routable on Linux loopback
        public.close()
        pytest.skip(f"cannot listen on 127.0.0.2 ({exc}): the rebinding test needs a second loopback address")
    yield public, internal
    public.close()
    internal.close()


def test_download_connects_to_the_address_it_checked(servers: tuple[Files, Files], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: files.test first resolves to the allowed 127.0.0.1, then to 127.0.0.2. The fetch resolves
    once per hop, checks that answer and connects to it, so 127.0.0.2 never gets a request."""
    public, internal = servers
    real = socket.getaddrinfo
    answers: list[str] = []

    def rebinding(host: Any, port: Any, *args: Any, **kw: Any) -> Any:
        if host != "files.test":
            return real(host, port, *args, **kw)
        address = "127.0.0.1" if not answers else "127.0.0.2"
        answers.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    settings = Settings(data=tmp_path, redis_url="redis://unused",
                        download_allow=(f"files.test:{public.port}", f"127.0.0.0/8:{public.port}"))
    target = tmp_path / "model.ifc"
    assert fetch(f"http://files.test:{public.port}/model.ifc", settings, target, "ifc") == len(MODEL)
    assert target.read_bytes() == MODEL
    assert public.requests == [f"files.test:{public.port}"]  # the Host header stays the URL's
    assert internal.requests == [] and answers == ["127.0.0.1"]


def test_a_download_host_on_an_unlisted_port_is_refused(tmp_path: Path) -> None:
    settings = Settings(data=tmp_path, redis_url="redis://unused", download_allow=("127.0.0.1",))
    with pytest.raises(HTTPException) as caught:
        fetch("http://127.0.0.1:11211/model.ifc", settings, tmp_path / "m.ifc", "ifc")
    assert caught.value.status_code == 403
    assert "port 11211 of 127.0.0.1 is not listed" in str(caught.value.detail)
    assert "127.0.0.1:11211" in str(caught.value.detail)


@pytest.mark.parametrize("text, name, network, port", [
    ("hooks.example", "hooks.example", None, None), ("Hooks.Example.:8080", "hooks.example", None, 8080),
    ("10.0.0.0/8", None, "10.0.0.0/8", None), ("10.0.0.0/8:*", None, "10.0.0.0/8", outbound.ANY_PORT),
    ("[fd00::1]:443", None, "fd00::1/128", 443), ("::1", None, "::1/128", None), ("[::1]", None, "::1/128", None),
])
def test_entries(text: str, name: str | None, network: str | None, port: int | None) -> None:
    entry = outbound.parse_entry(text)
    assert (entry.name, str(entry.network) if entry.network else None, entry.port) == (name, network, port)


@pytest.mark.parametrize("text", ["host:0", "host:65536", "host:http", "[::1]:x"])
def test_a_bad_entry_stops_the_server_in_one_line(text: str, tmp_path: Path) -> None:
    with pytest.raises(IfcflowError, match="IFCFLOW_WEBHOOK_ALLOW: allow-list entry .*bad port"):
        Settings.from_env(tmp_path, "redis://x", {"IFCFLOW_WEBHOOK_ALLOW": f"ok.example,{text}"})


def test_cloud_metadata_addresses_are_never_reached_through_a_listed_name() -> None:
    """A name listed by name may resolve to a private LAN address (a company file server), never to loopback,
    link-local (169.254.169.254) or a metadata service outside that range."""
    import ipaddress

    from ifcflow.engine import outbound

    for address in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "::ffff:100.100.100.200", "127.0.0.1",
                    "::1"):
        assert outbound._special(ipaddress.ip_address(address)), address
    for address in ("10.0.0.5", "192.168.1.20", "fd12:3456::1", "93.184.216.34"):
        assert not outbound._special(ipaddress.ip_address(address)), address
