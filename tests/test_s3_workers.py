"""Two ``ifcflow worker`` processes with nothing on disk in common, one pipeline spread over both through S3
(a real SeaweedFS): the run succeeds and its outputs equal a local-folder run's, byte for byte."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from redis import Redis

from ifcflow.demo import write_demo
from ifcflow.embedded import EmbeddedRedis
from tests.conftest import run_pipeline
from tests.s3server import SeaweedS3
from tests.servers import spawn, stop

PIPELINE = """version: 1
name: spread
inputs: {model: models/arch.ifc}
steps:
  qto: {uses: ifc5d, with: {ifc: "${{ inputs.model }}", rules: IFC4QtoBaseQuantities, query: IfcWall}}
  glb: {uses: ifcconvert, with: {input: "${{ steps.qto.outputs.model }}", output: model.glb, threads: 1}}
  obj: {uses: ifcconvert, with: {input: "${{ inputs.model }}", output: model.obj, threads: 1}}
  svg: {uses: ifcconvert, with: {input: "${{ inputs.model }}", output: plan.svg, bounds: 1024x768, threads: 1}}
  json: {uses: ifc2json, with: {ifc: "${{ inputs.model }}", output: model.json}}
"""
"""qto and json run on worker B (queues ifc5d, ifc2json), glb/obj/svg on worker A (ifcconvert): glb reads the
model qto wrote on the other worker; obj and svg read the same input model. One geometry thread: with two, the
order of elements in the outputs varies from run to run."""


def _quantities(path: Path) -> bytes:
    """Every element's quantity sets (without entity ids), as comparable bytes."""
    import ifcopenshell
    import ifcopenshell.util.element

    def strip(value: object) -> object:
        return {k: strip(v) for k, v in value.items() if k != "id"} if isinstance(value, dict) else value

    model = ifcopenshell.open(str(path))
    found = {e.GlobalId: strip(ifcopenshell.util.element.get_psets(e, qtos_only=True))
             for e in model.by_type("IfcElement")}
    return json.dumps(found, sort_keys=True).encode()


def _files(root: Path) -> dict[str, bytes]:
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name not in ("status.json", "workers.log"):
            data = path.read_bytes()
            if path.suffix == ".ifc":  # ifc5d: time stamp, new GlobalIds, element order vary from run to run
                data = _quantities(path)
            elif path.suffix == ".log":  # durations
                data = re.sub(rb"in [0-9.]+ s", b"in N s", data)
            found[str(path.relative_to(root).as_posix())] = data
    return found


def test_two_workers_without_a_shared_disk(s3_server: SeaweedS3, redis_server: EmbeddedRedis, conn: Redis,
                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    submitter = tmp_path / "submitter"
    write_demo(submitter / "models")
    (submitter / "spread.yaml").write_text(PIPELINE)
    monkeypatch.delenv("IFCFLOW_STORAGE", raising=False)
    local = run_pipeline(conn, submitter / "spread.yaml", tmp_path / "local-runs")  # the local-folder reference
    assert local.status == "succeeded", local
    conn.flushdb()

    env = {**s3_server.env("two-hosts"), "IFCFLOW_REDIS_URL": redis_server.url}
    workers = {}
    for name, queues in (("a", ["ifcconvert"]), ("b", ["ifc5d", "ifc2json"])):
        home = tmp_path / f"host-{name}"
        home.mkdir()
        workers[name] = spawn([sys.executable, "-m", "ifcflow", "worker", *queues, "--name", f"host-{name}"],
                              tmp_path / f"worker-{name}.log", cwd=home,
                              env={**env, "IFCFLOW_WORKER_CACHE": str(home / "cache"), "HOME": str(home)})
    try:
        done = subprocess.run([sys.executable, "-m", "ifcflow", "run", "spread.yaml", "--out", str(tmp_path / "s3-runs"),
                               "--json", "--timeout", "300"], cwd=submitter, env={**os.environ, **env},
                              check=False, capture_output=True, text=True, timeout=400)
    finally:
        for process in workers.values():
            stop(process)
    logs = {n: (tmp_path / f"worker-{n}.log").read_text(errors="replace") for n in workers}
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:], logs)
    status = json.loads(done.stdout)
    ran_on = {name: step["worker"] for name, step in status["steps"].items()}
    assert {ran_on["qto"], ran_on["json"]} == {"host-b"} and {ran_on["glb"], ran_on["obj"], ran_on["svg"]} == {"host-a"}

    # outputs came down with --out and equal the local run's
    remote_files = _files(tmp_path / "s3-runs" / status["run_id"])
    local_files = _files(tmp_path / "local-runs" / local.run_id)
    assert remote_files.keys() == local_files.keys() and len(remote_files) >= 6
    assert remote_files == local_files

    # no shared disk: every object a worker fetched sits in its own cache, each model fetched once per host
    cache_a = sorted(p.name for p in (tmp_path / "host-a" / "cache" / "objects").iterdir())
    assert len(cache_a) == 2  # the input model (obj, svg) and qto's model (glb): three steps, two downloads
    assert not list((tmp_path / "host-a" / "cache" / "steps").iterdir())
    assert not (tmp_path / "host-a" / "ifcflow-runs").exists() and not (tmp_path / "host-b" / "ifcflow-runs").exists()
