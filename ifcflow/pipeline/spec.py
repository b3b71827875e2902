"""The pipeline file format (version 1): pydantic models, one step type per service.

A pipeline is GitHub-Actions-like::

    version: 1
    name: coordination
    inputs: {arch: models/arch.ifc}
    defaults: {timeout: 1h}
    steps:
      validate: {uses: ifctester, with: {ifc: "${{ inputs.arch }}", ids: rules.ids}}
      glb: {uses: ifcconvert, needs: [validate], with: {input: "${{ inputs.arch }}", output: arch.glb}}
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from ..services import SERVICES, Options
from .durations import Duration

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]*$"
STEP_ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]*$"
INPUT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"
CONDITIONS = ("success()", "failure()", "always()")
_CONDITION = re.compile(r"^\s*(\$\{\{\s*)?(success|failure|always)\(\)(\s*\}\})?\s*$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RetryPolicy(Strict):
    """Run a failed step again: ``attempts`` counts every try, ``backoff`` the waits between them."""

    attempts: Annotated[int, Field(ge=1, le=100)] = 1
    backoff: list[Duration] | Duration = Field(default=0, description="wait before each retry, one value or a list")

    @field_validator("backoff", mode="before")
    @classmethod
    def _zero_allowed(cls, value: Any) -> Any:
        return 0 if value in (0, "0", "0s") else value


class Policy(Strict):
    """Settings a step can set for itself or inherit from ``defaults:``."""

    timeout: Duration | None = Field(default=None, description="hard limit per attempt (1h; 2h for ifcclash)")
    retry: RetryPolicy | None = None
    on_failure: Literal["stop", "continue"] | None = Field(
        default=None, description="stop: skip every dependent (default); continue: dependents run anyway")
    cache: bool | None = Field(default=None, description=(
        "reuse the outputs of an earlier identical step (same service, versions, options and input file "
        "contents) instead of running it (default true; `ifcflow run --no-cache` turns it off for a run)"))


class StepBase(Policy):
    name: str | None = Field(default=None, description="human-readable label")
    needs: list[Annotated[str, Field(pattern=STEP_ID_PATTERN)]] = Field(default_factory=list)
    if_: str | None = Field(default=None, alias="if", description="success() (default), failure() or always()")

    @field_validator("needs", mode="before")
    @classmethod
    def _one_need(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("if_")
    @classmethod
    def _condition(cls, value: str | None) -> str | None:
        if value is None:
            return None
        match = _CONDITION.match(value)
        if not match or bool(match.group(1)) != bool(match.group(3)):
            raise ValueError(f"unknown condition {value!r}; use one of " + ", ".join(CONDITIONS))
        return f"{match.group(2)}()"


def _step_model(service_name: str) -> type[StepBase]:
    service = SERVICES[service_name]
    title = "".join(part.capitalize() for part in re.split(r"[^a-z0-9]", service_name)) + "Step"
    model: type[StepBase] = create_model(
        title,
        __base__=StepBase,
        __doc__=f"A step that runs {service_name}: {service.summary}",
        uses=(Literal[service_name], Field(description=f"service {service_name} (queue {service.queue})")),  # type: ignore[arg-type]
        with_=(service.options, Field(alias="with")),
    )
    return model


STEP_MODELS: dict[str, type[StepBase]] = {name: _step_model(name) for name in SERVICES}

if TYPE_CHECKING:
    class Step(StepBase):
        """What every generated step model has (for the type checker)."""

        uses: str
        with_: Options
else:
    Step = Annotated[Union[tuple(STEP_MODELS.values())], Field(discriminator="uses")]  # noqa: UP007 - a Union built from a tuple


class Pipeline(Strict):
    """A pipeline file, format version 1."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, title="ifcflow pipeline")

    version: Literal[1] = Field(description="pipeline format version; always 1")
    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]
    description: str | None = None
    inputs: dict[Annotated[str, Field(pattern=INPUT_PATTERN)], str] = Field(
        default_factory=dict, description="input name -> default path; override with `ifcflow run -i NAME=PATH`")
    for_each: list[Annotated[str, Field(pattern=INPUT_PATTERN)]] = Field(default_factory=list, description=(
        "inputs whose value is a glob (relative to this file): one run per matching file, all in one batch; "
        "several names make the product of the globs (`ifcflow run --each NAME=GLOB` does the same)"))
    defaults: Policy = Field(default_factory=Policy)
    steps: dict[Annotated[str, Field(pattern=STEP_ID_PATTERN, max_length=64)], Step] = Field(min_length=1)

    @field_validator("for_each", mode="before")
    @classmethod
    def _one_name(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

