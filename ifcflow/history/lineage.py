"""Questions to the history database: which runs, what produced a file and from what, what was derived from it,
who did what (the same queries on SQLite and PostgreSQL; the lineage walk is one recursive CTE).

Lineage follows contents: a file is known by its sha256, so a model copied to another path, or an output served
from the cache, leads to the same steps. Walking up from a file: the steps that wrote a file with its sha256, then
the files those steps read, and so on; walking down: the steps that read it, then what they wrote.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from sqlalchemy import Integer, and_, literal, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql import Select

from ..errors import IfcflowError
from . import MAX_DEPTH
from . import database as history
from .database import audit, edges, files, runs, steps

Direction = Literal["up", "down", "both"]
SHA256 = re.compile(r"^[0-9a-f]{64}$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


@contextmanager
def _connected(url: str) -> Iterator[Connection]:
    """A connection; a database error on the way is :class:`ifcflow.history.database.HistoryUnavailable` (one line)."""
    try:
        with history.engine(url).connect() as conn:
            yield conn
    except SQLAlchemyError as exc:
        history.dispose(url)
        raise history.HistoryUnavailable(f"history database {history.redact(url)} failed: "
                                         f"{(str(exc).splitlines() or [type(exc).__name__])[0]}; check that it "
                                         "is running, then try again") from None


def since_seconds(text: str) -> float:
    """``30d``, ``12h``, ``2y``, ``90m``, ``45s``, ``3w`` -> seconds."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhdwy])\s*", text or "")
    if not match:
        raise IfcflowError(f"'{text}' is not a duration: write a number and a unit, e.g. 30d, 12h, 2y (units: "
                           f"{', '.join(UNITS)})")
    return int(match.group(1)) * UNITS[match.group(2)]


def runs_list(url: str, *, pipeline: str | None = None, since: float | None = None, state: str | None = None,
              limit: int = 100) -> list[dict[str, Any]]:
    """Runs, newest first, optionally of one pipeline, created after ``since`` (epoch), in one state."""
    query = select(runs).order_by(runs.c.created_at.desc(), runs.c.run_id).limit(limit)
    if pipeline:
        query = query.where(runs.c.pipeline == pipeline)
    if since is not None:
        query = query.where(runs.c.created_at >= since)
    if state:
        query = query.where(runs.c.state == state)
    with _connected(url) as conn:
        found = [dict(row._mapping) for row in conn.execute(query)]
        ids = [row["run_id"] for row in found]
        step_rows: Any = conn.execute(select(steps).where(steps.c.run_id.in_(ids)).order_by(steps.c.run_id,
                                                                                       steps.c.step_id)) if ids else []
        by_run: dict[str, list[dict[str, Any]]] = {}
        for row in step_rows:
            by_run.setdefault(row.run_id, []).append(_step(dict(row._mapping)))
    for row in found:
        row.pop("updated", None)
        row["inputs"] = json.loads(row["inputs"]) if row["inputs"] else {}
        row["steps"] = by_run.get(row["run_id"], [])
    return found


def _step(row: dict[str, Any]) -> dict[str, Any]:
    row.pop("updated", None)
    row.pop("run_id", None)
    row["versions"] = json.loads(row["versions"]) if row.get("versions") else {}
    return row


def starts(url: str, target: str) -> list[str]:
    """The sha256 values ``target`` names: a sha256 itself, else every version recorded at that path."""
    with _connected(url) as conn:
        if SHA256.match(target):
            return [target] if conn.execute(select(files.c.id).where(files.c.sha256 == target).limit(1)).first() \
                else []
        return sorted({sha for (sha,) in conn.execute(select(files.c.sha256).where(files.c.path == target))})


def _walk(direction: Literal["up", "down"], shas: list[str], depth: int) -> Select[Any]:
    """The recursive CTE: (sha256, depth) of every file reached within ``depth`` steps."""
    here, there = ("output", "input") if direction == "up" else ("input", "output")
    seed = select(files.c.sha256.label("sha256"), literal(0, Integer).label("depth")).where(
        files.c.sha256.in_(shas)).distinct()
    walk = seed.cte("walk", recursive=True)
    near, far = edges.alias("near"), edges.alias("far")
    step_on = select(far.c.sha256, (walk.c.depth + 1).label("depth")).select_from(
        walk.join(near, and_(near.c.sha256 == walk.c.sha256, near.c.role == here)).join(
            far, and_(far.c.run_id == near.c.run_id, far.c.step_id == near.c.step_id, far.c.role == there))
    ).where(walk.c.depth < depth)
    walk = walk.union(step_on)
    return select(walk.c.sha256, walk.c.depth)


def lineage(url: str, target: str, direction: Direction = "both", depth: int = 20) -> dict[str, Any]:
    """What produced ``target`` (a sha256 or a recorded path) and from what (``up``), what was derived from it
    (``down``), or both: ``{target, sha256, files, steps, edges}`` (edges file -> step -> file)."""
    if not 1 <= depth <= MAX_DEPTH:
        raise IfcflowError(f"depth {depth} is out of range: give 1 to {MAX_DEPTH}")
    shas = starts(url, target)
    if not shas:
        raise IfcflowError(f"'{target}' is not in the history: give a sha256, or the path of a file that a "
                           "recorded run read or wrote (ifcflow history lists the runs)")
    links: set[tuple[str, str, str, str]] = set()
    with _connected(url) as conn:
        for way in (("up", "down") if direction == "both" else (direction,)):
            found = {sha: d for sha, d in conn.execute(_walk(way, shas, depth))}
            role = "output" if way == "up" else "input"
            anchor = edges.alias("anchor")
            inner = [sha for sha, d in found.items() if d < depth] or [""]  # the files at the rim end the walk
            step_keys = select(anchor.c.run_id, anchor.c.step_id).where(anchor.c.sha256.in_(inner),
                                                                        anchor.c.role == role)
            keys = {(r, s) for r, s in conn.execute(step_keys)}
            links.update(_edges_of(conn, keys))
        return _document(conn, target, shas, links)


