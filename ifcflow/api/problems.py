"""422 answers in the documented shape (FastAPI's ``HTTPValidationError``: a list of ``{loc, msg, type}``)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from fastapi import HTTPException


def unprocessable(message: str, *loc: str | int) -> HTTPException:
    return HTTPException(422, [{"loc": ["body", *loc], "msg": message, "type": "value_error"}])


_PATH = re.compile(r"/[^\s'\"(),:;<>|]+")


def public(text: str, roots: tuple[Path, ...]) -> str:
    """``text`` with the server's absolute paths made relative: a path under one of ``roots`` (the data folder, then
    the pipelines folder) relative to it (``uploads/pipeline.yaml:5:11``), a path elsewhere that shares a folder
    with the first root relative to that root (``../etc/passwd``); other absolute paths (what a client wrote, URL
    paths) stay as they are. Error answers over HTTP never tell a client where the server keeps its files."""
    def relative(match: re.Match[str]) -> str:
        path = match.group(0)
        for root in roots:
            prefix = str(root).rstrip("/") + "/"
            if path == prefix.rstrip("/"):
                return "."
            if path.startswith(prefix):
                return path[len(prefix):]
        if roots and os.path.commonpath([str(roots[0]), path]) != "/":
            return os.path.relpath(path, roots[0])
        return path

    return _PATH.sub(relative, text)
