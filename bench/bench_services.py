"""Service benchmarks: each service as a one-step pipeline on a real worker vs the same library call in a fresh process.

For every (service, model) pair:
- step: a one-step pipeline is enqueued on a private redis-server and run by ``python -m ifcflow worker --burst
  --preload <service> --quiet`` (a subprocess, started through a small wrapper that reports
  ``getrusage(RUSAGE_CHILDREN).ru_maxrss``, i.e. the peak RSS of the worker or its work horse). The step's time is
  the RQ job's ``ended_at - started_at``, so worker start-up is not counted.
- direct: a fresh ``python -c`` process imports the library (untimed), then times opening the model, the same
  library call and writing the output; it prints the seconds and its own ``ru_maxrss``.

Models are read from ../shared/ifc (next to the checkout) (read-only; symlinked into a temporary folder, never copied).
Cheap combinations are measured twice (best of 2).
Run: ``python -m bench.bench_services`` (about 5-10 minutes on 2 cores). See bench/README.md for results.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from redis import Redis
from rq.job import Job

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ifcflow.engine import enqueue  # noqa: E402
from ifcflow.pipeline import document
from ifcflow.pipeline.plan import plan as make_plan  # noqa: E402
from ifcflow.standalone.demo import write_demo  # noqa: E402
from ifcflow.standalone.embedded import EmbeddedRedis  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED_IFC = Path(__file__).resolve().parent.parent.parent / "shared" / "ifc"
MODELS = {"duplex": SHARED_IFC / "duplex.ifc", "fzk-haus": SHARED_IFC / "AC20-FZK-Haus.ifc"}
LIMIT = 120.0  # seconds: a combination slower than this is skipped
CHEAP = 20.0  # seconds: step + direct below this are measured twice (best of 2)
BUDGET = 600.0  # seconds for the whole run: what is left after this is skipped

# service -> (the step's `with:` block, the direct script's timed part). {ifc}, {ids}, {out} are filled in.
CASES: dict[str, tuple[str, str]] = {
    "ifcconvert": (
        "{{input: {ifc}, output: model.glb}}",
        """
        model = ifcopenshell.open(IFC)
        s = ifcopenshell.geom.settings()
        s.set("dimensionality", s.SURFACES_AND_SOLIDS)
        s.set("use-world-coords", False)
        s.set("convert-back-units", False)
        s.set("disable-opening-subtractions", False)
        s.set("y-up", True)
        excl = [e for t in ("IfcSpace", "IfcOpeningElement") for e in model.by_type(t)]
        ser = ifcopenshell.geom.serializers.glb(str(OUT / "model.glb"), s)
        ser.setFile(model)
        it = ifcopenshell.geom.iterator(s, model, 2, **({"exclude": excl} if excl else {}))
        ser.setUnitNameAndMagnitude("METER", 1.0)
        ser.writeHeader()
        if it.initialize():
            while True:
                ser.write(it.get())
                if not it.next():
                    break
        ser.finalize()
        del ser
        """),
    "ifctester": (
        "{{ifc: {ifc}, ids: {ids}, report_type: json, gate: false, output: report.json}}",
        """
        doc = ids.open(IDS, validate=True)
        model = ifcopenshell.open(IFC)
        doc.validate(model, filepath=IFC)
        r = reporter.Json(doc)
        r.report()
        r.to_file(str(OUT / "report.json"))
        """),
    "ifcclash": (
        "{{clash_sets: [{{name: all, a: [{{file: {ifc}}}]}}], check_all: true, output: clashes.json}}",
        """
        model = ifcopenshell.open(IFC)
        cs = ClashSettings()
        cs.logger = logging.getLogger("bench")
        cs.output = str(OUT / "clashes.json")
        clasher = Clasher(cs)
        clasher.ifcs[IFC] = model
        clasher.clash_sets = [{"name": "all", "a": [{"file": IFC, "mode": "e"}], "b": [], "mode": "intersection",
                               "tolerance": 0.01, "clearance": 0.0, "check_all": True, "allow_touching": False}]
        for c in clasher.clash_sets:
            clasher.process_clash_set(c)
        plain = [{**c, "a": [{"file": IFC, "mode": "e"}], "b": []} for c in clasher.clash_sets]
        (OUT / "clashes.json").write_text(json.dumps(plain, indent=2))
        """),
    "ifccsv": (
        "{{ifc: {ifc}, query: IfcProduct, attributes: [Name, Description], output: table.csv}}",
        """
        model = ifcopenshell.open(IFC)
        elements = sorted(ifcopenshell.util.selector.filter_elements(model, "IfcProduct"), key=lambda e: e.id())
        IfcCsv().export(model, elements, ["Name", "Description"], output=str(OUT / "table.csv"), format="csv",
                        delimiter=",", null="-")
        """),
    "ifcdiff": (
        "{{old: {ifc}, new: {ifc}, output: diff.json}}",
        """
        old = ifcopenshell.open(IFC)
        new = ifcopenshell.open(IFC)
        d = IfcDiff(old, new, relationships=None, is_shallow=True, filter_elements=None)
        with contextlib.redirect_stdout(io.StringIO()):
            d.diff()
        d.export(str(OUT / "diff.json"))
        """),
    "ifc2json": (
        "{{ifc: {ifc}, output: model.json}}",
        """
        model = ifcopenshell.open(IFC)
        with (OUT / "model.json").open("w", encoding="utf-8", newline="\\n") as f:
            write_json(model, f, lambda *a, **k: None)
        """),
    "ifc5d": (
        "{{ifc: {ifc}, rules: IFC4QtoBaseQuantities, query: IfcElement, output: qto.ifc, summary: qto.json}}",
        """
        rules = dict(qto.rules["IFC4QtoBaseQuantities"])
        model = ifcopenshell.open(IFC)
        elements = set(ifcopenshell.util.selector.filter_elements(model, "IfcElement"))
        results = qto.quantify(model, elements, rules)
        qto.edit_qtos(model, results)
        model.write(str(OUT / "qto.ifc"))
        entries = [{"GlobalId": e.GlobalId, "class": e.is_a(), "name": e.Name,
                    "quantities": {k: dict(v) for k, v in q.items()}} for e, q in results.items()]
        (OUT / "qto.json").write_text(json.dumps(entries, indent=2))
        print("QUANTIFIED", len(entries), file=sys.stderr)
        """),
    "ifcpatch": (
        "{{ifc: {ifc}, recipe: Optimise, output: patched.ifc}}",
        """
        model = ifcopenshell.open(IFC)
        result = ifcpatch.execute({"input": IFC, "file": model, "recipe": "Optimise", "arguments": []})
        ifcpatch.write(result, OUT / "patched.ifc")
        """),
}

IMPORTS = {
    "ifcconvert": "import ifcopenshell.geom",
    "ifctester": "from ifctester import ids, reporter",
    "ifcclash": "import logging\nfrom ifcclash.ifcclash import Clasher, ClashSettings",
    "ifccsv": "import ifcopenshell.util.selector\nfrom ifccsv import IfcCsv",
    "ifcdiff": "import contextlib, io\nfrom ifcdiff import IfcDiff",
    "ifc2json": "from workers.ifc2json import write_json",
    "ifc5d": "import ifcopenshell.util.selector\nfrom ifc5d import qto",
    "ifcpatch": "import ifcpatch, ifcpatch.recipes.Optimise",
}

WRAPPER = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")


def run_group(cmd: list[str], timeout: float, cwd: Path) -> subprocess.CompletedProcess[str] | None:
    """Run ``cmd`` in its own process group; on timeout kill that group and return None."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def step_run(server: EmbeddedRedis, folder: Path, service: str, model: str, ids_path: Path) -> dict[str, object]:
    """One-step pipeline on a real burst worker: job seconds, worker/work-horse peak MB and the job's result."""
    conn = Redis.from_url(server.url)
    conn.flushdb()
    ifc = folder / f"{model}.ifc"
    with_block = CASES[service][0].format(ifc=ifc, ids=ids_path)
    pipeline = folder / f"{service}-{model}.yaml"
    pipeline.write_text(f"version: 1\nname: bench\nsteps:\n  s: {{uses: {service}, timeout: {int(LIMIT)}, "
                        f"with: {with_block}}}\n")
    planned = make_plan(document.load(pipeline), out_root=folder / "runs")
    enqueue.submit(conn, planned)
    cmd = [sys.executable, "-c", WRAPPER, sys.executable, "-m", "ifcflow", "worker", "--burst", "--redis",
           server.url, "--preload", service, "--quiet"]
    done = run_group(cmd, LIMIT + 30, ROOT)
    if done is None:
        return {"skip": f"> {LIMIT:.0f} s"}
    job = Job.fetch(planned.steps[0].job_id, connection=conn)
    if not job.is_finished or job.started_at is None or job.ended_at is None:
        info = job.latest_result().exc_string if job.latest_result() else done.stderr
        return {"skip": f"step {job.get_status()}", "error": (info or "").strip().splitlines()[-1:]}
    peak_kb = int(done.stdout.strip().splitlines()[-1])
    return {"s": (job.ended_at - job.started_at).total_seconds(), "mb": peak_kb / 1024, "result": job.return_value()}


