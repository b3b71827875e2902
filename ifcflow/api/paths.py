"""Client-given paths, resolved safely inside the data folder.

Rejected: empty names, NUL and control characters, backslashes, URL-encoded tricks (``%2e%2e%2f``), absolute
paths, ``..`` parts, and anything (a symlink included) whose real path leaves the allowed folder.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

from ..errors import IfcflowError

CONTAINER_PREFIXES = ("/uploads/", "/output/", "/examples/")
"""The original system's containers mounted the data folder's parts at these absolute paths; ifcflow maps each
onto the same-named folder of the data folder (``/examples/x`` -> ``<data>/examples/x``)."""


class UnsafePath(IfcflowError):
    """A client-given path would leave the data folder (HTTP 400)."""


MAX_NAME = 1024
"""Longest path a client may send, in UTF-8 bytes (each part at most 255, as file systems allow)."""
DOWNLOADABLE = ("uploads", "output", "examples")
"""The data folder's parts a download link may name (never the history database or other server files)."""


def _check_text(name: str, what: str) -> None:
    if not name or not name.strip():
        raise UnsafePath(f"{what}: the file name is empty; give a file name such as model.ifc")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME or any(
            len(part.encode("utf-8", "surrogatepass")) > 255 for part in name.split("/")):
        raise UnsafePath(f"{what}: the name is too long (at most {MAX_NAME} bytes, 255 per folder or file name); "
                         "use a shorter name")
    if any(ord(c) < 32 or c == "\x7f" for c in name):
        raise UnsafePath(f"{what}: {name!r} contains control characters (NUL, newline...); use a plain file name")
    if "\\" in name:
        raise UnsafePath(f"{what}: {name!r} contains a backslash; separate folders with '/'")
    if "%" in name and unquote(name) != name:
        raise UnsafePath(f"{what}: {name!r} looks URL-encoded; send the decoded name")


def relative(name: str, what: str = "path") -> PurePosixPath:
    """``name`` as a safe relative path (no absolute, no ``..``, no tricks)."""
    _check_text(name, what)
    path = PurePosixPath(name)
    if path.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise UnsafePath(f"{what}: {name!r} is absolute; give a name relative to the data folder's "
                         "uploads/ (inputs) or the job's output folder (outputs)")
    if ".." in path.parts:
        raise UnsafePath(f"{what}: {name!r} contains '..'; paths must stay inside the data folder")
    if not path.parts or path.parts == (".",):
        raise UnsafePath(f"{what}: {name!r} names no file")
    return path


def inside(root: Path, name: str, what: str = "path") -> Path:
    """``root / name`` after the checks, with its real path (symlinks followed) still inside ``root``."""
    rel = relative(name, what)
    base = Path(os.path.realpath(root))
    target = Path(os.path.realpath(base / rel))
    if target != base and base not in target.parents:
        raise UnsafePath(f"{what}: {name!r} leads outside the data folder (through a symlink?)")
    return target


def contained(root: Path, path: str | Path) -> bool:
    """Whether the real path of ``path`` is ``root`` or inside it."""
    base = Path(os.path.realpath(root))
    target = Path(os.path.realpath(path))
    return target == base or base in target.parents


def check_within(roots: tuple[Path, ...], path: str, what: str) -> bool:
    """Whether ``path`` lies in one of ``roots``; its part below that root must pass the name checks too."""
    target = os.path.realpath(path)
    for root in roots:
        base = os.path.realpath(root)
        if target == base or target.startswith(base.rstrip("/") + "/"):
            below = os.path.relpath(target, base)
            if below != ".":
                relative(below, what)
            return True
    return False


def check_input(data: Path, roots: tuple[Path, ...], path: str, what: str) -> bool:
    """:func:`check_within`, and a file a step may read: in the data folder only in ``uploads/``, ``output/`` or
    ``examples/`` and never hidden (the history database, caches and uploads still arriving are the server's), in
    another root (the pipelines folder) never hidden. Raises :class:`UnsafePath` for those."""
    if not check_within(roots, path, what):
        return False
    target = os.path.realpath(path)
    root = max((os.path.realpath(r) for r in roots if contained(r, target)), key=len)
    parts = PurePosixPath(os.path.relpath(target, root)).parts
    in_data = root == os.path.realpath(data)
    if any(part.startswith(".") for part in parts) or (in_data and parts[0] not in DOWNLOADABLE):
        shown = "/".join(parts)
        raise UnsafePath(f"{what}: {shown!r} is not a file steps may read; name one in uploads/, output/ or "
                         "examples/ (never a hidden one)")
    return True


