"""Big models: glb + clash + quantities + csv over one model of >= 100 MB on the embedded default (2 workers).

The model is built from ``../shared/ifc/duplex.ifc`` (IFC2X3, 2.4 MB) in a temporary folder, never committed:
the DATA section is repeated ``copies`` times as text; copy k renumbers every ``#id`` by k x (largest id + 1),
gets GlobalIds of its own (the first two characters replaced by a code of k that no real GlobalId starts with:
real ones start with 0-3) and its IfcSite is moved 100 m along x (a new IfcCartesianPoint for the site's
placement), so the copies stand side by side and do not clash with each other. 42 copies make about 100 MB.

The pipeline (``ifcconvert`` glb, ``ifcclash`` all against all, ``ifc5d`` IFC4QtoBaseQuantities on IfcElement,
``ifccsv`` IfcProduct Name/Description) runs with ``python -m ifcflow run`` and no Redis configured (a private
Redis and 2 local workers); step times are the run's ``status.json`` durations; the peak RSS of each worker
(the larger of it and its work horses) is sampled every 0.25 s with psutil. Each step is compared with the same
library call in a fresh process (bench.bench_services' direct cases).

Run: ``python -m bench.bench_bigmodel [copies]`` (default 42). See bench/README.md for results.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ifcopenshell
import ifcopenshell.util.unit
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench.bench_services as services
from bench.bench_services import ROOT, SHARED_IFC, direct_run

CODE = "456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_$"
GUID = re.compile(r"'([0-9A-Za-z_$]{22})'")
REF = re.compile(r"#(\d+)")
SERVICES = {"glb": "ifcconvert", "clash": "ifcclash", "qto": "ifc5d", "csv": "ifccsv"}
PIPELINE = """version: 1
name: bigmodel
defaults: {{cache: false, timeout: 2h}}
steps:
  glb: {{uses: ifcconvert, with: {{input: {ifc}, output: model.glb}}}}
  clash: {{uses: ifcclash, with: {{clash_sets: [{{name: all, a: [{{file: {ifc}}}]}}], check_all: true, output: clashes.json}}}}
  qto: {{uses: ifc5d, with: {{ifc: {ifc}, rules: IFC4QtoBaseQuantities, query: IfcElement, output: qto.ifc, summary: qto.json}}}}
  csv: {{uses: ifccsv, with: {{ifc: {ifc}, query: IfcProduct, attributes: [Name, Description], output: table.csv}}}}
"""


def build(source: Path, copies: int, target: Path, spacing_m: float = 100.0) -> None:
    """Write ``copies`` side-by-side copies of ``source`` into one IFC file ``target`` (see the module doc)."""
    model = ifcopenshell.open(str(source))
    site = model.by_type("IfcSite")[0]
    axis = site.ObjectPlacement.RelativePlacement
    x, y, z = (list(axis.Location.Coordinates) + [0.0, 0.0])[:3]
    spacing = spacing_m / ifcopenshell.util.unit.calculate_unit_scale(model)
    text = source.read_text(encoding="latin-1")
    start = text.index("DATA;") + len("DATA;")
    end = text.rindex("ENDSEC;")
    data = text[start:end]
    largest = max(int(m) for m in re.findall(r"^#(\d+)\s*=", data, re.MULTILINE))
    axis_line = re.compile(rf"^#{axis.id()}\s*=.*$", re.MULTILINE)
    with target.open("w", encoding="latin-1") as out:
        out.write(text[:start])
        for k in range(copies):
            shift = k * (largest + 1)
            if k == 0:
                out.write(data)
                continue
            point = copies * (largest + 1) + k  # a free id after every copy's range
            line = axis_line.search(data)
            assert line is not None
            name, _, rest = line.group(0).partition("=")
            moved = name + "=" + re.sub(rf"#{axis.Location.id()}(?!\d)", f"#{point - shift}", rest, count=1)
            part = data[:line.start()] + moved + data[line.end():]
            code = CODE[k // len(CODE)] + CODE[k % len(CODE)]
            part = copy_of(part, code, shift)
            out.write(part)
            out.write(f"#{point}=IFCCARTESIANPOINT(({x + k * spacing!r},{y!r},{z!r}));\n")
        out.write(text[end:])


def copy_of(part: str, code: str, shift: int) -> str:
    """``part`` with GlobalIds starting with ``code`` and every ``#id`` moved up by ``shift``."""

    def guid(match: re.Match[str]) -> str:
        return f"'{code}{match.group(1)[2:]}'"

    def ref(match: re.Match[str]) -> str:
        return f"#{int(match.group(1)) + shift}"

    return REF.sub(ref, GUID.sub(guid, part))


def sample(run: subprocess.Popen[str], peaks: dict[int, int], roles: dict[int, int]) -> None:
    """Peak RSS per ``ifcflow worker`` process, a work horse counted for the worker that forked it."""
    try:
        children = psutil.Process(run.pid).children(recursive=True)
    except psutil.Error:
        return
    for proc in children:
        try:
            rss = proc.memory_info().rss
            owner = roles.get(proc.pid)
            if owner is None:
                cmd = " ".join(proc.cmdline())
                parent = proc.ppid()
                owner = proc.pid if "worker" in cmd and parent not in roles else roles.get(parent, proc.pid)
                roles[proc.pid] = owner
            peaks[owner] = max(peaks.get(owner, 0), rss)
        except psutil.Error:
            continue


def main() -> None:
    copies = int(sys.argv[1]) if len(sys.argv) > 1 else 42
    services.LIMIT = 7200.0  # a direct call on a big model takes minutes
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.monotonic()
        ifc = folder / "big.ifc"
        build(SHARED_IFC / "duplex.ifc", copies, ifc)
        size = ifc.stat().st_size
        print(f"built {ifc.name}: {size / 1e6:.1f} MB, {copies} copies, in {time.monotonic() - started:.1f} s",
              flush=True)
        (folder / "big.yml").write_text(PIPELINE.format(ifc=ifc))
        peaks: dict[int, int] = {}
        roles: dict[int, int] = {}
        run = subprocess.Popen([sys.executable, "-m", "ifcflow", "run", str(folder / "big.yml"), "--out",
                                str(folder / "runs"), "--workers", "2"], cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={k: v for k, v in os.environ.items() if k != "IFCFLOW_REDIS_URL"})
        while run.poll() is None:
            sample(run, peaks, roles)
            time.sleep(0.25)
        output = run.stdout.read() if run.stdout else ""
        status_files = list((folder / "runs").glob("*/status.json"))
        assert run.returncode == 0 and status_files, output[-2000:]
        steps = json.loads(status_files[0].read_text())["steps"]
        rows = []
        for step_id, service in SERVICES.items():
            direct = direct_run(folder, service, "big", folder)
            seconds = float(steps[step_id]["duration"])
            direct_s = float(str(direct["s"])) if isinstance(direct.get("s"), float) else float("nan")
            direct_mb = float(str(direct["mb"])) if isinstance(direct.get("mb"), float) else float("nan")
            rows.append(f"| {step_id} ({service}) | {seconds:.1f} | {direct_s:.1f} | {seconds / direct_s:.2f}× | "
                        f"{direct_mb:.0f} |")
            print(rows[-1], flush=True)
    print(f"\nmodel {size / 1e6:.1f} MB ({copies} copies of duplex.ifc); workers' peak RSS (worker or its horse): "
          + ", ".join(f"{p / 2**20:.0f} MB" for p in sorted(peaks.values(), reverse=True)[:2]))
    print("| step | step s | direct s | ratio (target ≤ 1.10×) | direct peak MB |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\ntotal {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
