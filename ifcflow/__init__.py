"""ifcflow: chain IfcOpenShell tools into pipelines that run as python-rq job DAGs.

The public API is what ``__all__`` lists; every other module is internal and may change::

    import ifcflow

    problems = ifcflow.validate("pipelines/coordination.yaml")       # [] or [Problem(file, line, col, message)]
    plan = ifcflow.plan("pipelines/coordination.yaml", inputs={"arch": "a.ifc"})
    run = ifcflow.submit(plan, redis="redis://host:6379/0")          # or a file; returns a Run handle
    status = run.wait(timeout=600)                                   # RunStatus: .status, .steps, .outputs
    ifcflow.Run(run.id, redis="redis://host:6379/0").report("junit")

    with ifcflow.local(workers=2) as cluster:                        # a private Redis and local workers
        status = cluster.run("pipelines/publish.yaml").wait()

Errors: every error ifcflow raises on purpose is an :class:`IfcflowError`; its ``exit_code`` is the CLI's::

    IfcflowError
    ├── PipelineError      a pipeline file or its inputs are invalid (.problems); nothing was enqueued
    ├── RedisUnavailable   the Redis server cannot be reached
    ├── RedisLost          Redis went away while following a run
    ├── EmbeddedRedisError the private Redis (or its local workers) could not start or died
    ├── RunNotFound        no run with that id on this Redis
    ├── RunExists          a new run's id is taken; nothing was written
    ├── RunTimeout         wait(timeout=...) passed before the run ended (.status); the run goes on
    ├── BatchNotFound      no batch with that id on this Redis
    └── StepError          raised inside a step on a worker (its message is the step's error)

``import ifcflow`` is cheap: redis, rq, pydantic and ifcopenshell are imported when first needed.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from .client import Batch, Cluster, Run, local, plan, submit, submit_batch, validate
from .engine.states import RunState, StepState
from .errors import (
    EmbeddedRedisError,
    IfcflowError,
    PipelineError,
    Problem,
    RedisLost,
    RedisUnavailable,
    RunExists,
    RunNotFound,
    RunTimeout,
    StepError,
)

if TYPE_CHECKING:
    from .batches.batch import BatchNotFound
    from .batches.batch_status import BatchRun, BatchStatus
    from .engine.status import RunStatus, StepStatus
    from .pipeline.plan import Plan, PlannedStep

__version__ = "0.1.0"

__all__ = [
    "__version__",
    # functions
    "validate", "plan", "submit", "submit_batch", "local",
    # handles
    "Run", "Batch", "Cluster",
    # documents
    "Plan", "PlannedStep", "RunStatus", "StepStatus", "BatchStatus", "BatchRun", "RunState", "StepState", "Problem",
    # errors
    "IfcflowError", "PipelineError", "RedisUnavailable", "RedisLost", "EmbeddedRedisError", "RunNotFound",
    "RunExists", "RunTimeout", "BatchNotFound", "StepError",
]

_LAZY = {  # name -> module: imported on first access (pydantic, redis, rq)
    "Plan": "ifcflow.pipeline.plan", "PlannedStep": "ifcflow.pipeline.plan", "RunStatus": "ifcflow.engine.status",
    "StepStatus": "ifcflow.engine.status", "BatchStatus": "ifcflow.batches.batch_status", "BatchRun": "ifcflow.batches.batch_status",
    "BatchNotFound": "ifcflow.batches.batch",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ifcflow' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """Keeps the public functions when a submodule of the same name is imported (in the flat layout, the
    modules ``plan`` and ``local``): the import system sets ``ifcflow.<submodule>`` on this package after loading
    one. Internal code imports modules with ``from .<module> import ...``, which reads ``sys.modules``."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and callable(self.__dict__.get(name)):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
