"""The job functions of bench_tiny's RQ floor (a module of their own: a work horse imports nothing else)."""

from __future__ import annotations


def noop() -> None:
    """The no-op job."""


def patch(path: str) -> None:
    """The same library call as bench_batch's DIRECT, for one file."""
    import ifcopenshell
    import ifcpatch

    model = ifcopenshell.open(path)
    out = ifcpatch.execute({"input": path, "file": model, "recipe": "Optimise", "arguments": []})
    ifcpatch.write(out, path + ".rq.ifc")
