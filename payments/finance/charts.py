"""Charts drawn on the server as plain SVG: horizontal bars and daily lines, each an image
with its own title for screen readers (the page puts the same figures in a table beside it).
No script and no outside resource; the viewBox lets the chart shrink to a phone's width."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from markupsafe import Markup, escape

WIDTH = 400
FONT = 14
# Okabe and Ito's palette, told apart by people with any common colour blindness; lines also
# differ by their dashes, so that colour is never the only difference.
COLOURS = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000")
DASHES = ("", "7 4", "2 3", "10 3 2 3", "4 2", "1 2", "12 4")
MAX_BARS = 200  # a chart longer than this is no longer read as a chart
MAX_POINTS = 400  # a year of days and some
LABEL_CHARS = 16


@dataclasses.dataclass(frozen=True)
class Bar:
    """One bar: `value` sets its length, `shown` is written at its end (figures formatted by
    the page: money in its currency, counts as they are); `style` picks its colour."""

    value: int
    shown: str
    style: int = 0


@dataclasses.dataclass(frozen=True)
class BarGroup:
    label: str
    bars: tuple[Bar, ...]


@dataclasses.dataclass(frozen=True)
class Line:
    name: str
    values: tuple[int, ...]
    style: int = 0


def _colour(style: int) -> str:
    return COLOURS[style % len(COLOURS)]


def _dash(style: int) -> str:
    return DASHES[style % len(DASHES)]


def _short(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def _open(title: str, height: int, summary: str) -> list[str]:
    described = f"{title}. {summary}" if summary else title
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'role="img" aria-label="{escape(described)}" direction="ltr" '
        f'font-size="{FONT}" font-family="system-ui, sans-serif" '
        f'preserveAspectRatio="xMidYMid meet">',
        f"<title>{escape(title)}</title>",
        *([f"<desc>{escape(summary)}</desc>"] if summary else []),
    ]


def bar_chart(title: str, groups: Sequence[BarGroup], *, summary: str = "") -> Markup:
    """Horizontal bars, grouped: each group's label on the left, one bar per series beside
    it, all on one scale (so only figures of one unit belong in one chart)."""
    bars_in_all = sum(len(g.bars) for g in groups)
    assert bars_in_all <= MAX_BARS, "too many bars for one chart"
    label_w, value_w, bar_h, gap, group_gap, top = 140, 100, 18, 4, 12, 8
    scale_w = WIDTH - label_w - value_w
    largest = max((b.value for g in groups for b in g.bars), default=0)
    height = top * 2 + sum(len(g.bars) * (bar_h + gap) - gap + group_gap for g in groups)
    height = max(height, 40)
    out = _open(title, height, summary)
    out.append(
        f'<line x1="{label_w}" y1="{top / 2}" x2="{label_w}" y2="{height - top / 2}" '
        'stroke="#484f53" stroke-width="1"/>'
    )
    y = top
    for group in groups:
        block = len(group.bars) * (bar_h + gap) - gap
        out.append("<g>")
        out.append(f"<title>{escape(group.label)}</title>")
        out.append(
            f'<text x="{label_w - 8}" y="{y + block / 2}" text-anchor="end" '
            f'dominant-baseline="middle" fill="#0b0c0c">{escape(_short(group.label))}</text>'
        )
        for bar in group.bars:
            length = 0.0 if largest <= 0 else max(0.0, bar.value / largest * scale_w)
            out.append(
                f'<rect x="{label_w}" y="{y}" width="{length:.1f}" height="{bar_h}" '
                f'fill="{_colour(bar.style)}"><title>{escape(bar.shown)}</title></rect>'
            )
            out.append(
                f'<text x="{label_w + length + 6:.1f}" y="{y + bar_h / 2}" '
                f'dominant-baseline="middle" fill="#0b0c0c">{escape(bar.shown)}</text>'
            )
            y += bar_h + gap
        y += group_gap - gap
        out.append("</g>")
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704  # nosec B704: every text in it went through escape()


def nice_step(largest: int, intervals: int = 4) -> int:
    """The smallest 1, 2 or 5 times a power of ten that covers `largest` in `intervals` steps."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step * intervals >= largest:
                return m * step
        step *= 10


def line_chart(
    title: str,
    days: Sequence[str],
    lines: Sequence[Line],
    *,
    summary: str = "",
    tick: Callable[[int], str] = str,
) -> Markup:
    """One line per series over `days` (labels of the x axis), on one y scale starting at 0,
    with a legend naming each line beside its colour and dash."""
    assert len(days) <= MAX_POINTS, "too many days for one chart"
    assert all(len(line.values) == len(days) for line in lines), "one value per day"
    legend_row, left, right, bottom = 20, 76, 16, 30
    top = 10 + legend_row * max(len(lines), 1)
    plot_h = 170
    height = top + plot_h + bottom
    plot_w = WIDTH - left - right
    intervals = 4
    step = nice_step(max((v for line in lines for v in line.values), default=0), intervals)
    y_max = step * intervals
    out = _open(title, height, summary)
    for n, line in enumerate(lines):
        ly = 10 + legend_row * n + legend_row / 2
        out.append(
            f'<line x1="{left}" y1="{ly}" x2="{left + 28}" y2="{ly}" '
            f'stroke="{_colour(line.style)}" stroke-width="3" '
            f'stroke-dasharray="{_dash(line.style)}"/>'
        )
        out.append(
            f'<text x="{left + 36}" y="{ly}" dominant-baseline="middle" '
            f'fill="#0b0c0c">{escape(line.name)}</text>'
        )
    for k in range(intervals + 1):
        y = top + plot_h - plot_h * k / intervals
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{WIDTH - right}" y2="{y:.1f}" '
            f'stroke="{"#484f53" if k == 0 else "#d8dcdb"}" stroke-width="1"/>'
        )
        out.append(
            f'<text x="{left - 6}" y="{y:.1f}" text-anchor="end" dominant-baseline="middle" '
            f'fill="#484f53">{escape(tick(step * k))}</text>'
        )

    def x_of(index: int) -> float:
        if len(days) <= 1:
            return left + plot_w / 2
        return left + plot_w * index / (len(days) - 1)

    if days:
        marks = sorted({0, (len(days) - 1) // 2, len(days) - 1})
        anchors = {0: "start", len(days) - 1: "end"}
        for index in marks:
            anchor = "middle" if len(days) == 1 else anchors.get(index, "middle")
            out.append(
                f'<text x="{x_of(index):.1f}" y="{top + plot_h + 20}" text-anchor="{anchor}" '
                f'fill="#484f53">{escape(days[index])}</text>'
            )
    for line in lines:
        points = " ".join(
            f"{x_of(i):.1f},{top + plot_h - plot_h * v / y_max:.1f}"
            for i, v in enumerate(line.values)
        )
        colour = _colour(line.style)
        out.append(f"<g><title>{escape(line.name)}</title>")
        out.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2.5" '
            f'stroke-dasharray="{_dash(line.style)}" stroke-linejoin="round"/>'
        )
        if len(days) <= 62:  # a point per day while the days are far enough apart to see
            for i, v in enumerate(line.values):
                y = top + plot_h - plot_h * v / y_max
                out.append(f'<circle cx="{x_of(i):.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>')
        out.append("</g>")
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704  # nosec B704: every text in it went through escape()