def container(data: Path, name: str, what: str = "path") -> Path | None:
    """The original's absolute ``/uploads/x``, ``/output/<kind>/x`` or ``/examples/x`` inside ``data``; None when
    ``name`` has none of those prefixes (any other absolute name is refused by :func:`relative`)."""
    if name.startswith(CONTAINER_PREFIXES):
        return inside(data, name[1:], what)
    return None


def input_file(uploads: Path, name: str, what: str = "input") -> Path:
    """An input named as in the original system: a name in ``uploads/``, or ``/uploads/x``, ``/output/...``,
    ``/examples/x`` (the data folder's parts, as the original's containers mounted them)."""
    mapped = container(uploads.parent, name, what)
    return mapped if mapped is not None else inside(uploads, name, what)


def shown(data: Path, path: str | Path) -> str:
    """``path`` relative to the data folder (``output/ids/r.html``); a path outside it by its file name only, so an
    HTTP answer never carries an absolute server path."""
    base = os.path.realpath(data)
    target = os.path.realpath(path)
    if target.startswith(base.rstrip("/") + "/"):
        return os.path.relpath(target, base)
    return PurePosixPath(str(path)).name


def data_file(data: Path, name: str, what: str = "file_path") -> Path:
    """A file in the data folder's ``uploads/``, ``output/`` or ``examples/`` (or the original's ``/output/...``
    forms), never a hidden one: server files beside them (the history database, caches) are not for clients."""
    if name.startswith(CONTAINER_PREFIXES):
        name = name[1:]
    rel = relative(name, what)
    if rel.parts[0] not in DOWNLOADABLE or any(part.startswith(".") for part in rel.parts):
        raise UnsafePath(f"{what}: {name!r} is not a file clients may fetch; name one in uploads/, output/ or "
                         "examples/ (as a job's result gives it)")
    return inside(data, name, what)


def writable_output(data: Path, target: Path, what: str) -> None:
    """Refuse an output a client names into another run's folder (``output/runs/``) or a hidden server folder
    (``output/.preview/``): those hold records and caches that other requests trust."""
    base = Path(os.path.realpath(data))
    try:
        parts = Path(os.path.realpath(target)).relative_to(base).parts
    except ValueError:
        raise UnsafePath(f"{what}: the output is outside the data folder") from None
    if parts[:2] == ("output", "runs") or any(part.startswith(".") for part in parts):
        raise UnsafePath(f"{what}: outputs go to output/<kind>/ (or over an upload), never into output/runs/ or a "
                         "hidden folder; choose another output name")


PIPELINE_SUFFIXES = (".yaml", ".yml")


def committed_pipeline(folder: Path, name: str, what: str = "file") -> Path:
    """A pipeline file of the pipelines folder by its name, as ``GET /pipelines`` lists them: a visible ``.yaml`` or
    ``.yml`` file directly in it (never another file there: its lines would be echoed in error messages)."""
    rel = relative(name, what)
    if len(rel.parts) != 1 or rel.name.startswith(".") or not rel.name.lower().endswith(PIPELINE_SUFFIXES):
        raise UnsafePath(f"{what}: {name!r} is not a pipeline of the pipelines folder; name a .yaml or .yml file "
                         "that GET /pipelines lists")
    return inside(folder, name, what)


def replace_file(source: Path, target: Path, what: str) -> None:
    """Move the finished temporary file ``source`` over the file ``target``; a folder in its place is refused (4xx)
    and ``source`` removed, so nothing is left behind."""
    try:
        if target.is_dir():
            raise IsADirectoryError(str(target))
        os.replace(source, target)
    except (IsADirectoryError, NotADirectoryError):
        Path(source).unlink(missing_ok=True)
        raise UnsafePath(f"{what}: {target.name!r} names a folder there, not a file; choose another file name") \
            from None


def upload_name(filename: str | None) -> str:
    """The stored name of an uploaded file: directory parts stripped (as the original did), tricks refused."""
    name = filename or ""
    _check_text(name, "upload")
    if ".." in PurePosixPath(name).parts:
        raise UnsafePath(f"upload: {name!r} contains '..'; send a plain file name")
    base = PurePosixPath(name).name
    if base in ("", ".", "..") or base.startswith("."):
        raise UnsafePath(f"upload: {name!r} is not a usable file name (empty or hidden); rename the file")
    return base
