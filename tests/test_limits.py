"""The caps of issue 15 item 5: steps per pipeline (``IFCFLOW_MAX_STEPS``), request body size
(``IFCFLOW_MAX_BODY``) and runs per batch (``IFCFLOW_MAX_BATCH_RUNS``), over HTTP (a real ``ifcflow serve``) and on
the CLI; and the review's 1,500-step ``if: failure()`` chain over HTTP, in linear Redis memory."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis

from ifcflow.engine import rqstore, store
from ifcflow.errors import PipelineError
from ifcflow.pipeline import document
from ifcflow.standalone.embedded import EmbeddedRedis

from .apiserver import ApiServer
from .factories import tiny_model
from .test_scale import failure_chain


def test_steps_over_the_cap_are_refused_before_any_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = "version: 1\nname: big\nsteps:\n" + "".join(
        f"  s{i}: {{uses: ifcpatch, with: {{ifc: nowhere.ifc, recipe: Optimise}}}}\n" for i in range(1001))
    with pytest.raises(PipelineError) as caught:
        document.parse(text, tmp_path / "big.yaml")
    assert len(caught.value.problems) == 1  # the missing model is not even looked at
    message = str(caught.value.problems[0])
    assert "1,001 steps; at most 1,000 are allowed (IFCFLOW_MAX_STEPS)" in message and "big.yaml:3:1" in message
    monkeypatch.setenv("IFCFLOW_MAX_STEPS", "1001")
    with pytest.raises(PipelineError) as caught:
        document.parse(text, tmp_path / "big.yaml")
    assert "nowhere.ifc" in str(caught.value) and "IFCFLOW_MAX_STEPS" not in str(caught.value)


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ifcflow", *args], capture_output=True, text=True, timeout=120,
                          check=False,
                          env={**os.environ, **env})


def test_the_cli_says_the_cap_and_its_setting_and_exits_2(tmp_path: Path) -> None:
    tiny_model(tmp_path / "tiny.ifc", walls=1)
    (tmp_path / "p.yaml").write_text(failure_chain(6))
    refused = cli("validate", str(tmp_path / "p.yaml"), env={"IFCFLOW_MAX_STEPS": "5"})
    assert refused.returncode == 2
    assert "the pipeline has 6 steps; at most 5 are allowed (IFCFLOW_MAX_STEPS)" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert cli("validate", str(tmp_path / "p.yaml"), env={"IFCFLOW_MAX_STEPS": "6"}).returncode == 0
    bad = cli("validate", str(tmp_path / "p.yaml"), env={"IFCFLOW_MAX_STEPS": "many"})
    assert bad.returncode == 2 and "IFCFLOW_MAX_STEPS='many' is not a number of steps" in bad.stderr


MAX_BODY = 400_000


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, Redis, Path]]:
    """A server with steps capped at 1,600, bodies at 400 kB and batches at 10 runs; no workers (nothing runs)."""
    data = tmp_path_factory.mktemp("limits") / "data"
    tiny_model(data / "uploads" / "tiny.ifc", walls=1)
    settings = {"IFCFLOW_MAX_STEPS": "1600", "IFCFLOW_MAX_BODY": str(MAX_BODY), "IFCFLOW_MAX_BATCH_RUNS": "10"}
    with EmbeddedRedis() as server, ApiServer(server.url, data, settings, workers=0) as api, \
            httpx.Client(base_url=api.url, timeout=60) as client:
        yield client, Redis.from_url(server.url), data


def test_a_1500_step_failure_chain_over_http_costs_linear_redis_memory(
        served: tuple[httpx.Client, Redis, Path]) -> None:
    """The review's case: 157 kB, 1,500 steps; Redis grew from 2 MB to 264 MB (and the API spent 50 s)."""
    client, redis, _ = served
    before = redis.info("memory")["used_memory"]
    answer = client.post("/runs", json={"pipeline": failure_chain(1500)})
    assert answer.status_code == 202, answer.text
    grown = redis.info("memory")["used_memory"] - before
    assert grown < 25_000_000, f"Redis grew by {grown:,} bytes for 1,500 steps"
    run_id = answer.json()["run_id"]
    deps = [int(redis.scard(rqstore.dependencies_key(f"{run_id}-s{i}"))) for i in range(1500)]
    assert max(deps) == 2 and sum(deps) == 1 + 1 + 2 * 1498  # gate; s0; each held step: its need + the hold


def test_steps_over_the_servers_cap_are_a_422_naming_the_setting(served: tuple[httpx.Client, Redis, Path]) -> None:
    client, redis, _ = served
    runs = redis.zcard(store.RUNS)
    answer = client.post("/runs", json={"pipeline": failure_chain(1601)})
    assert answer.status_code == 422, answer.text
    message = answer.json()["detail"][0]["msg"]
    assert "1,601 steps; at most 1,600 are allowed (IFCFLOW_MAX_STEPS)" in message
    assert redis.zcard(store.RUNS) == runs  # nothing enqueued


def test_a_body_over_the_limit_is_a_413_with_the_limit(served: tuple[httpx.Client, Redis, Path]) -> None:
    client, redis, _ = served
    runs = redis.zcard(store.RUNS)
    big = {"pipeline": failure_chain(1500) + "#" * MAX_BODY}
    answer = client.post("/runs", json=big)
    assert answer.status_code == 413, answer.text
    assert "the limit is 400,000 bytes (IFCFLOW_MAX_BODY)" in answer.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"pipeline": "'
        for _ in range(10):
            yield b"x" * 50_000
        yield b'"}'

    answer = client.post("/runs", content=chunks(), headers={"content-type": "application/json"})
    assert answer.status_code == 413, answer.text
    assert "IFCFLOW_MAX_BODY" in answer.json()["detail"]
    assert redis.zcard(store.RUNS) == runs  # nothing enqueued


def test_uploads_keep_their_own_limit(served: tuple[httpx.Client, Redis, Path]) -> None:
    client, _, _ = served
    answer = client.post("/upload/ifc", files={"file": ("big.ifc", b"ISO-10303-21;\n" + b" " * (MAX_BODY + 10))})
    assert answer.status_code != 413, answer.text


def test_batch_max_runs_over_the_servers_cap_is_a_422(served: tuple[httpx.Client, Redis, Path]) -> None:
    client, redis, _ = served
    runs = redis.zcard(store.RUNS)
    pipeline = "version: 1\nname: b\ninputs: {m: tiny.ifc}\nfor_each: [m]\nsteps:\n" \
               "  a: {uses: ifcpatch, with: {ifc: '${{ inputs.m }}', recipe: Optimise}}\n"
    answer = client.post("/batches", json={"pipeline": pipeline, "each": {"m": "tiny*.ifc"}, "max_runs": 100_000})
    assert answer.status_code == 422, answer.text
    message = answer.json()["detail"][0]["msg"]
    assert "max_runs is 100,000; this server allows at most 10 runs per batch (IFCFLOW_MAX_BATCH_RUNS)" in message
    assert redis.zcard(store.RUNS) == runs  # nothing enqueued
    within = client.post("/batches", json={"pipeline": pipeline, "each": {"m": "tiny*.ifc"}, "max_runs": 10})
    assert within.status_code == 202, within.text
    default = client.post("/batches", json={"pipeline": pipeline, "each": {"m": "tiny*.ifc"}})
    assert default.status_code == 202, default.text