def _edges_of(conn: Any, keys: set[tuple[str, str]]) -> list[tuple[str, str, str, str]]:
    found: list[tuple[str, str, str, str]] = []
    ordered = sorted(keys)
    for start in range(0, len(ordered), 200):
        chunk = ordered[start:start + 200]
        runs_in = sorted({r for r, _ in chunk})
        rows = conn.execute(select(edges.c.run_id, edges.c.step_id, edges.c.sha256, edges.c.role).where(
            edges.c.run_id.in_(runs_in)))
        found += [(r, s, sha, role) for r, s, sha, role in rows if (r, s) in keys]
    return found


def _document(conn: Any, target: str, shas: list[str], links: set[tuple[str, str, str, str]]) -> dict[str, Any]:
    all_shas = sorted({sha for _, _, sha, _ in links} | set(shas))
    file_rows: dict[str, dict[str, Any]] = {}
    for start in range(0, len(all_shas), 500):
        for row in conn.execute(select(files.c.sha256, files.c.path, files.c.size).where(
                files.c.sha256.in_(all_shas[start:start + 500])).order_by(files.c.path)):
            entry = file_rows.setdefault(row.sha256, {"sha256": row.sha256, "size": row.size, "paths": []})
            entry["paths"].append(row.path)
    keys = sorted({(r, s) for r, s, _, _ in links})
    step_docs = []
    for run_id, step_id in keys:
        row = conn.execute(select(steps.c.service, steps.c.state, steps.c.ended_at, runs.c.pipeline, runs.c.actor)
                           .select_from(steps.outerjoin(runs, runs.c.run_id == steps.c.run_id))
                           .where(steps.c.run_id == run_id, steps.c.step_id == step_id)).first()
        step_docs.append({"run_id": run_id, "step": step_id, "service": row.service if row else None,
                          "state": row.state if row else None, "ended_at": row.ended_at if row else None,
                          "pipeline": row.pipeline if row else None, "actor": row.actor if row else None})
    edge_docs = [{"run_id": r, "step": s, "sha256": sha, "role": role} for r, s, sha, role in sorted(links)]
    return {"target": target, "sha256": shas, "files": list(file_rows.values()), "steps": step_docs,
            "edges": edge_docs}


def audit_list(url: str, *, since: float | None = None, event: str | None = None, run_id: str | None = None,
               limit: int = 100) -> list[dict[str, Any]]:
    query = select(audit).order_by(audit.c.at.desc(), audit.c.key).limit(limit)
    if since is not None:
        query = query.where(audit.c.at >= since)
    if event:
        query = query.where(audit.c.event == event)
    if run_id:
        query = query.where(audit.c.run_id == run_id)
    with _connected(url) as conn:
        rows = [dict(row._mapping) for row in conn.execute(query)]
    for row in rows:
        row["detail"] = json.loads(row["detail"]) if row["detail"] else {}
    return rows


def runs_using(url: str, sha: str, limit: int = 100) -> list[str]:
    """Runs that read a file with this sha256 (as a run input or a step input), newest first."""
    as_input = select(edges.c.run_id).where(edges.c.sha256 == sha, edges.c.role == "input")
    query = select(runs.c.run_id).where(runs.c.run_id.in_(as_input) | runs.c.inputs.contains(f'"{sha}"')).order_by(
        runs.c.created_at.desc()).limit(limit)
    with _connected(url) as conn:
        return [run_id for (run_id,) in conn.execute(query)]


def ago(seconds: float) -> float:
    return time.time() - seconds


def mermaid(doc: dict[str, Any]) -> str:
    """The lineage as a Mermaid flowchart (files are rounded boxes, steps rectangles)."""
    lines = ["flowchart LR"]
    for entry in doc["files"]:
        name = entry["paths"][0].rsplit("/", 1)[-1] if entry["paths"] else entry["sha256"][:12]
        lines.append(f'  f{entry["sha256"][:16]}(["{_quote(name)}<br/>{entry["sha256"][:12]}"])')
    ids = {}
    for index, step in enumerate(doc["steps"]):
        ids[(step["run_id"], step["step"])] = f"s{index}"
        lines.append(f'  s{index}["{_quote(step["step"])} ({step["service"]})<br/>{_quote(step["run_id"])}"]')
    for edge in doc["edges"]:
        node, sha = ids[(edge["run_id"], edge["step"])], f'f{edge["sha256"][:16]}'
        lines.append(f"  {sha} --> {node}" if edge["role"] == "input" else f"  {node} --> {sha}")
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return text.replace('"', "'")


def text(doc: dict[str, Any]) -> str:
    """The lineage as indented text: every step with what it read and wrote."""
    names = {f["sha256"]: (f["paths"][0] if f["paths"] else "?") for f in doc["files"]}
    out = [f"lineage of {doc['target']} (sha256 {', '.join(s[:12] for s in doc['sha256'])})"]
    for step in doc["steps"]:
        mine = [e for e in doc["edges"] if (e["run_id"], e["step"]) == (step["run_id"], step["step"])]
        out.append(f"{step['run_id']} / {step['step']} ({step['service']}, {step['state']}, by {step['actor']})")
        for edge in sorted(mine, key=lambda e: e["role"], reverse=True):
            arrow = "<- read " if edge["role"] == "input" else "-> wrote"
            out.append(f"    {arrow} {names.get(edge['sha256'], '?')} [{edge['sha256'][:12]}]")
    return "\n".join(out) + "\n"
