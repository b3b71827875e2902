"""Worker of the ifcpatch service: one IfcPatch recipe on one model."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import ifcpatch

from ifcflow.errors import StepError
from ifcflow.services.ifcpatch import PatchOptions

from .models import open_ifc
from .runtime import Outcome, Progress, step


def body(options: PatchOptions, outputs: dict[str, Path], progress: Progress) -> Outcome:
    """Apply the recipe and write the patched model."""
    try:
        importlib.import_module(f"ifcpatch.recipes.{options.recipe}")
    except ImportError:
        raise StepError(f"ifcpatch has no recipe '{options.recipe}'; see the ifcpatch documentation for the list") from None
    model = open_ifc(options.ifc)
    progress(0, 1, f"applying {options.recipe}")
    try:
        result = ifcpatch.execute({"input": options.ifc, "file": model, "recipe": options.recipe,
                                   "arguments": list(options.arguments)})
    except TypeError as exc:
        raise StepError(f"recipe {options.recipe} rejected its arguments {options.arguments}: {exc}") from None
    except Exception as exc:  # the recipe's own failure, in one line (the traceback stays in its own field)
        first = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise StepError(f"recipe {options.recipe} failed on its arguments {options.arguments}: "
                        f"{type(exc).__name__}: {first}") from exc
    ifcpatch.write(result, outputs["model"])
    logging.getLogger(__name__).debug("patched %s with %s", options.ifc, options.recipe)
    count = len(result.by_type("IfcRoot")) if hasattr(result, "by_type") else 0
    return Outcome(f"applied {options.recipe}: {count} rooted entities written", {"entities": count})


run = step(body)
