"""Batch, cache and Redis-memory benchmarks (issue 12). Run from the repository root:

    python -m bench.bench_batch [--files 500] [--skip-xargs]

1. enqueue of a 500-file x 3-step batch (planning, then the one MULTI/EXEC), and the batch's status read;
2. Redis memory per finished job, after the runs ended and were compacted (50 files x 3 steps, in-process worker);
3. 500 files x 1 small step (ifcpatch Optimise on a one-wall model) on 2 forked ``ifcflow worker``s, against the same
   library calls run by ``xargs -P 2`` (one Python process per file, and two processes of 250 files each);
4. ``pipelines/coordination.yaml`` on the demo models twice on the same Redis and 2 workers: the second run is
   served from the cache;
5. fairness: how long one run submitted after a 200-run batch takes, with and without the batch window;
6. the cache's sha256 of a 100 MB input (one read pass).

Every Redis is a private redis-server started here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from redis import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ifcflow.batches import batch, batch_status, lifecycle
from ifcflow.engine import runner  # noqa: E402
from ifcflow.engine.status import StatusReader  # noqa: E402
from ifcflow.pipeline import document
from ifcflow.services import QUEUES  # noqa: E402
from ifcflow.standalone.demo import write_demo  # noqa: E402
from ifcflow.standalone.embedded import EmbeddedRedis  # noqa: E402
from tests.factories import tiny_model  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
THREE = """version: 1
name: bench
inputs: {arch: t.ifc}
steps:
  a: {uses: ifcpatch, with: {ifc: "${{ inputs.arch }}", recipe: Optimise}}
  b: {uses: ifccsv, with: {ifc: "${{ steps.a.outputs.model }}", query: IfcWall, attributes: [Name]}}
  c: {uses: ifcpatch, needs: [b], with: {ifc: "${{ steps.a.outputs.model }}", recipe: Optimise, output: c.ifc}}
"""
ONE = """version: 1
name: one
inputs: {arch: t.ifc}
steps:
  a: {uses: ifcpatch, with: {ifc: "${{ inputs.arch }}", recipe: Optimise}}
"""
DIRECT = """
import sys, ifcopenshell, ifcpatch
for path in sys.argv[1:]:
    model = ifcopenshell.open(path)
    out = ifcpatch.execute({"input": path, "file": model, "recipe": "Optimise", "arguments": []})
    ifcpatch.write(out, path + ".out.ifc")
