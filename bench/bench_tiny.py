"""Tiny-step throughput (issue 20, goal 6), side by side in one run. From the repository root:

    python -m bench.bench_tiny [--files 500] [--repeat 1] [--only ifcflow] [--baseline DIR] [--round-trips 50]

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

``--only ifcflow`` runs the resident ifcflow variant alone (``--only library,ifcflow`` adds the library baseline).
``--baseline DIR`` runs the ifcflow variant of another checkout (e.g. ``git archive main | tar -x -C /tmp/base``)
in the same round, alternating with this tree (which goes first alternates between rounds), each in a child
process whose ``ifcflow`` (and its workers') is that tree's. ``--round-trips N`` then counts the Redis round
trips of the workers (and their horses and tickers) for an N-job batch in each tree: every process counts its
``send_packed_command`` calls (one per command or pipeline) into a file of its own; not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from redis import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import tinyjobs  # noqa: E402
from bench.bench_batch import DIRECT, ONE, ROOT, models, stop, workers  # noqa: E402
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
    procs = [subprocess.Popen([sys.executable, "-c", TIMED_DIRECT, *map(str, part)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)  # (ifcpatch warns once per file that igraph is missing)
             for part in (files[:half], files[half:])]
    loops = [float(p.communicate()[0].decode().split()[-1]) for p in procs]
    return {"with_startup_s": time.perf_counter() - begin, "loop_only_s": max(loops)}


CHILD = """
import json, os, subprocess, sys, time
from pathlib import Path
from redis import Redis
from rq import Worker
from ifcflow.batches import batch, batch_status
from ifcflow.standalone.embedded import EmbeddedRedis

import psutil

folder, boot = Path(sys.argv[1]), sys.argv[2]


def cpu(procs):
    # CPU seconds (user + system) of the workers, of their children (horses, tickers, RQ's scheduler: those alive
    # now, plus those reaped), and of the redis-server
    def used(process, reaped=True):
        times = process.cpu_times()
        return times.user + times.system + ((times.children_user + times.children_system) if reaped else 0.0)
    seen = {"workers": 0.0, "children": 0.0, "redis": 0.0}
    for proc in procs:
        worker = psutil.Process(proc.pid)
        times = worker.cpu_times()
        seen["workers"] += times.user + times.system
        seen["children"] += times.children_user + times.children_system
        for child in worker.children(recursive=True):
            try:
                seen["children"] += used(child)
            except psutil.NoSuchProcess:
                pass
    for child in psutil.Process().children():
        if "redis" in child.name():
            seen["redis"] += used(child, reaped=False)
    return seen

