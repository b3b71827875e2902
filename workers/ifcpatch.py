"""Worker of the ifcpatch service: one IfcPatch recipe on one model."""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ifcpatch

from ifcflow.errors import StepError
from ifcflow.services.ifcpatch import PatchOptions

from . import recipes
from .models import open_ifc
from .runtime import Outcome, Progress, step


def _custom(patcher: type, model: Any, arguments: list[Any]) -> Any:
    """Run one of ifcflow's own (or the server folder's) recipes; blank trailing slots (n8n sends "") dropped."""
    while arguments and isinstance(arguments[-1], str) and not arguments[-1].strip():
        arguments = arguments[:-1]
    instance = patcher(model, logging.getLogger("ifcflow.recipes"), *arguments)
    instance.patch()
    getter = getattr(instance, "get_output", None)
    return getter() if callable(getter) else getattr(instance, "file", None)


NAMED_BY_STOREY = {"SplitByBuildingStorey"}
"""Built-in recipes that name their output files after the model's storeys (``{i}-{storey.Name}.ifc``)."""


@contextlib.contextmanager
def _storey_names_as_file_names(model: Any) -> Iterator[None]:
    """Storey names without path separators while a recipe names files after them, the model's own names back
    afterwards: a name is model content (user input over HTTP), and ``/../../x`` would write outside the folder."""
    changed = {}
    for storey in model.by_type("IfcBuildingStorey"):
        name = storey.Name
        if isinstance(name, str) and any(c in name for c in "/\\\0"):
            changed[storey] = name
            storey.Name = "".join("_" if c in "/\\\0" else c for c in name)
    try:
        yield
    finally:
        for storey, name in changed.items():
            storey.Name = name


def _run(options: PatchOptions, model: Any) -> Any:
    patcher = recipes.patcher_class(options.recipe)
    if patcher is not None:
        return _custom(patcher, model, list(options.arguments))
    try:
        importlib.import_module(f"ifcpatch.recipes.{options.recipe}")
    except ImportError:
        raise StepError(f"ifcpatch has no recipe '{options.recipe}' (nor ifcflow, nor the folder in "
                        f"{recipes.FOLDER_ENV}); POST /patch/recipes/list lists them") from None
    named = _storey_names_as_file_names(model) if options.recipe in NAMED_BY_STOREY else contextlib.nullcontext()
    with named:
        return ifcpatch.execute({"input": options.ifc, "file": model, "recipe": options.recipe,
                                 "arguments": list(options.arguments)})


def body(options: PatchOptions, outputs: dict[str, Path], progress: Progress) -> Outcome:
    """Apply the recipe and write the patched model."""
    model = open_ifc(options.ifc)
    progress(0, 1, f"applying {options.recipe}")
    try:
        result = _run(options, model)
    except StepError:
        raise
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
