"""HTTP API benchmark (issue 10), in one run on private redis-servers:

(a) latency and throughput of ``POST /ifc2json`` and ``GET /jobs/{id}/status`` under 20 concurrent clients
    (keep-alive connections opened before timing), ifcflow's API vs a minimal FastAPI + RQ gateway that only
    checks the file and enqueues (the original's design), both one uvicorn process started the same way and up at
    the same time, measured in alternating rounds, no workers running (only the gateway is measured);
(b) 1,000 submissions through the API, then 2 workers: every job finished, none lost, none run twice
    (exactly one result entry per job, every output file written);
(c) live events: time from a step's end (RQ's ``ended_at``) to the SSE event that shows it, p50/p95.

Run from the repository root: ``python -m bench.bench_api`` (about 3 minutes on 2 cores).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from redis import Redis

from ifcflow.standalone.embedded import EmbeddedRedis
from tests.apiserver import ApiServer
from tests.factories import tiny_model

CLIENTS = 20


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def hammer(url: str, requests: Sequence[tuple[str, str, dict[str, Any] | None]]) -> tuple[list[float], float, list[Any]]:
    """Send ``requests`` from CLIENTS concurrent clients; (latencies in ms, wall seconds, answers)."""
    latencies: list[float] = []
    answers: list[Any] = [None] * len(requests)
    index = 0

    ready = asyncio.Event()
    connected = 0
    began = 0.0

    async def client() -> None:
        nonlocal index, connected, began
        async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": "bench"}, timeout=60) as http:
            await http.get("/docs")  # connect first: only requests on open connections are timed
            connected += 1
            if connected == CLIENTS:
                began = time.perf_counter()
                ready.set()
            await ready.wait()
            while index < len(requests):
                mine = index
                index += 1
                method, path, body = requests[mine]
                start = time.perf_counter()
                answer = await http.request(method, path, json=body)
                latencies.append((time.perf_counter() - start) * 1000)
                assert answer.status_code == 200, answer.text
                answers[mine] = answer.json()

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return latencies, time.perf_counter() - began, answers


def measure(url: str, count: int, tag: str = "") -> dict[str, Any]:
    submits = [("POST", "/ifc2json", {"filename": "tiny.ifc", "output_filename": f"m{tag}{i}.json"})
               for i in range(count)]
    lat, wall, answers = asyncio.run(hammer(url, submits))
    reads = [("GET", f"/jobs/{a['job_id']}/status", None) for a in answers]
    read_lat, read_wall, _ = asyncio.run(hammer(url, reads))
    return {"submit": lat, "submit_wall": wall, "status": read_lat, "status_wall": read_wall, "count": count}


def summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The rounds of one server together: p50/p95 over every request, requests per second over the rounds."""
    count = sum(r["count"] for r in rounds)
    found: dict[str, Any] = {}
    for kind in ("submit", "status"):
        values = [v for r in rounds for v in r[kind]]
        found |= {f"{kind}_p50": statistics.median(values), f"{kind}_p95": pct(values, 0.95),
                  f"{kind}_rps": count / sum(r[f"{kind}_wall"] for r in rounds)}
    return found


