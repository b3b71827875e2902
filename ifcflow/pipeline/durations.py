"""Durations as people write them in pipeline files: ``90``, ``90s``, ``30m``, ``2h``, ``1h30m``, ``7d``."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

_PART = re.compile(r"(\d+)([dhms])")
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
PATTERN = r"^\s*(\d+|(\d+[dhms])+)\s*$"


def parse(value: Any) -> int:
    """Seconds in ``value``; raise ValueError with the accepted forms when it is not a duration."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 90, 90s, 30m, 2h or 1h30m, not a boolean")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str) and re.fullmatch(PATTERN, value):
        text = value.strip()
        seconds = int(text) if text.isdigit() else sum(int(n) * _UNITS[u] for n, u in _PART.findall(text))
    else:
        raise ValueError(f"invalid duration {value!r}; write seconds or units, such as 90, 90s, 30m, 2h or 1h30m")
    if seconds <= 0:
        raise ValueError(f"duration must be positive, got {value!r}")
    return seconds


def format(seconds: float) -> str:
    """``7200`` -> ``2h``, ``5400`` -> ``1h30m``, ``45`` -> ``45s``."""
    seconds = int(seconds)
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in _UNITS.items():
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


Duration = Annotated[
    int,
    BeforeValidator(parse),
    WithJsonSchema(
        {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": PATTERN}],
         "description": "seconds, or a duration such as 90s, 30m, 2h, 1h30m, 7d"}
    ),
]
