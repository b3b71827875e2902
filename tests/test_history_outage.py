"""The history database's server stopped during a run (issue 19): a private PostgreSQL 15 server is killed with
``pg_ctl stop -m immediate`` while a real ``ifcflow worker`` runs a pipeline; the run goes on, ``ifcflow history``
says how far behind the database is, and once the server is back the worker writes every record exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import create_engine, func, select

from ifcflow.engine import outbox, runner, status, store
from ifcflow.history import database as history
from ifcflow.standalone.embedded import EmbeddedRedis

from . import pgserver
from .processes import kill_tree
from .test_history import _coordination
from .test_reliability import wait_for

pytestmark = pytest.mark.skipif(pgserver.missing() is not None, reason=str(pgserver.missing()))


@pytest.fixture()
def pg() -> Iterator[pgserver.PrivatePostgres]:
    with pgserver.PrivatePostgres() as server:
        yield server


def _until(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.1)


def _ended(conn: Redis, run_id: str) -> bool:
    """The run's end was announced (its run-end hooks, the history records among them, ran)."""
    return not conn.sismember(store.LIVE, run_id)


def test_postgres_stopped_during_a_run_loses_nothing(conn: Redis, redis_server: EmbeddedRedis,
                                                     pg: pgserver.PrivatePostgres, tmp_path: Path) -> None:
    pipeline = _coordination(tmp_path)
    out = tmp_path / "runs"
    env = {**os.environ, history.ENV: pg.url, "IFCFLOW_REDIS_URL": redis_server.url}
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen([sys.executable, "-m", "ifcflow", "worker", "--redis", redis_server.url, "--quiet",
                               "--name", f"outage-{os.getpid()}-{time.monotonic_ns()}"], env=env,
                              start_new_session=True, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        first = runner.start(conn, pipeline, out=out)
        assert wait_for(status.StatusReader(conn, first.run_id), lambda s: s.terminal).status.value == "succeeded"
        _until(lambda: _ended(conn, first.run_id) and outbox.behind(conn) == 0, 30, "the first run drained")

        # the worker (and its work horse) held still while the second run is submitted and the database crashes,
        # so the run is under way, not ended, when the server goes (tiny steps end in a few hundred ms)
        os.killpg(worker.pid, signal.SIGSTOP)
        try:
            second = runner.start(conn, pipeline, out=out)
            reader = status.StatusReader(conn, second.run_id)
            pg.stop("immediate")  # a crash of the database server, mid-run
            assert not reader.read().terminal, "the run ended before the database stopped: the test proves nothing"
        finally:
            os.killpg(worker.pid, signal.SIGCONT)
        done = wait_for(reader, lambda s: s.terminal)
        assert done.status.value == "succeeded"  # runs still run
        _until(lambda: _ended(conn, second.run_id), 30, "the second run's end announced")
        waiting = outbox.behind(conn)
        assert waiting >= 5  # submit + audit, three step ends, the run's end (+ its steps' final states)

        told = subprocess.run([sys.executable, "-m", "ifcflow", "history", "--redis", redis_server.url], env=env,
                              capture_output=True, text=True, timeout=60, check=False)
        assert told.returncode != 0 and f"behind: {waiting} record(s) wait" in " ".join(told.stderr.split()), \
            told.stderr
        assert "Traceback" not in told.stderr and "failed" in told.stderr

        pg.start()  # the worker's reconcile loop drains the outbox by itself
        _until(lambda: outbox.behind(conn) == 0, 30, "the outbox drained after the restart")
    finally:
        kill_tree(worker)
        log.close()
    _assert_recorded_once(pg.url, [first.run_id, second.run_id], status.read(conn, second.run_id), tmp_path)


def _assert_recorded_once(url: str, run_ids: list[str], second: status.RunStatus, folder: Path) -> None:
    """Every run, step, file and edge, and no more: exact rows, each once (counted, not only keyed)."""
    engine = create_engine(history.engine_url(url))
    try:
        with engine.connect() as db:
            def count(table, *where):  # type: ignore[no-untyped-def]
                return db.execute(select(func.count()).select_from(table).where(*where)).scalar_one()

            assert sorted(r for (r,) in db.execute(select(history.runs.c.run_id))) == sorted(run_ids)
            states = {(r, s): st for r, s, st in db.execute(select(history.steps.c.run_id, history.steps.c.step_id,
                                                                  history.steps.c.state))}
            assert states == {(r, s): "succeeded" for r in run_ids for s in ("walls", "clash", "json")}
            submits = [r for (r,) in db.execute(select(history.audit.c.run_id).where(history.audit.c.event ==
                                                                                   "submit"))]
            assert sorted(submits) == sorted(run_ids)

            arch, mep = (outbox.describe(folder / n) for n in ("arch.ifc", "mep.ifc"))
            assert arch and mep
            model = outbox.describe(second.steps["walls"].outputs["model"])
            report = outbox.describe(second.steps["clash"].outputs["report"])
            json_ = outbox.describe(second.steps["json"].outputs["json"])
            assert model and report and json_
            expected = {("walls", "input", arch["sha256"]), ("walls", "output", model["sha256"]),
                        ("clash", "input", model["sha256"]), ("clash", "input", mep["sha256"]),
                        ("clash", "output", report["sha256"]), ("json", "input", model["sha256"]),
                        ("json", "output", json_["sha256"])}
            got = [(s, role, sha) for s, role, sha in db.execute(
                select(history.edges.c.step_id, history.edges.c.role, history.edges.c.sha256).where(
                    history.edges.c.run_id == second.run_id))]
            assert sorted(got) == sorted(expected)  # the run written while the database was down: complete
            assert count(history.edges) == 2 * len(expected)
            paths = {p for (p,) in db.execute(select(history.files.c.path))}
            outputs = {p for r in run_ids for p in _outputs(second, r)}
            assert paths == {arch["path"], mep["path"]} | outputs
            assert count(history.files) == len(paths)  # one version of each file
    finally:
        engine.dispose()


def _outputs(second: status.RunStatus, run_id: str) -> list[str]:
    return [path.replace(second.run_id, run_id) for step in second.steps.values() for path in step.outputs.values()]
