"""IfcPatch's built-in recipes, listed from their source (no ifcopenshell import in the API process)."""

from __future__ import annotations

import ast
import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any


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


def listing(include_builtin: bool, include_custom: bool) -> dict[str, Any]:
    """The original's answer; ifcflow has no custom recipes (custom_count 0)."""
    recipes = [dict(r) for r in builtin()] if include_builtin else []
    return {"recipes": recipes, "total_count": len(recipes), "builtin_count": len(recipes), "custom_count": 0}
