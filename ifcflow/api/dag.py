"""The run's DAG drawn as SVG for the web page: one box per step (coloured by state through CSS classes), one
arrow per ``needs`` edge and a dashed one per ``after`` edge (ordering only: a clash step after the glb step that
makes the shared geometry), laid out left to right in layers. Pure: no Redis, no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

BOX_W, BOX_H = 184, 52
GAP_X, GAP_Y = 64, 20
PAD = 12


@dataclass(frozen=True)
class Box:
    step: str
    service: str
    state: str
    x: int
    y: int


def layers(needs: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Steps grouped by depth (longest path from a root), each layer ordered by its parents' positions, then by
    the order of ``needs`` (the plan's order), so edges cross as little as simple means allow."""
    order = {step: index for index, step in enumerate(needs)}
    depth: dict[str, int] = {}

    def level(step: str, seen: frozenset[str] = frozenset()) -> int:
        if step not in depth:
            parents = [p for p in needs.get(step, ()) if p in needs and p not in seen]
            depth[step] = 1 + max((level(p, seen | {step}) for p in parents), default=-1)
        return depth[step]

    for step in needs:
        level(step)
    grouped: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for step in needs:
        grouped[depth[step]].append(step)
    position: dict[str, float] = {}
    for layer in grouped:
        def key(step: str) -> tuple[float, int]:
            parents = [position[p] for p in needs.get(step, ()) if p in position]
            return (sum(parents) / len(parents) if parents else -1.0, order[step])

        layer.sort(key=key)
        position.update({step: float(i) for i, step in enumerate(layer)})
    return grouped


def layout(steps: Mapping[str, tuple[str, str, Sequence[str]]],
           after: Mapping[str, Sequence[str]] | None = None) -> tuple[list[Box], int, int]:
    """Boxes for ``{step: (service, state, needs)}`` (and ``{step: after}``) and the drawing's width and height.
    The first layer is stacked from the top; a later step sits level with its parents (their mean), pushed down
    only to avoid overlapping the step above it, so chains draw as straight lines."""
    waits = {step: [*needs, *(after or {}).get(step, ())] for step, (_, _, needs) in steps.items()}
    grouped = layers(waits)
    top: dict[str, int] = {}
    for column, layer in enumerate(grouped):
        below = PAD
        for step in layer:
            parents = [top[p] for p in waits[step] if p in top]
            wanted = round(sum(parents) / len(parents)) if parents and column else below
            top[step] = max(wanted, below)
            below = top[step] + BOX_H + GAP_Y
    boxes = [Box(step, steps[step][0], steps[step][1], PAD + column * (BOX_W + GAP_X), top[step])
             for column, layer in enumerate(grouped) for step in layer]
    width = PAD * 2 + len(grouped) * BOX_W + max(len(grouped) - 1, 0) * GAP_X
    height = max((y + BOX_H for y in top.values()), default=0) + PAD
    return boxes, width, height


def _label(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def svg(steps: Mapping[str, tuple[str, str, Sequence[str]]], after: Mapping[str, Sequence[str]] | None = None) -> str:
    """The SVG markup: ``<g class="node state-<state>" data-step="<id>">`` per step (the page's script swaps the
    state class on live updates) and ``<path class="edge" data-from data-to>`` per edge (``class="edge after"``
    for an ``after`` edge)."""
    boxes, width, height = layout(steps, after)
    at = {box.step: box for box in boxes}
    parts = [f'<svg class="dag" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" aria-label="pipeline steps and their dependencies">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker></defs>']
    for box in boxes:
        edges = [(p, "edge") for p in steps[box.step][2]] + [(p, "edge after") for p in (after or {}).get(box.step, ())]
        for parent, kind in edges:
            if parent not in at:
                continue
            src = at[parent]
            x1, y1 = src.x + BOX_W, src.y + BOX_H // 2
            x2, y2 = box.x - 2, box.y + BOX_H // 2
            bend = (x2 - x1) // 2
            title = (f"<title>{escape(box.step)} starts after {escape(parent)}, whatever its outcome (it makes the "
                     "shared geometry)</title>") if kind != "edge" else ""
            parts.append(f'<path class="{kind}" data-from="{escape(parent)}" data-to="{escape(box.step)}" '
                         f'd="M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}" marker-end="url(#arrow)">'
                         f'{title}</path>')
    for box in boxes:
        parts.append(
            f'<g class="node state-{escape(box.state)}" data-step="{escape(box.step)}" tabindex="0">'
            f'<title>{escape(box.step)} ({escape(box.service)}): {escape(box.state)}</title>'
            f'<rect x="{box.x}" y="{box.y}" width="{BOX_W}" height="{BOX_H}" rx="9"/>'
            f'<text class="name" x="{box.x + 14}" y="{box.y + 22}">{escape(_label(box.step, 21))}</text>'
            f'<text class="sub" x="{box.x + 14}" y="{box.y + 40}">{escape(_label(box.service, 14))}'
            f'<tspan class="state" x="{box.x + BOX_W - 12}" text-anchor="end">{escape(box.state)}</tspan></text>'
            f'</g>')
    parts.append("</svg>")
    return "".join(parts)