"""


def models(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tiny_model(folder / "t.ifc", walls=1)
    data = (folder / "t.ifc").read_bytes()
    many = folder / "many"
    many.mkdir(exist_ok=True)
    for index in range(count):
        (many / f"m{index:04d}.ifc").write_bytes(data)
    return many


def enqueue_and_status(conn: Redis, folder: Path, files: int) -> dict[str, float]:
    (folder / "p.yaml").write_text(THREE)
    doc = document.load(folder / "p.yaml", check_files=False)
    begin = time.perf_counter()
    record, plans = batch.prepare(doc, {"arch": str(folder / "many/*.ifc")}, folder / "runs")
    planned = time.perf_counter()
    batch.submit(conn, record, plans)
    submitted = time.perf_counter()
    reads = []
    for _ in range(10):
        start = time.perf_counter()
        batch_status.read(conn, record.batch_id)
        reads.append(time.perf_counter() - start)
    return {"plan_s": planned - begin, "submit_s": submitted - planned, "total_s": submitted - begin,
            "status_ms": 1000 * statistics.median(reads), "runs": len(plans), "jobs": len(plans) * 3}


def memory_per_job(folder: Path, files: int = 50) -> float:
    from rq import SimpleWorker

    from ifcflow.operations.worker import IfcflowWorker

    class InProcess(IfcflowWorker, SimpleWorker):
        pass

    os.environ["IFCFLOW_CACHE"] = "off"
    (folder / "p.yaml").write_text(THREE)
    with EmbeddedRedis() as server:
        conn = Redis.from_url(server.url)
        base = int(conn.info("memory")["used_memory"])
        pattern = str(folder / f"many/m00[0-{files // 10 - 1}]*.ifc")  # the first `files` models
        record = batch.start(conn, folder / "p.yaml", each={"arch": pattern}, out=folder / "runs-mem")
        InProcess(list(QUEUES), connection=conn).work(burst=True, logging_level="WARNING")
        lifecycle.advance(conn, record.batch_id)
        done = batch_status.read(conn, record.batch_id)
        assert done.counts["succeeded"] == len(record.runs), done.counts
        used = int(conn.info("memory")["used_memory"]) - base
    del os.environ["IFCFLOW_CACHE"]
    return used / (3 * len(record.runs))


def memory_per_run(folder: Path, files: int = 100) -> tuple[float, dict[str, float]]:
    """Redis bytes per finished one-step run of a ``files``-file batch, and MEMORY USAGE per run by key kind."""
    import re

    from rq import SimpleWorker

    from ifcflow.operations.worker import IfcflowWorker

    class InProcess(IfcflowWorker, SimpleWorker):
        pass

    os.environ["IFCFLOW_CACHE"] = "off"
    (folder / "one.yaml").write_text(ONE)
    with EmbeddedRedis() as server:
        conn = Redis.from_url(server.url)
        base = int(conn.info("memory")["used_memory"])
        record = batch.start(conn, folder / "one.yaml", each={"arch": str(folder / "many/*.ifc")},
                             out=folder / "runs-runmem")
        InProcess(list(QUEUES), connection=conn).work(burst=True, logging_level="WARNING")
        lifecycle.advance(conn, record.batch_id)
        done = batch_status.read(conn, record.batch_id)
        assert done.counts["succeeded"] == len(record.runs), done.counts
        used = int(conn.info("memory")["used_memory"]) - base
        kinds: dict[str, float] = {}
        for key in conn.scan_iter(count=1000):
            kind = re.sub(r"[0-9a-f]{12}[-\w]*|\d{8}-\d{6}\S*", "*", key.decode())
            kinds[kind] = kinds.get(kind, 0) + (conn.memory_usage(key) or 0) / len(record.runs)
    del os.environ["IFCFLOW_CACHE"]
    return used / len(record.runs), dict(sorted(kinds.items(), key=lambda item: -item[1]))


def workers(url: str, count: int = 2, cache: bool = True) -> list[subprocess.Popen[bytes]]:
    """``count`` forked ifcflow workers, returned once all registered (start-up is not measured)."""
    from rq import Worker

    env = dict(os.environ, IFCFLOW_CACHE="on" if cache else "off")
    procs = [subprocess.Popen([sys.executable, "-m", "ifcflow", "worker", "--redis", url, "--quiet",
                               "--name", f"bench-{i}-{time.monotonic_ns()}"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(count)]
    conn = Redis.from_url(url)
    while Worker.count(connection=conn) < count:
        time.sleep(0.1)
    time.sleep(0.5)
    return procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """Kill the (idle) workers: a SIGTERM to an idle ifcflow worker restarts it today (issue 9, bug 1)."""
    for proc in procs:
        proc.kill()
    for proc in procs:
        proc.wait(timeout=30)


def throughput(folder: Path, files: int, with_xargs: bool, per_file: bool = True) -> dict[str, float]:
    (folder / "one.yaml").write_text(ONE)
    result: dict[str, float] = {}
    with EmbeddedRedis() as server:
        conn = Redis.from_url(server.url)
        procs = workers(server.url, cache=False)  # started and preloaded: start-up is not counted on either side
        begin = time.perf_counter()
        record = batch.start(conn, folder / "one.yaml", each={"arch": str(folder / "many/*.ifc")},
                             out=folder / "runs-tp")
        while not conn.hexists(batch.key(record.batch_id), "ended_at"):  # set once, when the last run ended
            time.sleep(0.1)
        result["ifcflow_s"] = time.perf_counter() - begin
        stop(procs)
        assert batch_status.read(conn, record.batch_id).counts["succeeded"] == files
    if with_xargs:
        listing = "\n".join(str(p) for p in sorted((folder / "many").glob("m*.ifc")) if ".out." not in p.name)
        for per_process in (1, (files + 1) // 2) if per_file else ((files + 1) // 2,):
            begin = time.perf_counter()
            subprocess.run(["xargs", "-P", "2", "-n", str(per_process), sys.executable, "-c", DIRECT],
                           input=listing.encode(), check=True)
            result[f"xargs_n{per_process}_s"] = time.perf_counter() - begin
    return result


def coordination(folder: Path) -> dict[str, float]:
    write_demo(folder / "models")
    shutil.copy(ROOT / "pipelines" / "coordination.yaml", folder / "coordination.yaml")
    times = {}
    with EmbeddedRedis() as server:
        conn = Redis.from_url(server.url)
        procs = workers(server.url, cache=True)
        for label in ("first", "second"):
            begin = time.perf_counter()
            planned = runner.start(conn, folder / "coordination.yaml", out=folder / "runs-coord")
            reader = StatusReader(conn, planned.run_id)
            while not (status := reader.read()).terminal:
                time.sleep(0.05)
            times[f"{label}_s"] = time.perf_counter() - begin
            times[f"{label}_cached"] = status.counts.get("cached", 0)
        stop(procs)
    return times


def fairness(folder: Path, files: int = 200) -> dict[str, float]:
    """Latency of one single-step run submitted 1 s after a batch of ``files`` single-step runs, on 2 workers:
    with the default window, and with every sub-run released at once (no window)."""
    (folder / "one.yaml").write_text(ONE)
    result: dict[str, float] = {}
    for label, window in (("window", 0), ("no_window", 10**6)):
        with EmbeddedRedis() as server:
            conn = Redis.from_url(server.url)
            procs = workers(server.url, cache=False)
            record = batch.start(conn, folder / "one.yaml", each={"arch": str(folder / "many/m0[01]*.ifc")},
                                 out=folder / f"runs-fair-{label}", window=window)
            time.sleep(1.0)
            begin = time.perf_counter()
            single = runner.start(conn, folder / "one.yaml", out=folder / f"runs-fair-{label}")
            reader = StatusReader(conn, single.run_id)
            while not reader.fetch().terminal:
                time.sleep(0.05)
            result[f"{label}_single_s"] = round(time.perf_counter() - begin, 2)
            result[f"{label}_batch_done_then"] = batch_status.read(conn, record.batch_id, errors=False).counts[
                "succeeded"]
            stop(procs)
    return result


def hash_100mb(folder: Path) -> dict[str, float]:
    """The cache's input hash of a 100 MB file: one read pass (the second read comes from the page cache)."""
    from ifcflow.engine.cache import sha256

    path = folder / "big.bin"
    with path.open("wb") as out:
        for _ in range(100):
            out.write(os.urandom(1024 * 1024))
    times = []
    for _ in range(3):
        begin = time.perf_counter()
        sha256(path)
        times.append(time.perf_counter() - begin)
    path.unlink()
    return {"sha256_100mb_s": min(times)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--skip-xargs", action="store_true")
    parser.add_argument("--only", choices=["enqueue", "memory", "runmem", "throughput", "coordination", "hash", "fairness"], default=None)
    parser.add_argument("--no-per-file-xargs", action="store_true", help="skip xargs -n 1 (minutes at 500 files)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        models(folder, args.files)
        if args.only in (None, "enqueue"):
            with EmbeddedRedis() as server:
                print("enqueue + status:", enqueue_and_status(Redis.from_url(server.url), folder, args.files),
                      flush=True)
        if args.only in (None, "runmem"):
            per_run, kinds = memory_per_run(folder)
            print(f"memory per finished one-step run (100-file batch): {per_run:.0f} B (used_memory delta); "
                  "MEMORY USAGE per run by key: " + ", ".join(f"{k} {v:.0f}" for k, v in kinds.items() if v >= 20),
                  flush=True)
            outbox = kinds.get("ifcflow:history:outbox", 0.0)
            print(f"  run, job, batch and queue keys: {sum(kinds.values()) - outbox:.0f} B per run; the history outbox "
                  f"{outbox:.0f} B per run more until a database drains it (none does here)", flush=True)
        if args.only in (None, "memory"):
            print(f"memory per finished job: {memory_per_job(folder):.0f} B", flush=True)
        if args.only in (None, "throughput"):
            print("throughput:", throughput(folder, args.files, not args.skip_xargs, not args.no_per_file_xargs),
                  flush=True)
        if args.only in (None, "coordination"):
            print("coordination:", coordination(folder), flush=True)
        if args.only in (None, "fairness"):
            print("fairness:", fairness(folder), flush=True)
        if args.only in (None, "hash"):
            print("hash:", hash_100mb(folder), flush=True)


if __name__ == "__main__":
    main()
