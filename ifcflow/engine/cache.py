"""Skipping unchanged work: a step identical to an earlier succeeded one reuses its outputs.

Two steps are identical when their **key** is: the sha256 of the service, ifcflow's version, the versions of the
libraries the service runs (ifcopenshell and the tool's own package), the resolved options (output paths relative to
the step's folder) and the sha256 of every input file's contents (one read pass each, 1 MiB at a time). An input
that is another step's output is hashed like any file, so a step after a re-run whose outputs came out byte-identical
is still served from the cache.

The index lives in Redis: ``ifcflow:cache:<key>`` -> JSON ``{run_id, step, job_id, message, data, outputs: {name:
{path, sha256, size}}}``, expiring with the run's results (its ``ttl``). A hit is used only when every recorded
output still exists with its recorded size and sha256; the outputs are then hard-linked (copied across file systems)
into the new step's folder and the step ends ``cached``, naming the run it came from.

Options marked as input files are hashed, and so is every absolute path of an existing file among an IfcPatch
recipe's ``arguments`` (``MergeProjects``' models; a relative one is compared as text). ``cache: false`` on a
step (or in ``defaults:``) and ``ifcflow run --no-cache`` turn the cache off for those
steps; ``IFCFLOW_CACHE=off`` in a worker's environment turns it off on that worker.

With object storage (:mod:`ifcflow.engine.staging`) the key is computed on the worker's local copies (the same contents,
so the same key) and an entry's outputs also name their keys: a hit is then checked with HEADs (size and sha256) and
served by server-side copies to the new run's keys, on any host.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import shutil
import time
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redis import Redis
from redis.exceptions import RedisError

from ..pipeline.plan import PlannedStep
from ..services import SERVICES, Options
from ..services.base import InputFile, OutputFile, file_options
from . import store

if TYPE_CHECKING:
    from .staging import RunFiles
    from .storage import StoredObject

PREFIX = "ifcflow:cache:"
MARK = "ifcflow_cached"
"""Job hash field naming the run a cached step came from (what readers that skip results, e.g. a batch's, see)."""
ENV = "IFCFLOW_CACHE"
"""``IFCFLOW_CACHE=off`` in a worker's environment: that worker neither serves nor records cached steps."""
LIBRARIES: dict[str, tuple[str, ...]] = {
    "ifcconvert": ("ifcopenshell",), "ifctester": ("ifcopenshell", "ifctester"),
    "ifcclash": ("ifcopenshell", "ifcclash"), "ifccsv": ("ifcopenshell", "ifccsv", "pandas", "openpyxl", "odfpy"),
    "ifccsv-import": ("ifcopenshell", "ifccsv", "pandas", "openpyxl", "odfpy"), "ifcdiff": ("ifcopenshell", "ifcdiff"),
    "ifc2json": ("ifcopenshell",), "ifc5d": ("ifcopenshell", "ifc5d"), "ifcpatch": ("ifcopenshell", "ifcpatch"),
}
"""The distributions whose version is part of a service's key (ifcopenshell for any service not listed)."""


def enabled() -> bool:
    return os.environ.get(ENV, "on").strip().lower() not in ("off", "0", "false", "no")


DIGEST_PREFIX = "ifcflow:digest:"
DIGEST_TTL = 7 * 24 * 3600
"""Seconds a file's digest is remembered in Redis (``ifcflow:digest:<hash of the file's identity>``)."""
SHARE_MIN = 256 * 1024
"""Files smaller than this (bytes) are hashed again rather than looked up in Redis: hashing 256 KiB takes about
as long as one round trip."""
SETTLED_NS = 50_000_000
"""A digest is remembered only for a file whose last change (mtime or ctime) is this much older than the hashing
start: a file's timestamps tick in coarse steps, so a same-size rewrite within one step would look unchanged."""


def sha256(path: str | Path, conn: Redis | None = None) -> str:
    """The file's sha256, in one read pass; remembered while the file is unchanged, in this process and, with
    ``conn``, in Redis for every process on this host (the submitting client, the step's work horse, the next
    step's), so a 100 MB model is read once per change, not at each of submit, sharing, cache key and history.

    The file's identity is (real path, size, mtime_ns, ctime_ns, inode, device) plus this boot's id: any write,
    rename onto the path or ``touch`` changes it (ctime cannot be set back), and a reboot forgets every entry."""
    real = os.path.realpath(path)
    identity = _identity(real)
    known = _KNOWN.get(identity)
    if known is not None:
        return known
    if identity[1] < SHARE_MIN:
        conn = None  # hashing it is quicker than asking Redis (a small step's outputs: one round trip fewer each)
    key = DIGEST_PREFIX + hashlib.sha256(json.dumps([*identity, _boot_id()]).encode()).hexdigest()
    if conn is not None:
        with contextlib.suppress(RedisError):
            found = conn.get(key)
            if found and len(found) == 64:
                return _keep(identity, found.decode() if isinstance(found, bytes) else str(found))
    started = time.time_ns()
    with open(real, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    if _identity(real) != identity or started - max(identity[4], identity[5]) < SETTLED_NS:
        return digest  # changed meanwhile, or too recently to trust its timestamps: not remembered
    if conn is not None:
        with contextlib.suppress(RedisError):
            conn.set(key, digest, ex=DIGEST_TTL)
    return _keep(identity, digest)


_KNOWN: dict[tuple[str, int, int, int, int, int], str] = {}


def _identity(real: str) -> tuple[str, int, int, int, int, int]:
    facts = os.stat(real)
    return real, facts.st_size, facts.st_ino, facts.st_dev, facts.st_mtime_ns, facts.st_ctime_ns


def _keep(identity: tuple[str, int, int, int, int, int], digest: str) -> str:
    if len(_KNOWN) >= 1024:
        _KNOWN.pop(next(iter(_KNOWN)))
    _KNOWN[identity] = digest
    return digest


@cache
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


@cache
def versions(service: str) -> dict[str, str]:
    found = {}
    for dist in ("ifcflow", *LIBRARIES.get(service, ("ifcopenshell",))):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "absent"
    return found


def _set(data: Any, path: tuple[str | int, ...], value: str) -> None:
    for part in path[:-1]:
        data = data[part]
    data[path[-1]] = value


def _hash_files(value: Any, conn: Redis | None = None) -> Any:
    """Recipe arguments with every absolute path of an existing file replaced by its contents' sha256 (a model
    ``MergeProjects`` reads changes the key as an input file does)."""
    if isinstance(value, list):
        return [_hash_files(v, conn) for v in value]
    if isinstance(value, str) and value.startswith("/") and os.path.isfile(value):
        return "sha256:" + sha256(value, conn)
    return value


def key(planned: PlannedStep, options: Options | None = None, conn: Redis | None = None) -> str | None:
    """The step's cache key, or None when an input is not a readable file (the step then runs, and fails); with
    ``conn``, input digests are shared through Redis (:func:`sha256`)."""
    options = options or SERVICES[planned.service].options.model_validate(planned.options)
    data = copy.deepcopy(planned.options)
    workdir = Path(planned.workdir)
    for sub, marker, value in file_options(options):
        if isinstance(marker, InputFile):
            if not os.path.isfile(value):
                return None
            _set(data, sub, "sha256:" + sha256(value, conn))
        elif isinstance(marker, OutputFile):
            path = Path(value)
            _set(data, sub, str(path.relative_to(workdir)) if path.is_relative_to(workdir) else value)
    if planned.service == "ifcpatch" and isinstance(data.get("arguments"), list):
        data["arguments"] = _hash_files(data["arguments"], conn)
    document = {"service": planned.service, "versions": versions(planned.service), "options": data}
    return hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def lookup(conn: Redis, cache_key: str) -> dict[str, Any] | None:
    raw = conn.get(PREFIX + cache_key)
    return json.loads(raw) if raw else None


def _intact(outputs: dict[str, dict[str, Any]], conn: Redis) -> bool:
    """Every recorded output still exists with its recorded size and contents."""
    for entry in outputs.values():
        path = Path(entry["path"])
        if not path.is_file() or path.stat().st_size != entry["size"] or sha256(path, conn) != entry["sha256"]:
            return False
    return True


def _link(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (copy across file systems), replacing it atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".cached-{os.getpid()}-{target.name}")
    temp.unlink(missing_ok=True)
    try:
        os.link(source, temp)
    except OSError:
        shutil.copy2(source, temp)
    os.replace(temp, target)


def serve(conn: Redis, cache_key: str, planned: PlannedStep, files: RunFiles | None = None) -> dict[str, Any] | None:
    """The step's result when an identical step succeeded earlier and its outputs are intact (they are linked
    into this step's folder, or copied to its keys in the store), else None."""
    entry = lookup(conn, cache_key)
    if entry is None or not set(entry["outputs"]) <= set(planned.outputs):
        return None
    objects: dict[str, Any] = {}
    if files is not None:
        if not _stored_intact(files, entry["outputs"]):
            return None
        from .staging import facts
        from .storage import StoredObject as Stored

        for name, recorded in entry["outputs"].items():
            target = files.key_of(planned.outputs[name])[0]
            stored = (files.storage.copy(recorded["key"], target) if recorded["key"] != target else
                      Stored(target, recorded["sha256"], recorded["size"]))
            objects[name] = facts(files.storage, stored)
    else:
        if not _intact(entry["outputs"], conn):
            return None
        for name, recorded in entry["outputs"].items():
            if Path(recorded["path"]) != Path(planned.outputs[name]):
                _link(Path(recorded["path"]), Path(planned.outputs[name]))
    origin = {"run_id": entry["run_id"], "step": entry["step"], "job_id": entry["job_id"]}
    hit = {"success": True, "cached": True, "cached_from": origin, "message": entry["message"],
           "data": entry["data"], "outputs": {name: planned.outputs[name] for name in entry["outputs"]}}
    return {**hit, "objects": objects} if files is not None else hit


def _stored_intact(files: RunFiles, outputs: dict[str, dict[str, Any]]) -> bool:
    """Every recorded output is still in the store with its recorded sha256 (entries of local runs are not)."""
    for entry in outputs.values():
        found = files.storage.head(entry["key"]) if "key" in entry else None
        if found is None or found.sha256 != entry["sha256"] or found.size != entry["size"]:
            return False
    return True


def remember(conn: Redis, cache_key: str, planned: PlannedStep, run_id: str, result: dict[str, Any],
             stored: dict[str, StoredObject] | None = None) -> None:
    """Index a succeeded step's outputs (their sizes and hashes; their keys when ``stored`` in object storage)
    under its key, for the run's retention time."""
    if stored is not None:
        outputs = {name: {"path": result["outputs"][name], "key": obj.key, "size": obj.size, "sha256": obj.sha256}
                   for name, obj in stored.items()}
    else:
        outputs = {name: {"path": path, "size": os.path.getsize(path), "sha256": sha256(path, conn)}
                   for name, path in result["outputs"].items()}
    entry = {"run_id": run_id, "step": planned.id, "job_id": planned.job_id, "message": result["message"],
             "data": result["data"], "outputs": outputs}
    ttl = int(conn.hget(store.run_key(run_id), "ttl") or store.DEFAULT_TTL)
    conn.set(PREFIX + cache_key, json.dumps(entry), ex=ttl)
