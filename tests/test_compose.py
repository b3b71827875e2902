"""compose.yaml and the Dockerfile, checked without Docker: against the Compose Specification's JSON Schema and
against what the deployment promises (see README "Deploy")."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest
import yaml

from .conftest import ROOT, SHARED

COMPOSE_SCHEMA = SHARED / "schemas" / "compose-spec.json"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())  # resolves YAML merge keys
    return loaded


def data_mounts(service: dict[str, Any]) -> set[str]:
    return {v.split(":")[1] for v in service.get("volumes", []) if v.startswith("ifcflow-data:")}


def test_compose_file_follows_the_compose_specification() -> None:
    if not COMPOSE_SCHEMA.exists():
        pytest.skip(f"{COMPOSE_SCHEMA} is absent: this test needs ../shared next to the checkout")
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose())]
    assert errors == []


def test_compose_schema_check_catches_a_broken_file() -> None:
    if not COMPOSE_SCHEMA.exists():
        pytest.skip(f"{COMPOSE_SCHEMA} is absent: this test needs ../shared next to the checkout")
    broken = compose()
    broken["services"]["worker"]["comand"] = broken["services"]["worker"].pop("command")  # a typo
    broken["services"]["api"]["healthcheck"]["intervall"] = "10s"
    messages = [e.message for e in jsonschema.Draft7Validator(json.loads(COMPOSE_SCHEMA.read_text())).iter_errors(broken)]
    assert len(messages) == 2, messages


def test_compose_services_are_the_deployment_the_readme_describes() -> None:
    services = compose()["services"]
    assert set(services) == {"redis", "s3", "s3-init", "api", "worker", "worker-clash", "dashboard", "scheduler"}
    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert "redis-data:/data" in redis["volumes"] and redis["healthcheck"]["test"][-1] == "ping"

    api = services["api"]
    assert api["command"][:4] == ["ifcflow", "serve", "--host", "0.0.0.0"]
    assert api["environment"]["IFCFLOW_API_KEYS"].startswith("${IFCFLOW_API_KEYS:?")  # required, never defaulted
    assert "/health" in " ".join(api["healthcheck"]["test"])

    assert services["worker"]["command"] == ["ifcflow", "worker"]  # every queue; scaled with --scale worker=N
    assert "container_name" not in services["worker"] and "ports" not in services["worker"]  # so it can scale
    assert services["worker-clash"]["command"] == ["ifcflow", "worker", "ifcclash"]
    assert services["worker-clash"]["profiles"] == ["specialized"]
    assert services["dashboard"]["ports"] == ["9181:9181"] and "9181" in services["dashboard"]["command"]
    assert services["scheduler"]["command"] == ["ifcflow", "scheduler"]

    s3 = services["s3"]
    assert s3["image"].startswith("chrislusf/seaweedfs") and s3["command"][0] == "server" and "-s3" in s3["command"]
    assert "s3-data:/data" in s3["volumes"] and "ports" not in s3  # private: downloads stream through the api
    init = services["s3-init"]
    assert init["restart"] == "no" and "put_bucket_versioning" in init["command"][-1]  # the bucket, versioned
    assert "create_bucket(Bucket=\"ifcflow\")" in init["command"][-1]

    shares = {name: data_mounts(s) for name, s in services.items() if name != "redis"}
    assert shares["api"] == shares["scheduler"] == {"/data"}  # the api's own folder (copies, history database)
    for name in ("worker", "worker-clash", "dashboard"):
        assert not services[name].get("volumes"), name  # workers need only Redis and the bucket
    for name in ("api", "worker", "worker-clash", "scheduler"):
        env = services[name]["environment"]
        assert env["IFCFLOW_STORAGE"] == "s3://ifcflow/data" and env["IFCFLOW_S3_ENDPOINT"] == "http://s3:8333"
        assert env["AWS_SECRET_ACCESS_KEY"].startswith("${IFCFLOW_S3_SECRET_KEY:?")  # required, never defaulted
        assert env["IFCFLOW_REDIS_URL"] == "redis://redis:6379/0"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert services[name]["depends_on"]["s3-init"]["condition"] == "service_completed_successfully"
    assert "IFCFLOW_DATA" not in services["worker"]["environment"]


def test_dockerfile_builds_a_non_root_installed_image_with_the_pipelines() -> None:
    text = (ROOT / "Dockerfile").read_text()
    instructions = [line.split(None, 1) for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert instructions[0] == ["FROM", "python:3.11-slim"]
    users = [arg for op, arg in instructions if op == "USER"]
    assert users and users[-1] not in {"root", "0"}
    installs = [arg for op, arg in instructions if op == "RUN" and "pip install" in arg]
    assert installs == ["pip install ."] and not re.search(r"\s-e\b|--editable", text)
    assert any(op == "COPY" and arg.split()[0] == "pipelines" for op, arg in instructions)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored
