"""The history database: runs, steps, files, lineage edges and audit events that outlive Redis.

One code path (SQLAlchemy Core 2) for both backends: SQLite (the embedded default, ``history.sqlite`` in the data
folder or next to the run folders) and PostgreSQL (``IFCFLOW_DATABASE_URL=postgresql://...``, driver psycopg 3).
The schema is created and upgraded by Alembic at first use (the migration scripts ship in
``ifcflow/history/migrations``); a later schema change upgrades an existing database the same way.

Writes are idempotent upserts on natural keys (run id; run id + step id; path + sha256; the edge itself; the audit
event's key), so a record applied twice (a crash between writing and acknowledging it, two drainers) is stored
once. Fields that never change keep their first value; fields that change (state, times, error) take the value
of the newest record (its ``at``), whatever the order records arrive in.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    MetaData,
    String,
    Table,
    Text,
    and_,
    case,
    create_engine,
    delete,
    event,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from ..errors import IfcflowError
from . import ENV

FILE = "history.sqlite"
VERSION_TABLE = "ifcflow_history_version"

metadata = MetaData()
runs = Table(
    "runs", metadata,
    Column("run_id", String(200), primary_key=True),
    Column("pipeline", String(200)), Column("pipeline_sha256", String(64)), Column("file", Text),
    Column("actor", String(200)), Column("inputs", Text), Column("state", String(40)),
    Column("created_at", Float, index=True), Column("ended_at", Float), Column("batch_id", String(200)),
    Column("schedule", String(200)), Column("out_dir", Text), Column("updated", Float, nullable=False),
)
steps = Table(
    "steps", metadata,
    Column("run_id", String(200), primary_key=True), Column("step_id", String(200), primary_key=True),
    Column("service", String(60)), Column("versions", Text), Column("options_hash", String(64)),
    Column("state", String(40)), Column("worker", String(200)), Column("host", String(200)),
    Column("started_at", Float), Column("ended_at", Float), Column("duration", Float), Column("error", Text),
    Column("updated", Float, nullable=False),
)
files = Table(
    "files", metadata,
    Column("id", String(64), primary_key=True, comment="sha256 of path NUL sha256: one version of one file"),
    Column("path", Text, nullable=False), Column("sha256", String(64), nullable=False, index=True),
    Column("size", BigInteger), Column("first_seen", Float),
)
edges = Table(
    "edges", metadata,
    Column("run_id", String(200), primary_key=True), Column("step_id", String(200), primary_key=True),
    Column("file_id", String(64), primary_key=True), Column("role", String(10), primary_key=True),
    Column("sha256", String(64), nullable=False), Column("name", String(200)),
    Index("edges_sha_role", "sha256", "role"),
)
audit = Table(
    "audit", metadata,
    Column("key", String(300), primary_key=True), Column("event", String(40), nullable=False),
    Column("actor", String(200)), Column("at", Float, nullable=False, index=True), Column("run_id", String(200)),
    Column("batch_id", String(200)), Column("schedule", String(200)), Column("detail", Text),
)
STATIC = {runs: ("pipeline", "pipeline_sha256", "file", "actor", "inputs", "created_at", "batch_id", "schedule",
                 "out_dir"),
          steps: ("service",)}
"""Columns that keep their first non-empty value."""
LATEST = {runs: ("state", "ended_at"), steps: ("state", "error", "started_at", "ended_at", "duration")}
"""Columns that take the newest record's value (empty included: a retried run has no end yet)."""
INFO = {steps: ("versions", "options_hash", "worker", "host")}
"""Columns that take the newest record's non-empty value."""


class HistoryUnavailable(IfcflowError):
    """The history database cannot be reached or used."""


def url_for(folder: str | Path | None = None) -> str:
    """``$IFCFLOW_DATABASE_URL``, else SQLite in ``folder`` (the data folder, or the folder of the run folders)."""
    configured = os.environ.get(ENV, "").strip()
    if configured:
        return configured
    return f"sqlite:///{(Path(folder or 'ifcflow-runs').resolve() / FILE)}"


