"""Campaign analytics page: per step and in total, what went out and what came back, and a daily chart.

Every figure is `shared.engines.campaigns.analytics`'s (`campaign_stats`, `daily`), shown as
`outbound campaigns stats` prints it: the same columns, rates as percentages with "-" when
nothing was there to divide by (`analytics.percent`). The daily series covers the last `days`
days (1 to `analytics.MAX_DAYS`, default 30) on the calendar of `tz` (default: the campaign's
fallback timezone); a bad value is named on the page (400) with the engine's words, the table still
shown. A viewer reads its own client's campaigns; another client's is not found (404).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi.responses import Response

from shared.engines.campaigns import analytics
from shared.engines.campaigns.analytics import CampaignStats
from shared.errors import NotFound
from web.console.charts import stacked_bars
from web.console.deps import PREFIX, Conn, Page, path_id

router = APIRouter(prefix=PREFIX)
CampaignId = Annotated[int, path_id("campaign_id")]
DEFAULT_DAYS = 30
DAY_CHOICES = (7, 30, 90, 366)  # the range links above the chart (any 1..MAX_DAYS can be typed)
SERIES = ["sent", "replied", "bounced"]


def parse_days(raw: str | None) -> int:
    """The `days` parameter (default DEFAULT_DAYS); ValueError in `analytics.daily`'s words when it is no number."""
    if raw is None or raw.strip() == "":
        return DEFAULT_DAYS
    try:
        return int(raw.strip())
    except ValueError:
        raise ValueError(f"days must be between 1 and {analytics.MAX_DAYS}, not {raw[:40]!r}") from None


def table(stats: CampaignStats) -> list[dict[str, Any]]:
    """The per-step rows, then the total: counts as they are, rates as the CLI prints them."""
    return [{"label": label, "counts": {c: row[c] for c in analytics.TABLE_COUNTS},
             "rates": {r: analytics.percent(row["rates"][r]) for r in analytics.TABLE_RATES}}
            for label, row in stats.table()]


def chart(series: list[dict[str, Any]], days: int, tz: str) -> Any:
    """The daily series as grouped bars (web/console/charts.py): sent, replied, bounced side by side per day."""
    per_day = {d["day"].isoformat(): {s: d[s] for s in SERIES} for d in series}
    return stacked_bars(per_day, SERIES, grouped=True, title=f"sent, replied and bounced per day, last {days} days",
                        y_label="messages / leads", x_label=f"day ({tz})")


@router.get("/campaigns/{campaign_id}/analytics")
def campaign_analytics(campaign_id: CampaignId, view: Page, conn: Conn, days: str | None = None,
                       tz: str | None = None) -> Response:
    """The table, and the chart of the last `days` days in `tz`; a bad `days` or `tz` is named instead of the chart."""
    stats = analytics.campaign_stats(conn, campaign_id)
    if stats is None:
        raise NotFound()
    zone = tz.strip() if tz and tz.strip() else stats.timezone
    series, problem, n = None, None, DEFAULT_DAYS
    try:
        n = parse_days(days)
        series = analytics.daily(conn, campaign_id, n, tz=zone)
    except ValueError as exc:
        problem = str(exc)
    if series is None and problem is None:  # visible just above; only a concurrent delete gets here
        raise NotFound()
    return view.page("analytics.html", status=400 if problem else 200, stats=stats, rows=table(stats),
                     counts=analytics.TABLE_COUNTS, rate_names=analytics.TABLE_RATES, problem=problem,
                     days=(days or "")[:40] if problem else n, tz=zone, tz_given=tz or "", day_choices=DAY_CHOICES,
                     series=series or [], chart=chart(series, n, zone) if series else None)
