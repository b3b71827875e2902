"""The ``ifcflow`` command: thin typed commands over the library. Exit codes: 0 succeeded, 1 failed or
canceled or timed out, 2 bad input or unreachable Redis, 3 succeeded with failures (``on_failure: continue``).

The commands live in :mod:`ifcflow.cli.entry` and are imported when first used: :func:`main` first gives a local
``ifcflow run`` its head start (:mod:`ifcflow.standalone.prestart`), then imports them (about 0.5 s).
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["cli", "main"]


def main() -> None:
    from ..standalone import prestart

    prestart.early(sys.argv[1:])  # a local `ifcflow run`: the private Redis and a worker start while we import
    from .entry import main as run

    run()


def __getattr__(name: str) -> Any:
    if name == "cli":  # the click group, with every command registered
        from .entry import cli

        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
