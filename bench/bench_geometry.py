"""Tessellate once: a glb step plus an all-against-all clash step over one model, with and without sharing.

For each model, the same two-step pipeline (``ifcconvert`` to glb with one iterator thread, ``ifcclash`` of the
model against itself) is run by one ``python -m ifcflow worker --burst --preload ifcconvert,ifcclash --quiet``
on a private redis-server, alternately with ``IFCFLOW_SHARE_GEOMETRY=0`` (each step tessellates on its own, as
before) and with sharing (see workers/geometry.py). A step's time is its status ``duration`` (start to end of its job)
(worker start-up not counted); the pair's time is the sum of both steps. Each variant runs ``REPEAT`` times,
alternating, and the best is kept. The glb bytes and the clash pairs of the two variants are compared.

Run: ``python -m bench.bench_geometry`` (about 2-3 minutes on 2 cores). See bench/README.md for results.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from redis import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_services import MODELS, ROOT, WRAPPER, run_group
from ifcflow.engine import enqueue, status
from ifcflow.engine.states import StepState
from ifcflow.pipeline import document, plan
from ifcflow.standalone.embedded import EmbeddedRedis

REPEAT = 2
PIPELINE = """version: 1
name: geometry
defaults: {{cache: false}}
steps:
  glb: {{uses: ifcconvert, with: {{input: {ifc}, output: model.glb, threads: 1}}}}
  clash: {{uses: ifcclash, with: {{clash_sets: [{{name: all, a: [{{file: {ifc}}}]}}], output: clashes.json}}}}
"""


def measure(server: EmbeddedRedis, folder: Path, model: str, share: bool) -> dict[str, Any]:
    """One run of the two-step pipeline on one burst worker: seconds per step, peak MB, outputs."""
    conn = Redis.from_url(server.url)
    conn.flushdb()
    pipeline = folder / f"{model}.yaml"
    pipeline.write_text(PIPELINE.format(ifc=folder / f"{model}.ifc"))
    planned = plan.plan(document.load(pipeline), out_root=folder / "runs")
    enqueue.submit(conn, planned)
    cmd = [sys.executable, "-c", WRAPPER, sys.executable, "-m", "ifcflow", "worker", "--burst", "--redis",
           server.url, "--preload", "ifcconvert,ifcclash", "--quiet"]
    os.environ["IFCFLOW_SHARE_GEOMETRY"] = "1" if share else "0"  # the worker inherits it
    try:
        done = run_group(cmd, 600, ROOT)
    finally:
        os.environ.pop("IFCFLOW_SHARE_GEOMETRY", None)
    assert done is not None and done.returncode == 0, done.stderr if done else "timed out"
    found: dict[str, Any] = {"mb": int(done.stdout.strip().splitlines()[-1]) / 1024}
    run = status.read(conn, planned.run_id)
    for step_id, step in run.steps.items():
        assert step.status == StepState.SUCCEEDED and step.result and step.duration, (step_id, step.error)
        found[step_id] = step.duration
        assert step.result["data"]["shared_geometry"] is share, step.result
        found[f"{step_id}-out"] = Path(next(iter(step.result["outputs"].values())))
    found["total"] = found["glb"] + found["clash"]
    return found


def pairs(report: Path) -> set[frozenset[str]]:
    return {frozenset((c["a_global_id"], c["b_global_id"]))
            for cs in json.loads(report.read_text()) for c in cs["clashes"].values()}


def main() -> None:
    started = time.monotonic()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis() as server:
        folder = Path(tmp)
        for name, path in MODELS.items():
            (folder / f"{name}.ifc").symlink_to(path)
            runs: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
            for _ in range(REPEAT):
                for share in (False, True):
                    runs[share].append(measure(server, folder, name, share))
                    print(name, "shared" if share else "alone",
                          {k: round(v, 2) for k, v in runs[share][-1].items() if isinstance(v, float)}, flush=True)
            alone = min(runs[False], key=lambda r: r["total"])
            shared = min(runs[True], key=lambda r: r["total"])
            same_glb = alone["glb-out"].read_bytes() == shared["glb-out"].read_bytes()
            same_pairs = pairs(alone["clash-out"]) == pairs(shared["clash-out"])
            rows.append((name, f"{path.stat().st_size / 1e6:.1f} MB", f"{alone['glb']:.2f}", f"{alone['clash']:.2f}",
                         f"{alone['total']:.2f}", f"{shared['glb']:.2f}", f"{shared['clash']:.2f}",
                         f"{shared['total']:.2f}", f"{shared['total'] / alone['total']:.2f}×",
                         "yes" if same_glb else "NO", f"{len(pairs(shared['clash-out']))}"
                         + ("" if same_pairs else " (DIFFERENT)"), f"{alone['mb']:.0f} / {shared['mb']:.0f}"))
    print()
    print("| model | size | alone: glb s | alone: clash s | alone: both s | shared: glb s | shared: clash s "
          "| shared: both s | ratio (target ≤ 0.65×) | same glb bytes | clash pairs (same) | peak MB alone / shared |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\ntotal {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
