"""What moves a live batch along: its window's advance (note the sub-runs that ended, open the next gates), cancel
and retry. The batch itself (records, keys, planning, submit) is :mod:`ifcflow.batches.batch`.

Every change goes through :func:`advance`, under the batch's lock (:func:`ifcflow.engine.lock.exclusive`): the worker
that ends a sub-run calls it after the job (never waiting: a dirty mark makes the holder pass again), followers call
it with ``repair`` (plain ``rq worker`` deployments), cancel and retry call it last.
"""

from __future__ import annotations

import time

from redis import Redis

from ..engine import enqueue, lifetimes, packs, rqstore, runstates, store
from ..engine.lock import exclusive
from ..engine.states import RunState
from .batch import Control, control_of, ended_key, held_key, key, load, rows_key, run_states
from .window import window_size

ADVANCE_LEASE = 10.0
"""Seconds a batch's advance holds its lock at most when its process dies."""


def advance(conn: Redis, batch_id: str, repair: bool = False, wait: float = 5.0,
            ended: frozenset[str] = frozenset()) -> int:
    """Note the sub-runs that ended and release the next ones up to the window; returns how many were released.

    Runs under a per-batch lock (:func:`ifcflow.engine.lock.exclusive`), so concurrent callers never release a
    sub-run twice nor skip one. A caller that finds it taken for ``wait`` s (0: at once, as the worker after each
    job) leaves a dirty mark and returns 0: the holder advances again before it lets go, so a worker never waits for
    another's advance. ``repair`` reads unfinished sub-runs with the (repairing) status reader. Reads only the small
    ``control`` part of the batch record: it runs after every job of a batch. ``ended``: sub-runs the caller just
    reconciled to their end (not reconciled again here).
    """
    passes = exclusive(conn, f"{key(batch_id)}:lock", lambda: _advance(conn, batch_id, repair, ended), wait=wait,
                       lease=ADVANCE_LEASE)
    return sum(passes or ())


def _advance(conn: Redis, batch_id: str, repair: bool, known: frozenset[str]) -> int:
    """One pass of :func:`advance`, under the batch's lock."""
    from ..engine import reconcile

    with conn.pipeline(transaction=False) as pipe:  # one round trip (this runs after every job of a batch)
        pipe.hmget(key(batch_id), "control", "released", "canceled")
        pipe.smembers(ended_key(batch_id))
        pipe.lrange(held_key(batch_id), 0, -1)
        raw, ended_raw, held_raw = pipe.execute()
    if raw[0] is None:
        return 0
    control = control_of(raw[0])
    released, canceled = int(raw[1] or 0), raw[2] is not None
    ended = {m.decode() for m in ended_raw}
    held = [m.decode() for m in held_raw]
    # a canceled batch ends when every sub-run ended, those never released (canceled with it) included
    seen = control.total if canceled else released
    active = [run_id for run_id in map(control.run_id, range(seen)) if run_id not in ended and run_id not in held]
    if repair:  # (status reads never repair: the reconciler does)
        for run_id in active:
            reconcile.run(conn, run_id, wait=0.0)
    done = _note_ended(conn, batch_id, control, active, frozenset() if repair else known)
    in_flight = window_size(conn, control.window) * control.pack  # (packs: the window counts packs)
    room = 0 if canceled else max(0, in_flight - (len(active) - len(done)))
    todo = _release(conn, batch_id, control, released, held, room)
    if len(ended) + len(done) >= control.total and lifetimes.end_batch(conn, batch_id, control.ttl) \
            and control.pack > 1:
        rqstore.expire_jobs(conn, packs.job_ids(batch_id, control.total, control.pack), control.ttl)
    return todo


