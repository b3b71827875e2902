"""IfcPatch's recipes as the original lists them: IfcPatch's built-in ones (from their source, no ifcopenshell
import in the API process), ifcflow's own (``workers/recipes/``) and a server folder of further custom recipes
(``IFCFLOW_PATCH_RECIPES``: ``<Name>.py`` files defining a ``Patcher`` class; loaded only from there)."""

from __future__ import annotations

import ast
import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..pipeline import patchargs

FOLDER_ENV = "IFCFLOW_PATCH_RECIPES"


def _folder() -> Path | None:
    spec = importlib.util.find_spec("ifcpatch")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "recipes"
    return folder if folder.is_dir() else None


def _parameters(init: ast.FunctionDef) -> list[dict[str, Any]]:
    args = init.args.args[1:]
    defaults = [None] * (len(args) - len(init.args.defaults)) + list(init.args.defaults)
    found = []
    for arg, default in zip(args, defaults):
        if arg.arg in ("file", "logger"):
            continue
        found.append({"name": arg.arg, "type": ast.unparse(arg.annotation) if arg.annotation else "Any",
                      "required": default is None, "default": None if default is None else ast.unparse(default),
                      "description": ""})
    return found


def _describe(path: Path) -> dict[str, Any] | None:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "Patcher":
            init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
            doc = (ast.get_docstring(init) if init else None) or ast.get_docstring(node) or "Built-in IfcPatch recipe"
            summary = " ".join(doc.split("\n\n")[0].split(":param")[0].split())
            return {"name": path.stem, "description": summary, "is_custom": False,
                    "parameters": _parameters(init) if init else [], "output_type": None}
    return None


@lru_cache(maxsize=1)
def builtin() -> tuple[dict[str, Any], ...]:
    folder = _folder()
    if folder is None:
        return ()
    found = (_describe(p) for p in sorted(folder.glob("*.py")) if not p.stem.startswith("_"))
    return tuple(r for r in found if r is not None)


def folder() -> Path | None:
    """The server's folder of further custom recipes (``IFCFLOW_PATCH_RECIPES``), when set and present."""
    import os

    value = os.environ.get(FOLDER_ENV, "").strip()
    return Path(value) if value and Path(value).is_dir() else None


def folder_recipes() -> list[dict[str, Any]]:
    """The recipes of the server folder (``<Name>.py`` with a ``Patcher`` class), ifcflow's own names excluded."""
    place = folder()
    if place is None:
        return []
    found = []
    for path in sorted(place.glob("*.py")):
        if path.stem.startswith("_") or path.stem in patchargs.CUSTOM or not path.stem.isidentifier():
            continue
        described = _describe(path)
        if described is not None:
            found.append({**described, "is_custom": True})
    return found


def own() -> list[dict[str, Any]]:
    """ifcflow's own recipes (the original system's custom ones, re-written), with their parameters."""
    return [{"name": name, "description": text, "is_custom": True, "output_type": None,
             "parameters": [{"name": p.name, "type": p.kind, "required": p.default is None,
                             "default": p.default, "description": p.description} for p in params]}
            for name, (text, params) in patchargs.CUSTOM.items()]


def known(name: str) -> bool:
    return name in patchargs.CUSTOM or any(r["name"] == name for r in (*builtin(), *folder_recipes()))


def listing(include_builtin: bool, include_custom: bool) -> dict[str, Any]:
    """The original's answer: built-in and custom recipes with their parameters."""
    built = [dict(r) for r in builtin()] if include_builtin else []
    custom = [*own(), *folder_recipes()] if include_custom else []
    return {"recipes": built + custom, "total_count": len(built) + len(custom), "builtin_count": len(built),
            "custom_count": len(custom)}
