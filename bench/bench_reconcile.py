"""Reconciler benchmarks: status read and reconcile pass over a 1,000-step run, and what the per-run lock costs.

Run: ``python -m bench.bench_reconcile`` (about 20 s). See bench/README.md for results.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from redis import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_core import chain_yaml  # noqa: E402
from ifcflow.engine import enqueue, reconcile  # noqa: E402
from ifcflow.engine.lock import RunLock  # noqa: E402
from ifcflow.engine.status import StatusReader  # noqa: E402
from ifcflow.pipeline import document
from ifcflow.pipeline.plan import plan as make_plan  # noqa: E402
from ifcflow.standalone.embedded import EmbeddedRedis  # noqa: E402
from tests.factories import tiny_model  # noqa: E402


def timed(action, repeats: int) -> float:  # type: ignore[no-untyped-def]
    """Median milliseconds of ``action()`` over ``repeats`` calls."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis() as server:
        folder = Path(tmp)
        tiny_model(folder / "tiny.ifc", walls=1)
        conn = Redis.from_url(server.url)
        planned = make_plan(document.load(chain_yaml(folder, 1000, extra_edges=True)), out_root=folder / "runs")
        enqueue.submit(conn, planned)
        reader = StatusReader(conn, planned.run_id)
        reader.read()
        read_ms = timed(reader.read, 20)
        cold_ms = timed(lambda: StatusReader(conn, planned.run_id, planned).read(), 20)
        pass_ms = timed(lambda: reconcile.run(conn, planned.run_id, plan=planned), 20)

        def lock_cycle() -> None:
            lock = RunLock(conn, planned.run_id)
            lock.acquire()
            lock.release()

        lock_ms = timed(lock_cycle, 200)
        ping_ms = timed(conn.ping, 200)
        print(f"1,000-step status read, polling reader: {read_ms:.1f} ms median of 20 (target <= 30 ms)")
        print(f"1,000-step status read, new reader (plan given, nothing cached): {cold_ms:.1f} ms median of 20")
        print(f"1,000-step reconcile pass (lock, read, nothing to repair, release): {pass_ms:.1f} ms median of 20 "
              "(target <= 50 ms)")
        print(f"per-run lock, acquire + release: {lock_ms:.2f} ms median of 200 ({lock_ms / ping_ms:.1f}x a PING "
              f"of {ping_ms:.2f} ms)")


if __name__ == "__main__":
    main()
