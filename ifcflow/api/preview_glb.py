"""The glb of an IFC model's 3D preview: converted once per model, in a subprocess (``python -m workers.preview``),
cached as ``output/.preview/<sha256 of the file>.glb``.

``GET /preview/{token}/model.glb`` needs no API key (the token is the credential), so a conversion is guarded:

- one conversion per model at a time: a per-sha256 lock, held in this process (a set of digests, for the server's
  threads and requests) and across server processes (an ``flock`` on ``<sha256>.lock`` beside the cache file); a
  request for a model being converted waits for it (polling, without holding a thread) and serves the cached glb;
- at most ``MAX_CONVERSIONS`` conversions at once in a server process; a request that finds no free slot within
  ``SLOT_WAIT`` seconds is answered 503 with ``Retry-After``;
- the converter writes a temporary file in the cache folder, renamed onto ``<sha256>.glb`` only when it succeeded, so
  the cache path only ever holds a whole glb made by the converter.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

import anyio.to_thread
from fastapi import HTTPException

MAX_CONVERSIONS = 2
CONVERT_TIMEOUT = 600
SLOT_WAIT = 30.0
MODEL_WAIT = CONVERT_TIMEOUT + 60.0
POLL = 0.2
RETRY_AFTER = 30

_slots = threading.BoundedSemaphore(MAX_CONVERSIONS)
_mutex = threading.Lock()
_busy: set[str] = set()


def convert(source: Path, target: Path) -> subprocess.CompletedProcess[str]:
    """One conversion subprocess (the only writer of preview glbs)."""
    return subprocess.run([sys.executable, "-m", "workers.preview", str(source), str(target)], capture_output=True,
                          text=True, timeout=CONVERT_TIMEOUT, check=False)


def _digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _busy_503(what: str) -> HTTPException:
    return HTTPException(503, f"{what}; retry in {RETRY_AFTER} s", headers={"Retry-After": str(RETRY_AFTER)})


def _try_claim(digest: str, lock_path: Path) -> IO[bytes] | None:
    """The model's lock if free now (this process's set of digests, then an flock for other processes), else None."""
    with _mutex:
        if digest in _busy:
            return None
        _busy.add(digest)
    handle = None
    try:
        handle = lock_path.open("ab")
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return handle
    except BlockingIOError:
        pass
    except BaseException:
        _release(digest, handle)
        raise
    _release(digest, handle)
    return None


def _release(digest: str, handle: IO[bytes] | None) -> None:
    if handle is not None:
        handle.close()  # closing the file releases its flock
    with _mutex:
        _busy.discard(digest)


@contextlib.asynccontextmanager
async def _model_lock(digest: str, lock_path: Path, cached: Path) -> AsyncIterator[bool]:
    """Hold the model's lock; yields False when the glb appeared meanwhile (another request converted it)."""
    deadline = time.monotonic() + MODEL_WAIT
    while (handle := _try_claim(digest, lock_path)) is None:
        if cached.is_file():
            yield False
            return
        if time.monotonic() > deadline:
            raise _busy_503("this model is still being converted for its preview")
        await asyncio.sleep(POLL)
    try:
        yield not cached.is_file()
    finally:
        _release(digest, handle)


@contextlib.asynccontextmanager
async def _slot() -> AsyncIterator[None]:
    """One of the ``MAX_CONVERSIONS`` conversion slots, waited for at most ``SLOT_WAIT`` seconds."""
    deadline = time.monotonic() + SLOT_WAIT
    while not _slots.acquire(blocking=False):
        if time.monotonic() > deadline:
            raise _busy_503(f"the server is converting {MAX_CONVERSIONS} other models for their previews")
        await asyncio.sleep(POLL)
    try:
        yield
    finally:
        _slots.release()


def _convert_to(path: Path, cached: Path) -> None:
    """Convert into a temporary file of the cache folder, then rename it onto the cache path (blocking)."""
    temporary = cached.with_name(f"{cached.stem}.{secrets.token_hex(8)}.tmp")
    try:
        done = convert(path, temporary)
    except subprocess.TimeoutExpired:
        raise HTTPException(504, f"converting {path.name} for the preview took over {CONVERT_TIMEOUT} s; the model "
                            "is too large to preview, download it instead") from None
    else:
        if done.returncode != 0 or not temporary.is_file():
            reason = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
            raise HTTPException(404, f"{path.name} cannot be shown in 3D: {reason}")
        temporary.replace(cached)
    finally:
        for leftover in cached.parent.glob(f"{temporary.name}*"):  # also the converter's own partial file
            leftover.unlink(missing_ok=True)


async def glb(output: Path, path: Path) -> Path:
    """The glb of the IFC model at ``path``, converted once and cached by the file's sha256 under ``output``."""
    digest = await anyio.to_thread.run_sync(_digest, path)
    cached = output / ".preview" / f"{digest}.glb"
    if cached.is_file():
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    async with _model_lock(digest, cached.with_suffix(".lock"), cached) as needed:
        if needed:
            async with _slot():
                await anyio.to_thread.run_sync(_convert_to, path, cached)
    return cached
