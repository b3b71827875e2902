"""Length-prefixed pickled messages over an ``os.pipe``: how a worker talks to its resident horse and a horse to its
progress ticker (processes of one host, forked from each other: pickle is safe here)."""

from __future__ import annotations

import os
import pickle
import struct
from typing import Any

HEADER = struct.Struct("!I")


def frame(message: Any) -> bytes:
    """``message`` as one write: its length, then its pickle."""
    data = pickle.dumps(message)
    return HEADER.pack(len(data)) + data


def send(fd: int, message: Any) -> None:
    os.write(fd, frame(message))


def _read(fd: int, size: int) -> bytes | None:
    chunks = b""
    while len(chunks) < size:
        chunk = os.read(fd, size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return chunks


def receive(fd: int) -> Any:
    """The next message, or None when the other end closed (or died)."""
    header = _read(fd, HEADER.size)
    data = None if header is None else _read(fd, HEADER.unpack(header)[0])
    return None if data is None else pickle.loads(data)
