"""Inline SVG charts for the job page: bars on a time axis, and a step line.

Inline SVG is part of the HTML document (the HTML parser puts ``<svg>`` in the SVG namespace
itself, no ``xmlns`` needed), so it needs no source the page's policy would have to allow, and
it works on an air-gapped host. Every text that reaches a ``<text>`` or ``<title>``
passes ``esc`` like the rest of the page: SVG inside HTML is parsed as HTML, so escaping is
what makes a hostile name (``]]>``, ``<script>``) plain text here too. Colours come from the
callers' tables, never from input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from monitor.web.frame import esc

WIDTH = 800
LEFT = 70
"""Room for the row labels left of the plot."""
RIGHT = 10
ROW = 22
AXIS = 18


@dataclass(frozen=True, slots=True)
class Bar:
    start: float
    end: float
    colour: str
    label: str
    """Drawn inside the bar when it is wide enough."""
    title: str
    """The tooltip: everything the bar stands for."""
    row: int = 0


def _x(t: float, t0: float, t1: float) -> float:
    width = WIDTH - LEFT - RIGHT
    return LEFT + (min(max(t, t0), t1) - t0) / max(t1 - t0, 1e-9) * width


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%H:%M:%S")


def _axis(y: float, t0: float, t1: float) -> str:
    ticks = []
    for i in range(5):
        t = t0 + (t1 - t0) * i / 4
        x = _x(t, t0, t1)
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        ticks.append(
            f"<line x1='{x:.1f}' y1='{y}' x2='{x:.1f}' y2='{y + 4}' stroke='#8c959f'/>"
            f"<text x='{x:.1f}' y='{y + 15}' text-anchor='{anchor}' fill='#656d76'>"
            f"{_clock(t)}</text>"
        )
    line = f"<line x1='{LEFT}' y1='{y}' x2='{WIDTH - RIGHT}' y2='{y}' stroke='#8c959f'/>"
    return line + "".join(ticks)


def bars(
    items: Sequence[Bar], t0: float, t1: float, row_labels: Sequence[str], *, element_id: str
) -> str:
    """One row per entry of ``row_labels``, each bar placed on the time axis t0..t1 (UTC)."""
    height = len(row_labels) * ROW + AXIS + 6
    parts = [
        f"<svg id='{esc(element_id)}' role='img' viewBox='0 0 {WIDTH} {height}' width='{WIDTH}'"
        f" height='{height}'>"
    ]
    for i, label in enumerate(row_labels):
        parts.append(
            f"<text x='{LEFT - 6}' y='{i * ROW + 15}' text-anchor='end'>{esc(label)}</text>"
        )
    for bar in items:
        x0, x1 = _x(bar.start, t0, t1), _x(bar.end, t0, t1)
        w = max(x1 - x0, 2.0)
        y = bar.row * ROW + 2
        parts.append(
            f"<g class='bar'><title>{esc(bar.title)}</title>"
            f"<rect x='{x0:.1f}' y='{y}' width='{w:.1f}' height='{ROW - 6}' rx='3'"
            f" fill='{bar.colour}'/>"
        )
        if w > 7 * len(bar.label) + 8:
            parts.append(f"<text x='{x0 + 4:.1f}' y='{y + 12}' fill='#fff'>{esc(bar.label)}</text>")
        parts.append("</g>")
    parts.append(_axis(len(row_labels) * ROW + 2, t0, t1))
    parts.append("</svg>")
    return "".join(parts)


def steps(
    points: Sequence[tuple[float, float]],
    t0: float,
    t1: float,
    *,
    reference: float | None,
    element_id: str,
) -> str:
    """A step line through ``points`` (time, value), each value held until the next point, the
    last until t1; ``reference`` (the requested count) as a dashed line."""
    height, top = 120, 8
    plot = height - AXIS - top
    high = max([v for _, v in points] + ([reference] if reference is not None else []) + [1.0])

    def y(v: float) -> float:
        return top + plot - v / high * plot

    parts = [
        f"<svg id='{esc(element_id)}' role='img' viewBox='0 0 {WIDTH} {height}' width='{WIDTH}'"
        f" height='{height}'>",
        f"<text x='{LEFT - 6}' y='{y(high) + 4:.1f}' text-anchor='end'>{high:g}</text>",
        f"<text x='{LEFT - 6}' y='{y(0) + 4:.1f}' text-anchor='end'>0</text>",
    ]
    if reference is not None:
        parts.append(
            f"<line x1='{LEFT}' y1='{y(reference):.1f}' x2='{WIDTH - RIGHT}'"
            f" y2='{y(reference):.1f}'"
            " stroke='#8c959f' stroke-dasharray='4 3'><title>requested</title></line>"
        )
    path: list[str] = []
    for i, (t, v) in enumerate(points):
        x = _x(t, t0, t1)
        path.append(f"{'M' if i == 0 else 'H'}{x:.1f}" + ("" if i == 0 else f" V{y(v):.1f}"))
        if i == 0:
            path.append(f" {y(v):.1f}")
    if points:
        path.append(f" H{_x(t1, t0, t1):.1f}")
        parts.append(f"<path d='{''.join(path)}' fill='none' stroke='#1f6feb' stroke-width='2'/>")
        for t, v in points:
            parts.append(
                f"<circle cx='{_x(t, t0, t1):.1f}' cy='{y(v):.1f}' r='3' fill='#1f6feb'>"
                f"<title>{esc(f'{v:g} nodes from {_clock(t)} UTC')}</title></circle>"
            )
    parts.append(_axis(height - AXIS, t0, t1))
    parts.append("</svg>")
    return "".join(parts)
