"""Batches and schedules over HTTP, against the real server, redis-server and worker processes of test_api.py's
``env`` fixture: a batch over three uploaded models with live events, hostile globs, schedules and their keys."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from ifcflow.standalone.embedded import EmbeddedRedis
from tests.apiserver import ApiServer, stream_events
from tests.factories import tiny_model
from tests.test_api import KEY, TWO_STEPS, Env, env, upload  # noqa: F401  (env: the module's server fixture)

BATCHES = "ifcflow:batches"


def enqueued(env: Env) -> tuple[frozenset[bytes], frozenset[bytes], frozenset[bytes]]:
    """Job hashes, batches and runs on the server (sets: earlier tests' runs may be compacted meanwhile)."""
    jobs = frozenset(k for k in env.redis.scan_iter("rq:job:*") if k.count(b":") == 2)
    return (jobs, frozenset(env.redis.zrange(BATCHES, 0, -1)),  # type: ignore[arg-type]
            frozenset(env.redis.zrange("ifcflow:runs", 0, -1)))  # type: ignore[arg-type]


def nothing_new(env: Env, before: tuple[frozenset[bytes], ...]) -> bool:
    return all(not (now - then) for now, then in zip(enqueued(env), before))


def test_batch_over_three_uploads_runs_to_success_with_rows_and_end_event(env: Env) -> None:
    for name, as_name in (("walls.ifc", None), ("walls2.ifc", None), ("walls.ifc", "walls3.ifc")):
        upload(env, name, as_name=as_name)
    started = env.client.post("/batches", json={"file": "two.yaml", "each": {"model": "walls*.ifc"}})
    assert started.status_code == 202, started.text
    answer = started.json()
    batch_id = answer["batch_id"]
    assert set(answer["runs"]) == {"walls.ifc", "walls2.ifc", "walls3.ifc"}
    assert answer["status_url"] == f"/batches/{batch_id}" and answer["events_url"] == f"/batches/{batch_id}/events"

    seen = stream_events(env.client, answer["events_url"])
    names = [name for name, _ in seen]
    assert names[-1] == "end" and names.count("end") == 1 and "status" in names
    assert len({doc["counts"]["succeeded"] for name, doc in seen if name == "status"}) >= 2  # seen change
    final = seen[-1][1]
    assert final["status"] == "succeeded" and final["counts"]["succeeded"] == 3
    doc = env.client.get(f"/batches/{batch_id}").json()
    assert doc["status"] == "succeeded" and doc["batch_id"] == batch_id
    rows = {os.path.basename(r["label"]): r for r in doc["runs"]}
    assert set(rows) == {"walls.ifc", "walls2.ifc", "walls3.ifc"}
    for file, row in rows.items():
        assert row["run_id"] == answer["runs"][file]
        assert row["status"] == "succeeded" and row["failed_step"] is None and row["duration"] > 0
        assert row["steps"] == {"patch": "succeeded", "json": "succeeded"}
        assert env.client.get(f"/runs/{row['run_id']}").json()["status"] == "succeeded"
    json_out = env.client.get(f"/runs/{answer['runs']['walls2.ifc']}/outputs/json/json")
    assert json_out.status_code == 200 and json_out.json()

    listed = env.client.get("/batches", params={"limit": 5}).json()
    assert listed["batches"][0]["batch_id"] == batch_id and listed["batches"][0]["runs"] == 3
    assert listed["total"] >= 1 and listed["limit"] == 5
    junit = env.client.get(f"/batches/{batch_id}/report", params={"format": "junit"})
    assert junit.status_code == 200 and junit.headers["content-type"].startswith("application/xml")
    assert junit.text.count("<testsuite ") == 3 and 'failures="0"' in junit.text
    markdown = env.client.get(f"/batches/{batch_id}/report", params={"format": "markdown"}).text
    assert all(f in markdown for f in ("walls.ifc", "walls2.ifc", "walls3.ifc")) and "succeeded" in markdown
    assert "<table>" in env.client.get(f"/batches/{batch_id}/report", params={"format": "html"}).text
    assert env.client.get(f"/batches/{batch_id}/report", params={"format": "pdf"}).status_code == 422
    assert env.client.post(f"/batches/{batch_id}/retry").status_code == 409  # nothing failed
    assert env.client.post(f"/batches/{batch_id}/cancel").json() == {"batch_id": batch_id, "canceled": []}
    for path in ("/batches/nope", "/batches/nope/report", "/batches/nope/events"):
        assert env.client.get(path).status_code == 404, path
    assert env.client.post("/batches/nope/cancel").status_code == 404


def test_failed_file_is_retried_alone(env: Env) -> None:
    """A broken model fails its own row only; retry re-runs that file (its failing steps) and nothing else."""
    upload(env, "tiny.ifc", as_name="mixa.ifc")
    text = (env.data / "uploads" / "mixa.ifc").read_text()
    (env.data / "uploads" / "mixb.ifc").write_text(  # a complete file without a project: patch fails
        text[:text.index("DATA;")] + "DATA;\nENDSEC;\nEND-ISO-10303-21;\n")
    started = env.client.post("/batches", json={"pipeline": TWO_STEPS, "each": {"model": "mix*.ifc"}})
    assert started.status_code == 202, started.text
    batch_id, runs = started.json()["batch_id"], started.json()["runs"]
    final = stream_events(env.client, f"/batches/{batch_id}/events")[-1][1]
    assert final["status"] == "failed"
    rows = {os.path.basename(r["label"]): r for r in final["runs"]}
    assert rows["mixa.ifc"]["status"] == "succeeded"
    assert rows["mixb.ifc"]["status"] == "failed" and rows["mixb.ifc"]["failed_step"] == "patch"
    assert rows["mixb.ifc"]["error"]
    retried = env.client.post(f"/batches/{batch_id}/retry")
    assert retried.status_code == 200, retried.text
    assert retried.json()["runs"] == {runs["mixb.ifc"]: ["patch", "json"]}


HOSTILE_GLOBS = ["../*.ifc", "../../../../etc/*", "/etc/*", "/uploads/../../*.ifc", "a\x00*.ifc", "%2e%2e%2f*.ifc",
                 "..\\*.ifc", "sub/../../*.ifc", "**/../../*.ifc", "linkdir/*.ifc", "evil*.ifc", "C:\\*.ifc"]


@pytest.fixture()
def outside(env: Env) -> Path:
    """A folder beside the data folder with a model, reachable from uploads/ through two symlinks."""
    folder = env.data.parent / "outside"
    folder.mkdir(exist_ok=True)
    (folder / "secret.ifc").write_bytes((env.models / "tiny.ifc").read_bytes())
    for link, target in (("linkdir", folder), ("evil.ifc", folder / "secret.ifc")):
        if not (env.data / "uploads" / link).is_symlink():
            (env.data / "uploads" / link).symlink_to(target)
    return folder


def test_hostile_globs_bad_pipelines_and_empty_globs_enqueue_nothing(env: Env, outside: Path) -> None:
    upload(env, "tiny.ifc")
    before, folders = enqueued(env), set((env.data / "output" / "runs").iterdir())
    for glob in HOSTILE_GLOBS:
        answer = env.client.post("/batches", json={"file": "two.yaml", "each": {"model": glob}})
        assert answer.status_code in (400, 422), (glob, answer.status_code, answer.text)
        assert "detail" in answer.json()
    for_each = TWO_STEPS.replace("inputs: {model: tiny.ifc}",
                                 "inputs: {model: '../../outside/*.ifc'}\nfor_each: [model]")
    assert env.client.post("/batches", json={"pipeline": for_each}).status_code == 400
    reading_outside = TWO_STEPS.replace('"${{ steps.patch.outputs.model }}"', f"{outside / 'secret.ifc'}")
    answer = env.client.post("/batches", json={"pipeline": reading_outside, "each": {"model": "tiny.ifc"}})
    assert answer.status_code == 400 and "outside the data folder" in answer.text

    empty = env.client.post("/batches", json={"file": "two.yaml", "each": {"model": "nothing/**/*.ifc"}})
    assert empty.status_code == 422 and "'nothing/**/*.ifc' matches no file" in empty.text
    broken = env.client.post("/batches", json={"pipeline": TWO_STEPS.replace("uses: ifc2json", "uses: ifc2jsn"),
                                               "each": {"model": "tiny.ifc"}})
    assert broken.status_code == 422
    assert "ifc2jsn" in broken.text
    assert all(isinstance(d["loc"][2], int) and isinstance(d["loc"][3], int) for d in broken.json()["detail"])
    undeclared = env.client.post("/batches", json={"file": "two.yaml", "each": {"nope": "*.ifc"}})
    assert undeclared.status_code == 422 and "nope" in undeclared.text
    for index in range(3):
        upload(env, "tiny.ifc", as_name=f"many{index}.ifc")
    too_many = env.client.post("/batches", json={"file": "two.yaml", "each": {"model": "many*.ifc"}, "max_runs": 2})
    assert too_many.status_code == 422 and "max_runs 2" in too_many.text
    assert env.client.post("/batches", json={"file": "two.yaml"}).status_code == 422  # neither each nor for_each
    assert nothing_new(env, before)
    assert set((env.data / "output" / "runs").iterdir()) == folders  # no folder of a refused batch
    control = env.client.post("/batches", json={"file": "two.yaml", "each": {"model": "tiny.ifc"}})
    assert control.status_code == 202, control.text  # the same request with a plain glob passes
    stream_events(env.client, control.json()["events_url"])


def test_schedules_crud_and_fire_now_produces_a_run(env: Env) -> None:
    upload(env, "tiny.ifc")
    body = {"name": "nightly", "file": "two.yaml", "cron": "0 2 * * *", "inputs": {"model": "tiny.ifc"}}
    added = env.client.post("/schedules", json=body)
    assert added.status_code == 201, added.text
    assert added.json()["next_fire"] and added.json()["last"] is None and added.json()["overlap"] == "skip"
    assert env.client.post("/schedules", json=body).status_code == 409
    assert [s["name"] for s in env.client.get("/schedules").json()] == ["nightly"]

    fired = env.client.post("/schedules/nightly/run")
    assert fired.status_code == 200, fired.text
    fire = fired.json()
    assert fire["outcome"] == "started" and fire["kind"] == "run"
    assert stream_events(env.client, f"/runs/{fire['id']}/events")[-1][1]["status"] == "succeeded"
    info = env.client.get("/schedules/nightly").json()
    assert info["last"]["id"] == fire["id"] and info["last"]["state"] == "succeeded"
    assert [f["id"] for f in env.client.get("/schedules/nightly/history").json()] == [fire["id"]]

    upload(env, "tiny.ifc", as_name="sched1.ifc")
    each = env.client.post("/schedules", json={**body, "name": "each", "each": {"model": "sched*.ifc"}})
    assert each.status_code == 201, each.text
    fired_batch = env.client.post("/schedules/each/run").json()
    assert fired_batch["outcome"] == "started" and fired_batch["kind"] == "batch"
    final = stream_events(env.client, f"/batches/{fired_batch['id']}/events")[-1][1]
    assert final["status"] == "succeeded" and [os.path.basename(r["label"]) for r in final["runs"]] == ["sched1.ifc"]
    assert env.client.delete("/schedules/each").status_code == 204

    empty = {**body, "name": "empty", "each": {"model": "nomatch*.ifc"}}
    assert env.client.post("/schedules", json=empty).status_code == 201
    failed = env.client.post("/schedules/empty/run").json()
    assert failed["outcome"] == "failed" and "nomatch" in failed["reason"]

    assert env.client.delete("/schedules/nightly").status_code == 204
    assert env.client.get("/schedules/nightly").status_code == 404
    assert env.client.delete("/schedules/nightly").status_code == 404
    assert env.client.post("/schedules/nightly/run").status_code == 404
    assert env.client.delete("/schedules/empty").status_code == 204


@pytest.mark.parametrize(("change", "code"), [
    ({"cron": "every night"}, 422), ({"cron": "0 0 30 2 *"}, 422), ({"cron": "*/20 * * * * *"}, 422),
    ({"name": "two words"}, 422),
    ({"webhook": "http://10.0.0.1/hook"}, 422), ({"webhook": "file:///etc/passwd"}, 422),
    ({"file": "../two.yaml"}, 400), ({"file": "missing.yaml"}, 404), ({"inputs": {"model": "../x.ifc"}}, 400),
    ({"each": {"model": "../*.ifc"}}, 400), ({"each": {"model": "linkdir/*.ifc"}}, 400), ({"overlap": "maybe"}, 422),
])
def test_bad_schedules_are_refused_and_not_stored(env: Env, outside: Path, change: dict[str, Any], code: int) -> None:
    answer = env.client.post("/schedules", json={"name": "bad", "file": "two.yaml", "cron": "0 2 * * *", **change})
    assert answer.status_code == code, answer.text
    assert env.client.get("/schedules/bad").status_code == 404


def test_costly_and_symlinked_globs_are_refused_or_bounded(env: Env, outside: Path) -> None:
    deep = env.data / "uploads" / "deep" / "a" / "b" / "c" / "d" / "e" / "f"
    deep.mkdir(parents=True, exist_ok=True)
    (deep / "one.ifc").write_bytes((env.models / "tiny.ifc").read_bytes())
    etcdir = env.data / "uploads" / "deep" / "etcdir"
    if not etcdir.is_symlink():
        etcdir.symlink_to(outside)
    before = enqueued(env)
    three = env.client.post("/batches", json={"file": "two.yaml", "each": {"model": "deep/**/b/**/d/**/*.ifc"}})
    assert three.status_code == 422, three.text
    assert "each.model: the glob has 3 '**' segments; at most 2 are allowed" in three.text
    schedule = env.client.post("/schedules", json={"name": "stars", "file": "two.yaml", "cron": "0 2 * * *",
                                                   "each": {"model": "deep/**/b/**/d/**/*.ifc"}})
    assert schedule.status_code == 422 and "at most 2 are allowed" in schedule.text
    linked = env.client.post("/batches", json={"file": "two.yaml", "each": {"model": "deep/*/secret.ifc"}})
    assert linked.status_code == 422 and "matches no file" in linked.text  # etcdir/ is not walked
    assert "outside" not in linked.text and str(env.data.parent) not in linked.text
    assert nothing_new(env, before)
    repeated = env.client.post("/batches", json={"file": "two.yaml", "max_runs": 1,
                                                 "each": {"model": "deep/" + "**/" * 20 + "one.ifc"}})
    assert repeated.status_code == 202, repeated.text  # one file, one run (was 4,368 "runs", refused)
    final = stream_events(env.client, repeated.json()["events_url"])[-1][1]
    assert [os.path.basename(r["label"]) for r in final["runs"]] == ["one.ifc"]


def test_batch_progresses_with_plain_rq_workers(tmp_path: Path) -> None:
    """Plain ``rq worker``s do not release a batch's next sub-runs (``ifcflow worker``s do): the server does, so a
    batch of 3 files (a window of 2) ends. Before the server drove its batches, the third file never started."""
    data, pipelines = tmp_path / "data", tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "two.yaml").write_text(TWO_STEPS)
    (data / "uploads").mkdir(parents=True)
    for index in range(3):
        tiny_model(data / "uploads" / f"m{index}.ifc")
    settings = {"IFCFLOW_API_KEYS": KEY, "IFCFLOW_PIPELINES": str(pipelines)}
    with EmbeddedRedis() as server, ApiServer(server.url, data, settings, workers=0) as api:
        api.spawn([sys.executable, "-m", "rq.cli", "worker", "default", "ifc2json", "--url", server.url, "--quiet"])
        client = httpx.Client(base_url=api.url, headers={"X-API-Key": KEY}, timeout=30)
        started = client.post("/batches", json={"file": "two.yaml", "each": {"model": "m*.ifc"}})
        assert started.status_code == 202, started.text
        batch_id = started.json()["batch_id"]
        assert client.get(f"/batches/{batch_id}").json()["released"] == 2
        deadline = time.monotonic() + 45  # polled: a stalled batch's event stream would wait forever
        while (final := client.get(f"/batches/{batch_id}").json())["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, final
            time.sleep(0.2)
        assert final["status"] == "succeeded" and final["counts"]["succeeded"] == 3 and final["released"] == 3


def test_an_offset_beyond_redis_integers_is_a_422_not_a_503(env: Env) -> None:
    """Found by schemathesis: ZREVRANGE refuses indexes beyond 64 bits, which read as 'Redis is unavailable'."""
    for path in ("/batches", "/runs"):
        answer = env.client.get(path, params={"offset": 10**30})
        assert answer.status_code == 422, (path, answer.text)
        assert env.client.get(path, params={"offset": 10**6}).status_code == 200


ENDPOINTS = [("POST", "/batches"), ("GET", "/batches"), ("GET", "/batches/x"), ("POST", "/batches/x/cancel"),
             ("POST", "/batches/x/retry"), ("GET", "/batches/x/report"), ("GET", "/batches/x/events"),
             ("GET", "/schedules"), ("POST", "/schedules"), ("GET", "/schedules/x"), ("DELETE", "/schedules/x"),
             ("POST", "/schedules/x/run"), ("GET", "/schedules/x/history")]


def test_every_batch_and_schedule_endpoint_needs_a_key(env: Env) -> None:
    before = enqueued(env)
    body = {"file": "two.yaml", "each": {"model": "tiny.ifc"}, "name": "x", "cron": "* * * * *"}
    for method, path in ENDPOINTS:
        for headers, code in (({}, 401), ({"X-API-Key": KEY + "-wrong"}, 403)):
            answer = httpx.request(method, f"{env.api.url}{path}", headers=headers,
                                   json=body if method == "POST" else None)
            assert answer.status_code == code, (method, path, answer.text)
    assert nothing_new(env, before)
    assert env.client.get("/schedules").json() == []
