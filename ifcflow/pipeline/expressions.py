"""``${{ inputs.NAME }}`` and ``${{ steps.ID.outputs.NAME }}`` references inside option strings."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

_INPUT = re.compile(r"inputs\.([A-Za-z_][A-Za-z0-9_-]*)")
_OUTPUT = re.compile(r"steps\.([A-Za-z0-9_-]+)\.outputs\.([A-Za-z_][A-Za-z0-9_-]*)")


@dataclass(frozen=True)
class Reference:
    """One reference: to a pipeline input (``step`` is None) or to a step's named output."""

    text: str
    name: str
    step: str | None = None


class ExpressionError(ValueError):
    """An expression that is neither an input nor a step output reference."""


# Expressions are found by plain scans, linear in the string's length: regular expressions with lazy bodies between
# ``\s*`` took cubic time on a long run of spaces after ``${{`` (a 2 KB pipeline held an API server for 9 s).

def _expressions(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, body) of every ``${{ body }}`` in ``text``, left to right; a body spans no line break."""
    at = text.find("${{")
    while at != -1:
        close = text.find("}}", at + 3)
        if close == -1:
            return
        body = text[at + 3:close].strip()
        if "\n" in body:
            at = text.find("${{", at + 1)
            continue
        yield at, close + 2, body
        at = text.find("${{", close + 2)


def _single_braced(text: str) -> Iterator[tuple[str, str]]:
    """(written, body) of every ``${inputs...}`` / ``${steps...}`` written with single braces."""
    at = text.find("${")
    while at != -1:
        if text.startswith("${{", at):
            at = text.find("${", at + 3)
            continue
        close = text.find("}", at + 2)
        if close == -1:
            return
        body = text[at + 2:close].strip()
        if "{" not in body and body.startswith(("inputs.", "steps.")):
            yield text[at:close + 1], body
        at = text.find("${", at + 2)


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
        for _, _, body in _expressions(value):
            yield path, body
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from references(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from references(item, (*path, index))


def substitute(value: Any, resolve: Callable[[Reference], str]) -> Any:
    """A copy of ``value`` with every expression replaced by ``resolve(reference)``."""
    if isinstance(value, str):
        parts, done = [], 0
        for start, end, body in _expressions(value):
            parts += [value[done:start], resolve(parse(body))]
            done = end
        return "".join(parts) + value[done:] if parts else value
    if isinstance(value, dict):
        return {key: substitute(item, resolve) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, resolve) for item in value]
    return value


def single_braces(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str, str]]:
    """``${inputs.x}`` written with single braces (a shell habit): (path, what was written, what was meant)."""
    for sub, text in _strings(value, path):
        for written, body in _single_braced(text):
            yield sub, written, f"${{{{ {body} }}}}"


def _strings(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, index))
