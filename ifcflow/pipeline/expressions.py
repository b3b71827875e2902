"""``${{ inputs.NAME }}`` and ``${{ steps.ID.outputs.NAME }}`` references inside option strings."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
_INPUT = re.compile(r"inputs\.([A-Za-z_][A-Za-z0-9_-]*)")
_SINGLE = re.compile(r"\$\{(?!\{)\s*((?:inputs|steps)\.[^{}]*?)\s*\}")
_OUTPUT = re.compile(r"steps\.([A-Za-z0-9_-]+)\.outputs\.([A-Za-z_][A-Za-z0-9_-]*)")


@dataclass(frozen=True)
class Reference:
    """One reference: to a pipeline input (``step`` is None) or to a step's named output."""

    text: str
    name: str
    step: str | None = None


class ExpressionError(ValueError):
    """An expression that is neither an input nor a step output reference."""


def parse(text: str) -> Reference:
    body = text.strip()
    if match := _INPUT.fullmatch(body):
        return Reference(text, match.group(1))
    if match := _OUTPUT.fullmatch(body):
        return Reference(text, match.group(2), match.group(1))
    raise ExpressionError(
        f"cannot understand expression '${{{{ {body} }}}}'; write ${{{{ inputs.NAME }}}} or "
        "${{ steps.STEP.outputs.NAME }}"
    )


def references(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every expression body in a nested structure of dicts, lists and strings, with its path."""
    if isinstance(value, str):
        for match in EXPRESSION.finditer(value):
            yield path, match.group(1)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from references(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from references(item, (*path, index))


def substitute(value: Any, resolve: Callable[[Reference], str]) -> Any:
    """A copy of ``value`` with every expression replaced by ``resolve(reference)``."""
    if isinstance(value, str):
        return EXPRESSION.sub(lambda m: resolve(parse(m.group(1))), value)
    if isinstance(value, dict):
        return {key: substitute(item, resolve) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, resolve) for item in value]
    return value


def single_braces(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str, str]]:
    """``${inputs.x}`` written with single braces (a shell habit): (path, what was written, what was meant)."""
    for sub, text in _strings(value, path):
        for match in _SINGLE.finditer(text):
            yield sub, match.group(0), f"${{{{ {match.group(1)} }}}}"


def _strings(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, index))
