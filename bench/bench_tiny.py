"""Tiny-step throughput (issue 20, goal 6), side by side in one run. From the repository root:

    python -m bench.bench_tiny [--files 500] [--repeat 1]

Every variant runs ``--files`` one-step jobs on 2 worker processes, each on its own private redis-server; worker
start-up is not counted (timing starts once every worker registered, or for the plain processes, once each one
imported the library). The step is ``ifcpatch Optimise`` on a one-wall IFC4 model (copies of one file).

- **library**: two long-lived Python processes calling the library on half of the files each (``xargs -P 2
  -n 250`` as in bench_batch, timed with their start-up, and the library loop alone as each process measured it);
- **ifcflow resident**: a 500-file batch of a one-step pipeline on 2 ``ifcflow worker``s (a resident work horse);
- **ifcflow fork**: the same with ``IFCFLOW_RESIDENT_HORSE=0`` (RQ's fork of a new horse per job: the code before);
- **RQ floor**: RQ alone, no ifcflow: 500 jobs of a plain function on 2 plain RQ workers, for a no-op job and for
  the same library call, with ``SimpleWorker`` (no fork) and ``Worker`` (a fork per job, the library imported
  before forking as ifcflow does).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from redis import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import tinyjobs  # noqa: E402
from bench.bench_batch import DIRECT, ONE, models, stop, workers  # noqa: E402
from ifcflow.batches import batch, batch_status  # noqa: E402
from ifcflow.standalone.embedded import EmbeddedRedis  # noqa: E402

TIMED_DIRECT = DIRECT.replace("for path in sys.argv[1:]:", "import time\nbegin = time.perf_counter()\n"
                              "for path in sys.argv[1:]:") + "print(time.perf_counter() - begin)\n"
RQ_WORKER = """
import sys
from redis import Redis
import rq
import bench.tinyjobs  # noqa: F401
if sys.argv[3] == "library":
    import ifcopenshell, ifcpatch, ifcpatch.recipes.Optimise  # noqa: F401  (before forking, as ifcflow does)
cls = {"simple": rq.SimpleWorker, "fork": rq.Worker}[sys.argv[2]]
cls(["default"], connection=Redis.from_url(sys.argv[1])).work(logging_level="WARNING")
"""


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def library(files: list[Path]) -> dict[str, Any]:
    half = (len(files) + 1) // 2
    begin = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", TIMED_DIRECT, *map(str, part)], stdout=subprocess.PIPE)
             for part in (files[:half], files[half:])]
    loops = [float(p.communicate()[0].decode().split()[-1]) for p in procs]
    return {"with_startup_s": time.perf_counter() - begin, "loop_only_s": max(loops)}


def ifcflow_batch(folder: Path, resident: bool) -> float:
    (folder / "one.yaml").write_text(ONE)
    previous = os.environ.get("IFCFLOW_RESIDENT_HORSE")
    os.environ["IFCFLOW_RESIDENT_HORSE"] = "1" if resident else "0"
    try:
        with EmbeddedRedis() as server:
            conn = Redis.from_url(server.url)
            procs = workers(server.url, cache=False)
            begin = time.perf_counter()
            record = batch.start(conn, folder / "one.yaml", each={"arch": str(folder / "many/m*.ifc")},
                                 out=folder / f"runs-{time.monotonic_ns()}")
            while not conn.hexists(batch.key(record.batch_id), "ended_at"):
                time.sleep(0.05)
            elapsed = time.perf_counter() - begin
            stop(procs)
            counts = batch_status.read(conn, record.batch_id).counts
            assert counts["succeeded"] == len(record.runs), counts
    finally:
        if previous is None:
            del os.environ["IFCFLOW_RESIDENT_HORSE"]
        else:
            os.environ["IFCFLOW_RESIDENT_HORSE"] = previous
    return elapsed


def rq_floor(files: list[Path], kind: str, job: str) -> float:
    from rq import Queue, Worker
    from rq.job import Job

    with EmbeddedRedis() as server:
        conn = Redis.from_url(server.url)
        procs = [subprocess.Popen([sys.executable, "-c", RQ_WORKER, server.url, kind, job], cwd=Path.cwd(),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
        while Worker.count(connection=conn) < 2:
            time.sleep(0.1)
        time.sleep(0.5)
        queue = Queue("default", connection=conn)
        begin = time.perf_counter()
        calls = [Queue.prepare_data(tinyjobs.noop if job == "noop" else tinyjobs.patch, () if job == "noop" else (str(path),),
                                    result_ttl=600) for path in files]
        jobs = queue.enqueue_many(calls)
        last = jobs[-1]
        while Job.fetch(last.id, connection=conn).get_status(refresh=True).value not in ("finished", "failed"):
            time.sleep(0.02)
        while queue.count or queue.started_job_registry.count:
            time.sleep(0.02)
        elapsed = time.perf_counter() - begin
        stop(procs)
        failed = queue.failed_job_registry.count
        assert failed == 0, f"{failed} RQ jobs failed"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--skip-fork", action="store_true", help="skip ifcflow with a fork per job (minutes)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = sorted(models(folder, args.files).glob("m*.ifc"))
        for round_ in range(args.repeat):
            results: dict[str, Any] = {"load_before": load()}
            results["library"] = library(files)
            results["ifcflow_resident_s"] = ifcflow_batch(folder, resident=True)
            results["load_mid"] = load()
            if not args.skip_fork:
                results["ifcflow_fork_s"] = ifcflow_batch(folder, resident=False)
            for kind in ("simple", "fork"):
                for job in ("noop", "library"):
                    results[f"rq_{kind}_{job}_s"] = rq_floor(files, kind, job)
            results["load_after"] = load()
            base = results["library"]["with_startup_s"]
            results["ratio_resident"] = results["ifcflow_resident_s"] / base
            if not args.skip_fork:
                results["ratio_fork"] = results["ifcflow_fork_s"] / base
            results["ratio_rq_simple_library"] = results["rq_simple_library_s"] / base
            print(f"round {round_ + 1}:", {k: round(v, 3) if isinstance(v, float) else v for k, v in results.items()},
                  flush=True)


if __name__ == "__main__":
    main()
