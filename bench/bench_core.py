"""Core benchmarks: per-step handoff latency, 1,000-step enqueue and status, embedded one-step run.

Each ifcflow number is measured against raw RQ doing the same DAG on the same private redis-server in the same
process. Run: ``python bench/bench_core.py`` (takes about a minute). See bench/README.md for results.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from redis import Redis
from rq import Queue, Worker
from rq.job import Dependency, Job

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ifcflow.engine import enqueue  # noqa: E402
from ifcflow.engine.status import StatusReader  # noqa: E402
from ifcflow.operations.worker import make_worker, preload  # noqa: E402
from ifcflow.pipeline import document
from ifcflow.pipeline.plan import plan as make_plan  # noqa: E402
from ifcflow.standalone.embedded import EmbeddedRedis  # noqa: E402
from tests.factories import tiny_model  # noqa: E402


def noop() -> int:
    return 0


def chain_yaml(folder: Path, steps: int, extra_edges: bool = False) -> Path:
    lines = ["version: 1", "name: bench", "steps:"]
    for i in range(steps):
        needs = [f"s{i - 1}"] if i else []
        if extra_edges and i >= 7:
            needs.append(f"s{i - 7}")
        lines.append(f"  s{i}: {{uses: ifcpatch, needs: [{', '.join(needs)}], with: {{ifc: tiny.ifc, recipe: Optimise}}}}")
    path = folder / f"chain{steps}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def raw_chain(conn: Redis, edges: dict[str, list[str]], prefix: str) -> list[str]:
    """Raw RQ: the same DAG of no-op jobs, enqueued sequentially with depends_on."""
    queue = Queue("default", connection=conn)
    ids = []
    for step, needs in edges.items():
        deps = [f"{prefix}-{n}" for n in needs]
        job = queue.enqueue("bench.bench_core.noop", job_id=f"{prefix}-{step}", depends_on=Dependency(deps) if deps else None)
        ids.append(job.id)
    return ids


def handoff(conn: Redis, folder: Path, steps: int = 40) -> tuple[float, float]:
    """Mean gap (ms) between a step's end and its child's start: ifcflow vs raw RQ, one forking worker each."""
    doc = document.load(chain_yaml(folder, steps))
    planned = make_plan(doc, out_root=folder / "runs")
    enqueue.submit(conn, planned)
    make_worker(conn, ["default"]).work(burst=True, logging_level="ERROR")
    jobs = [Job.fetch(s.job_id, connection=conn) for s in planned.steps]
    ours = [(b.started_at - a.ended_at).total_seconds() for a, b in zip(jobs, jobs[1:])]
    ids = raw_chain(conn, doc.edges, "raw")
    Worker(["default"], connection=conn).work(burst=True, logging_level="ERROR")
    raw_jobs = [Job.fetch(i, connection=conn) for i in ids]
    theirs = [(b.started_at - a.ended_at).total_seconds() for a, b in zip(raw_jobs, raw_jobs[1:])]
    return statistics.mean(ours) * 1000, statistics.mean(theirs) * 1000


def enqueue_and_status(conn: Redis, folder: Path, steps: int = 1000) -> dict[str, float]:
    doc = document.load(chain_yaml(folder, steps, extra_edges=True))
    planned = make_plan(doc, out_root=folder / "runs")
    start = time.perf_counter()
    enqueue.submit(conn, planned)
    ours = time.perf_counter() - start
    start = time.perf_counter()
    raw_chain(conn, doc.edges, "rawbig")
    theirs = time.perf_counter() - start
    reader = StatusReader(conn, planned.run_id)
    timings = []
    for _ in range(10):
        start = time.perf_counter()
        reader.read()
        timings.append(time.perf_counter() - start)
    return {"enqueue_s": ours, "raw_enqueue_s": theirs, "status_ms": statistics.median(timings) * 1000}


def embedded_run(folder: Path, repeats: int = 3) -> list[float]:
    (folder / "one.yaml").write_text("version: 1\nname: one\nsteps:\n  a: {uses: ifcpatch, with: {ifc: tiny.ifc, recipe: Optimise}}\n")
    walls = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ifcflow", "run", str(folder / "one.yaml"), "--out", str(folder / "runs")],
                       check=True, capture_output=True)
        walls.append(time.perf_counter() - start)
    return walls


def main() -> None:
    preload(["ifcpatch"])
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis() as server:
        folder = Path(tmp)
        tiny_model(folder / "tiny.ifc", walls=1)
        conn = Redis.from_url(server.url)
        ours, theirs = handoff(conn, folder)
        print(f"handoff per step: ifcflow {ours:.2f} ms, raw RQ {theirs:.2f} ms, "
              f"difference {ours - theirs:+.2f} ms (target <= +5 ms), ratio {ours / theirs:.2f}x")
        conn.flushdb()
        big = enqueue_and_status(conn, folder)
        print(f"1,000-step enqueue: ifcflow {big['enqueue_s']:.2f} s, raw RQ {big['raw_enqueue_s']:.2f} s, "
              f"ratio {big['enqueue_s'] / big['raw_enqueue_s']:.2f}x (target <= 1.0x)")
        print(f"1,000-step status read: {big['status_ms']:.1f} ms median of 10 (target <= 30 ms)")
        walls = embedded_run(folder)
        print(f"embedded one-step run on a tiny model: {', '.join(f'{w:.2f}' for w in walls)} s wall (target <= 2.5 s)")


if __name__ == "__main__":
    main()
