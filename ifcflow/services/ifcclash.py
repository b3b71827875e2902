"""ifcclash: geometric clash detection between groups of elements of one or more IFC models.

The options follow the original system's request: ``clash_sets`` of ``a`` and ``b`` sources (a file with an
optional selector), a ``mode`` with its ``tolerance`` / ``clearance`` / ``check_all`` / ``allow_touching``
settings, and ``output`` (JSON, or BCF when it ends in ``.bcf``). ``bcf`` optionally names a second, BCF
output so that one step can write both; it is written (and is an output) only when it is set.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .base import InputFile, Options, OutputFile, Selector, Service, option

REPORT_SUFFIXES = (".json", ".bcf")
_PAIRS = {"(": ")", "[": "]", "{": "}"}


def selector_problem(selector: str) -> str | None:
    """A cheap syntax check of an ifcopenshell selector: quotes closed, brackets balanced. None when fine.

    The full grammar is checked on the worker (parsing it needs ifcopenshell, which the client does not import).
    """
    if not selector.strip():
        return "the selector is empty; leave it out to select every element"
    stack: list[str] = []
    quote: str | None = None
    for char in selector:
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in _PAIRS:
            stack.append(_PAIRS[char])
        elif char in _PAIRS.values():
            if not stack or stack.pop() != char:
                return f"unbalanced {char!r} in selector {selector!r}"
    if quote:
        return f"unclosed {quote} quote in selector {selector!r}"
    if stack:
        return f"missing {stack[-1]!r} in selector {selector!r}"
    return None


class ClashSource(BaseModel):
    """One model and which of its elements take part: mode ``a`` all, ``e`` all except the selector's, ``i`` only
    the selector's. A selector means "these elements": with a selector and no ``mode`` the mode is ``i``; without
    a selector every element (except openings) takes part, whatever the mode. An explicit ``mode`` (the original
    system's requests) keeps its meaning."""

    model_config = ConfigDict(extra="forbid")

    file: str = option(..., description="IFC model", marker=InputFile((".ifc",), "ifc"))
    selector: str | None = option(None, marker=Selector("file"), description="ifcopenshell selector, e.g. IfcWall, IfcSlab")
    mode: Literal["a", "e", "i"] = option("a", description="a: all elements, e: exclude selector, i: include "
                                               "selector; default: i with a selector, a without")

    @model_validator(mode="before")
    @classmethod
    def _default_mode(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("mode") is None and data.get("selector"):
            return {**data, "mode": "i"}
        return data

    @field_validator("selector")
    @classmethod
    def _selector(cls, value: str | None) -> str | None:
        problem = None if value is None else selector_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class ClashSet(BaseModel):
    """Elements of ``a`` checked against elements of ``b`` (or against each other when ``b`` is empty)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1)]
    a: Annotated[list[ClashSource], Field(min_length=1)]
    b: list[ClashSource] = Field(default_factory=list, description="empty: clash a against itself")


class ClashOptions(Options):
    """Find clashes in every clash set; writes a JSON report (or BCF) and optionally a BCF file as well."""

    OUTPUTS: ClassVar[tuple[str, ...]] = ("report", "bcf")

    clash_sets: Annotated[list[ClashSet], Field(min_length=1)] = option(..., "clash_sets", "clashsets",
                                                                        description="the clash sets to check")
    output: str = option("clashes.json", "output", "output_filename", marker=OutputFile("report"),
                         description="report file: JSON, or BCF when it ends with .bcf")
    bcf: str | None = option(None, marker=OutputFile("bcf"),
                             description="also write the clashes as BCF to this file (the bcf output exists only then)")
    mode: Literal["intersection", "collision", "clearance"] = option("intersection", description="clash test")
    tolerance: Annotated[float, Field(ge=0)] = option(0.01, description="intersection: ignore overlaps below this (m)")
    clearance: Annotated[float, Field(ge=0)] = option(0.0, description="clearance: required distance (m), > 0")
    check_all: bool = option(False, description="intersection/clearance: report every clash, not only the first")
    allow_touching: bool = option(False, description="collision: touching elements do not clash")
    smart_grouping: bool = option(False, description="group nearby clashes (needs scikit-learn on the worker)")
    max_cluster_distance: Annotated[float, Field(gt=0)] = option(5.0, description="smart grouping distance (m)")

    @field_validator("output")
    @classmethod
    def _report_format(cls, value: str) -> str:
        if not value.startswith("${{") and not value.lower().endswith(REPORT_SUFFIXES):
            raise ValueError(f"the report {value!r} must end with .json (JSON report) or .bcf (BCF report)")
        return value

    @field_validator("bcf")
    @classmethod
    def _bcf_format(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("${{") and not value.lower().endswith(".bcf"):
            raise ValueError(f"the BCF file {value!r} must end with .bcf")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ClashOptions:
        if self.mode == "clearance" and self.clearance <= 0:
            raise ValueError("clearance mode needs clearance > 0 (the required distance in metres)")
        names = [s.name for s in self.clash_sets]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ValueError(f"clash set names must be unique; repeated: {', '.join(doubled)}")
        if self.bcf and self.bcf == self.output:
            raise ValueError("bcf and output name the same file; give the BCF file another name")
        return self

    def outputs(self) -> dict[str, str]:
        found = {"report": self.output}
        if self.bcf:
            found["bcf"] = self.bcf
        return found


SERVICE = Service("ifcclash", ClashOptions, "workers.ifcclash.run", "ifcclash", timeout=7200,
                  summary="clash detection with ifcclash (JSON and/or BCF report)", plugs=("workers.geometry",))
