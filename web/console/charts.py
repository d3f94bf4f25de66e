"""Server-side SVG charts for the console: pure functions from numbers to markup (no script, no style attributes).

The page's Content-Security-Policy forbids inline style and script, so a chart is plain SVG with
presentation attributes (fill, x, width …). Every piece of text in it (a day, a mailbox address)
goes through `markupsafe.escape`; the result is `Markup`, safe to place in an autoescaped template.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from markupsafe import Markup, escape

# One colour per mailbox, in order; cycles past the end (colour-blind-friendly Tableau 10).
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac")
HEIGHT_PX = 240  # plot area height
BAR_PX = 22  # bar width
GAP_PX = 8  # space between bars
LEFT_PX = 44  # room for the y-axis labels
TOP_PX = 18  # room for the y-axis title
BOTTOM_PX = 44  # room for the day labels
LEGEND_ROW_PX = 18
MIN_WIDTH_PX = 320


def nice_max(value: int) -> int:
    """The y-axis top: `value` rounded up to 1, 2 or 5 × a power of ten (at least 1)."""
    if value <= 1:
        return 1
    magnitude = 10 ** int(math.floor(math.log10(value)))
    for m in (1, 2, 5, 10):
        if m * magnitude >= value:
            return m * magnitude
    return 10 * magnitude  # unreachable: 10 × magnitude is always ≥ value


def stacked_bars(per_day: Mapping[str, Mapping[str, int]], series: list[str] | None = None, *,
                 title: str = "sends per day per mailbox") -> Markup:
    """Stacked bars: one bar per day (sorted), one segment per (day, series) with a count > 0, one colour per series.

    Each segment is a `<rect class="seg">` carrying data-day, data-series and data-count (what tests
    and the browser read) and a `<title>` tooltip. `series` fixes the colour order (default: sorted names).
    """
    days = sorted(per_day)
    names = series if series is not None else sorted({n for counts in per_day.values() for n in counts})
    colours = {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}
    top = nice_max(max((sum(per_day[d].values()) for d in days), default=0))
    width = max(MIN_WIDTH_PX, LEFT_PX + len(days) * (BAR_PX + GAP_PX) + GAP_PX)
    legend_y = TOP_PX + HEIGHT_PX + BOTTOM_PX
    height = legend_y + LEGEND_ROW_PX * max(1, len(names)) + 8
    base = TOP_PX + HEIGHT_PX
    scale = HEIGHT_PX / top

    parts = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" aria-label="{escape(title)}"><title>{escape(title)}</title>']
    # y axis: 0, half, top, with light grid lines
    for tick in sorted({0, top // 2, top}):
        y = base - tick * scale
        parts.append(f'<line x1="{LEFT_PX}" y1="{y:.1f}" x2="{width - 4}" y2="{y:.1f}" stroke="#e4e7ec"/>')
        parts.append(f'<text class="tick" x="{LEFT_PX - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
                     f'fill="#667085">{tick}</text>')
    parts.append(f'<line x1="{LEFT_PX}" y1="{TOP_PX}" x2="{LEFT_PX}" y2="{base}" stroke="#98a2b3"/>')
    label_every = max(1, math.ceil(len(days) / 30))  # at most ~30 day labels
    for i, day in enumerate(days):
        x = LEFT_PX + GAP_PX + i * (BAR_PX + GAP_PX)
        y = float(base)
        for name in names:
            n = int(per_day[day].get(name, 0))
            if n <= 0:
                continue
            h = n * scale
            y -= h
            parts.append(f'<rect class="seg" x="{x}" y="{y:.1f}" width="{BAR_PX}" height="{h:.1f}" '
                         f'fill="{colours[name]}" data-day="{escape(day)}" data-series="{escape(name)}" '
                         f'data-count="{n}"><title>{escape(day)} · {escape(name)}: {n}</title></rect>')
        if i % label_every == 0:
            lx, ly = x + BAR_PX / 2, base + 14
            parts.append(f'<text class="day" x="{lx:.1f}" y="{ly}" text-anchor="end" font-size="10" fill="#667085" '
                         f'transform="rotate(-35 {lx:.1f} {ly})">{escape(day[5:] if len(day) == 10 else day)}</text>')
    parts.append(f'<line x1="{LEFT_PX}" y1="{base}" x2="{width - 4}" y2="{base}" stroke="#98a2b3"/>')
    parts.append(f'<text class="axis" x="{LEFT_PX + 4}" y="{TOP_PX - 2}" font-size="11" fill="#667085">sends</text>'
                 f'<text class="axis" x="{width - 4}" y="{base + BOTTOM_PX - 6}" text-anchor="end" font-size="11" '
                 f'fill="#667085">day (UTC)</text>')
    for i, name in enumerate(names):
        y = legend_y + i * LEGEND_ROW_PX
        parts.append(f'<rect class="key" x="{LEFT_PX}" y="{y}" width="12" height="12" fill="{colours[name]}"/>'
                     f'<text class="legend" x="{LEFT_PX + 18}" y="{y + 10}" font-size="12" fill="#1d2330">'
                     f'{escape(name)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