def _note_ended(conn: Redis, batch_id: str, control: Control, active: list[str], known: frozenset[str]) -> list[str]:
    """The sub-runs of ``active`` that ended: each is ended once (with its hooks, by the reconciler; ``known``: runs
    the caller just ended so; a run whose end is recorded and hooks ran was ended so by another), and the batch
    keeps its final row (it outlives the sub-run's own records). Returns them. (``active`` are not noted ended yet,
    so their rows are computed, not looked up among the recorded ones.)"""
    from ..engine import reconcile

    template = [(s.id, s.on_failure) for s in control.steps]
    rows = runstates.rows(conn, template, active)
    done = [run_id for run_id in active if rows[run_id].status.terminal]
    # a sub-run whose lock is held is being reconciled right now (mostly by the worker that ran its last job, which
    # advances after its pass): a pass from here would only leave a dirty mark and make that worker pass again
    repaired = [run_id for run_id in done if run_id not in known and not rows[run_id].recorded
                and not rows[run_id].busy]
    for run_id in repaired:  # (a pass over a sub-run that ended already is cheap; a retried one may not be live yet)
        reconcile.run(conn, run_id, wait=0.0)
    if done:
        if repaired:
            rows.update(runstates.rows(conn, template, repaired))  # as the reconciler left them
        kept = {run_id: rows[run_id].dump() for run_id in done if rows[run_id].exists}
        with conn.pipeline(transaction=False) as pipe:
            if kept:
                pipe.hset(rows_key(batch_id), mapping=kept)  # type: ignore[arg-type]
            pipe.sadd(ended_key(batch_id), *done)
            pipe.execute()
    return done


def _release(conn: Redis, batch_id: str, control: Control, released: int, held: list[str], room: int) -> int:
    """Open up to ``room`` gates: retried sub-runs first (their latest retry gate), then the next never-released
    ones. Returns how many were opened."""
    opened = 0
    for run_id in held[:room]:
        enqueue.open_gate(conn, store.latest_gate_id(conn, run_id))
        conn.lrem(held_key(batch_id), 1, run_id)
        opened += 1
    if control.pack > 1:
        return opened + _release_packs(conn, batch_id, control, released, room - opened)
    for index in range(released, min(control.total, released + room - opened)):
        enqueue.open_gate(conn, store.gate_id(control.run_id(index)))
        conn.hset(key(batch_id), "released", index + 1)
        opened += 1
    return opened


def _release_packs(conn: Redis, batch_id: str, control: Control, released: int, room: int) -> int:
    """Open the gates of the next packs while ``room`` (in sub-runs) holds a whole pack."""
    opened, count = 0, -(-control.total // control.pack)
    while released < control.total and room >= min(control.pack, control.total - released):
        enqueue.open_gate(conn, store.gate_id(packs.pack_id(batch_id, released // control.pack, count)))
        released = min(control.total, (released // control.pack + 1) * control.pack)
        conn.hset(key(batch_id), "released", released)
        room -= control.pack
        opened += 1
    return opened


def cancel(conn: Redis, batch_id: str) -> list[str]:
    """Cancel every sub-run that has not ended (no further one is released). Returns the sub-runs canceled."""
    from ..engine.control import cancel as cancel_run

    record = load(conn, batch_id)
    conn.hset(key(batch_id), "canceled", time.time())
    states = run_states(conn, batch_id, record.steps, [r.run_id for r in record.runs])
    canceled = [run_id for run_id, state in states.items() if not state.terminal]
    for run_id in canceled:
        cancel_run(conn, run_id, wait=2.0)
    advance(conn, batch_id)
    return canceled


def retry(conn: Redis, batch_id: str) -> dict[str, list[str]]:
    """Re-run the failed, skipped and canceled steps of every sub-run that failed or was canceled (sub-runs that
    succeeded are left alone). Returns run id -> steps re-enqueued."""
    from ..engine.control import retry as retry_run

    record = load(conn, batch_id)
    states = run_states(conn, batch_id, record.steps, [r.run_id for r in record.runs])
    chosen = [r for r, s in states.items() if s in (RunState.FAILED, RunState.CANCELED)]
    if not chosen:
        return {}
    lifetimes.revive_batch(conn, batch_id)
    conn.srem(ended_key(batch_id), *chosen)
    conn.hdel(rows_key(batch_id), *chosen)
    # every retried sub-run waits for room in the window (its retry gate stays closed until advance opens it)
    retried = {run_id: retry_run(conn, run_id, ttl=record.ttl, hold=True) for run_id in chosen}
    waiting = [run_id for run_id in chosen if retried[run_id]]
    if waiting:
        conn.rpush(held_key(batch_id), *waiting)
    released = int(conn.hget(key(batch_id), "released") or 0)
    last = max(i for i, r in enumerate(record.runs) if r.run_id in chosen)
    if last >= released:  # never-released sub-runs of a canceled batch: they are held like the others
        conn.hset(key(batch_id), "released", last + 1)
    advance(conn, batch_id)
    return {run_id: steps for run_id, steps in retried.items() if steps}
