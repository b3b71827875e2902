"""Private processes die with their parent: a local run's redis-server, workers, work horses and scheduler.

On Linux the kernel sends a signal when the parent dies (``prctl(PR_SET_PDEATHSIG)``), even when the parent is
SIGKILLed. Elsewhere a watchdog thread polls the parent's pid. ``ifcflow run`` sets ``IFCFLOW_DIE_WITH_PARENT``
for its local workers, whose own children (work horses, RQ's scheduler) then die with them too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

ENV = "IFCFLOW_DIE_WITH_PARENT"
PR_SET_PDEATHSIG = 1


def _prctl_deathsig(sig: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent: int, sig: int, interval: float = 0.5) -> None:
    def loop() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os.kill(os.getpid(), sig)

    threading.Thread(target=loop, name="ifcflow-lifeline", daemon=True).start()


def die_with_parent(sig: int = signal.SIGKILL, parent: int | None = None) -> None:
    """Have this process receive ``sig`` when its parent (``parent``, default the current one) dies.

    Safe in a ``preexec_fn`` (no threads are started on Linux). If the parent already died, ``sig`` comes now.
    """
    parent = os.getppid() if parent is None else parent
    if not _prctl_deathsig(sig):
        _watch(parent, sig)
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), sig)


def children_die_with_their_parent(sig: int = signal.SIGKILL) -> None:
    """Every child forked from now on (RQ work horses, the scheduler process) dies when its parent dies."""
    os.register_at_fork(after_in_child=lambda: die_with_parent(sig))


def from_environment() -> None:
    """In a local worker (``IFCFLOW_DIE_WITH_PARENT=<pid of ifcflow run>``): die with that process, and let every
    child of this one die with it."""
    value = os.environ.get(ENV, "")
    if value.isdigit():
        die_with_parent(signal.SIGKILL, parent=int(value))
        children_die_with_their_parent()