def part_a(root: Path, count: int = 400, rounds: int = 8) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both servers up at once; rounds alternate between them (order swapped every round), so a change of the
    machine's load meets both alike."""
    servers = {"ifcflow": None, "minimal": [sys.executable, "-m", "uvicorn", "bench.minimal_gateway:app",
                                            "--port", "{port}", "--log-level", "warning"]}
    with ExitStack() as stack:
        urls = {}
        for name, command in servers.items():
            data = root / f"a-{name}"
            (data / "uploads").mkdir(parents=True)
            tiny_model(data / "uploads" / "tiny.ifc")
            env = {"IFCFLOW_API_KEYS": "bench", "IFCFLOW_DATA": str(data)}
            server = stack.enter_context(EmbeddedRedis())
            urls[name] = stack.enter_context(ApiServer(server.url, data, env, workers=0, command=command)).url
        for url in urls.values():
            measure(url, 40, "warm")
        done: dict[str, list[dict[str, Any]]] = {name: [] for name in urls}
        for index in range(rounds):
            order = list(urls) if index % 2 == 0 else list(urls)[::-1]
            for name in order:
                done[name].append(measure(urls[name], count // rounds, f"r{index}-"))
    return summary(done["ifcflow"]), summary(done["minimal"])


def part_b(root: Path, count: int = 1000) -> dict[str, Any]:
    data = root / "b"
    (data / "uploads").mkdir(parents=True)
    tiny_model(data / "uploads" / "tiny.ifc")
    with EmbeddedRedis() as server, ApiServer(server.url, data, {"IFCFLOW_API_KEYS": "bench"}, workers=0) as api:
        submits = [("POST", "/ifc2json", {"filename": "tiny.ifc", "output_filename": f"m{i}.json"})
                   for i in range(count)]
        _, wall, answers = asyncio.run(hammer(api.url, submits))
        ids = [a["job_id"] for a in answers]
        start = time.perf_counter()
        api.start_workers(2)
        redis = Redis.from_url(server.url)
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            raw = [redis.hget(f"rq:job:{j}", "status") for j in ids]
            states = [(s.decode() if isinstance(s, bytes) else str(s)) if s else "lost" for s in raw]
            if all(s in ("finished", "failed", "lost") for s in states):
                break
            time.sleep(1)
        work_wall = time.perf_counter() - start
        # results per job: the stream's entries, or 1 for a job compacted when its run ended (ifcflow.engine.compact)
        runs = [redis.xlen(f"rq:results:{j}") or int(bool(redis.hexists(f"rq:job:{j}", "result"))) for j in ids]
        outputs = sum((data / "output" / "json" / f"m{i}.json").is_file() for i in range(count))
        return {"submitted": len(set(ids)), "submit_wall": wall, "finished": states.count("finished"),
                "failed": states.count("failed"), "lost": states.count("lost"), "ran_once": runs.count(1),
                "ran_twice": sum(1 for r in runs if r > 1), "outputs": outputs, "work_wall": work_wall}


CHAIN = 25


def chain_pipeline() -> dict[str, Any]:
    steps: dict[str, Any] = {}
    for i in range(CHAIN):
        steps[f"s{i}"] = {"uses": "ifc2json", "with": {"ifc": "tiny.ifc", "output": f"s{i}.json"},
                          **({"needs": [f"s{i - 1}"]} if i else {})}
    return {"version": 1, "name": "chain", "steps": steps}


def follow(url: str, run_id: str, seen: dict[str, float]) -> None:
    """Record, per step, when an SSE event first showed it succeeded (wall clock, epoch seconds)."""
    with httpx.stream("GET", f"{url}/runs/{run_id}/events", headers={"X-API-Key": "bench"}, timeout=300) as stream:
        name = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: ") and name:
                now = time.time()
                doc = json.loads(line[6:])
                for step_id, step in doc["steps"].items():
                    if step["status"] == "succeeded" and step_id not in seen:
                        seen[step_id] = now
                if name == "end":
                    return


def part_c(root: Path, runs: int = 2) -> dict[str, Any]:
    data = root / "c"
    (data / "uploads").mkdir(parents=True)
    tiny_model(data / "uploads" / "tiny.ifc")
    gaps: list[float] = []
    with EmbeddedRedis() as server, ApiServer(server.url, data, {"IFCFLOW_API_KEYS": "bench"}, workers=2) as api:
        http = httpx.Client(base_url=api.url, headers={"X-API-Key": "bench"}, timeout=60)
        started = [http.post("/runs", json={"pipeline": chain_pipeline()}).json() for _ in range(runs)]
        seen: list[dict[str, float]] = [{} for _ in started]
        threads = [threading.Thread(target=follow, args=(api.url, s["run_id"], seen[i])) for i, s in enumerate(started)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
        for run, times in zip(started, seen):
            final = http.get(f"/runs/{run['run_id']}").json()
            for step_id, step in final["steps"].items():
                ended = datetime.fromisoformat(step["ended_at"].replace("Z", "+00:00")).timestamp()
                gaps.append((times[step_id] - ended) * 1000)
    return {"samples": len(gaps), "p50": statistics.median(gaps), "p95": pct(gaps, 0.95), "max": max(gaps)}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ifcflow-bench-api-") as folder:
        root = Path(folder)
        ours, minimal = part_a(root)
        print(f"(a) {CLIENTS} clients, 400 requests each kind in 8 alternating rounds, no workers "
              f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
        for key in ("submit_p50", "submit_p95", "submit_rps", "status_p50", "status_p95", "status_rps"):
            print(f"    {key:11s} ifcflow {ours[key]:8.1f}   minimal gateway {minimal[key]:8.1f}   "
                  f"ratio {ours[key] / minimal[key]:.2f}")
        if sys.argv[1:] == ["a"]:  # python -m bench.bench_api a: only the comparison with the minimal gateway
            return
        b = part_b(root)
        print(f"(b) 1,000 submissions in {b['submit_wall']:.1f} s; 2 workers ran them in {b['work_wall']:.1f} s: "
              f"{b['finished']} finished, {b['failed']} failed, {b['lost']} lost, {b['ran_once']} ran once, "
              f"{b['ran_twice']} ran twice, {b['outputs']} output files ({b['submitted']} distinct job ids)")
        c = part_c(root)
        print(f"(c) step end -> SSE event over {c['samples']} steps: p50 {c['p50']:.1f} ms, p95 {c['p95']:.1f} ms, "
              f"max {c['max']:.1f} ms")


if __name__ == "__main__":
    main()
