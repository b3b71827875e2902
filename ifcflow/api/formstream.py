"""A multipart form read as it arrives (the web page's "new run" form): every file part streams into its own
hidden temporary file in ``uploads/`` and stops at ``IFCFLOW_MAX_UPLOAD`` (nothing is spooled whole before the
check, unlike ``request.form()``); text fields are small and few.

The result quacks like Starlette's ``FormData`` where :mod:`ifcflow.api.uiforms` needs it (``get``,
``multi_items``; file values carry ``filename`` and ``staged``, the temporary file to rename into place).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from ..errors import IfcflowError

MAX_FIELD = 64 * 1024
MAX_PARTS = 1000


class FormTooLarge(IfcflowError):
    """A file over the upload limit, a text field over 64 KiB or more than 1,000 parts (HTTP 413)."""


class FormUnreadable(IfcflowError):
    """A malformed multipart body (HTTP 400)."""


@dataclass
class StagedFile:
    filename: str
    staged: Path
    size: int = 0


@dataclass
class StreamedForm:
    items: list[tuple[str, str | StagedFile]] = field(default_factory=list)

    def get(self, key: str, default: Any = None) -> Any:
        return next((value for name, value in self.items if name == key), default)

    def multi_items(self) -> list[tuple[str, str | StagedFile]]:
        return list(self.items)

    def discard(self) -> None:
        """Remove every temporary file not renamed into place."""
        for _, value in self.items:
            if isinstance(value, StagedFile):
                value.staged.unlink(missing_ok=True)


class _Parts:
    """Callbacks of the streaming parser."""

    def __init__(self, folder: Path, limit: int, form: StreamedForm):
        self.folder, self.limit, self.form = folder, limit, form
        self.headers: dict[bytes, bytes] = {}
        self.header, self.value = b"", b""
        self.name = ""
        self.text: bytearray | None = None
        self.file: StagedFile | None = None
        self.out: IO[bytes] | None = None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[self.header.lower()] = self.value
        self.header, self.value = b"", b""

    def on_headers_finished(self) -> None:
        if len(self.form.items) >= MAX_PARTS:
            raise FormTooLarge(f"the form has more than {MAX_PARTS} parts")
        _, params = parse_options_header(self.headers.get(b"content-disposition", b""))
        self.headers = {}
        self.name = params.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in params:
            staged = self.folder / f".ui-upload-{secrets.token_hex(8)}"  # one per upload: never shared
            self.file = StagedFile(params[b"filename"].decode("utf-8", "replace"), staged)
            self.form.items.append((self.name, self.file))
            self.out = staged.open("wb")
        else:
            self.text = bytearray()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.file is not None and self.out is not None:
            self.file.size += end - start
            if self.file.size > self.limit:
                raise FormTooLarge(f"{self.file.filename} is larger than the upload limit ({self.limit} bytes, "
                                   "IFCFLOW_MAX_UPLOAD)")
            self.out.write(data[start:end])
        elif self.text is not None:
            self.text += data[start:end]
            if len(self.text) > MAX_FIELD:
                raise FormTooLarge(f"form field {self.name!r} is longer than {MAX_FIELD} bytes")

    def on_part_end(self) -> None:
        if self.out is not None:
            self.out.close()
        elif self.text is not None:
            self.form.items.append((self.name, self.text.decode("utf-8", "replace")))
        self.out, self.file, self.text = None, None, None

    def close(self) -> None:
        if self.out is not None:
            self.out.close()


async def read(request: Request, folder: Path, limit: int) -> StreamedForm:
    """The request's multipart (or urlencoded) form; raises :class:`FormTooLarge` with nothing left behind."""
    kind, params = parse_options_header(request.headers.get("content-type", ""))
    form = StreamedForm()
    if kind != b"multipart/form-data" or b"boundary" not in params:
        small = await request.form(max_files=0, max_fields=MAX_PARTS, max_part_size=MAX_FIELD)
        form.items = [(k, v) for k, v in small.multi_items() if isinstance(v, str)]
        return form
    folder.mkdir(parents=True, exist_ok=True)
    parts = _Parts(folder, limit, form)
    callbacks: Any = {name: getattr(parts, name) for name in (
        "on_header_field", "on_header_value", "on_header_end", "on_headers_finished", "on_part_data", "on_part_end")}
    parser = MultipartParser(params[b"boundary"], callbacks)
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except BaseException as exc:
        parts.close()
        form.discard()
        if isinstance(exc, MultipartParseError):
            raise FormUnreadable(f"the form cannot be read ({exc}); send it from the page again") from None
        raise
    return form
