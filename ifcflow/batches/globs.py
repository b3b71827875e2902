"""Glob expansion for batches (``--each``, ``for_each``, ``POST /batches``, schedules): one bounded walk.

``glob.glob(recursive=True)`` is exponential in repeated ``**`` segments, follows symlinked folders and returns one
file once per way a pattern reaches it. Here a pattern is checked first (:func:`check`: consecutive ``**`` collapse
into one; more than :data:`MAX_RECURSIVE` ``**`` segments or more than :data:`MAX_CHARS` characters are refused),
then the folder tree below its fixed part is walked once (``os.walk``, symlinked folders not entered), each file
matched segment by segment (``fnmatch``, hidden names only by a pattern that starts with a dot, as ``glob`` does),
matches de-duplicated by real path and the walk stopped after ``limit`` matches.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import PurePosixPath

from ..errors import IfcflowError

MAX_RECURSIVE = 2
MAX_CHARS = 1024
WILD = frozenset("*?[")


class GlobError(IfcflowError):
    """A glob ifcflow refuses to expand (too many ``**``, too long)."""


def check(pattern: str) -> str:
    """``pattern`` with consecutive ``**`` segments collapsed into one; :class:`GlobError` if it is too costly."""
    if len(pattern) > MAX_CHARS:
        raise GlobError(f"the glob is {len(pattern)} characters long, more than {MAX_CHARS}; write a shorter one "
                        "(e.g. models/**/*.ifc)")
    parts: list[str] = []
    for part in pattern.split("/"):
        if not (part == "**" and parts and parts[-1] == "**"):
            parts.append(part)
    recursive = parts.count("**")
    if recursive > MAX_RECURSIVE:
        raise GlobError(f"the glob has {recursive} '**' segments; at most {MAX_RECURSIVE} are allowed "
                        "(one '**' already spans any number of folders, e.g. models/**/*.ifc)")
    return "/".join(parts)


def _one(name: str, pat: str) -> bool:
    if name.startswith(".") and not pat.startswith("."):
        return False
    return fnmatch.fnmatchcase(name, pat)


def matches(names: tuple[str, ...], pats: tuple[str, ...]) -> bool:
    """Whether the path segments ``names`` match the pattern segments ``pats`` (``**``: zero or more non-hidden
    folders; at most :data:`MAX_RECURSIVE` of them, so this stays polynomial)."""
    if not pats:
        return not names
    if pats[0] == "**":
        return any(matches(names[skip:], pats[1:]) for skip in range(len(names) + 1)
                   if not any(n.startswith(".") for n in names[:skip]))
    return bool(names) and _one(names[0], pats[0]) and matches(names[1:], pats[1:])


def _may_lead(names: tuple[str, ...], pats: tuple[str, ...]) -> bool:
    """Whether a folder at ``names`` (below the fixed part) can hold a match: prunes the walk."""
    for depth, name in enumerate(names):
        if depth < len(pats) and pats[depth] == "**":
            return True
        if depth >= len(pats) - 1 or not _one(name, pats[depth]):
            return False
    return True


def expand(pattern: str, limit: int) -> list[str]:
    """The files ``pattern`` (absolute, or relative to the current folder) matches, sorted, each real file once
    (by its plain name rather than a symlink's); at most ``limit`` of them (the walk stops there)."""
    parts = PurePosixPath(check(pattern)).parts
    wild = next((i for i, part in enumerate(parts) if WILD & set(part)), len(parts))
    base = str(PurePosixPath(*parts[:wild])) if wild else "."
    pats = tuple(parts[wild:])
    if not pats:
        return [base] if os.path.isfile(base) else []
    found: dict[str, str] = {}
    for top, dirs, files in os.walk(base, followlinks=False):
        below = PurePosixPath(os.path.relpath(top, base)).parts if top != base else ()
        dirs[:] = sorted(d for d in dirs if _may_lead((*below, d), pats))
        for name in sorted(files):
            path = os.path.join(top, name)
            if matches((*below, name), pats) and os.path.isfile(path):
                real = os.path.realpath(path)
                if real not in found or (os.path.islink(found[real]) and not os.path.islink(path)):
                    found[real] = path  # one name per real file, a plain one over a symlink's
                if len(found) >= limit:
                    return sorted(found.values())
    return sorted(found.values())
