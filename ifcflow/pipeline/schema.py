"""The JSON Schema of pipeline files, generated from the pydantic models (``ifcflow schema``)."""

from __future__ import annotations

import json

from .spec import Pipeline

SCHEMA_ID = "https://ifcflow.dev/schemas/pipeline.schema.json"


def generate() -> dict[str, object]:
    schema = Pipeline.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def render() -> str:
    return json.dumps(generate(), indent=2, sort_keys=False) + "\n"
