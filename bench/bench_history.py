"""History benchmarks (issue 19): the cost of recording a step's end, and a lineage query over 10,000 runs.

Run: ``python -m bench.bench_history [postgresql://postgres@127.0.0.1:5432/postgres]`` (about 2 minutes). A private
database with a random name is created through the given server's ``postgres`` database and dropped at the end.
See bench/README.md for results.
"""

from __future__ import annotations

import hashlib
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from redis import Redis
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ifcflow.engine import outbox  # noqa: E402
from ifcflow.history import database as history
from ifcflow.history import lineage
from ifcflow.pipeline.plan import PlannedStep  # noqa: E402
from ifcflow.standalone.embedded import EmbeddedRedis  # noqa: E402
from tests.factories import tiny_model  # noqa: E402

ADMIN = sys.argv[1] if len(sys.argv) > 1 else "postgresql://postgres@127.0.0.1:5432/postgres"
RUNS = 10_000


def median_ms(action: Callable[[], Any], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def run_records(index: int) -> list[dict[str, Any]]:
    """A three-step run (patch -> clash, patch -> json) on its own arch revision and the shared mep model."""
    run_id = f"coordination-{index:05d}"
    at = 1_700_000_000.0 + index * 60
    arch = {"path": "/data/uploads/arch.ifc", "sha256": sha(f"arch{index}"), "size": 1000}
    mep = {"path": "/data/uploads/mep.ifc", "sha256": sha("mep"), "size": 2000}
    walls = {"path": f"/data/output/runs/{run_id}/walls/arch.ifc", "sha256": sha(f"walls{index}"), "size": 500}
    clash = {"path": f"/data/output/runs/{run_id}/clash/clashes.json", "sha256": sha(f"clash{index}"), "size": 50}
    json_ = {"path": f"/data/output/runs/{run_id}/json/arch.json", "sha256": sha(f"json{index}"), "size": 70}
    step = {"kind": "step", "run_id": run_id, "at": at + 30, "state": "succeeded", "versions": {"ifcopenshell": "0.9"}}
    return [
        {"kind": "run", "run_id": run_id, "at": at, "pipeline": "coordination", "actor": "api:key#1",
         "inputs": {"arch": arch, "mep": mep}, "state": "succeeded", "created_at": at, "ended_at": at + 40},
        step | {"step_id": "walls", "service": "ifcpatch", "inputs": [arch], "outputs": [walls]},
        step | {"step_id": "clash", "service": "ifcclash", "inputs": [walls, mep], "outputs": [clash]},
        step | {"step_id": "json", "service": "ifc2json", "inputs": [walls], "outputs": [json_]},
        outbox.audit("submit", run_id=run_id, key=f"submit:{run_id}"),
    ]


def step_end_costs(conn: Redis, url: str, folder: Path) -> dict[str, float]:
    """Per step end: building and pushing the record in the job (hashing a tiny model's files), and writing it
    into PostgreSQL (one drain per step end, the worst case; and per record when drained 500 at a time)."""
    model = tiny_model(folder / "arch.ifc", walls=1)
    out = folder / "out.ifc"
    out.write_bytes(model.read_bytes())
    planned = PlannedStep(id="walls", service="ifcpatch", queue="ifcpatch", func="workers.ifcpatch.run",
                          job_id="j", needs=[], timeout=60, workdir=str(folder),
                          options={"ifc": str(model), "recipe": "Optimise", "output": str(out)},
                          outputs={"model": str(out)})
    result = {"outputs": {"model": str(out)}}
    counter = iter(range(10**9))

    def push() -> None:
        outbox.push(conn, [outbox.step_succeeded(f"r{next(counter)}", planned, result, 1.0)])

    push_ms = median_ms(push, 200)
    outbox.drain(conn, url)

    def push_and_drain() -> None:
        push()
        outbox.drain(conn, url)

    one_ms = median_ms(push_and_drain, 200)
    for _ in range(2000):
        push()
    start = time.perf_counter()
    drained = outbox.drain(conn, url)
    batched_ms = (time.perf_counter() - start) * 1000 / drained
    return {"push (in the job)": push_ms, "push + drain one record": one_ms, "drain per record (500 a batch)":
            batched_ms}


def lineage_costs(url: str) -> dict[str, float]:
    start = time.perf_counter()
    for first in range(0, RUNS, 100):
        history.apply(url, [r for index in range(first, first + 100) for r in run_records(index)])
    fill = time.perf_counter() - start
    cold = median_ms(lambda: lineage.lineage(url, sha(f"clash{RUNS // 2}"), "up"), 5)
    with history.engine(url).begin() as conn:  # what autovacuum does soon after a bulk load
        conn.execute(text("ANALYZE"))
    report = sha(f"clash{RUNS // 2}")
    arch = sha(f"arch{RUNS // 2}")
    up = lineage.lineage(url, report, "up")
    assert {s["step"] for s in up["steps"]} == {"clash", "walls"} and arch in {f["sha256"] for f in up["files"]}
    return {
        f"fill {RUNS:,} runs (s)": fill,
        "lineage up, before ANALYZE": cold,
        "lineage up from a clash report": median_ms(lambda: lineage.lineage(url, report, "up"), 20),
        "lineage both ways from an arch revision": median_ms(lambda: lineage.lineage(url, arch, "both"), 20),
        "history: newest 50 runs": median_ms(lambda: lineage.runs_list(url, limit=50), 20),
        "history --pipeline --state --since 30d": median_ms(lambda: lineage.runs_list(
            url, pipeline="coordination", state="succeeded", since=1_700_000_000.0 + (RUNS - 720) * 60), 20),
    }


def main() -> None:
    name = f"ifcflow_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis() as server:
            conn = Redis.from_url(server.url)
            results = step_end_costs(conn, url, Path(tmp)) | lineage_costs(url)
        for what, value in results.items():
            print(f"{what:45s} {value:9.2f}" + ("" if "(s)" in what else " ms"))
    finally:
        history.dispose(url)
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
