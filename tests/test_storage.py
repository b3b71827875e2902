"""Object storage against a real S3 server (SeaweedFS ``weed mini``): keys, transfers, pins, the worker cache,
a store that goes away mid-upload, and one-line start-up errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ifcflow.engine import staging
from ifcflow.engine.storage import LocalStorage, S3Storage, UnsafeKey, configured, object_key
from ifcflow.errors import StepError, StorageError
from ifcflow.pipeline import document
from ifcflow.pipeline.plan import plan
from ifcflow.standalone.demo import write_demo
from tests.s3server import SeaweedS3
from tests.servers import free_port


@pytest.mark.parametrize("bad", ["../x", "a/../../b", "/etc/passwd", "a\\b", "s3://other/x", "", " ", "a/./b",
                                 "a\x00b", "..", "."])
def test_keys_are_only_built_from_vetted_relative_names(bad: str) -> None:
    with pytest.raises(UnsafeKey):
        object_key("uploads", bad)
    with pytest.raises(UnsafeKey):
        LocalStorage("/tmp").path(bad)


def test_good_keys() -> None:
    assert object_key("runs", "r-1", "glb/model.glb") == "runs/r-1/glb/model.glb"
    assert S3Storage("b", "team/x").full("uploads/a.ifc") == "team/x/uploads/a.ifc"


def test_put_get_head_and_pinned_versions(s3_env: dict[str, str], tmp_path: Path) -> None:
    store = configured()
    assert isinstance(store, S3Storage) and store.url == s3_env["IFCFLOW_STORAGE"]
    first, second = tmp_path / "v1.ifc", tmp_path / "v2.ifc"
    first.write_bytes(b"ISO-10303-21; first")
    second.write_bytes(b"ISO-10303-21; second, longer")
    one = store.put(first, "uploads/arch.ifc")
    two = store.put(second, "uploads/arch.ifc")  # a re-upload: a new version of the same key
    assert one.version_id and two.version_id and one.version_id != two.version_id
    assert store.head("uploads/arch.ifc") == two
    got = store.get("uploads/arch.ifc", tmp_path / "back.ifc", version_id=one.version_id, sha256=one.sha256)
    assert (tmp_path / "back.ifc").read_bytes() == first.read_bytes() and got.sha256 == one.sha256
    with pytest.raises(StorageError, match="not the pinned object"):  # the key now holds other contents
        store.get("uploads/arch.ifc", tmp_path / "bad.ifc", sha256=one.sha256)
    assert not (tmp_path / "bad.ifc").exists() and not list(tmp_path.glob(".bad.ifc.*"))
    assert store.head("uploads/missing.ifc") is None
    with pytest.raises(StorageError, match="uploading to .*/uploads/wrong.ifc failed"):  # the server checks the sha256
        store.put(first, "uploads/wrong.ifc", sha256="0" * 64)
    assert store.head("uploads/wrong.ifc") is None


def test_a_model_used_by_three_steps_is_downloaded_once(s3_env: dict[str, str], tmp_path: Path) -> None:
    store = configured()
    assert isinstance(store, S3Storage)
    model = tmp_path / "m.ifc"
    model.write_bytes(os.urandom(300_000))
    stored = store.put(model, "uploads/m.ifc")
    cache = staging.WorkerCache(tmp_path / "cache", limit=10**9)
    paths = {cache.fetch(store, "uploads/m.ifc") for _ in range(3)}  # sha256 from HEAD, then the cache
    assert len(paths) == 1 and paths.pop().read_bytes() == model.read_bytes()
    assert store.requests["get"] == 1
    assert cache.fetch(store, "uploads/m.ifc", stored.sha256, stored.version_id).is_file()
    assert store.requests["get"] == 1
    other = tmp_path / "o.ifc"
    other.write_bytes(os.urandom(300_000))
    store.put(other, "uploads/o.ifc")
    small = staging.WorkerCache(tmp_path / "cache", limit=400_000)  # room for one: least recently used goes
    small.fetch(store, "uploads/o.ifc")
    assert [p.name for p in small.objects.iterdir()] == [staging.sha256_file(other)]


def _planned_json_step(folder: Path) -> tuple[object, object]:
    write_demo(folder / "models")
    pipeline = folder / "p.yaml"
    pipeline.write_text("version: 1\nname: one\ninputs: {model: models/arch.ifc}\n"
                        "steps:\n  json: {uses: ifc2json, with: {ifc: '${{ inputs.model }}', output: model.json}}\n")
    planned = plan(document.load(pipeline), out_root=folder / "runs")
    return planned, planned.steps[0]


def test_store_stopped_while_a_step_uploads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The step fails naming the cause, nothing partial is listed; once the store is back the retry succeeds."""
    from workers import ifc2json
    from workers.runtime import execute

    server = SeaweedS3(tmp_path / "s3")
    server.start()
    try:
        for name, value in server.env("fault").items():
            monkeypatch.setenv(name, value)
        store = S3Storage(server.bucket, "fault", server.endpoint)
        planned, step = _planned_json_step(tmp_path / "submit")
        field = staging.pin_inputs(store, planned)[staging.FIELD]  # type: ignore[arg-type]
        files = staging.from_field(field, store, staging.WorkerCache(tmp_path / "worker", 10**9))

        def body_then_store_stops(options, outputs, progress):  # type: ignore[no-untyped-def]
            outcome = ifc2json.body(options, outputs, progress)
            server.stop()  # the output is written; now the store goes away before it is uploaded
            return outcome

        with pytest.raises(StepError, match=r"output json could not be stored: uploading to s3://ifcflow-test/"
                                            r"fault/runs/.*/json/model\.json failed"):
            execute(body_then_store_stops, step, planned.run_id, files=files)  # type: ignore[arg-type]
        server.start()
        assert store.list(f"runs/{planned.run_id}") == []  # nothing partial listed
        result = execute(ifc2json.body, step, planned.run_id, files=files)  # type: ignore[arg-type]
        assert result["success"] and result["outputs"] == {"json": step.outputs["json"]}  # type: ignore[attr-defined]
        assert store.list(f"runs/{planned.run_id}") == [f"runs/{planned.run_id}/json/model.json"]
        assert not list((tmp_path / "worker" / "steps").iterdir())  # the worker's step folders are removed
    finally:
        server.stop()


