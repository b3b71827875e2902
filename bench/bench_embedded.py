"""Embedded start: wall time of ``ifcflow run`` of a one-step pipeline on a tiny model with no Redis configured.

Private redis-server start, local worker start (Python, rq, ifcopenshell, the step's service), the job, the wait
for its end, and the clean-up. With ``--baseline DIR`` (a checkout of another revision, e.g. made with
``git archive main | tar -x -C DIR``) the runs alternate between that tree and this one in the same session, so
both see the same load. Run: ``python -m bench.bench_embedded [--runs 5] [--baseline DIR]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.factories import tiny_model  # noqa: E402

PIPELINE = "version: 1\nname: one\nsteps:\n  a: {uses: ifcpatch, with: {ifc: tiny.ifc, recipe: Optimise}}\n"


def one_run(folder: Path, tree: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    env.pop("IFCFLOW_REDIS_URL", None)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ifcflow", "run", "one.yaml", "--out", "runs"], check=False, cwd=folder,
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"run failed ({tree}): {done.stderr}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline", type=Path, default=None, help="another revision's checkout to compare")
    args = parser.parse_args()
    trees = {"this tree": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    walls: dict[str, list[float]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tiny_model(folder / "tiny.ifc")
        (folder / "one.yaml").write_text(PIPELINE)
        one_run(folder, ROOT)  # warm the page cache
        for _ in range(args.runs):
            for name, tree in trees.items():
                walls[name].append(one_run(folder, tree))
    load = os.getloadavg()[0]
    for name, values in walls.items():
        print(f"{name:10s} median {statistics.median(values):.2f} s  min {min(values):.2f}  max {max(values):.2f}  "
              f"({', '.join(f'{v:.2f}' for v in values)})")
    if args.baseline:
        ratio = statistics.median(walls["this tree"]) / statistics.median(walls["baseline"])
        print(f"ratio this/baseline (medians): {ratio:.2f}")
    print(f"load average at the end: {load:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
