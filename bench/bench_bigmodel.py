"""Big models: glb + clash + quantities + csv over one model of >= 100 MB on the embedded default (2 workers).

The model is built from ``../shared/ifc/duplex.ifc`` (IFC2X3, 2.4 MB) in a temporary folder, never committed:
the DATA section is repeated ``copies`` times as text; copy k renumbers every ``#id`` by k x (largest id + 1),
gets GlobalIds of its own (the first two characters replaced by a code of k that no real GlobalId starts with:
real ones start with 0-3) and its IfcSite is moved 100 m along x (a new IfcCartesianPoint for the site's
placement), so the copies stand side by side and do not clash with each other. 42 copies make about 100 MB.

The pipeline (``ifcconvert`` glb, ``ifcclash`` all against all, ``ifc5d`` IFC4QtoBaseQuantities on IfcElement,
``ifccsv`` IfcProduct Name/Description) runs with ``python -m ifcflow run`` and no Redis configured (a private
Redis and 2 local workers); step times are the run's ``status.json`` durations; the peak RSS of each worker
(the larger of it and its work horses) is sampled every 0.25 s with psutil; the run's private Redis is followed to
record, per running step, the longest gap between two different progress notes in its status.
A step's CPU seconds are its worker's horses' CPU between the step's start and end (the worker's pid read from
the run's Redis); the glb horse's after-job work (the shared clash query, run after the glb step's end) is reported
apart, from the glb step's end to the clash product's write.

Each step is compared with the same library call in a fresh process (bench.bench_services' direct cases), twice:
**alone** (one direct call at a time, as before) and **same concurrency**: the steps that did their work at the
same time in the run (their start-end spans overlap by more than a quarter of the shorter one) have their direct
calls started at the same time too; a clash step served by the shared geometry pass only waited (its worker was
blocked on the pass's lock), so it and the glb step count as working alone. The second is the like-for-like
ratio: a step that shared 2 cores with a sibling is compared with a direct call that shared them with the same
sibling's direct call.

Run: ``python -m bench.bench_bigmodel [copies]`` (default 42). See bench/README.md for results.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import ifcopenshell
import ifcopenshell.util.unit
import psutil
from redis import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench.bench_services as services
from bench.bench_services import ROOT, SHARED_IFC, direct_run
from ifcflow.engine.states import StepState
from ifcflow.engine.status import StatusReader

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


HORSES: dict[int, tuple[int, list[tuple[float, float, int]]]] = {}
"""Work horse pid -> (its worker's pid, samples of (wall clock, CPU seconds user + system of all its threads, RSS))."""


def sample(run: subprocess.Popen[str], peaks: dict[int, int], roles: dict[int, int]) -> None:
    """Peak RSS per ``ifcflow worker`` process, a work horse counted for the worker that forked it; each work
    horse's CPU time and RSS over time (a step's CPU seconds are its horse's CPU between the step's start and end:
    a resident horse runs several steps, and after-job work after a step's end)."""
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
            if owner != proc.pid and proc.ppid() == owner:  # a work horse (its ticker's parent is the horse)
                times = proc.cpu_times()
                HORSES.setdefault(proc.pid, (owner, []))[1].append((time.time(), times.user + times.system, rss))
        except psutil.Error:
            continue


class Notes:
    """Follows the run's private Redis (found from the redis-server the run started) and records, per running step,
    when its progress note changed: the longest gap is what a user watching the status waits for a sign of life."""

    def __init__(self, run: subprocess.Popen[str]):
        self.run = run
        self.changes: dict[str, list[tuple[float, str]]] = {}
        self.windows: dict[str, tuple[float, float]] = {}
        self.workers: dict[str, int] = {}
        """RQ worker name -> pid (from the run's Redis): which horses ran a step."""
        self.thread = threading.Thread(target=self.follow, daemon=True)
        self.thread.start()

    def socket(self) -> str | None:
        try:
            for proc in psutil.Process(self.run.pid).children(recursive=True):
                cmd = " ".join(proc.cmdline())  # redis-server shows "redis-server unixsocket:<path>" once started
                if "redis-server" in cmd and "unixsocket:" in cmd:
                    return cmd.split("unixsocket:", 1)[1].split()[0]
        except psutil.Error:
            return None
        return None

    def follow(self) -> None:
        reader: StatusReader | None = None
        while self.run.poll() is None:
            try:
                if reader is None:
                    path = self.socket()
                    conn = Redis(unix_socket_path=path) if path else None
                    runs = conn.zrange("ifcflow:runs", 0, -1) if conn is not None else []
                    if conn is None or not runs:
                        time.sleep(0.5)
                        continue
                    run_id = runs[0]
                    reader = StatusReader(conn, run_id.decode() if isinstance(run_id, bytes) else str(run_id))
                for key in reader.conn.smembers("rq:workers"):
                    name, pid = key.decode().removeprefix("rq:worker:"), reader.conn.hget(key, "pid")
                    if pid:
                        self.workers[name] = int(pid)
                now = time.monotonic()
                for step_id, step in reader.read().steps.items():
                    if step.status != StepState.RUNNING:
                        continue
                    first, _ = self.windows.get(step_id, (now, now))
                    self.windows[step_id] = (first, now)
                    note = str((step.progress or {}).get("message") or "")
                    seen = self.changes.setdefault(step_id, [])
                    if not seen or seen[-1][1] != note:
                        seen.append((now, note))
            except Exception:  # noqa: BLE001 - the run's Redis goes away at its end
                pass
            time.sleep(0.5)

    def longest_gap(self, step_id: str) -> float:
        """Seconds of the longest stretch, while the step ran, without a new note (from its first sight)."""
        first, last = self.windows.get(step_id, (0.0, 0.0))
        times = [t for t, _ in self.changes.get(step_id, [])] + [last]
        return max((b - a for a, b in zip(times, times[1:])), default=last - first)


def cpu_at(samples: list[tuple[float, float, int]], moment: float) -> float:
    """A horse's CPU seconds at ``moment``, interpolated between samples (0 before its first, its last after)."""
    before = [x for x in samples if x[0] <= moment]
    after = [x for x in samples if x[0] > moment]
    if not before:
        return 0.0
    if not after:
        return before[-1][1]
    (t0, c0, _), (t1, c1, _) = before[-1], after[0]
    return c0 + (c1 - c0) * (moment - t0) / (t1 - t0)


def worker_cpu(worker_pid: int | None, start: float, end: float) -> float:
    """CPU seconds the work horses of ``worker_pid`` used between ``start`` and ``end`` (RQ's scheduler, also a
    worker's child, is counted too: it uses next to nothing)."""
    if worker_pid is None:
        return float("nan")
    return sum(cpu_at(samples, end) - cpu_at(samples, start)
               for owner, samples in HORSES.values() if owner == worker_pid)


def step_cpu(step: dict[str, Any], workers: dict[str, int]) -> float:
    """CPU seconds of the horse that ran ``step``, from the step's start to its end only."""
    return worker_cpu(workers.get(str(step.get("worker"))), when(str(step["started_at"])), when(str(step["ended_at"])))


def after_job(folder: Path, steps: dict[str, dict[str, Any]], workers: dict[str, int]) -> tuple[float, float, str]:
    """The glb step's after-job work (the shared pass's clash query): (wall s from the glb step's end to the clash
    product's write, its horse's CPU s then, the horse's log line with its memory before and after)."""
    products = list(folder.glob("runs/*/.geometry/*/clash-*.json"))
    if not products:
        return float("nan"), float("nan"), "(no clash product: the query ran in a step)"
    start, end = when(str(steps["glb"]["ended_at"])), products[0].stat().st_mtime
    lines = [line for log in folder.glob("runs/**/workers.log") for line in log.read_text().splitlines()
             if "after-job work of job" in line]
    return end - start, worker_cpu(workers.get(str(steps["glb"].get("worker"))), start, end), " ".join(lines)


def rss_between_jobs(folder: Path, steps: dict[str, dict[str, Any]], workers: dict[str, int]) -> str:
    """The glb worker's horse's peak RSS during the glb step, and when it was last seen after its after-job work
    wrote the clash product, with what RSS (a horse that grew by over 256 MB retires after that work)."""
    pid, ended = workers.get(str(steps["glb"].get("worker"))), when(str(steps["glb"]["ended_at"]))
    products = list(folder.glob("runs/*/.geometry/*/clash-*.json"))
    done = products[0].stat().st_mtime if products else ended
    mine = [samples for owner, samples in HORSES.values() if owner == pid and samples[0][0] <= ended]
    if not mine:
        return "(not sampled)"
    samples = max(mine, key=lambda found: max(x[2] for x in found))  # the horse, not RQ's scheduler
    final = max(x[-1][0] for _, x in HORSES.values() if x)
    later = [x for x in samples if x[0] >= done]
    last = f"last seen {later[-1][0] - done:.1f} s after the query with {later[-1][2] / 2**20:.0f} MB" if later else ""
    return (f"{max(x[2] for x in samples if x[0] <= ended) / 2**20:.0f} MB during the step; "
            + (last or "not seen after the query") + (" (alive to the run's end)" if samples[-1][0] > final - 1 else
                                                    " (then it exited: retired)"))


def when(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def concurrent_groups(steps: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Steps that did their work at the same time in the run (overlapping for over a quarter of the shorter one).

    A clash step served by the shared geometry pass only waited for the glb step (its worker was idle, blocked on
    the pass's lock), so it counts as doing no work beside it and its direct call is run alone."""
    working = [s for s in SERVICES if not ((steps[s].get("result") or {}).get("data") or {}).get("shared_geometry")
               or s == "glb"]
    span = {s: (when(str(steps[s]["started_at"])), when(str(steps[s]["ended_at"]))) for s in SERVICES}
    groups: list[list[str]] = []
    for step_id in SERVICES:
        if step_id not in working:
            groups.append([step_id])
            continue
        for group in groups:
            if any(o in working and _overlap(span[step_id], span[o]) for o in group):
                group.append(step_id)
                break
        else:
            groups.append([step_id])
    return groups


def _overlap(one: tuple[float, float], other: tuple[float, float]) -> bool:
    common = min(one[1], other[1]) - max(one[0], other[0])
    return common > 0.25 * min(one[1] - one[0], other[1] - other[0])


def direct_seconds(folder: Path, step_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The direct library calls of ``step_ids``, all started at the same time (one fresh process each)."""
    with ThreadPoolExecutor(len(step_ids)) as pool:
        found = pool.map(lambda s: direct_run(folder / s, SERVICES[s], "big", folder), step_ids)
        return dict(zip(step_ids, found))


def seconds(found: dict[str, object], key: str = "s") -> float:
    value = found.get(key)
    return float(value) if isinstance(value, float) else float("nan")


def pipeline(folder: Path, ifc: Path) -> tuple[dict[str, dict[str, Any]], dict[int, int], Notes, float]:
    (folder / "big.yml").write_text(PIPELINE.format(ifc=ifc))
    peaks: dict[int, int] = {}
    roles: dict[int, int] = {}
    started = time.monotonic()
    run = subprocess.Popen([sys.executable, "-m", "ifcflow", "run", str(folder / "big.yml"), "--out",
                            str(folder / "runs"), "--workers", "2"], cwd=ROOT, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           env={k: v for k, v in os.environ.items() if k != "IFCFLOW_REDIS_URL"})
    notes = Notes(run)
    while run.poll() is None:
        sample(run, peaks, roles)
        time.sleep(0.25)
    wall = time.monotonic() - started
    output = run.stdout.read() if run.stdout else ""
    status_files = list((folder / "runs").glob("*/status.json"))
    assert run.returncode == 0 and status_files, output[-2000:]
    return json.loads(status_files[0].read_text())["steps"], peaks, notes, wall


def main() -> None:
    copies = int(sys.argv[1]) if len(sys.argv) > 1 else 42
    services.LIMIT = 7200.0  # a direct call on a big model takes minutes
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.monotonic()
        ifc = folder / "big.ifc"
        build(SHARED_IFC / "duplex.ifc", copies, ifc)
        for step_id in SERVICES:  # each direct call has a folder of its own (two may run at once)
            (folder / step_id).mkdir()
            (folder / step_id / "big.ifc").symlink_to(ifc)
        size = ifc.stat().st_size
        print(f"built {ifc.name}: {size / 1e6:.1f} MB, {copies} copies, in {time.monotonic() - started:.1f} s",
              flush=True)
        steps, peaks, notes, wall = pipeline(folder, ifc)
        extra = after_job(folder, steps, notes.workers)
        between = rss_between_jobs(folder, steps, notes.workers)
        loads.append(os.getloadavg()[0])
        base = min(when(str(s["started_at"])) for s in steps.values())
        for step_id, step in steps.items():
            print(f"{step_id}: {when(str(step['started_at'])) - base:7.1f} .. {when(str(step['ended_at'])) - base:7.1f}"
                  f" s on {step.get('worker')}, {float(step['duration']):.1f} s; longest gap between progress notes "
                  f"{notes.longest_gap(step_id):.1f} s ({len(notes.changes.get(step_id, []))} notes)", flush=True)
        groups = concurrent_groups(steps)
        print(f"run wall time {wall:.1f} s; steps that worked at the same time: {groups}", flush=True)
        alone = {s: direct_run(folder / s, SERVICES[s], "big", folder) for s in SERVICES}
        loads.append(os.getloadavg()[0])
        together = {s: alone[s] for group in groups if len(group) == 1 for s in group}
        for group in groups:
            if len(group) > 1:
                together.update(direct_seconds(folder, group))
        loads.append(os.getloadavg()[0])
    print(f"\nmodel {size / 1e6:.1f} MB ({copies} copies of duplex.ifc); workers' peak RSS (worker or its horse): "
          + ", ".join(f"{p / 2**20:.0f} MB" for p in sorted(peaks.values(), reverse=True)[:2])
          + "; load average (1 min) at start, after the run, after direct alone, after direct together: "
          + ", ".join(f"{x:.1f}" for x in loads))
    print("| step | step s | direct alone s | ratio | direct, same concurrency s | ratio (target ≤ 1.10×) "
          "| direct peak MB | longest gap between notes s |")
    print("|---|---|---|---|---|---|---|---|")
    for step_id, service in SERVICES.items():
        took = float(steps[step_id]["duration"])
        one, two = seconds(alone[step_id]), seconds(together[step_id])
        mb = alone[step_id].get("mb")
        print(f"| {step_id} ({service}) | {took:.1f} | {one:.1f} | {took / one:.2f}× | {two:.1f} | {took / two:.2f}× "
              f"| {float(mb) if isinstance(mb, float) else float('nan'):.0f} | {notes.longest_gap(step_id):.1f} |")
    print("\n| step | step CPU s | direct CPU s (alone) | CPU ratio | direct CPU s (same concurrency) | CPU ratio |"
          "\n|---|---|---|---|---|---|")
    for step_id, service in SERVICES.items():
        cpu, direct_cpu = step_cpu(steps[step_id], notes.workers), seconds(alone[step_id], "cpu")
        beside = seconds(together[step_id], "cpu")
        print(f"| {step_id} ({service}) | {cpu:.1f} | {direct_cpu:.1f} | {cpu / direct_cpu:.2f}× | {beside:.1f} "
              f"| {cpu / beside:.2f}× |")
    query_s, query_cpu, line = extra
    print(f"\nafter-job work of the glb step's horse (the shared clash query): {query_s:.1f} s, {query_cpu:.1f} CPU s;"
          f" its log: {line}; glb horse RSS after it: {between}")
    shared = float(steps["glb"]["duration"])
    direct_pair = seconds(alone["glb"]) + seconds(alone["clash"])
    print(f"\nglb step (the shared pass: glb + clash) {shared:.1f} s vs direct glb + direct clash {direct_pair:.1f} s:"
          f" {shared / direct_pair:.2f}×; run wall {wall:.1f} s vs sum of direct alone "
          f"{sum(seconds(a) for a in alone.values()):.1f} s")
    print(f"total {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