def direct_run(folder: Path, service: str, model: str, ids_path: Path) -> dict[str, object]:
    """The same library calls in a fresh process: imports untimed, then open + call + write timed."""
    out = folder / "direct" / f"{service}-{model}"
    out.mkdir(parents=True, exist_ok=True)
    script = "\n".join([
        "import json, resource, sys, time",
        "from pathlib import Path",
        "import ifcopenshell",
        IMPORTS[service],
        f"IFC = {str(folder / f'{model}.ifc')!r}",
        f"IDS = {str(ids_path)!r}",
        f"OUT = Path({str(out)!r})",
        "t0, c0 = time.perf_counter(), time.process_time()",
        textwrap.dedent(CASES[service][1]).strip(),
        "t, c = time.perf_counter() - t0, time.process_time() - c0",
        "print(json.dumps({'s': t, 'cpu': c, 'kb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))",
    ])
    done = run_group([sys.executable, "-c", script], LIMIT + 30, ROOT)
    if done is None:
        return {"skip": f"> {LIMIT:.0f} s"}
    if done.returncode != 0:
        return {"skip": "direct failed", "error": done.stderr.strip().splitlines()[-1:]}
    found = json.loads(done.stdout.strip().splitlines()[-1])
    return {"s": found["s"], "cpu": found["cpu"], "mb": found["kb"] / 1024, "stderr": done.stderr}


