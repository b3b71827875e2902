"""Webhook rules (allow-list, URL checks, signature) and exactly-once delivery enqueue per run end, with several
processes observing the same end."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from rq import Queue, SimpleWorker

from ifcflow.engine import enqueue, reconcile, store
from ifcflow.engine import webhooks as webhook
from ifcflow.engine.states import RunState
from ifcflow.engine.status import StatusReader
from ifcflow.pipeline import document
from ifcflow.pipeline.plan import plan
from ifcflow.standalone.embedded import EmbeddedRedis
from tests.factories import tiny_model, write_pipeline

PIPELINE = """\
    version: 1
    name: hooked
    steps:
      patch: {uses: ifcpatch, with: {ifc: tiny.ifc, recipe: Optimise}}
    """


@pytest.mark.parametrize("url, allow", [
    ("http://127.0.0.1:9/x", ("127.0.0.0/8:9",)), ("https://hooks.example/a?b=1", ("HOOKS.example",)),
    ("http://[::1]:80/", ("::1/128",)), ("http://10.1.2.3/", ("10.0.0.0/8", "x.example")),
    ("http://n8n.internal:5678/webhook/x", ("n8n.internal:5678",)), ("http://[::1]:8080/", ("[::1]:8080",)),
    ("http://127.0.0.1:11211/", ("127.0.0.1:*",)), ("https://hooks.example:443/", ("hooks.example",)),
])
def test_allowed_destinations(url: str, allow: tuple[str, ...]) -> None:
    assert webhook.check_url(url, allow) == url


@pytest.mark.parametrize("url, allow, fragment", [
    ("http://169.254.169.254/latest", ("127.0.0.1",), "not allowed"),
    ("http://localhost/x", ("127.0.0.1/32",), "not allowed"),  # names are not resolved against networks
    ("http://evil.example/", ("example",), "not allowed"),
    ("file:///etc/passwd", ("127.0.0.1",), "http://"),
    ("http://u:p@127.0.0.1/", ("127.0.0.1",), "credentials"),
    ("http://127.0.0.1:99999/", ("127.0.0.1",), "not a valid URL"),
    ("http://127.0.0.1/", (), "IFCFLOW_WEBHOOK_ALLOW"),
    # an entry without a port admits only the scheme's default port: never the host's Redis or admin port
    ("http://127.0.0.1:11211/", ("127.0.0.1",), "port 11211 of 127.0.0.1 is not listed.*127.0.0.1:11211"),
    ("http://hooks.example:8080/", ("hooks.example",), "list hooks.example:8080"),
    ("http://hooks.example/", ("hooks.example:8080",), "port 80 of hooks.example"),
    ("https://hooks.example/", ("hooks.example:80",), "not allowed"),
    ("http://[::1]:8080/", ("::1",), r"list \[::1\]:8080"),
    ("http://127.0.0.1:80/", ("127.0.0.1:0",), "not allowed"),  # a bad entry admits nothing
])
def test_refused_destinations(url: str, allow: tuple[str, ...], fragment: str) -> None:
    with pytest.raises(webhook.WebhookRejected, match=fragment):
        webhook.check_url(url, allow)


def test_signature_is_hmac_sha256_of_the_body() -> None:
    body = b'{"run_id": "r"}'
    assert webhook.sign(body, "k") == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()


def finished_run(conn: Redis, tmp_path: Path, url: str = "http://127.0.0.1:9/hook") -> str:
    tiny_model(tmp_path / "tiny.ifc")
    planned = plan(document.load(write_pipeline(tmp_path, PIPELINE)), out_root=tmp_path / "runs")
    enqueue.submit(conn, planned, record={webhook.FIELD: url})
    SimpleWorker(["default"], connection=conn).work(burst=True, logging_level="WARNING")  # nobody ended it yet
    status = StatusReader(conn, planned.run_id).fetch()
    assert status.status == RunState.SUCCEEDED
    return planned.run_id


def delivery_jobs(conn: Redis) -> list[str]:
    return [j for j in Queue("default", connection=conn).job_ids if "--webhook-" in j]


def test_one_delivery_per_run_end_when_several_processes_observe_it(conn: Redis, redis_server: EmbeddedRedis,
                                                                     tmp_path: Path) -> None:
    run_id = finished_run(conn, tmp_path)
    assert delivery_jobs(conn) == []  # nobody observed the end yet
    script = ("import sys; from redis import Redis; from ifcflow.engine import reconcile; "
              "reconcile.run(Redis.from_url(sys.argv[1]), sys.argv[2])")
    procs = [subprocess.Popen([sys.executable, "-c", script, redis_server.url, run_id]) for _ in range(6)]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    assert len(delivery_jobs(conn)) == 1
    status = StatusReader(conn, run_id).read()
    assert webhook.on_run_end(conn, run_id, status) is None  # the same end again: nothing more
    assert len(delivery_jobs(conn)) == 1


def test_a_retried_run_that_ends_again_is_delivered_again(conn: Redis, tmp_path: Path) -> None:
    run_id = finished_run(conn, tmp_path)
    reconcile.run(conn, run_id)
    assert len(delivery_jobs(conn)) == 1
    conn.hdel(store.run_key(run_id), "ended_at")  # what ifcflow retry does when the run lives again
    conn.hset(store.run_key(run_id), "ended_at", "2.5")
    assert webhook.on_run_end(conn, run_id, StatusReader(conn, run_id).fetch()) is not None
    assert len(delivery_jobs(conn)) == 2


class Sink:
    def __init__(self) -> None:
        self.bodies: list[tuple[str, bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                outer.bodies.append((self.headers[webhook.HEADER], self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_ifcflow_run_webhook_in_local_mode(tmp_path: Path) -> None:
    """``ifcflow run --webhook URL`` with a private Redis: delivered (signed) before the command returns."""
    tiny_model(tmp_path / "tiny.ifc")
    sink = Sink()
    env = {k: v for k, v in os.environ.items() if k != "IFCFLOW_REDIS_URL"}
    env["IFCFLOW_WEBHOOK_SECRET"] = "s"
    done = subprocess.run([sys.executable, "-m", "ifcflow", "run", str(write_pipeline(tmp_path, PIPELINE)),
                           "--webhook", sink.url, "--out", str(tmp_path / "runs"), "--workers", "1", "--json"],
                          capture_output=True, text=True, timeout=120, env=env)
    sink.server.shutdown()
    assert done.returncode == 0, done.stderr
    assert len(sink.bodies) == 1
    signature, body = sink.bodies[0]
    assert signature == webhook.sign(body, "s")
    assert json.loads(body)["run_id"] == json.loads(done.stdout)["run_id"]
