"""422 answers in the documented shape (FastAPI's ``HTTPValidationError``: a list of ``{loc, msg, type}``)."""

from __future__ import annotations

from fastapi import HTTPException


def unprocessable(message: str, *loc: str | int) -> HTTPException:
    return HTTPException(422, [{"loc": ["body", *loc], "msg": message, "type": "value_error"}])
