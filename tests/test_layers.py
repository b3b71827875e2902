"""The package's layers, checked from the code's own imports (every import statement, lazy ones included).

- No import circles among ifcflow modules.
- Imports run one way only, down this table (a module may import its own layer and any lower one; the circle
  check keeps imports within a layer one-way too):

      entry points   ifcflow.api, ifcflow.cli, ifcflow.__main__      HTTP API, command line
      public API     ifcflow (``__init__``), ifcflow.client          what scripts and notebooks import
      operations     ifcflow.operations                              the worker process, queues, workers, prune
      batches        ifcflow.batches                                 batches, schedules
      standalone     ifcflow.standalone                              private Redis, local workers, demo models
      views          ifcflow.views                                   terminal view, reports, RQ Dashboard
      engine         ifcflow.engine                                  runs on RQ: enqueue, status, reconcile, ...
      pipeline       ifcflow.pipeline                                read, check, plan a pipeline: pure, no Redis
      base           ifcflow.errors, ifcflow.services,               errors, service option models, the history
                     ifcflow.history                                 database and lineage queries (no Redis)

The layer check runs on the layout by layer (``ifcflow/pipeline/`` ...); on the older flat layout only the
circles are checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ifcflow"
LAYERS: list[tuple[str, tuple[str, ...]]] = [  # top first
    ("entry points", ("ifcflow.api", "ifcflow.cli", "ifcflow.__main__")),
    ("public API", ("ifcflow", "ifcflow.client")),
    ("operations", ("ifcflow.operations",)),
    ("batches", ("ifcflow.batches",)),
    ("standalone", ("ifcflow.standalone",)),
    ("views", ("ifcflow.views",)),
    ("engine", ("ifcflow.engine",)),
    ("pipeline", ("ifcflow.pipeline",)),
    ("base", ("ifcflow.errors", "ifcflow.services", "ifcflow.history")),
]


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports() -> dict[str, set[str]]:
    """module -> the ifcflow modules it imports (a name imported from a package counts as that package when it is
    not a module itself)."""
    mods = modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                targets = [f"{prefix}.{alias.name}" for alias in node.names] + [prefix]
            else:
                continue
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != mod and not mod.startswith(target + "."):
                    edges[mod].add(target)
    return edges


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def layer_of(module: str) -> int | None:
    """Index in LAYERS (0 is the top) of the longest matching prefix, or None."""
    best: tuple[int, int] | None = None
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (rank, len(prefix))
    return None if best is None else best[0]


def test_no_import_circles() -> None:
    assert circles(imports()) == []


def test_circle_finder_finds_a_circle() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.skipif(not (PACKAGE / "pipeline").is_dir(), reason="flat layout (before the relayout by layer)")
def test_imports_run_down_the_layers() -> None:
    edges = imports()
    unplaced = sorted(m for m in edges if layer_of(m) is None)
    assert unplaced == [], "modules in no layer: add them to LAYERS (and ARCHITECTURE.md)"
    upward = sorted(f"{m} ({LAYERS[layer_of(m) or 0][0]}) -> {t} ({LAYERS[layer_of(t) or 0][0]})"
                    for m, targets in edges.items() for t in targets
                    if (layer_of(t) or 0) < (layer_of(m) or 0))
    assert upward == []
