"""The one job function of every ifcflow step: ``workers.dispatch.run(step=..., run_id=...)``.

RQ resolves a job's function by importing its module. Were that the service's own module, a worker missing one of
the service's dependencies would fail the step with an RQ riddle (``Invalid attribute name: run``). This module
imports nothing beyond ifcflow itself, so it always loads; it imports the service module when the step runs and
turns an import failure into a plain-words step error, with the usual failure handling (dependents skipped,
error in the status, reports and API). The same holds for a plain ``rq worker``.
"""

from __future__ import annotations

import contextlib
import importlib
import socket
from typing import Any

from rq import get_current_job

from ifcflow.errors import StepError
from ifcflow.pipeline.plan import PlannedStep
from ifcflow.services import SERVICES
from ifcflow.services.base import JOB_FUNC
from workers.runtime import Outcome, Progress, execute

assert f"{__name__}.run" == JOB_FUNC


def run(step: dict[str, Any], run_id: str) -> dict[str, Any]:
    service = SERVICES[step["service"]]
    module_name, attribute = service.func.rsplit(".", 1)
    try:
        func = getattr(importlib.import_module(module_name), attribute)
    except ImportError as exc:
        return execute(_unavailable(service.name, exc), PlannedStep.model_validate(step), run_id)
    for plug in service.plugs:
        with contextlib.suppress(ImportError):  # an optimisation (the shared geometry pass): the step runs alone
            importlib.import_module(plug)
    result: dict[str, Any] = func(step=step, run_id=run_id)
    return result


def run_pack(members: list[list[Any]]) -> dict[str, Any]:
    """The job function of a pack of a batch's sub-runs (see :mod:`ifcflow.engine.packs`)."""
    from workers import pack

    return pack.run(members)


def unavailable_message(service: str, exc: BaseException, worker: str | None = None) -> str:
    where = f"worker {worker}" if worker else f"this worker (host {socket.gethostname()})"
    return (f"service {service} is not available on {where}: {exc} "
            "(install ifcflow with its dependencies there: pip install ifcflow)")


def _unavailable(service: str, exc: ImportError) -> Any:
    def body(options: Any, outputs: Any, progress: Progress) -> Outcome:
        job = get_current_job()
        raise StepError(unavailable_message(service, exc, job.worker_name if job else None))

    return body
