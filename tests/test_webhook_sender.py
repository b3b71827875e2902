"""The one webhook sender (ifcflow.engine.webhooks): redirects are never followed and the allow-list is checked on the
address the host resolves to, for run deliveries and schedule notifications alike (issue 15 item 2)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from ifcflow.batches import schedule
from ifcflow.engine import webhooks
from ifcflow.errors import IfcflowError

from .factories import write_pipeline


class Receiver:
    """A real HTTP server on ``host`` recording every request (method, path, Host header); answers ``status`` and,
    for a 3xx, ``Location: redirect``."""

    def __init__(self, host: str, status: int = 204, redirect: str = "") -> None:
        self.requests: list[tuple[str, str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                outer.requests.append((self.command, self.path, self.headers.get("Host", "")))
                self.send_response(status)
                if redirect:
                    self.send_header("Location", redirect)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET = do_PUT = answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def pair() -> Iterator[tuple[Receiver, Receiver]]:
    """``allowed`` on 127.0.0.1 answering 302 to ``elsewhere`` on 127.0.0.2 (a host outside the allow-list)."""
    elsewhere = Receiver("127.0.0.2")
    allowed = Receiver("127.0.0.1", 302, elsewhere.url)
    yield allowed, elsewhere
    allowed.close()
    elsewhere.close()


def test_schedule_webhook_does_not_follow_a_redirect_to_a_host_outside_the_allow_list(
        conn: Redis, tmp_path: Path, pair: tuple[Receiver, Receiver]) -> None:
    allowed, elsewhere = pair
    write_pipeline(tmp_path, "version: 1\nname: nightly\nsteps: {patch: {uses: ifcpatchh}}\n", "p.yaml")
    spec = schedule.ScheduleSpec(name="nightly", pipeline=str(tmp_path / "p.yaml"), cron="0 2 * * *",
                                 out=str(tmp_path / "runs"), webhook=allowed.url,
                                 webhook_allow=[f"127.0.0.1:{allowed.port}"])
    conn.hset(schedule.SCHEDULES, spec.name, spec.model_dump_json())  # (add() would refuse the broken file)
    assert schedule.fire(conn, spec, time.time()).outcome == "failed"  # -> notify the webhook of the failed fire
    time.sleep(0.3)
    assert [r[0] for r in allowed.requests] == ["POST"]
    assert elsewhere.requests == []
    # the terminal's schedules (any destination allowed) do not follow redirects either
    assert schedule.notify(allowed.url, {"event": "x"}, allow=None) is False
    time.sleep(0.3)
    assert elsewhere.requests == []


def test_run_delivery_does_not_follow_a_redirect(pair: tuple[Receiver, Receiver],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    allowed, elsewhere = pair
    monkeypatch.setenv(webhooks.SECRET_ENV, "s")
    with pytest.raises(IfcflowError, match="302.*not followed"):
        webhooks.deliver(allowed.url, '{"run_id": "r"}', "r", [f"127.0.0.1:{allowed.port}"])
    with pytest.raises(IfcflowError, match="302.*not followed"):
        webhooks.deliver(allowed.url, '{"run_id": "r"}', "r", None)
    time.sleep(0.3)
    assert len(allowed.requests) == 2 and elsewhere.requests == []


def test_allow_list_is_checked_on_the_resolved_address() -> None:
    receiver = Receiver("127.0.0.1")
    try:
        url = f"http://localhost:{receiver.port}/hook"
        port = receiver.port
        assert webhooks.check_url(url, (f"localhost:{port}",)) == url
        # an unlisted name is allowed only when every address it resolves to is in a listed network
        with pytest.raises(webhooks.WebhookRejected, match="resolves to 127.0.0.1"):
            webhooks.post(url, b"{}", {}, (f"10.0.0.0/8:{port}",))
        # a name listed by name never reaches loopback (DNS of a listed name cannot point ifcflow at the server
        # itself), unless the loopback address is listed itself
        with pytest.raises(webhooks.WebhookRejected, match="resolves to .*internal address"):
            webhooks.post(url, b"{}", {}, (f"localhost:{port}",))
        assert webhooks.post(url, b"{}", {}, (f"127.0.0.0/8:{port}", f"[::1]:{port}")).status_code == 204
        assert webhooks.post(url, b"{}", {}, (f"localhost:{port}", f"127.0.0.1:{port}", "[::1]:*")).status_code == 204
        # the listed port only: the same host on another port is refused at send time too
        with pytest.raises(webhooks.WebhookRejected, match=f"port {port} of localhost is not listed"):
            webhooks.post(url, b"{}", {}, ("localhost:1", "127.0.0.1:1"))
        # the checked address is where the connection goes; the Host header stays the URL's
        assert receiver.requests[-1] == ("POST", "/hook", f"localhost:{receiver.port}")
        # an IP literal outside the list is refused at send time too (the list may have changed since submit)
        with pytest.raises(webhooks.WebhookRejected, match="not allowed"):
            webhooks.post(receiver.url, b"{}", {}, ("10.0.0.0/8",))
    finally:
        receiver.close()


def test_a_listed_name_resolving_to_a_link_local_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A listed host name whose DNS answer became the cloud metadata address is refused (unless listed itself)."""
    real = socket.getaddrinfo

    def rebound(host: str, *args: Any, **kw: Any) -> Any:
        if host == "hooks.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 80))]
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", rebound)
    with pytest.raises(webhooks.WebhookRejected, match="resolves to 169.254.169.254"):
        webhooks.resolve("http://hooks.example/hook", ("hooks.example",))
    assert str(webhooks.resolve("http://hooks.example/hook", ("hooks.example", "169.254.169.254"))) == \
        "169.254.169.254"
