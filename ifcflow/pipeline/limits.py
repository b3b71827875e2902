"""How big one pipeline may be: the step cap (``IFCFLOW_MAX_STEPS``), shared by the CLI and the server.

Planning, enqueueing and a run's Redis records grow linearly with the steps and needs of a pipeline, but every
step's end makes the reconciler read the whole run (see :mod:`ifcflow.engine.reconcile`), so a run of n steps costs n
such reads of n steps. The default, 1,000 steps, is the size the status read and reconcile pass are measured
and targeted at (``bench/README.md``: about 20 ms per pass); a terminal user who knows their machine may raise it
with the variable, and a server's operator decides it for everything submitted over HTTP.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..errors import IfcflowError

MAX_STEPS_ENV = "IFCFLOW_MAX_STEPS"
MAX_STEPS = 1000
"""Default number of steps one pipeline may have."""


def max_steps(environ: Mapping[str, str] | None = None) -> int:
    """The step cap from ``IFCFLOW_MAX_STEPS`` (default :data:`MAX_STEPS`); a bad value is an error that says
    what to write."""
    raw = (os.environ if environ is None else environ).get(MAX_STEPS_ENV, "").strip()
    if not raw:
        return MAX_STEPS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise IfcflowError(f"{MAX_STEPS_ENV}={raw!r} is not a number of steps; set it to a whole number of at "
                           f"least 1 (default {MAX_STEPS:,}) or unset it")
    return value
