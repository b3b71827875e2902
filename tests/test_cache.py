"""Skipping unchanged work, on a real redis-server with real RQ workers and real IfcOpenShell steps."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import ifcopenshell
import pytest
from redis import Redis

from ifcflow.engine import cache, enqueue, status
from ifcflow.engine.states import RunState, StepState
from ifcflow.pipeline import document
from ifcflow.pipeline.plan import plan
from ifcflow.views import report
from ifcflow.views.live import table

from .conftest import work
from .factories import tiny_model, write_pipeline

DIAMOND = """\
    version: 1
    name: cached
    inputs: {arch: arch.ifc, names: names.csv}
    steps:
      top: {uses: ifcpatch, with: {ifc: "${{ inputs.arch }}", recipe: Optimise}}
      left: {uses: ifccsv-import, with: {ifc: "${{ steps.top.outputs.model }}", table: "${{ inputs.names }}"}}
      right: {uses: ifccsv, with: {ifc: "${{ steps.top.outputs.model }}", query: IfcWall, attributes: [Name]}}
      bottom:
        uses: ifccsv-import
        with: {ifc: "${{ steps.left.outputs.model }}", table: "${{ steps.right.outputs.table }}", output: bottom.ifc}
    """

EXPORT_IMPORT = """\
    version: 1
    name: reexport
    inputs: {arch: arch.ifc}
    steps:
      export: {uses: ifccsv, CACHE with: {ifc: "${{ inputs.arch }}", query: IfcWall, attributes: [Name]}}
      import: {uses: ifccsv-import, with: {ifc: "${{ inputs.arch }}", table: "${{ steps.export.outputs.table }}"}}
    """


@pytest.fixture(autouse=True)
def cache_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cache.ENV, "on")


def names_csv(model: Path, path: Path, suffix: str) -> Path:
    walls = ifcopenshell.open(str(model)).by_type("IfcWall")
    path.write_text("GlobalId,Name\n" + "".join(f"{w.GlobalId},{w.Name} {suffix}\n" for w in walls))
    return path


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    tiny_model(tmp_path / "arch.ifc", walls=2)
    names_csv(tmp_path / "arch.ifc", tmp_path / "names.csv", "renamed")
    names_csv(tmp_path / "arch.ifc", tmp_path / "names2.csv", "changed")
    return tmp_path


def run(conn: Redis, pipeline: Path, out: Path, inputs: dict[str, str] | None = None,
        use_cache: bool = True) -> status.RunStatus:
    planned = plan(document.load(pipeline, inputs), out_root=out, cache=use_cache)
    enqueue.submit(conn, planned)
    work(conn)
    return status.read(conn, planned.run_id, with_traceback=True)


def states(result: status.RunStatus) -> dict[str, StepState]:
    return {sid: s.status for sid, s in result.steps.items()}


def test_diamond_reruns_exactly_what_is_downstream_of_a_changed_input(conn: Redis, folder: Path) -> None:
    pipeline = write_pipeline(folder, DIAMOND)
    first = run(conn, pipeline, folder / "runs")
    assert set(states(first).values()) == {StepState.SUCCEEDED}, [s.error for s in first.steps.values()]
    second = run(conn, pipeline, folder / "runs")
    assert set(states(second).values()) == {StepState.CACHED} and second.status == RunState.SUCCEEDED
    for step_id, step in second.steps.items():
        assert step.result and step.result["cached_from"]["run_id"] == first.run_id
        for name, path in step.outputs.items():  # hard-linked into the new run's folder
            assert Path(path).read_bytes() == Path(first.steps[step_id].outputs[name]).read_bytes()
            assert os.stat(path).st_ino == os.stat(first.steps[step_id].outputs[name]).st_ino
    third = run(conn, pipeline, folder / "runs", {"names": str(folder / "names2.csv")})
    assert states(third) == {"top": StepState.CACHED, "right": StepState.CACHED,
                             "left": StepState.SUCCEEDED, "bottom": StepState.SUCCEEDED}
    assert "changed" in Path(third.steps["left"].outputs["model"]).read_text()
    # shown as cached, with the run it came from, in the live view and the reports
    assert f"cached from run {first.run_id}" in report.markdown(second)
    assert f"cached from run {first.run_id}" in report.junit(second)
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(table(second))
    text = console.export_text()
    assert "cached" in text and f"cached from run {first.run_id}" in text


def test_byte_identical_outputs_of_a_rerun_step_keep_dependents_cached(conn: Redis, folder: Path) -> None:
    first = run(conn, write_pipeline(folder, EXPORT_IMPORT.replace("CACHE ", "")), folder / "runs")
    assert set(states(first).values()) == {StepState.SUCCEEDED}
    # the export runs again (cache: false) and writes the same bytes: the import is served from the cache
    again = run(conn, write_pipeline(folder, EXPORT_IMPORT.replace("CACHE ", "cache: false, "), "p2.yaml"),
                folder / "runs")
    assert states(again) == {"export": StepState.SUCCEEDED, "import": StepState.CACHED}
    # without the cache everything runs
    fresh = run(conn, write_pipeline(folder, EXPORT_IMPORT.replace("CACHE ", "")), folder / "runs", use_cache=False)
    assert set(states(fresh).values()) == {StepState.SUCCEEDED}


def test_changed_or_missing_cached_outputs_are_not_used(conn: Redis, folder: Path) -> None:
    pipeline = write_pipeline(folder, EXPORT_IMPORT.replace("CACHE ", ""))
    first = run(conn, pipeline, folder / "runs")
    table_path = Path(first.steps["export"].outputs["table"])
    table_path.write_text(table_path.read_text() + "tampered\n")  # same file, other bytes
    Path(first.steps["import"].outputs["model"]).unlink()
    second = run(conn, pipeline, folder / "runs")
    assert set(states(second).values()) == {StepState.SUCCEEDED}
    assert "tampered" not in Path(second.steps["export"].outputs["table"]).read_text()
    # the index now points at the second run's outputs
    assert states(run(conn, pipeline, folder / "runs")) == {"export": StepState.CACHED, "import": StepState.CACHED}


def test_worker_switch_turns_the_cache_off(conn: Redis, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = write_pipeline(folder, EXPORT_IMPORT.replace("CACHE ", ""))
    run(conn, pipeline, folder / "runs")
    monkeypatch.setenv(cache.ENV, "off")
    assert set(states(run(conn, pipeline, folder / "runs")).values()) == {StepState.SUCCEEDED}


def test_sha256_in_one_pass(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)
    (tmp_path / "f").write_bytes(data)
    assert cache.sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_digests_are_shared_through_redis_and_a_changed_file_gets_a_new_one(conn: Redis, tmp_path: Path) -> None:
    path = tmp_path / "model.ifc"
    path.write_bytes(b"one" * 100_000)
    time.sleep(0.1)  # timestamps older than one clock tick: the digest may be remembered
    first = cache.sha256(path, conn)
    assert first == hashlib.sha256(path.read_bytes()).hexdigest()
    keys = conn.keys(cache.DIGEST_PREFIX + "*")
    assert len(keys) == 1 and 0 < conn.ttl(keys[0]) <= cache.DIGEST_TTL
    cache._KNOWN.clear()  # another process (the step's work horse): it reads the digest from Redis, not the file
    conn.set(keys[0], "f" * 64, keepttl=True)
    assert cache.sha256(path, conn) == "f" * 64
    path.write_bytes(b"two" * 100_000)  # same size, same path and inode: a new mtime and ctime
    second = cache.sha256(path, conn)
    assert second == hashlib.sha256(b"two" * 100_000).hexdigest() != first
    assert len(conn.keys(cache.DIGEST_PREFIX + "*")) == 1  # just written: not trusted to stay, not remembered
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))  # same mtime, new ctime: a new identity
    time.sleep(0.1)
    assert cache.sha256(path, conn) == second and len(conn.keys(cache.DIGEST_PREFIX + "*")) == 2
    small = tmp_path / "small.ifc"  # under SHARE_MIN: hashed again, quicker than a round trip; never in Redis
    small.write_bytes(b"s" * (cache.SHARE_MIN - 1))
    time.sleep(0.1)
    assert cache.sha256(small, conn) == hashlib.sha256(small.read_bytes()).hexdigest()
    assert len(conn.keys(cache.DIGEST_PREFIX + "*")) == 2


def test_a_batch_shows_its_cached_steps(conn: Redis, folder: Path) -> None:
    from ifcflow.batches import batch, batch_status

    from .test_batch import work as work_batch

    (folder / "models").mkdir()
    for name in ("a.ifc", "b.ifc"):
        tiny_model(folder / "models" / name, walls=2)
    pipeline = write_pipeline(folder, EXPORT_IMPORT.replace("CACHE ", ""))
    first = batch.start(conn, pipeline, each={"arch": str(folder / "models/*.ifc")}, out=folder / "runs")
    work_batch(conn)
    assert {s for r in batch_status.read(conn, first.batch_id).runs for s in r.steps.values()} == {StepState.SUCCEEDED}
    again = batch.start(conn, pipeline, each={"arch": str(folder / "models/*.ifc")}, out=folder / "runs")
    work_batch(conn)
    result = batch_status.read(conn, again.batch_id)
    assert result.status == RunState.SUCCEEDED
    assert {s for r in result.runs for s in r.steps.values()} == {StepState.CACHED}


def test_the_original_job_status_has_a_word_for_every_step_state() -> None:
    from ifcflow.api.jobs import RQ_WORDS

    assert set(RQ_WORDS) == set(StepState) and RQ_WORDS[StepState.CACHED] == "finished"


def test_a_model_named_in_recipe_arguments_is_part_of_the_key(tmp_path: Path) -> None:
    """MergeProjects reads the models in its arguments: changing one must change the key (not a stale hit)."""
    tiny_model(tmp_path / "a.ifc")
    other = tiny_model(tmp_path / "b.ifc")
    pipeline = write_pipeline(tmp_path, f"""
version: 1
name: merge
steps:
  merge: {{uses: ifcpatch, with: {{ifc: a.ifc, recipe: MergeProjects, arguments: [["{other}"]]}}}}
""")
    planned = plan(document.load(pipeline), out_root=tmp_path / "runs").steps[0]
    before = cache.key(planned)
    tiny_model(other, walls=4)
    assert cache.key(planned) != before
