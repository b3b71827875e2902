"""Batches: one run of a pipeline per matching file (or per combination of files), under one batch id.

``ifcflow run p.yaml --each arch='models/**/*.ifc'`` (or ``for_each: arch`` in the pipeline, with a glob as the
input's value) expands the globs at submit time (``--each`` globs relative to the current folder, ``for_each``
globs relative to the pipeline file, like every input), sorted; several make the product (a matrix), capped by
``max_runs``. Every sub-run is an ordinary run (its own run id, plan, status, cancel, retry, report), planned from
the pipeline parsed once, and ALL of them go to Redis in one MULTI/EXEC transaction with the batch record
(:func:`ifcflow.engine.enqueue.submit_many`): a bad file or a failure writes nothing.

Fairness: each sub-run has its own start gate, and only a *window* of sub-runs is released at a time (``window``,
default twice the workers registered, at least 2, re-read as workers come and go). When a sub-run ends, the worker
that ran its last job opens the next gate (:func:`ifcflow.batches.lifecycle.advance`; the batch's follower does too, for plain ``rq
worker`` deployments). So a batch of 500 keeps only a few sub-runs' jobs in the queues at any time, and a run
submitted after it waits behind at most that window instead of behind 500 files.

Keys: ``ifcflow:batch:<id>`` hash (``record`` JSON, ``released`` count, ``canceled``, ``ended_at``),
``ifcflow:batch:<id>:ended`` set of ended sub-runs, ``ifcflow:batch:<id>:rows`` hash sub-run -> its final row
(state, step states, errors, times: recorded when the batch notes its end, so the batch keeps it even after the
sub-run itself was pruned or expired), ``ifcflow:batches`` sorted set by creation time; every
sub-run's record has ``batch``.
"""

from __future__ import annotations

import functools
import itertools
import os
import secrets
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict
from redis import Redis
from redis.client import Pipeline as RedisPipeline

from ..engine import enqueue, packs, runstates, store
from ..engine.runstates import RunRow
from ..engine.states import RunState
from ..errors import IfcflowError, PipelineError
from ..pipeline import document
from ..pipeline.plan import Plan, plan
from . import globs
from .window import window_size

BATCHES = store.BATCHES
DEFAULT_MAX_RUNS = 1000


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubRun(Strict):
    run_id: str
    label: str
    """The file (or files, for a matrix) this sub-run is for, as the user wrote them."""
    inputs: dict[str, str]


class TemplateStep(Strict):
    id: str
    on_failure: str = "stop"


class BatchRecord(Strict):
    batch_id: str
    pipeline: str
    file: str
    created_at: str
    out_dir: str
    ttl: int
    window: int = 0
    """Sub-runs released at a time; 0: twice the registered workers (at least 2). Packs: that many packs."""
    pack: int = 1
    """Sub-runs per pack job (1: a job per sub-run; see :mod:`ifcflow.engine.packs`), set at submit."""
    each: dict[str, str]
    steps: list[TemplateStep]
    runs: list[SubRun]


def sub_run_id(batch_id: str, index: int, total: int) -> str:
    """``<batch id>-<index>``, the index zero-padded to the width of the last one (so ids sort by index)."""
    return f"{batch_id}-{index:0{len(str(total - 1))}d}"


class Control(Strict):
    """The part of a batch record that releasing sub-runs needs (small: read after every job of the batch)."""

    batch_id: str
    total: int
    window: int
    ttl: int
    steps: list[TemplateStep]
    pack: int = 1

    def run_id(self, index: int) -> str:
        return sub_run_id(self.batch_id, index, self.total)


class BatchNotFound(IfcflowError):
    def __init__(self, batch_id: str):
        super().__init__(f"no batch '{batch_id}' on this Redis; batches expire with their runs' results")


key = store.batch_key


def ended_key(batch_id: str) -> str:
    return f"ifcflow:batch:{batch_id}:ended"


def held_key(batch_id: str) -> str:
    """List of retried sub-runs whose retry gate waits for room in the window (in order)."""
    return f"ifcflow:batch:{batch_id}:held"


def rows_key(batch_id: str) -> str:
    return f"ifcflow:batch:{batch_id}:rows"


def run_rows(conn: Redis, batch_id: str, steps: list[TemplateStep], run_ids: list[str]) -> dict[str, RunRow]:
    """Each sub-run's row: the one the batch recorded when the sub-run ended, else computed now (read-only)."""
    recorded: list[bytes | None] = conn.hmget(rows_key(batch_id), run_ids) if run_ids else []  # type: ignore[assignment]
    rows = {run_id: RunRow.load(raw) for run_id, raw in zip(run_ids, recorded) if raw}
    rest = [run_id for run_id in run_ids if run_id not in rows]
    rows.update(runstates.rows(conn, [(s.id, s.on_failure) for s in steps], rest))
    return {run_id: rows[run_id] for run_id in run_ids}