@pytest.mark.parametrize("command", ["worker", "serve"])
def test_unreachable_store_is_one_line_at_start(command: str, tmp_path: Path) -> None:
    env = {**os.environ, "IFCFLOW_S3_ENDPOINT": f"http://127.0.0.1:{free_port()}", "AWS_ACCESS_KEY_ID": "k",
           "AWS_SECRET_ACCESS_KEY": "s", "IFCFLOW_REDIS_URL": "redis://127.0.0.1:1/0"}
    done = subprocess.run([sys.executable, "-m", "ifcflow", command, "--storage", "s3://nowhere/x"], env=env,
                          cwd=tmp_path, check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "reaching s3://nowhere/x failed" in lines[0] and "IFCFLOW_S3_ENDPOINT" in lines[0]


def test_wrong_credentials_are_one_line_at_start(s3_server: SeaweedS3, tmp_path: Path) -> None:
    env = {**os.environ, **s3_server.env(), "AWS_SECRET_ACCESS_KEY": "wrong", "IFCFLOW_REDIS_URL": "redis://127.0.0.1:1/0"}
    done = subprocess.run([sys.executable, "-m", "ifcflow", "worker"], env=env, cwd=tmp_path, check=False, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "reaching s3://ifcflow-test/t failed: 403" in done.stderr


def test_pins_record_sha256_and_version(s3_env: dict[str, str], tmp_path: Path) -> None:
    store = configured()
    planned, _ = _planned_json_step(tmp_path)
    field = json.loads(staging.pin_inputs(store, planned)[staging.FIELD])  # type: ignore[arg-type]
    (pin,) = field["pins"].values()
    assert pin["sha256"] == staging.sha256_file(tmp_path / "models" / "arch.ifc") and pin["version_id"]
    assert pin["key"] == f"inputs/{pin['sha256']}/arch.ifc"
    puts = store.requests["put"]  # type: ignore[attr-defined]
    staging.pin_inputs(store, planned)  # the same sha256 is stored already: not uploaded again
    assert store.requests["put"] == puts  # type: ignore[attr-defined]


def test_a_reupload_does_not_change_a_pinned_run(s3_env: dict[str, str], tmp_path: Path) -> None:
    store = configured()
    planned, step = _planned_json_step(tmp_path)
    model = tmp_path / "models" / "arch.ifc"
    uploaded = store.put(model, "uploads/arch.ifc")  # as an HTTP upload stores it
    field = staging.pin_inputs(store, planned, keys={str(model): "uploads/arch.ifc"})[staging.FIELD]  # type: ignore[arg-type]
    changed = tmp_path / "changed.ifc"
    changed.write_bytes(model.read_bytes().replace(b"FILE_DESCRIPTION", b"FILE_DESCRIPTION ", 1))
    store.put(changed, "uploads/arch.ifc")  # a re-upload while the run waits or is retried
    files = staging.from_field(field, store, staging.WorkerCache(tmp_path / "worker", 10**9))
    local = files.localize(step, tmp_path / "step")  # type: ignore[arg-type]
    assert Path(local.options["ifc"]).read_bytes() == model.read_bytes()
    assert json.loads(field)["pins"][str(model)]["version_id"] == uploaded.version_id


def test_cache_serves_a_step_from_stored_objects(s3_env: dict[str, str], conn: object, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs of one step through RQ with S3 storage: the second is cached; its output is a server-side copy
    of the first's object, not a new computation."""
    from ifcflow.engine import enqueue, status
    from tests.conftest import work

    monkeypatch.setenv("IFCFLOW_CACHE", "on")
    monkeypatch.setenv(staging.CACHE_ENV, str(tmp_path / "worker"))
    store = configured()
    runs = []
    for _ in range(2):
        planned, _step = _planned_json_step(tmp_path)
        enqueue.submit(conn, planned, record=staging.pin_inputs(store, planned))  # type: ignore[arg-type]
        work(conn)  # type: ignore[arg-type]
        runs.append(status.read(conn, planned.run_id))  # type: ignore[arg-type]
    first, second = runs
    assert first.status == "succeeded" and second.status == "succeeded"
    assert second.steps["json"].status == "cached"
    keys = [f"runs/{r.run_id}/json/model.json" for r in runs]
    heads = [store.head(k) for k in keys]
    assert heads[0] is not None and heads[1] is not None and heads[0].sha256 == heads[1].sha256
    assert not (tmp_path / "runs").exists()  # nothing written at the plan's paths: only in the store


def test_ifcflow_run_with_a_private_redis_and_s3(s3_env: dict[str, str], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`ifcflow run --storage s3://...` without a Redis: its local workers use the store too; --out brings the
    outputs home."""
    _planned_json_step(tmp_path)
    storage = s3_env.pop("IFCFLOW_STORAGE")
    monkeypatch.delenv("IFCFLOW_STORAGE")
    monkeypatch.delenv("IFCFLOW_REDIS_URL", raising=False)
    monkeypatch.setenv(staging.CACHE_ENV, str(tmp_path / "worker"))
    done = subprocess.run([sys.executable, "-m", "ifcflow", "run", "p.yaml", "--storage", storage, "--out", "home",
                           "--json"], cwd=tmp_path, check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = json.loads(done.stdout)["run_id"]
    output = tmp_path / "home" / run_id / "json" / "model.json"
    assert json.loads(output.read_text())  # downloaded, whole
    assert list((tmp_path / "worker" / "objects").iterdir())  # the local worker fetched through its cache
    listed = configured(storage).list(f"runs/{run_id}")
    assert listed == [f"runs/{run_id}/json/model.json"]


def test_presigned_download_links(s3_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A presigned GET works without credentials; with IFCFLOW_S3_PUBLIC_ENDPOINT it is signed for that host."""
    import urllib.request

    store = configured()
    assert isinstance(store, S3Storage)
    source = tmp_path / "a.glb"
    source.write_bytes(b"glTF" + os.urandom(1000))
    store.put(source, "output/converted/a.glb")
    url = store.presign("output/converted/a.glb", expires=60)
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.read() == source.read_bytes()
    monkeypatch.setenv("IFCFLOW_S3_PUBLIC_ENDPOINT", s3_env["IFCFLOW_S3_ENDPOINT"].replace("127.0.0.1", "localhost"))
    public = store.presign("output/converted/a.glb", expires=60)
    assert public.startswith(s3_env["IFCFLOW_S3_ENDPOINT"].replace("127.0.0.1", "localhost") + "/")
    with urllib.request.urlopen(public, timeout=10) as answer:  # the signature covers the public host
        assert answer.read() == source.read_bytes()


def test_keys_of_plan_paths(tmp_path: Path) -> None:
    files = staging.RunFiles(LocalStorage(tmp_path), "/data/output/runs/r1", {"/data/uploads/a.ifc": {
        "key": "uploads/a.ifc", "sha256": "0" * 64, "version_id": "v1"}}, staging.WorkerCache(tmp_path, 1), "/data")
    assert files.key_of("/data/uploads/a.ifc") == ("uploads/a.ifc", "0" * 64, "v1")
    assert files.key_of("/data/output/runs/r1/glb/m.glb")[0] == "runs/r1/glb/m.glb"
    assert files.key_of("/data/output/converted/m.glb")[0] == "output/converted/m.glb"  # the original's keys
    with pytest.raises(StorageError, match="neither an input pinned at submit nor inside the run folder"):
        files.key_of("/elsewhere/m.glb")
    with pytest.raises(UnsafeKey):
        files.key_of("/data/output/../../etc/passwd")


def test_a_missing_bucket_is_one_line_at_start(s3_server: SeaweedS3, tmp_path: Path) -> None:
    env = {**os.environ, **s3_server.env(), "IFCFLOW_REDIS_URL": "redis://127.0.0.1:1/0"}
    done = subprocess.run([sys.executable, "-m", "ifcflow", "worker", "--storage", "s3://no-such-bucket/x"], env=env,
                          cwd=tmp_path, check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "bucket 'no-such-bucket' does not exist" in done.stderr


def test_a_batch_with_s3(s3_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`ifcflow run --each` with a remote store: every sub-run is pinned and
    runs on the store, and --out brings every sub-run's outputs home."""
    _planned_json_step(tmp_path)
    (tmp_path / "copies").mkdir()
    for name in ("one", "two"):
        (tmp_path / "copies" / f"{name}.ifc").write_bytes((tmp_path / "models" / "arch.ifc").read_bytes())
    storage = s3_env.pop("IFCFLOW_STORAGE")
    monkeypatch.delenv("IFCFLOW_STORAGE")
    monkeypatch.delenv("IFCFLOW_REDIS_URL", raising=False)
    monkeypatch.setenv(staging.CACHE_ENV, str(tmp_path / "worker"))
    done = subprocess.run([sys.executable, "-m", "ifcflow", "run", "p.yaml", "--each", "model=copies/*.ifc",
                           "--storage", storage, "--out", "home", "--json", "--workers", "1"], cwd=tmp_path,
                          check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(done.stdout)
    runs = [run["run_id"] for run in document["runs"]]
    assert len(runs) == 2
    for run_id in runs:
        assert json.loads((tmp_path / "home" / document["batch_id"] / run_id / "json" / "model.json").read_text())
    stored_inputs = configured(storage).list("inputs")
    assert len(stored_inputs) == 2  # same contents, two names: inputs/<sha256>/one.ifc and .../two.ifc
    assert len(list((tmp_path / "worker" / "objects").iterdir())) == 1  # one worker, one download of that sha256


def test_scheduled_fires_honour_the_store(s3_env: dict[str, str], conn: object, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A schedule fired by a scheduler with IFCFLOW_STORAGE=s3://... pins its run's inputs; the run's output is
    stored, not written at the plan's path."""
    from ifcflow.batches import schedule
    from ifcflow.engine import status
    from tests.conftest import work

    monkeypatch.setenv(staging.CACHE_ENV, str(tmp_path / "worker"))
    _planned_json_step(tmp_path)
    spec = schedule.ScheduleSpec(name="nightly", pipeline=str(tmp_path / "p.yaml"), cron="0 2 * * *",
                                 out=str(tmp_path / "runs"))
    schedule.add(conn, spec)  # type: ignore[arg-type]
    fired = schedule.fire(conn, schedule.get(conn, "nightly"), 0.0)  # type: ignore[arg-type]
    assert fired.outcome == "started", fired
    work(conn)  # type: ignore[arg-type]
    assert status.read(conn, fired.id).status == "succeeded"  # type: ignore[arg-type]
    assert configured().list(f"runs/{fired.id}") == [f"runs/{fired.id}/json/model.json"]
    assert not (tmp_path / "runs" / fired.id / "json").exists()


def test_a_worker_without_object_storage_never_imports_boto3() -> None:
    """boto3 and botocore cost every worker ~0.2 s of CPU at start; they are imported only to reach a store."""
    probe = ("import sys; import ifcflow.operations.worker, ifcflow.operations.localworker, workers.runtime, "
             "workers.dispatch, ifcflow.engine.staging, ifcflow.engine.storage as s; "
             "s.configured(); print(sorted({m.split('.')[0] for m in sys.modules} & {'boto3', 'botocore'}))")
    env = {k: v for k, v in os.environ.items() if k != "IFCFLOW_STORAGE"}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True,
                         cwd=Path(__file__).parent.parent)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
