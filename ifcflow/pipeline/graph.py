"""Dependency graphs of steps: topological order and cycle detection (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def cycles(edges: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Each dependency cycle once, as the steps along it (``[a, b, a]``); ``edges`` maps step -> needs."""
    found: list[list[str]] = []
    seen: set[frozenset[str]] = set()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for need in edges.get(node, ()):
            if need not in edges:
                continue
            if state.get(need) == 1:
                loop = stack[stack.index(need):] + [need]
                key = frozenset(loop)
                if key not in seen:
                    seen.add(key)
                    found.append(loop)
            elif need not in state:
                visit(need)
        stack.pop()
        state[node] = 2

    for node in edges:
        if node not in state:
            visit(node)
    return found


def topological(edges: Mapping[str, Sequence[str]]) -> list[str]:
    """Steps so that every step comes after its needs; ties keep file order. Assumes no cycles."""
    order: list[str] = []
    done: set[str] = set()
    for node in edges:
        _place(node, edges, done, order)
    return order


def _place(node: str, edges: Mapping[str, Sequence[str]], done: set[str], order: list[str]) -> None:
    pending = [(node, iter(edges.get(node, ())))]
    if node in done:
        return
    done.add(node)
    while pending:
        current, needs = pending[-1]
        for need in needs:
            if need in edges and need not in done:
                done.add(need)
                pending.append((need, iter(edges.get(need, ()))))
                break
        else:
            pending.pop()
            order.append(current)


def descendants(edges: Mapping[str, Sequence[str]], roots: Sequence[str]) -> list[str]:
    """Every step that transitively needs one of ``roots``, in topological order (roots excluded)."""
    children: dict[str, list[str]] = {node: [] for node in edges}
    for node, needs in edges.items():
        for need in needs:
            children.setdefault(need, []).append(node)
    found: set[str] = set()
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return [node for node in topological(edges) if node in found]


def ancestors(edges: Mapping[str, Sequence[str]], node: str) -> list[str]:
    """Every step ``node`` transitively needs, sorted (``node`` excluded)."""
    found: set[str] = set()
    todo = list(edges.get(node, ()))
    while todo:
        need = todo.pop()
        if need not in found:
            found.add(need)
            todo.extend(edges.get(need, ()))
    return sorted(found)
