"""ifcflow's own IfcPatch recipes (the original system's custom ones, written anew) and the loader of the server
folder of further custom recipes (``IFCFLOW_PATCH_RECIPES``).

Every recipe follows IfcPatch's convention: ``Patcher(file, logger, *arguments)`` with ``patch()`` changing
``self.file``, and ``get_output()`` (or ``self.file``) giving the result.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

from ifcflow.errors import StepError

FOLDER_ENV = "IFCFLOW_PATCH_RECIPES"


def operations(recipe: str, arguments: tuple[Any, ...]) -> list[dict[str, Any]]:
    """The JSON operation arguments (``'{"selector": ...}'``), blank slots skipped."""
    found = []
    for index, value in enumerate(arguments):
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        try:
            op = value if isinstance(value, dict) else json.loads(value)
        except (TypeError, ValueError) as exc:
            raise StepError(f"{recipe}: operation {index + 1} is not JSON ({exc}): {str(value)[:80]!r}") from None
        if not isinstance(op, dict):
            raise StepError(f"{recipe}: operation {index + 1} must be a JSON object, got {str(value)[:80]!r}")
        found.append(op)
    if not found:
        raise StepError(f"{recipe}: no operation given; pass at least one JSON object as the first argument")
    return found


def own(name: str) -> ModuleType | None:
    """ifcflow's own module for recipe ``name``, or None."""
    from . import selectors, tasks

    for module in (selectors, tasks):
        if name in getattr(module, "RECIPES", {}):
            return module
    return None


def from_folder(name: str) -> ModuleType | None:
    """``<IFCFLOW_PATCH_RECIPES>/<name>.py`` loaded as a module (only from that folder), or None."""
    folder = os.environ.get(FOLDER_ENV, "").strip()
    if not folder or not name.isidentifier():
        return None
    path = Path(folder) / f"{name}.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(f"ifcflow_recipe_{name}", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def patcher_class(name: str) -> type | None:
    """The ``Patcher`` of a custom recipe (ifcflow's own first, then the server folder's), or None."""
    module = own(name)
    if module is not None:
        found: type = module.RECIPES[name]
        return found
    module = from_folder(name)
    patcher = getattr(module, "Patcher", None) if module is not None else None
    return patcher if isinstance(patcher, type) else None