with EmbeddedRedis() as server:
    conn = Redis.from_url(server.url)
    procs = [subprocess.Popen([sys.executable, "-c", boot, server.url, f"bench-{i}-{time.monotonic_ns()}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(2)]
    try:
        while Worker.count(connection=conn) < 2:
            time.sleep(0.1)
        time.sleep(0.5)
        cpu_before = cpu(procs)
        begin = time.perf_counter()
        record = batch.start(conn, folder / "one.yaml", each={"arch": str(folder / "many/m????.ifc")},  # (not the library's outputs)
                             out=folder / f"runs-{time.monotonic_ns()}")
        while not conn.hexists(batch.key(record.batch_id), "ended_at"):
            time.sleep(0.05)
        elapsed = time.perf_counter() - begin
        time.sleep(0.3)  # (the last end's announcements)
        spent = {role: round((after - cpu_before.get(role, 0.0)) * 1000 / len(record.runs), 2)
                 for role, after in cpu(procs).items()}
    finally:  # (never leave the workers behind, whatever failed)
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait(timeout=30)
    counts = batch_status.read(conn, record.batch_id).counts
    assert counts["succeeded"] == len(record.runs), counts
print(json.dumps({"elapsed": elapsed, "runs": len(record.runs), "cpu_ms_per_job": spent}))
"""
WORKER_BOOT = """
import os, sys
where = os.environ.get("BENCH_ROUND_TRIPS")
if where:
    from redis.connection import AbstractConnection
    sent = AbstractConnection.send_packed_command
    files = {}
    def counted(self, command, check_health=True):
        pid = os.getpid()
        if pid not in files:
            files[pid] = os.open(os.path.join(where, str(pid)), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        first = command[0] if isinstance(command, list) and command else command
        name = bytes(first).split(b"\\r\\n")[2][:24] if first else b"?"
        os.write(files[pid], name.replace(b" ", b"_") + b"\\n")  # one line per round trip: its first command
        return sent(self, command, check_health)
    AbstractConnection.send_packed_command = counted
from ifcflow.cli import main
sys.argv = ["ifcflow", "worker", "--redis", sys.argv[1], "--quiet", "--name", sys.argv[2]]
main()
"""


def tree_batch(tree: Path, folder: Path, count_in: Path | None = None) -> dict[str, Any]:
    """A batch of the files in ``folder/many`` on 2 ifcflow workers of checkout ``tree`` (its code, not ours);
    with ``count_in``, the workers count their Redis round trips there."""
    (folder / "one.yaml").write_text(ONE)
    env = dict(os.environ, PYTHONPATH=str(tree), IFCFLOW_CACHE="off", IFCFLOW_RESIDENT_HORSE="1")
    env.pop("BENCH_ROUND_TRIPS", None)
    if count_in is not None:
        env["BENCH_ROUND_TRIPS"] = str(count_in)
    done = subprocess.run([sys.executable, "-c", CHILD, str(folder), WORKER_BOOT], cwd=tree, env=env,
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the ifcflow batch of {tree} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def round_trips(tree: Path, folder: Path) -> tuple[float, dict[str, float]]:
    """Redis round trips of the workers per job, for the batch of ``folder/many`` in checkout ``tree``; and per
    first command of a round trip (``BENCH_ROUND_TRIPS_DETAIL=1`` prints them)."""
    with tempfile.TemporaryDirectory() as where:
        runs = tree_batch(tree, folder, Path(where))["runs"]
        names = Counter(line for path in Path(where).iterdir() for line in path.read_text().split())
    return sum(names.values()) / runs, {name: round(count / runs, 2) for name, count in names.most_common()}


def ifcflow_batch(folder: Path, resident: bool) -> float:
    (folder / "one.yaml").write_text(ONE)
    previous = os.environ.get("IFCFLOW_RESIDENT_HORSE")
    os.environ["IFCFLOW_RESIDENT_HORSE"] = "1" if resident else "0"
    try:
        with EmbeddedRedis() as server:
            conn = Redis.from_url(server.url)
            procs = workers(server.url, cache=False)
            begin = time.perf_counter()
            record = batch.start(conn, folder / "one.yaml", each={"arch": str(folder / "many/m????.ifc")},
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
    parser.add_argument("--repeat", type=int, default=1, help="rounds (each one runs every variant)")
    parser.add_argument("--skip-fork", action="store_true", help="skip ifcflow with a fork per job (minutes)")
    parser.add_argument("--only", default="", help="comma-separated variants: library, ifcflow, fork, rq")
    parser.add_argument("--baseline", type=Path, help="another checkout whose ifcflow runs side by side")
    parser.add_argument("--round-trips", type=int, default=0, metavar="N",
                        help="count the workers' Redis round trips per job over an N-job batch (per tree)")
    args = parser.parse_args()
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    wanted = only or {"library", "ifcflow", "rq"} | (set() if args.skip_fork else {"fork"})
    unknown = only - {"library", "ifcflow", "fork", "rq"}
    if unknown:
        parser.error(f"--only: unknown variants {sorted(unknown)}; choose from library, ifcflow, fork, rq")
    if args.baseline is not None and not (args.baseline / "ifcflow" / "__init__.py").is_file():
        parser.error(f"--baseline {args.baseline}: not an ifcflow checkout (no ifcflow/__init__.py there)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.round_trips:
            count_rounds(folder / "rt", args.round_trips, args.baseline)
        files = sorted(models(folder, args.files).glob("m*.ifc"))
        for round_ in range(args.repeat):
            results = one_round(folder, files, wanted, args.baseline, round_)
            print(f"round {round_ + 1}:", {k: round(v, 3) if isinstance(v, float) else v for k, v in results.items()},
                  flush=True)


def count_rounds(folder: Path, jobs: int, baseline: Path | None) -> None:
    models(folder, jobs)
    for name, tree in [("this tree", ROOT)] + ([("baseline", baseline)] if baseline else []):
        total, names = round_trips(tree, folder)
        print(f"round trips per job, {name} ({jobs} jobs, load {load()}): {total:.1f}", flush=True)
        if os.environ.get("BENCH_ROUND_TRIPS_DETAIL"):
            print("  by first command:", names, flush=True)


def one_round(folder: Path, files: list[Path], wanted: set[str], baseline: Path | None,
              round_: int) -> dict[str, Any]:
    results: dict[str, Any] = {"load_before": load()}
    if "library" in wanted:
        results["library"] = library(files)
    if "ifcflow" in wanted:
        trees = [("ifcflow_resident_s", ROOT)] + ([("baseline_resident_s", baseline)] if baseline else [])
        for name, tree in trees[::-1] if round_ % 2 else trees:  # alternate which tree goes first
            done = tree_batch(tree, folder)
            results[name] = done["elapsed"]
            results[f"runs_{name[:-2]}"] = done["runs"]
            results[f"cpu_ms_per_job_{name[:-2]}"] = done["cpu_ms_per_job"]
            results[f"load_after_{name[:-2]}"] = load()
        if baseline:
            results["ratio_to_baseline"] = results["ifcflow_resident_s"] / results["baseline_resident_s"]
    if "fork" in wanted:
        results["ifcflow_fork_s"] = ifcflow_batch(folder, resident=False)
    if "rq" in wanted:
        for kind in ("simple", "fork"):
            for job in ("noop", "library"):
                results[f"rq_{kind}_{job}_s"] = rq_floor(files, kind, job)
    results["load_after"] = load()
    if "library" in wanted:
        base = results["library"]["with_startup_s"]
        for name in [k for k in results if k.endswith("_s") and k != "library"]:
            results[f"x_library_{name[:-2]}"] = results[name] / base
    return results

if __name__ == "__main__":
    main()