def run_states(conn: Redis, batch_id: str, steps: list[TemplateStep], run_ids: list[str]) -> dict[str, RunState]:
    return {run_id: row.status for run_id, row in run_rows(conn, batch_id, steps, run_ids).items()}


def exists(conn: Redis, batch_id: str) -> bool:
    return bool(conn.exists(key(batch_id)))


def new_batch_id(pipeline: str, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"{pipeline}-{stamp}-b{secrets.token_hex(4)}"


def parse_each(values: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``NAME=GLOB`` pairs of ``--each``."""
    pairs: dict[str, str] = {}
    for value in values:
        name, sep, pattern = value.partition("=")
        if not sep or not name or not pattern:
            raise IfcflowError(f"--each {value!r}: write NAME=GLOB, e.g. --each arch='models/**/*.ifc'")
        pairs[name] = pattern
    return pairs


def expand(patterns: dict[str, str], max_runs: int = DEFAULT_MAX_RUNS) -> list[dict[str, str]]:
    """Every combination of the files each (absolute) glob matches, sorted; ``**`` spans folders (expanded by
    :func:`ifcflow.globs.expand`: no symlinked folder entered, each file once, at most ``max_runs + 1`` read)."""
    matched: dict[str, list[str]] = {}
    for name, pattern in patterns.items():
        try:
            files = globs.expand(pattern, limit=max_runs + 1)
        except globs.GlobError as exc:
            raise globs.GlobError(f"{name}: {exc}; nothing was enqueued") from None
        if not files:
            raise IfcflowError(f"{name}={pattern!r} matches no file; nothing was enqueued. Check the pattern (it is "
                               "expanded by ifcflow, so quote it in the shell; --each globs are relative to the "
                               "current folder, for_each globs to the pipeline file)")
        matched[name] = files
    total = 1
    for files in matched.values():
        total *= len(files)
    if total > max_runs:
        more = any(len(f) > max_runs for f in matched.values())  # that glob's walk stopped at max_runs + 1
        sizes = " x ".join(f"{len(f)}{'+' if len(f) > max_runs else ''} ({n})" for n, f in matched.items())
        raise IfcflowError(f"the batch would have {'at least ' if more else ''}{total} runs ({sizes}), more than "
                           f"--max-runs {max_runs}; narrow "
                           "the globs or raise --max-runs. Nothing was enqueued.")
    names = list(matched)
    return [dict(zip(names, combo)) for combo in itertools.product(*(matched[n] for n in names))]


def _label(inputs: dict[str, str], single: bool) -> str:
    def show(path: str) -> str:
        rel = os.path.relpath(path)
        return path if rel.startswith("..") else rel

    if single:
        return show(next(iter(inputs.values())))
    return ", ".join(f"{name}={show(path)}" for name, path in inputs.items())


def prepare(doc: document.Document, each: dict[str, str], out_root: str | Path = "ifcflow-runs",
            max_runs: int = DEFAULT_MAX_RUNS, ttl: int = store.DEFAULT_TTL, window: int = 0, cache: bool = True,
            batch_id: str | None = None) -> tuple[BatchRecord, list[Plan]]:
    """Plan one sub-run per combination (pure but for reading the input files' headers).

    ``each`` holds ``--each`` globs (relative to the current folder); the pipeline's ``for_each`` inputs not in
    it use their value in the document (already resolved against the pipeline's folder)."""
    undeclared = [name for name in each if name not in doc.pipeline.inputs]
    if undeclared:
        raise IfcflowError(f"--each names input(s) {', '.join(undeclared)} not declared in {doc.path}'s 'inputs:' "
                           f"(declared: {', '.join(doc.pipeline.inputs) or 'none'})")
    patterns = {name: doc.inputs[name] for name in doc.pipeline.for_each if name not in each}
    patterns.update({name: str(Path(pattern).absolute()) for name, pattern in each.items()})
    if not patterns:
        raise IfcflowError("a batch needs --each NAME=GLOB or 'for_each:' in the pipeline")
    combos = expand(patterns, max_runs)
    now = datetime.now(UTC)
    batch_id = batch_id or new_batch_id(doc.pipeline.name, now)
    root = Path(out_root) / batch_id
    plans, runs = [], []
    for index, combo in enumerate(combos):
        run_id = sub_run_id(batch_id, index, len(combos))
        plans.append(plan(_rebind(doc, combo, patterns), run_id=run_id, out_root=root, now=now, cache=cache))
        runs.append(SubRun(run_id=run_id, label=_label(combo, len(combo) == 1), inputs=combo))
    first = plans[0]
    record = BatchRecord(
        batch_id=batch_id, pipeline=first.pipeline, file=first.file, created_at=now.isoformat(),
        out_dir=str(root.resolve()), ttl=ttl, window=window, each=patterns,
        steps=[TemplateStep(id=s.id, on_failure=s.on_failure) for s in first.steps], runs=runs)
    return record, plans


def _rebind(doc: document.Document, combo: dict[str, str], patterns: dict[str, str]) -> document.Document:
    """The sub-run's document; a bad file is named as what the glob matched, not as an ``-i`` the user never
    wrote."""
    try:
        return document.rebind(doc, combo)
    except PipelineError as exc:
        found = []
        for problem in exc.problems:
            name = problem.file[3:].partition("=")[0] if problem.file.startswith("-i ") else ""
            if name in combo and name in patterns:
                shown = os.path.relpath(combo[name]) if not os.path.relpath(combo[name]).startswith("..") \
                    else combo[name]
                problem = replace(problem, file=f"{name}={shown} (matched by the batch glob {patterns[name]})")
            found.append(problem)
        raise PipelineError(found) from None


@functools.lru_cache(maxsize=16)
def control_of(raw: bytes) -> Control:
    """A batch's control record, parsed once per content (an advance reads it after every job of the batch)."""
    return Control.model_validate_json(raw)


def submit(conn: Redis, record: BatchRecord, plans: list[Plan], fields: dict[str, dict[str, str]] | None = None) -> None:
    """Every sub-run and the batch record in one transaction; the first window of sub-runs is released.
    ``fields`` adds fields to sub-runs' records, by run id (their object-storage pins, see ifcflow.engine.staging)."""
    window = window_size(conn, record.window)
    record.pack = packs.size_for(plans, [sub.inputs for sub in record.runs], window)
    release = min(window * record.pack, len(plans))
    control = Control(batch_id=record.batch_id, total=len(record.runs), window=record.window, ttl=record.ttl,
                      steps=record.steps, pack=record.pack)

    def write(pipe: RedisPipeline) -> None:
        created = time.time()
        pipe.hset(key(record.batch_id), mapping={"record": record.model_dump_json(), "released": release,
                                                 "control": control.model_dump_json(), "created_at": created})
        pipe.zadd(BATCHES, {record.batch_id: created})
        for sub in record.runs:
            added = {"batch": record.batch_id, **(fields or {}).get(sub.run_id, {})}
            pipe.hset(store.run_key(sub.run_id), mapping=added)  # type: ignore[arg-type]

    try:
        if record.pack > 1:  # small files: several sub-runs per job
            packs.submit(conn, record.batch_id, plans, record.pack, record.ttl, release=window, fields=fields or {},
                         extra=write)
        else:
            enqueue.submit_many(conn, plans, record.ttl, release=release, extra=write,
                                meta={enqueue.BATCH: record.batch_id})
    except BaseException:  # the runs were rolled back; so is the batch record
        conn.delete(*store.batch_keys(record.batch_id))
        conn.zrem(BATCHES, record.batch_id)
        raise


def start(conn: Redis, file: str | Path, inputs: dict[str, str] | None = None, each: dict[str, str] | None = None,
          out: str | Path = "ifcflow-runs", ttl: int = store.DEFAULT_TTL, max_runs: int = DEFAULT_MAX_RUNS,
          window: int = 0, cache: bool = True) -> BatchRecord:
    """Check ``file``, expand the globs, plan and submit the batch (what ``POST /batches`` needs)."""
    doc = document.load(file, inputs, check_files=not each)  # every sub-run's files are checked when planned
    record, plans = prepare(doc, each or {}, out, max_runs=max_runs, ttl=ttl, window=window, cache=cache)
    submit(conn, record, plans)
    return record


def load(conn: Redis, batch_id: str) -> BatchRecord:
    raw = conn.hget(key(batch_id), "record")
    if raw is None:
        raise BatchNotFound(batch_id)
    return BatchRecord.model_validate_json(raw)


def recent(conn: Redis, limit: int = 20) -> list[str]:
    found: list[bytes] = conn.zrevrange(BATCHES, 0, limit - 1)  # type: ignore[assignment]
    return [b.decode() for b in found]