def engine_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (SQLAlchemy's default would be psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    head, sep, tail = url.partition("@")
    if not sep or "://" not in head:
        return url
    scheme, _, credentials = head.partition("://")
    return f"{scheme}://{credentials.split(':')[0]}:***@{tail}"


_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def engine(url: str) -> Engine:
    """The engine for ``url``, created (and the schema migrated to the newest version) at first use."""
    with _lock:
        found = _engines.get(url)
        if found is not None:
            return found
        target = engine_url(url)
        if not target.startswith(("sqlite:///", "postgresql+psycopg://")):
            raise HistoryUnavailable(f"history database {redact(url)!r} is not supported: give "
                                     f"{ENV}=postgresql://USER@HOST/DB or sqlite:///PATH")
        if target.startswith("sqlite:///"):
            folder = Path(target[len("sqlite:///"):]).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise HistoryUnavailable(f"cannot create the folder of the history database {folder}: {exc}; "
                                         f"fix the folder or set {ENV}") from None
            made = create_engine(target, connect_args={"timeout": 30})
            event.listen(made, "connect", _sqlite_pragmas)
        else:
            made = create_engine(target, pool_pre_ping=True, pool_size=2, max_overflow=4,
                                 connect_args={"connect_timeout": 5})
        try:
            migrate(made)
        except SQLAlchemyError as exc:
            made.dispose()
            raise HistoryUnavailable(f"history database {redact(url)} is not usable: {exc.__class__.__name__}: "
                                     f"{str(exc).splitlines()[0]}; check {ENV} (or the data folder) and that the "
                                     "database is running") from None
        _engines[url] = made
        return made


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def migrate(made: Engine) -> None:
    """Upgrade the schema to the newest migration (Alembic, scripts in ``ifcflow/history/migrations``)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    for attempt in range(3):  # two processes migrating at once: the loser sees the winner's tables next time
        try:
            with made.begin() as conn:
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
            return
        except SQLAlchemyError:
            if attempt == 2:
                raise


def dispose(url: str) -> None:
    with _lock:
        found = _engines.pop(url, None)
    if found is not None:
        found.dispose()


def file_id(path: str, sha: str) -> str:
    return hashlib.sha256(f"{path}\0{sha}".encode()).hexdigest()


def _insert(conn: Connection, table: Table) -> Any:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def _upsert(conn: Connection, table: Table, rows: list[dict[str, Any]], keys: tuple[str, ...]) -> None:
    """Insert ``rows``; on a key conflict merge them (see :data:`STATIC`, :data:`LATEST`, :data:`INFO`)."""
    if not rows:
        return
    stmt = _insert(conn, table)
    new = stmt.excluded
    newer = new.updated >= table.c.updated
    merge: dict[str, Any] = {}
    for name in STATIC.get(table, ()):
        merge[name] = func.coalesce(table.c[name], new[name])
    for name in LATEST.get(table, ()):
        merge[name] = case((newer, new[name]), else_=table.c[name])
    for name in INFO.get(table, ()):
        merge[name] = case((and_(newer, new[name].is_not(None)), new[name]), else_=func.coalesce(table.c[name],
                                                                                                 new[name]))
    merge["updated"] = case((newer, new.updated), else_=table.c.updated)
    upsert = stmt.on_conflict_do_update(index_elements=list(keys), set_=merge)
    rounds: list[dict[tuple[Any, ...], dict[str, Any]]] = []
    for row in rows:  # one statement may touch a row once: records of the same key go in successive rounds
        key = tuple(row[k] for k in keys)
        free = next((r for r in rounds if key not in r), None)
        if free is None:
            free = {}
            rounds.append(free)
        free[key] = row
    for batch in rounds:
        conn.execute(upsert, list(batch.values()))


def _insert_new(conn: Connection, table: Table, rows: list[dict[str, Any]], keys: tuple[str, ...]) -> None:
    unique = list({tuple(row[k] for k in keys): row for row in rows}.values())
    if unique:
        conn.execute(_insert(conn, table).on_conflict_do_nothing(index_elements=list(keys)), unique)


def apply(url: str, records: Iterable[Mapping[str, Any]]) -> int:
    """Write outbox records (see :mod:`ifcflow.engine.outbox`) in one transaction; returns how many were applied."""
    run_rows, step_rows, file_rows, edge_rows, audit_rows = [], [], [], [], []
    count = 0
    for record in records:
        count += 1
        kind = record.get("kind")
        if kind == "run":
            run_rows.append(_run_row(record))
            for entry in (record.get("inputs") or {}).values():
                if entry.get("sha256"):
                    file_rows.append(_file_row(entry, record["at"]))
        elif kind == "step":
            step_rows.append(_step_row(record))
            for role in ("input", "output"):
                for entry in record.get(role + "s") or []:
                    file_rows.append(_file_row(entry, record["at"]))
                    edge_rows.append({"run_id": record["run_id"], "step_id": record["step_id"], "role": role,
                                      "file_id": file_id(entry["path"], entry["sha256"]), "sha256": entry["sha256"],
                                      "name": entry.get("name")})
        elif kind == "audit":
            audit_rows.append({k: record.get(k) for k in ("key", "event", "actor", "at", "run_id", "batch_id",
                                                          "schedule")}
                              | {"detail": json.dumps(record.get("detail") or {})})
    with engine(url).begin() as conn:
        _upsert(conn, runs, run_rows, ("run_id",))
        _upsert(conn, steps, step_rows, ("run_id", "step_id"))
        _insert_new(conn, files, file_rows, ("id",))
        _insert_new(conn, edges, edge_rows, ("run_id", "step_id", "file_id", "role"))
        _insert_new(conn, audit, audit_rows, ("key",))
    return count


def _run_row(record: Mapping[str, Any]) -> dict[str, Any]:
    row = {name: record.get(name) for name in STATIC[runs] + LATEST[runs]}
    row["inputs"] = json.dumps(record["inputs"], sort_keys=True) if record.get("inputs") is not None else None
    row.update(run_id=record["run_id"], updated=record["at"])
    return row


def _step_row(record: Mapping[str, Any]) -> dict[str, Any]:
    row = {name: record.get(name) for name in STATIC[steps] + LATEST[steps] + INFO[steps]}
    row["versions"] = json.dumps(record["versions"], sort_keys=True) if record.get("versions") else None
    row.update(run_id=record["run_id"], step_id=record["step_id"], updated=record["at"])
    return row


def _file_row(entry: Mapping[str, Any], at: float) -> dict[str, Any]:
    return {"id": file_id(entry["path"], entry["sha256"]), "path": entry["path"], "sha256": entry["sha256"],
            "size": entry.get("size"), "first_seen": at}


def prune(url: str, before: float) -> dict[str, int]:
    """Delete runs created before ``before`` (epoch seconds), their steps and edges, audit events before it, and
    files no edge or run names any more; returns the counts deleted."""
    with engine(url).begin() as conn:
        old = select(runs.c.run_id).where(runs.c.created_at < before).scalar_subquery()
        counts = {"edges": conn.execute(delete(edges).where(edges.c.run_id.in_(old))).rowcount,
                  "steps": conn.execute(delete(steps).where(steps.c.run_id.in_(old))).rowcount,
                  "audit": conn.execute(delete(audit).where(audit.c.at < before)).rowcount,
                  "runs": conn.execute(delete(runs).where(runs.c.created_at < before)).rowcount}
        used = select(edges.c.file_id)
        kept_inputs = {file_id(e["path"], e["sha256"]) for (text,) in conn.execute(select(runs.c.inputs))
                       if text for e in json.loads(text).values() if e.get("sha256")}
        orphans = [fid for (fid,) in conn.execute(select(files.c.id).where(files.c.id.not_in(used)))
                   if fid not in kept_inputs]
        for start in range(0, len(orphans), 500):
            conn.execute(delete(files).where(files.c.id.in_(orphans[start:start + 500])))
        counts["files"] = len(orphans)
    return counts
