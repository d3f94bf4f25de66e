"""The forecast chart's SVG builder: one segment per (day, mailbox), a shared scale, escaped labels."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from markupsafe import Markup

from web.console.charts import HEIGHT_PX, PALETTE, nice_max, stacked_bars

NS = {"s": "http://www.w3.org/2000/svg"}


def _segments(svg: Markup) -> list[ET.Element]:
    return ET.fromstring(str(svg)).findall(".//s:rect[@class='seg']", NS)


def test_one_segment_per_day_and_mailbox_with_a_count_stacked_on_a_shared_scale():
    per_day = {"2026-11-24": {"b@x.test": 3, "a@x.test": 5}, "2026-11-23": {"a@x.test": 10},
               "2026-11-25": {"a@x.test": 0, "b@x.test": 2}}
    svg = stacked_bars(per_day)
    segs = _segments(svg)
    got = {(s.get("data-day"), s.get("data-series")): int(s.get("data-count")) for s in segs}
    assert got == {("2026-11-23", "a@x.test"): 10, ("2026-11-24", "a@x.test"): 5, ("2026-11-24", "b@x.test"): 3,
                   ("2026-11-25", "b@x.test"): 2}  # a zero count draws nothing
    # The tallest day (10) reaches the top of the scale (nice_max(10) = 10): heights are count × HEIGHT_PX / 10.
    for s in segs:
        assert float(s.get("height")) == round(int(s.get("data-count")) * HEIGHT_PX / 10, 1)
    # Days left to right in date order; a day's segments stack (each starts where the one below ends).
    xs = {s.get("data-day"): float(s.get("x")) for s in segs}
    assert xs["2026-11-23"] < xs["2026-11-24"] < xs["2026-11-25"]
    day2 = sorted((s for s in segs if s.get("data-day") == "2026-11-24"), key=lambda s: -float(s.get("y")))
    assert float(day2[0].get("y")) == round(float(day2[1].get("y")) + float(day2[1].get("height")), 1)
    # One colour per mailbox, in the legend's order (sorted names by default).
    colours = {s.get("data-series"): s.get("fill") for s in segs}
    assert colours == {"a@x.test": PALETTE[0], "b@x.test": PALETTE[1]}
    legend = [t.text for t in ET.fromstring(str(svg)).findall(".//s:text[@class='legend']", NS)]
    assert legend == ["a@x.test", "b@x.test"]


def test_the_given_series_order_fixes_the_colours_and_the_scale_rounds_up():
    svg = stacked_bars({"2026-01-01": {"a@x.test": 7, "b@x.test": 6}}, ["b@x.test", "a@x.test"])
    colours = {s.get("data-series"): s.get("fill") for s in _segments(svg)}
    assert colours == {"b@x.test": PALETTE[0], "a@x.test": PALETTE[1]}
    ticks = [t.text for t in ET.fromstring(str(svg)).findall(".//s:text[@class='tick']", NS)]
    assert ticks == ["0", "10", "20"]  # 13 sends: the axis tops at 20
    assert [nice_max(v) for v in (0, 1, 2, 3, 7, 10, 11, 51, 200, 201)] == [1, 1, 2, 5, 10, 10, 20, 100, 200, 500]


def test_labels_are_escaped_and_the_markup_has_no_style_or_script():
    evil = 'x"><script>alert(1)</script>&@evil.test'
    svg = stacked_bars({"2026-01-01": {evil: 1}}, title='forecast <b>"q"</b>')
    text = str(svg)
    assert "<script>" not in text and "&lt;script&gt;" in text and "&#34;&gt;" in text and "&amp;@evil" in text
    assert "style" not in text and "onload" not in text
    seg = _segments(svg)[0]  # still well-formed XML, and the attribute reads back as the original name
    assert seg.get("data-series") == evil
    assert isinstance(svg, Markup)


def test_no_days_is_an_empty_axis_not_an_error():
    svg = stacked_bars({})
    assert _segments(svg) == [] and str(svg).startswith("<svg")


def test_grouped_bars_stand_side_by_side_from_the_axis_on_the_tallest_single_count():
    svg = stacked_bars({"2026-01-01": {"sent": 6, "replied": 5, "bounced": 0}}, ["sent", "replied", "bounced"],
                       grouped=True, y_label="leads")
    segs = {s.get("data-series"): s for s in _segments(svg)}
    assert set(segs) == {"sent", "replied"}  # a zero count draws nothing
    # The scale tops at the tallest single count (nice_max(6) = 10), not at the sum (11 would give 20).
    assert float(segs["sent"].get("height")) == round(6 * HEIGHT_PX / 10, 1)
    bottoms = {round(float(s.get("y")) + float(s.get("height")), 1) for s in segs.values()}
    assert len(bottoms) == 1  # both start at the axis
    assert float(segs["sent"].get("x")) + float(segs["sent"].get("width")) == float(segs["replied"].get("x"))
    assert "leads" in [t.text for t in ET.fromstring(str(svg)).findall(".//s:text[@class='axis']", NS)]
