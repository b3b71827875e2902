"""Live events: 200 concurrent SSE clients on one run -- server CPU while idle, event latency after a step ends.

A one-step run is submitted with no worker (it waits in its queue); ``--clients`` connections follow
``/runs/{id}/events`` until each got its first status; the server's CPU (user + system of its process) is
measured over ``--idle`` seconds; then one worker starts, the step runs and ends, and each client's latency is the
time it received the status showing the step ended minus the step's ``ended_at`` (the clients are plain sockets
that stamp each read and parse at the end: the benchmark's own reading adds little to the spread). With ``--baseline DIR`` (a
checkout of another revision) the same is measured for that tree's server and worker in the same session.
Run: ``python -m bench.bench_sse [--clients 200] [--idle 5] [--baseline DIR] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import re
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ifcflow.standalone.embedded import EmbeddedRedis  # noqa: E402
from tests.apiserver import ApiServer  # noqa: E402
from tests.factories import tiny_model  # noqa: E402

KEY = "bench-key"
ONE = """\
version: 1
name: one
inputs: {model: tiny.ifc}
steps:
  a: {uses: ifcpatch, with: {ifc: "${{ inputs.model }}", recipe: Optimise}}
"""


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


async def follow(url: str, run_id: str, first: asyncio.Event, ready: list[int], total: int,
                 received: list[float]) -> None:
    """One SSE client on a plain socket: it only stamps each read's arrival (the frames are parsed at the end),
    so 200 of them in this one process add little of their own to the latencies measured."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(f"GET /runs/{run_id}/events HTTP/1.1\r\nHost: {parts.netloc}\r\nX-API-Key: {KEY}\r\n"
                 "Accept: text/event-stream\r\n\r\n".encode())
    data, arrivals = bytearray(), []  # arrivals: (time, offset of the end of that read)
    counted = False
    while True:
        got = await reader.read(1 << 16)
        if not got:
            break
        at = time.time()
        data += got
        arrivals.append((at, len(data)))
        if not counted and b"event: status" in data:
            counted = True
            ready[0] += 1
            if ready[0] == total:
                first.set()
        if b"event: end" in data:
            break
    writer.close()
    ends = [offset for _, offset in arrivals]
    for match in re.finditer(rb"event: status\ndata: ([^\n]*)\n\n", bytes(data)):
        step = json.loads(match.group(1))["steps"]["a"]
        if step["status"] == "succeeded":
            received.append(arrivals[bisect.bisect_left(ends, match.end())][0] - epoch(step["ended_at"]))
            return


async def measure(api: ApiServer, clients: int, idle: float) -> dict[str, float]:
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    async with httpx.AsyncClient(base_url=api.url, headers={"X-API-Key": KEY}, limits=limits, timeout=60) as client:
        with (api.data.parent / "tiny.ifc").open("rb") as handle:
            (await client.post("/upload/ifc", files={"file": ("tiny.ifc", handle)})).raise_for_status()
        started = await client.post("/runs", json={"file": "one.yaml", "inputs": {"model": "tiny.ifc"}})
        started.raise_for_status()
        run_id = started.json()["run_id"]
        first, ready, received = asyncio.Event(), [0], list[float]()
        tasks = [asyncio.create_task(follow(api.url, run_id, first, ready, clients, received)) for _ in range(clients)]
        await asyncio.wait_for(first.wait(), 120)
        server = psutil.Process(api.processes[0].pid)
        await asyncio.sleep(1.0)
        before, began = server.cpu_times(), time.monotonic()
        await asyncio.sleep(idle)
        after, wall = server.cpu_times(), time.monotonic() - began
        cpu = (after.user + after.system - before.user - before.system) / wall
        api.start_workers(1)
        await asyncio.wait_for(asyncio.gather(*tasks), 180)
    latencies = sorted(received)
    return {"idle_cpu": cpu, "p50": statistics.median(latencies), "min": latencies[0],
            "p95": latencies[max(0, int(len(latencies) * 0.95) - 1)], "max": latencies[-1], "n": len(latencies)}


def run_tree(tree: Path, folder: Path, clients: int, idle: float) -> dict[str, float]:
    env = {"IFCFLOW_API_KEYS": KEY, "IFCFLOW_PIPELINES": str(folder / "pipelines"), "PYTHONPATH": str(tree)}
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(tree)  # the worker started later inherits it
    try:
        with EmbeddedRedis() as redis, ApiServer(redis.url, folder / f"data-{tree.name}", env, workers=0) as api:
            return asyncio.run(measure(api, clients, idle))
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--idle", type=float, default=5.0)
    parser.add_argument("--baseline", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=1, help="runs per tree, alternating (medians at the end)")
    args = parser.parse_args()
    p95s: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.chdir(folder)  # python -m puts the current folder first on sys.path: it must not be a checkout
        (folder / "pipelines").mkdir()
        (folder / "pipelines" / "one.yaml").write_text(ONE)
        tiny_model(folder / "tiny.ifc")
        trees = {"this tree": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
        for _ in range(args.repeat):
            for name, tree in trees.items():
                got = run_tree(tree, folder, args.clients, args.idle)
                p95s.setdefault(name, []).append(got["p95"])
                print(f"{name:10s} {args.clients} clients: server CPU idle {got['idle_cpu'] * 100:.1f} % of a core; "
                      f"event after step end p50 {got['p50'] * 1000:.0f} ms, p95 {got['p95'] * 1000:.0f} ms, "
                      f"min {got['min'] * 1000:.0f} ms, max {got['max'] * 1000:.0f} ms ({got['n']:.0f} events); "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
    for name, values in p95s.items():
        print(f"{name:10s} p95 median of {len(values)} runs: {statistics.median(values) * 1000:.0f} ms "
              f"(runs: {', '.join(f'{v * 1000:.0f}' for v in values)})")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

if __name__ == "__main__":
    main()