def best(first: dict[str, object], second: dict[str, object]) -> dict[str, object]:
    """Best of two: the lower time (and the peak memory of that same measurement)."""
    if "skip" in second or float(first["s"]) <= float(second["s"]):  # type: ignore[arg-type]
        return first
    return second


def cell(value: object, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, (int, float)) else "–"


def main() -> None:
    started = time.monotonic()
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis() as server:
        folder = Path(tmp)
        for name, path in MODELS.items():
            (folder / f"{name}.ifc").symlink_to(path)
        ids_path = write_demo(folder / "demo")["rules"]
        for service in CASES:
            for model in MODELS:
                if time.monotonic() - started > BUDGET:
                    rows.append((service, model, "skipped: run budget spent", "", "", "", ""))
                    continue
                step = step_run(server, folder, service, model, ids_path)
                direct = direct_run(folder, service, model, ids_path) if "skip" not in step else {}
                if "skip" not in step and "skip" not in direct and float(step["s"]) + float(direct["s"]) < CHEAP:
                    step = best(step, step_run(server, folder, service, model, ids_path))
                    direct = best(direct, direct_run(folder, service, model, ids_path))
                if service == "ifc5d" and isinstance(step.get("result"), dict):
                    data = step["result"].get("data", step["result"])  # type: ignore[union-attr]
                    notes.append(f"ifc5d on {model}: step result {json.dumps(data)[:160]}")
                skip = step.get("skip") or direct.get("skip")
                if skip:
                    error = step.get("error") or direct.get("error") or ""
                    rows.append((service, model, f"skipped ({skip})", "", "", "", ""))
                    if error:
                        notes.append(f"{service} on {model}: {error}")
                else:
                    ratio = float(step["s"]) / float(direct["s"])  # type: ignore[arg-type]
                    rows.append((service, model, cell(step["s"], ".2f"), cell(direct["s"], ".2f"),
                                 f"{ratio:.2f}×" + ("" if ratio <= 1.10 else " (> 1.10)"),
                                 cell(step["mb"], ".0f"), cell(direct["mb"], ".0f")))
                print(" | ".join(rows[-1]), flush=True)
    print()
    print("| service | model | step s | direct s | ratio (target ≤ 1.10×) | step peak MB | direct peak MB |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    for note in notes:
        print(f"- {note}")
    print(f"\ntotal {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
