"""Planning benchmark: check (parse + validate), plan and enqueue of 100 to 5,000-step pipelines, and the Redis
memory and RQ dependency records the run's jobs take (issue 15 item 5).

Shapes (every step ``ifcpatch Optimise`` on a one-wall model; nothing runs):
- ``chain``: ``s0``, then each step ``if: failure()`` and needing the one before (the review's case);
- ``fanin``: n-1 independent steps and one ``if: failure()`` step needing them all;
- ``ladder``: a chain where each step also needs the step 7 back, every 10th step ``if: failure()``.

Each measurement runs in a child process with its own private redis-server and a time limit, so the code before
the change can be measured the same way: ``PYTHONPATH=/path/to/old/checkout python -m bench.bench_planning``.
Run: ``python -m bench.bench_planning [--sizes 100,1000,5000] [--timeout 300]``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPES = ("chain", "fanin", "ladder")


def pipeline(shape: str, steps: int) -> str:
    lines = ["version: 1", "name: bench", "steps:"]
    for i in range(steps):
        if shape == "chain":
            needs, cond = ([f"s{i - 1}"] if i else []), ("failure()" if i else "success()")
        elif shape == "fanin":
            last = i == steps - 1
            needs, cond = ([f"s{j}" for j in range(steps - 1)] if last else []), ("failure()" if last else "success()")
        else:
            needs = ([f"s{i - 1}"] if i else []) + ([f"s{i - 7}"] if i >= 7 else [])
            cond = "failure()" if i and i % 10 == 0 else "success()"
        lines.append(f"  s{i}: {{uses: ifcpatch, needs: [{', '.join(needs)}], if: '{cond}', "
                     "with: {ifc: tiny.ifc, recipe: Optimise}}")
    return "\n".join(lines) + "\n"


def measure(shape: str, steps: int) -> dict[str, float]:
    """One pipeline: seconds to check, plan and enqueue; Redis bytes and RQ dependency records it added."""
    from redis import Redis

    from ifcflow.engine import enqueue, rqstore
    from ifcflow.pipeline import document, plan
    from ifcflow.standalone.embedded import EmbeddedRedis
    from tests.factories import tiny_model

    os.environ["IFCFLOW_MAX_STEPS"] = str(steps)
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis() as server:
        folder = Path(tmp)
        tiny_model(folder / "tiny.ifc", walls=1)
        path = folder / "p.yaml"
        path.write_text(pipeline(shape, steps))
        conn = Redis.from_url(server.url)
        before = conn.info("memory")["used_memory"]
        start = time.perf_counter()
        doc = document.load(path)
        checked = time.perf_counter()
        planned = plan.plan(doc, out_root=folder / "runs")
        planned_at = time.perf_counter()
        enqueue.submit(conn, planned)
        done = time.perf_counter()
        grown = conn.info("memory")["used_memory"] - before
        with conn.pipeline(transaction=False) as pipe:
            for step in planned.steps:
                pipe.scard(rqstore.dependencies_key(step.job_id))
            records = sum(pipe.execute())
        return {"kb": path.stat().st_size / 1024, "check_s": checked - start, "plan_s": planned_at - checked,
                "enqueue_s": done - planned_at, "total_s": done - start, "redis_mb": grown / 1e6,
                "dependencies": records}


def child(shape: str, steps: int, timeout: float) -> dict[str, float] | None:
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(root)]))}
    try:
        out = subprocess.run([sys.executable, "-m", "bench.bench_planning", "--one", shape, str(steps)],
                             capture_output=True, text=True, timeout=timeout, env=env, check=True, cwd=root).stdout
    except subprocess.TimeoutExpired:
        return None
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per measurement")
    parser.add_argument("--one", nargs=2, metavar=("SHAPE", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]))))
        return
    print("| shape | steps | YAML kB | check s | plan s | enqueue s | total s | Redis MB | RQ dependency records |")
    print("|---|---|---|---|---|---|---|---|---|")
    for shape in args.shapes.split(","):
        for steps in (int(s) for s in args.sizes.split(",")):
            found = child(shape, steps, args.timeout)
            if found is None:
                print(f"| {shape} | {steps:,} | | | | | > {args.timeout:.0f} (stopped) | | |", flush=True)
                continue
            print(f"| {shape} | {steps:,} | {found['kb']:.0f} | {found['check_s']:.2f} | {found['plan_s']:.2f} | "
                  f"{found['enqueue_s']:.2f} | {found['total_s']:.2f} | {found['redis_mb']:.1f} | "
                  f"{found['dependencies']:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
