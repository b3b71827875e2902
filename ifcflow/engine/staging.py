"""Moving a step's files between the store and a worker (the S3 path; a local folder needs none of it).

A run kept in S3 carries a ``storage`` field in its record (JSON ``{url, out_dir, pins, root}``), written at submit:

- ``pins``: every input file outside the run folder, by its path in the plan -> ``{key, sha256, size,
  version_id}`` as uploaded (or found) at submit. A later re-upload of that key does not change the run: the worker
  asks for the pinned version (versioned bucket) and checks the sha256 either way.
- outputs: a plan path inside the run folder ``<out>/<run_id>/<step>/<name>`` is the key
  ``runs/<run_id>/<step>/<name>``; with a ``root`` (a server's data folder), any other path below it is the key of
  its path relative to it (``output/converted/arch.glb``, the original system's keys).

On the worker (:class:`RunFiles`), a step's inputs are fetched into a worker-local LRU cache keyed by sha256
(``IFCFLOW_WORKER_CACHE``, bounded by ``IFCFLOW_WORKER_CACHE_SIZE``), hard-linked into a private step folder, and
the tool runs on those local paths; its outputs are uploaded (with their sha256) before the step's result is
recorded, so a half-uploaded output is never an output of the run.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis import Redis

from ..errors import StepError, StorageError
from ..pipeline.plan import Plan, PlannedStep
from ..services import SERVICES
from ..services.base import InputFile, OutputFile, file_options
from . import store
from .storage import Storage, StoredObject, configured, object_key, sha256_file

FIELD = store.STORAGE_FIELD
CACHE_ENV = "IFCFLOW_WORKER_CACHE"
CACHE_SIZE_ENV = "IFCFLOW_WORKER_CACHE_SIZE"
DEFAULT_CACHE_SIZE = 10 * 1024**3
UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def size_limit(text: str | None) -> int:
    """``10G``, ``500M``, ``1048576`` -> bytes."""
    value = (text or "").strip().lower().removesuffix("b").removesuffix("i")
    if not value:
        return DEFAULT_CACHE_SIZE
    unit = value[-1] if value[-1] in UNITS else ""
    try:
        return int(float(value[: len(value) - len(unit)]) * UNITS[unit])
    except ValueError:
        raise StorageError(f"{CACHE_SIZE_ENV}={text!r}: give a size such as 10G or 500M") from None


def output_key(out_dir: str, path: str, root: str | None = None) -> str:
    """The key of a plan path inside the run folder (``runs/<run_id>/<step>/<name>``) or else below ``root``."""
    run_dir = Path(out_dir)
    target = Path(path)
    if target.is_relative_to(run_dir):
        return object_key("runs", run_dir.name, str(target.relative_to(run_dir)))
    if root and target.is_relative_to(root):
        return object_key(str(target.relative_to(root)))
    raise StorageError(f"{path} is neither an input pinned at submit nor inside the run folder {out_dir}")


def input_paths(plan: Plan) -> list[str]:
    """Every input file the plan reads from outside its run folder (what must be pinned)."""
    found: list[str] = []
    for step in plan.steps:
        options = SERVICES[step.service].options.model_validate(step.options)
        for _, marker, value in file_options(options):
            if isinstance(marker, InputFile) and not Path(value).is_relative_to(plan.out_dir) and value not in found:
                found.append(value)
    return found


def pin_inputs(storage: Storage, plan: Plan, keys: dict[str, str] | None = None,
               root: str | None = None, known: dict[str, StoredObject] | None = None) -> dict[str, str]:
    """Upload the plan's local input files (skipped when that sha256 is already stored) and return the run record
    field that pins them. ``keys`` names objects already in the store (an HTTP upload) by plan path, ``known`` the
    same objects already headed; ``root`` (a server's data folder) maps outputs outside the run folder to keys
    relative to it."""
    pins: dict[str, dict[str, Any]] = {}
    for path in input_paths(plan):
        if known and path in known:
            stored = known[path]
        elif keys and path in keys:
            headed = storage.head(keys[path])
            if headed is None:
                raise StorageError(f"input {storage.describe(keys[path])} does not exist; upload it first")
            stored = headed
        else:
            if not os.path.isfile(path):
                raise StorageError(f"input file {path} does not exist")
            sha = sha256_file(path)
            key = object_key("inputs", sha, Path(path).name)
            found = storage.head(key)
            stored = found if found is not None and found.sha256 == sha else storage.put(Path(path), key, sha)
        pins[path] = {"key": stored.key, "sha256": stored.sha256, "size": stored.size, "version_id": stored.version_id}
    return {FIELD: json.dumps({"url": storage.url, "out_dir": plan.out_dir, "pins": pins, "root": root})}


def download_outputs(storage: Storage, plan: Plan) -> list[Path]:
    """Fetch every file the run's steps stored to its place in the run folder (``ifcflow run --out``)."""
    run_dir = Path(plan.out_dir)
    prefix = object_key("runs", run_dir.name)
    got = []
    for key in storage.list(prefix):
        target = run_dir / key[len(prefix) + 1:]
        storage.get(key, target)
        got.append(target)
    return got


class WorkerCache:
    """Objects by sha256 in ``root/objects``; least recently used ones go when the total passes ``limit``."""

    def __init__(self, root: Path, limit: int):
        self.root = root
        self.objects = root / "objects"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.limit = limit

    @classmethod
    def configured(cls) -> WorkerCache:
        root = os.environ.get(CACHE_ENV) or os.path.join(tempfile.gettempdir(), f"ifcflow-worker-{os.getuid()}")
        return cls(Path(root), size_limit(os.environ.get(CACHE_SIZE_ENV)))

    def fetch(self, storage: Storage, key: str, sha256: str | None = None, version_id: str | None = None) -> Path:
        """The local copy of the object (downloaded only when no object with its sha256 is cached)."""
        if not sha256:
            found = storage.head(key)
            if found is None:
                raise StorageError(f"{storage.describe(key)} does not exist (did the step that makes it succeed?)")
            sha256, version_id = found.sha256 or None, version_id or found.version_id
        if sha256:
            cached = self.objects / sha256
            if cached.is_file():
                os.utime(cached)  # most recently used
                return cached
        temp = self.objects / f".fetch-{os.getpid()}-{time.monotonic_ns()}"
        got = storage.get(key, temp, version_id=version_id, sha256=sha256)
        target = self.objects / got.sha256
        os.replace(temp, target)
        self.evict(keep={target})
        return target

    def evict(self, keep: set[Path]) -> None:
        entries = [(p.stat().st_mtime, p.stat().st_size, p) for p in self.objects.iterdir() if p.is_file()]
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.limit:
                break
            if path not in keep:
                path.unlink(missing_ok=True)  # a step using it holds its own hard link
                total -= size


@dataclass
class RunFiles:
    """A remote run's files as one worker sees them."""

    storage: Storage
    out_dir: str
    pins: dict[str, dict[str, Any]]
    cache: WorkerCache
    root: str | None = None
    """A server's data folder: plan paths below it (outside the run folder) are keys relative to it."""
    fetched: dict[str, StoredObject] = field(default_factory=dict)
    """The objects :meth:`localize` fetched, by option path (``input``, ``clash_sets.0.a.0.file``): lineage."""

    def key_of(self, path: str) -> tuple[str, str | None, str | None]:
        """(key, pinned sha256, pinned version id) of a plan path."""
        pin = self.pins.get(path)
        if pin is not None:
            return pin["key"], pin["sha256"], pin.get("version_id")
        return output_key(self.out_dir, path, self.root), None, None

    def localize(self, planned: PlannedStep, folder: Path) -> PlannedStep:
        """The step with its inputs fetched into ``folder/in`` and its outputs under ``folder/out``."""
        options_model = SERVICES[planned.service].options.model_validate(planned.options)
        data = json.loads(json.dumps(planned.options))
        workdir = folder / "out"
        for index, (sub, marker, value) in enumerate(file_options(options_model)):
            if isinstance(marker, InputFile):
                key, sha, version = self.key_of(value)
                cached = self.cache.fetch(self.storage, key, sha, version)
                self.fetched[".".join(map(str, sub))] = StoredObject(key, cached.name, cached.stat().st_size, version)
                local = folder / "in" / str(index) / Path(value).name
                local.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(cached, local)  # the step keeps its copy even if the cache evicts the object
                except FileNotFoundError:  # evicted by another worker process sharing the cache just now
                    os.link(self.cache.fetch(self.storage, key, sha, version), local)
                _set(data, sub, str(local))
            elif isinstance(marker, OutputFile):
                _set(data, sub, str(workdir / Path(value).relative_to(planned.workdir)))
        outputs = {n: str(workdir / Path(p).relative_to(planned.workdir)) for n, p in planned.outputs.items()}
        return planned.model_copy(update={"workdir": str(workdir), "options": data, "outputs": outputs})

    def upload(self, local: PlannedStep, planned: PlannedStep) -> dict[str, StoredObject]:
        """Upload every file the step wrote (its named outputs and side files such as an obj's mtl); the result
        is recorded only after every one is complete. Returns the named outputs' objects."""
        workdir = Path(local.workdir)
        names = {Path(path): name for name, path in local.outputs.items()}
        stored: dict[str, StoredObject] = {}
        done: list[StoredObject] = []
        for path in sorted(p for p in workdir.rglob("*") if p.is_file()):
            key = self.key_of(str(Path(planned.workdir) / path.relative_to(workdir)))[0]
            try:
                obj = self.storage.put(path, key)
            except StorageError as exc:
                self._discard([o.key for o in done])
                raise StepError(f"output {names.get(path, path.name)} could not be stored: {exc}") from None
            done.append(obj)
            if path in names:
                stored[names[path]] = obj
        return stored


    def _discard(self, keys: list[str]) -> None:
        """Best effort: remove what this attempt stored before one upload failed, so the step leaves no partial
        set of outputs (the store may be down; a retry overwrites them anyway)."""
        for key in keys:
            try:
                self.storage.delete(key)
            except StorageError:
                pass


def facts(storage: Storage, stored: StoredObject) -> dict[str, Any]:
    """A stored file as job results and the history name it: ``{key, url, sha256, size, version_id}``."""
    return {"key": stored.key, "url": storage.describe(stored.key), "sha256": stored.sha256, "size": stored.size,
            "version_id": stored.version_id}


def pinned_facts(raw: str | None) -> dict[str, dict[str, Any]]:
    """A run record's ``storage`` field as ``{plan path: facts}`` of its pinned inputs ({} for a local run)."""
    if not raw:
        return {}
    record = json.loads(raw)
    base = str(record["url"]).rstrip("/")
    return {path: {**pin, "url": f"{base}/{pin['key']}"} for path, pin in record.get("pins", {}).items()}


def _set(data: Any, path: tuple[str | int, ...], value: str) -> None:
    for part in path[:-1]:
        data = data[part]
    data[path[-1]] = value


def for_run(conn: Redis, run_id: str) -> RunFiles | None:
    """The run's remote files, or None for a run whose files are local paths (today's behaviour)."""
    raw = conn.hget(store.run_key(run_id), FIELD)
    return from_field(raw.decode() if isinstance(raw, bytes) else raw) if raw else None


def from_field(raw: str, storage: Storage | None = None, cache: WorkerCache | None = None) -> RunFiles:
    """The run's files from its record's ``storage`` field, with this worker's store (it must be the run's)."""
    record = json.loads(raw)
    storage = storage or configured()
    if storage.url != record["url"]:
        raise StepError(f"this run keeps its files in {record['url']} but this worker's storage is {storage.url}; "
                        f"start the worker with --storage {record['url']} (or set IFCFLOW_STORAGE)")
    return RunFiles(storage, record["out_dir"], record["pins"], cache or WorkerCache.configured(), record.get("root"))


def step_folder(files: RunFiles, job_id: str) -> Path:
    folder = files.cache.root / "steps" / f"{job_id}-{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder
