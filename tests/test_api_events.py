"""Live events pushed, not polled: the connections following one run share one status read per announced change,
and a change nobody announced (a plain ``rq worker`` runs the step) still reaches them."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis

from ifcflow.standalone.embedded import EmbeddedRedis
from tests.apiserver import ApiServer, stream_events
from tests.factories import tiny_model

KEY = "test-key-events"
ONE = """\
version: 1
name: one
inputs: {model: tiny.ifc}
steps:
  a: {uses: ifcpatch, with: {ifc: "${{ inputs.model }}", recipe: Optimise}}
"""


class Env:
    def __init__(self, api: ApiServer, redis: Redis, url: str):
        self.api, self.redis, self.url = api, redis, url
        self.client = httpx.Client(base_url=api.url, headers={"X-API-Key": KEY}, timeout=30)

    def start_run(self) -> str:
        with (self.api.data.parent / "tiny.ifc").open("rb") as handle:
            assert self.client.post("/upload/ifc", files={"file": ("tiny.ifc", handle)}).status_code == 200
        started = self.client.post("/runs", json={"file": "one.yaml", "inputs": {"model": "tiny.ifc"}})
        assert started.status_code == 202, started.text
        return str(started.json()["run_id"])


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[Env]:
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "one.yaml").write_text(ONE)
    tiny_model(tmp_path / "tiny.ifc")
    settings = {"IFCFLOW_API_KEYS": KEY, "IFCFLOW_PIPELINES": str(pipelines)}
    with EmbeddedRedis() as server, ApiServer(server.url, tmp_path / "data", settings, workers=0) as api:
        redis = Redis.from_url(server.url)
        yield Env(api, redis, server.url)
        redis.close()


def follow(env: Env, run_id: str, first: threading.Event, stop: threading.Event) -> None:
    """Hold an event stream open until ``stop``; set ``first`` at its first status event."""
    with httpx.Client(base_url=env.api.url, headers={"X-API-Key": KEY}) as client, \
            client.stream("GET", f"/runs/{run_id}/events", timeout=60) as stream:
        for line in stream.iter_lines():
            if line.startswith("event: status"):
                first.set()
            if line.startswith("event: end") and stop.is_set():
                return


def commands(redis: Redis) -> int:
    return int(redis.info("stats")["total_commands_processed"])


def test_idle_followers_of_one_run_do_not_poll_redis(env: Env) -> None:
    run_id = env.start_run()  # no worker: the step waits in its queue, nothing changes
    quiet = commands(env.redis)
    time.sleep(2.0)
    background = commands(env.redis) - quiet  # the server's own reconcile loop and watcher
    stop = threading.Event()
    started = [threading.Event() for _ in range(20)]
    threads = [threading.Thread(target=follow, args=(env, run_id, first, stop), daemon=True) for first in started]
    for thread in threads:
        thread.start()
    assert all(first.wait(30) for first in started), "every follower gets the run's status first"
    before = commands(env.redis)
    time.sleep(2.0)
    spent = commands(env.redis) - before
    stop.set()
    assert env.client.post(f"/runs/{run_id}/cancel").status_code == 200  # every stream gets the end and closes
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads), "a follower did not get the run's end"
    # polling every 50 ms, 20 followers read the run's status 800 times in 2 s; a shared feed reads it at most once
    assert spent <= background + 20, f"{spent} Redis commands in 2 s of 20 idle followers (background {background})"


def test_a_change_nobody_announces_still_reaches_the_stream(env: Env) -> None:
    """A plain ``rq worker`` (no announcements) runs the step; the stream still ends, from its periodic re-read."""
    run_id = env.start_run()
    worker = subprocess.Popen([sys.executable, "-c", "from rq.cli import main; main()", "worker", "--burst", "--url",
                               env.url, "default"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        seen = stream_events(env.client, f"/runs/{run_id}/events")
    finally:
        worker.wait(timeout=60)
    assert seen[-1][0] == "end" and seen[-1][1]["status"] == "succeeded", seen[-1]


async def _follow_all(env: Env, run_id: str, count: int) -> list[list[tuple[str, dict[str, Any]]]]:
    """``count`` connections on one run's stream: each one's events up to ``end``; the worker starts once every
    connection got its first status (the step waits in its queue until then)."""
    limits = httpx.Limits(max_connections=count + 5)
    async with httpx.AsyncClient(base_url=env.api.url, headers={"X-API-Key": KEY}, limits=limits,
                                 timeout=120) as client:
        ready = [asyncio.Event() for _ in range(count)]

        async def one(first: asyncio.Event) -> list[tuple[str, dict[str, Any]]]:
            found, name = [], None
            async with client.stream("GET", f"/runs/{run_id}/events") as stream:
                assert stream.status_code == 200
                async for line in stream.aiter_lines():
                    if line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: ") and name:
                        found.append((name, json.loads(line[6:])))
                        first.set()
                        if name == "end":
                            break
            return found

        tasks = [asyncio.create_task(one(first)) for first in ready]
        await asyncio.wait_for(asyncio.gather(*(first.wait() for first in ready)), 60)
        assert all(not task.done() for task in tasks), "a stream ended before its step ran"
        env.api.start_workers(1)
        return await asyncio.wait_for(asyncio.gather(*tasks), 120)


def test_many_followers_of_one_run_all_get_the_step_end(env: Env) -> None:
    """80 connections share one status read per change: each one still gets the step's end, then the run's."""
    run_id = env.start_run()
    streams = asyncio.run(_follow_all(env, run_id, 80))
    assert len(streams) == 80
    for seen in streams:
        assert seen[0][0] == "status" and seen[0][1]["steps"]["a"]["status"] == "queued", seen[0]
        ended = [doc for name, doc in seen if name == "status" and doc["steps"]["a"]["status"] == "succeeded"]
        assert ended and ended[0]["steps"]["a"]["ended_at"], seen
        assert seen[-1][0] == "end" and seen[-1][1]["status"] == "succeeded", seen[-1]
