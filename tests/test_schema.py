"""The checked-in JSON Schema matches the pydantic models, and committed pipelines validate against it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

from ifcflow.pipeline.schema import generate, render

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "schemas" / "pipeline.schema.json"


def test_schema_file_is_in_sync() -> None:
    assert SCHEMA.read_text() == render(), "schemas/pipeline.schema.json is stale: run `ifcflow schema --output schemas/pipeline.schema.json`"  # noqa: E501


def test_committed_pipelines_validate_against_schema() -> None:
    schema = generate()
    pipelines = sorted((ROOT / "pipelines").glob("*.yaml"))
    assert pipelines, "no committed pipelines found"
    for path in pipelines:
        text = path.read_text()
        assert text.startswith("# yaml-language-server: $schema=../schemas/pipeline.schema.json"), path
        jsonschema.validate(yaml.safe_load(text), schema)


def test_schema_rejects_unknown_service_and_option() -> None:
    validator = jsonschema.Draft202012Validator(generate())
    bad_service = {"version": 1, "name": "x", "steps": {"a": {"uses": "ifcclsh", "with": {}}}}
    bad_option = {"version": 1, "name": "x", "steps": {"a": {"uses": "ifcpatch", "with": {"ifc": "a.ifc", "recipe": "X", "nope": 1}}}}
    assert list(validator.iter_errors(bad_service))
    assert list(validator.iter_errors(bad_option))
    assert json.loads(render())["$id"].endswith("pipeline.schema.json")
