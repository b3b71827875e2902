"""Two ``ifcflow worker`` processes with nothing on disk in common, one pipeline spread over both through S3
(a real SeaweedFS): the run succeeds and its outputs equal a local-folder run's, byte for byte."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from ifcflow.standalone.demo import write_demo
from ifcflow.standalone.embedded import EmbeddedRedis, find_server
from tests.conftest import run_pipeline
from tests.s3server import SeaweedS3
from tests.servers import free_port, spawn, stop

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
    found = {e.GlobalId: strip(ifcopenshell.util.element.get_psets(e, qtos_only=True))  # type: ignore[arg-type]
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
    env = {**s3_server.env("two-workers"), "IFCFLOW_REDIS_URL": redis_server.url}
    spread(tmp_path, conn, monkeypatch, env, {"a": [], "b": []})


def spread(tmp_path: Path, conn: Redis, monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
           prefixes: dict[str, list[str]]) -> None:
    """Run PIPELINE locally (the reference), then with ``env``'s S3 store on two workers started with
    ``prefixes[name] + [python, -m, ifcflow, worker, ...]``; compare."""
    submitter = tmp_path / "submitter"
    write_demo(submitter / "models")
    (submitter / "spread.yaml").write_text(PIPELINE)
    monkeypatch.delenv("IFCFLOW_STORAGE", raising=False)
    local = run_pipeline(conn, submitter / "spread.yaml", tmp_path / "local-runs")  # the local-folder reference
    assert local.status == "succeeded", local
    conn.flushdb()

    workers = {}
    for name, queues in (("a", ["ifcconvert"]), ("b", ["ifc5d", "ifc2json"])):
        home = tmp_path / f"host-{name}"
        home.mkdir()
        workers[name] = spawn([*prefixes[name], sys.executable, "-m", "ifcflow", "worker", *queues, "--name",
                               f"host-{name}"], tmp_path / f"worker-{name}.log", cwd=home,
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


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


@pytest.fixture
def two_hosts() -> Iterator[tuple[str, dict[str, list[str]]]]:
    """Two network namespaces, each linked by a veth pair to a bridge on this host at 10.<n>.0.1/24: what runs in
    them reaches this host only over that link (their 127.0.0.1 is their own). Skipped where not permitted."""
    tag = f"{os.getpid() % 10000}"
    net = f"10.{200 + os.getpid() % 50}.{os.getpid() % 250}"
    bridge, names = f"ifcbr{tag}", {"a": f"ifcflow-{tag}-a", "b": f"ifcflow-{tag}-b"}
    try:
        _sh("ip", "link", "add", bridge, "type", "bridge")
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"network namespaces are not available here ({exc}); test_two_workers_without_a_shared_disk "
                    "covers separate folders")
    try:
        _sh("ip", "addr", "add", f"{net}.1/24", "dev", bridge)
        _sh("ip", "link", "set", bridge, "up")
        for index, (name, ns) in enumerate(names.items(), start=2):
            _sh("ip", "netns", "add", ns)
            _sh("ip", "link", "add", f"if{tag}{name}h", "type", "veth", "peer", "name", f"if{tag}{name}n")
            _sh("ip", "link", "set", f"if{tag}{name}n", "netns", ns)
            _sh("ip", "link", "set", f"if{tag}{name}h", "master", bridge)
            _sh("ip", "link", "set", f"if{tag}{name}h", "up")
            _sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{net}.{index}/24", "dev", f"if{tag}{name}n")
            _sh("ip", "netns", "exec", ns, "ip", "link", "set", f"if{tag}{name}n", "up")
            _sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield f"{net}.1", {name: ["ip", "netns", "exec", ns] for name, ns in names.items()}
    finally:
        for name, ns in names.items():
            subprocess.run(["ip", "link", "del", f"if{tag}{name}h"], check=False, capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], check=False, capture_output=True)


def test_two_hosts_in_network_namespaces(two_hosts: tuple[str, dict[str, list[str]]], conn: Redis, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The workers run in network namespaces of their own and reach Redis and S3 only over their link to this host;
    in their mount namespaces the submitter's folders are empty."""
    address, prefixes = two_hosts
    port = free_port()
    redis_log = tmp_path / "redis.log"
    redis = spawn([find_server(), "--bind", address, "--port", str(port), "--save", "", "--appendonly", "no",
                   "--protected-mode", "no", "--dir", str(tmp_path)], redis_log)
    server = SeaweedS3(tmp_path / "s3", ip=address)
    try:
        server.start()
        env = {**server.env("netns"), "IFCFLOW_REDIS_URL": f"redis://{address}:{port}/0"}
        code = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2)"
        probe = subprocess.run([*prefixes["a"], sys.executable, "-c", code], check=False, capture_output=True,
                               timeout=30)
        assert probe.returncode != 0  # inside a namespace, this host's loopback is out of reach
        # and a mount namespace each in which the submitter's folders (models, run folders) are empty: a worker
        # that opened a plan path instead of the store would find nothing there, and what it wrote would be lost
        hidden = [tmp_path / "submitter", tmp_path / "s3-runs", tmp_path / "local-runs"]
        for folder in hidden:
            folder.mkdir(exist_ok=True)
        mounts = " && ".join(f"mount -t tmpfs none {folder}" for folder in hidden)
        private = {name: [*prefix, "unshare", "--mount", "--propagation", "private", "sh", "-c",
                          f'{mounts} && exec "$@"', "sh"] for name, prefix in prefixes.items()}
        spread(tmp_path, conn, monkeypatch, env, private)
    finally:
        server.stop()
        stop(redis)
