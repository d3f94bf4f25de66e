"""Server-side SVG charts for the console: numbers to geometry here, geometry to markup in templates/chart.html.

The page's Content-Security-Policy forbids inline style and script, so a chart is plain SVG with
presentation attributes (fill, x, width …). The template is autoescaped like every other, so every
piece of text in it (a day, a mailbox address) is escaped; the result is `Markup`, safe to place
in a page.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from markupsafe import Markup

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


def bar_chart(per_day: Mapping[str, Mapping[str, int]], series: list[str] | None = None, *,
              title: str = "sends per day per mailbox", grouped: bool = False,
              y_label: str = "sends", x_label: str = "day (UTC)") -> dict[str, Any]:
    """The geometry of one bar per day (sorted), one segment per (day, series) with a count > 0, one colour
    per series. `series` fixes the colour order (default: sorted names). Stacked, or with `grouped` side
    by side in the day's slot (each from the axis: for series that are not parts of one whole)."""
    days = sorted(per_day)
    names = series if series is not None else sorted({n for counts in per_day.values() for n in counts})
    colours = {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}
    tallest = (lambda counts: max(counts, default=0)) if grouped else sum
    top = nice_max(max((tallest(per_day[d].values()) for d in days), default=0))
    width = max(MIN_WIDTH_PX, LEFT_PX + len(days) * (BAR_PX + GAP_PX) + GAP_PX)
    legend_y = TOP_PX + HEIGHT_PX + BOTTOM_PX
    base = TOP_PX + HEIGHT_PX
    scale = HEIGHT_PX / top
    label_every = max(1, math.ceil(len(days) / 30))  # at most ~30 day labels
    bars = []
    for i, day in enumerate(days):
        x = LEFT_PX + GAP_PX + i * (BAR_PX + GAP_PX)
        segments = (_side_by_side if grouped else _stacked)(per_day[day], names, colours, x, base, scale)
        label = {"x": round(x + BAR_PX / 2, 1), "y": base + 14, "text": day[5:] if len(day) == 10 else day}
        bars.append({"x": x, "day": day, "segments": segments, "label": label if i % label_every == 0 else None})
    return {"title": title, "width": width, "height": legend_y + LEGEND_ROW_PX * max(1, len(names)) + 8,
            "left": LEFT_PX, "top": TOP_PX, "base": base, "bar_width": BAR_PX, "bottom": BOTTOM_PX,
            "y_label": y_label, "x_label": x_label,
            "ticks": [{"y": round(base - t * scale, 1), "label": t} for t in sorted({0, top // 2, top})],
            "bars": bars,
            "legend": [{"y": legend_y + i * LEGEND_ROW_PX, "fill": colours[n], "name": n} for i, n in enumerate(names)]}


def _segment(name: str, n: int, colours: Mapping[str, str], x: float, y: float, width: float,
             scale: float) -> dict[str, Any]:
    return {"x": round(x, 1), "width": round(width, 1), "y": round(y, 1), "height": round(n * scale, 1),
            "fill": colours[name], "series": name, "count": n}


def _stacked(counts: Mapping[str, int], names: list[str], colours: Mapping[str, str], x: float, base: float,
             scale: float) -> list[dict[str, Any]]:
    y, segments = float(base), []
    for name in names:
        n = int(counts.get(name, 0))
        if n > 0:
            y -= n * scale
            segments.append(_segment(name, n, colours, x, y, BAR_PX, scale))
    return segments


def _side_by_side(counts: Mapping[str, int], names: list[str], colours: Mapping[str, str], x: float, base: float,
                  scale: float) -> list[dict[str, Any]]:
    width = BAR_PX / max(1, len(names))
    return [_segment(name, n, colours, x + k * width, base - n * scale, width, scale)
            for k, name in enumerate(names) if (n := int(counts.get(name, 0))) > 0]


def stacked_bars(per_day: Mapping[str, Mapping[str, int]], series: list[str] | None = None, *,
                 title: str = "sends per day per mailbox", **options: Any) -> Markup:
    """`bar_chart` drawn by the chart.html template: each segment a `<rect class="seg">` carrying data-day,
    data-series and data-count (what tests and the browser read) and a `<title>` tooltip. `options`:
    `bar_chart`'s (grouped, y_label, x_label)."""
    from web.state import templates

    chart = bar_chart(per_day, series, title=title, **options)
    return Markup(templates().get_template("chart.html").render(chart=chart))
