"""Campaign analytics: per campaign and per step, what went out and what came back, and a daily series.

Run inside `shared.db.transaction(role=who)`: every table is read with the campaign's own
`client_id` (joins included), and row-level security scopes a viewer to its client, so another
client's campaign reads as None. Two statements per `campaign_stats` call, one per `daily` call,
whatever the number of steps or days.

What each figure counts (per step; the totals row counts the same facts over every step):

- `enrolled`: step 1, the campaign's enrollments; step k > 1, the leads whose step k-1 was sent
  (status `sent`): the leads the sequence carried to step k. Total: distinct leads enrolled.
- `sent`, `failed`, `deferred`: the step's `messages` rows in that status; `in_doubt`: `sending`,
  `in_doubt` or `unknown` (never resent; the operator settles them). `contacted`: distinct leads
  with a sent message (per step it equals `sent`).
- `replied`: distinct leads with a human reply matched to a send of that step that *counts*: it
  was verified, or stored before verification existed (`verified` NULL), and is not our own mail
  seen again (`ingest.OURS`). Unverified mail, auto-replies and bounces are not replies.
- `positive`: replied leads whose current operator verdict (`lead_verdicts`, the newest one, as the
  inbox shows it) is `interested`. The classifier (`replies.classify`) has no interest signal: it
  tells a person's reply from an auto-reply or an opt-out, not a yes from a no.
- `bounced`: distinct leads with a counting hard bounce matched to a send of that step (what the
  bounce shield counts). A soft bounce stays a soft bounce here, even one retried into a hard
  outcome; a refusal at RCPT is a `failed` send (it was never delivered).
- `unsubscribed`: distinct leads with a counting unsubscribe request matched to that step's send,
  or a one-click unsubscribe (`suppression.ONE_CLICK_SOURCE`) attributed to the lead's latest
  possibly delivered send (any status but `failed` and `deferred`) of the client when it is this
  campaign's: the suppression row names the address, not the message, and a suppressed address
  gets nothing later, so that send carried the link. `complained`: counting complaints.

Per variant (a step's `variants`, when it has A/B variants or a send names one): the same figures
over the step's sends that recorded that variant (`messages.variant`) and what came back to them;
`enrolled` there is the leads with a send of that variant (any status): the leads it was assigned to.

Rates (`rates`) divide by `contacted` (the leads a step or the campaign reached; per step this is
`sent`) and are None when nothing was sent; `positive_rate` divides by `replied`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from sqlalchemy import Connection, text

from shared.engines.outreach.suppression import ONE_CLICK_SOURCE
from shared.engines.outreach.variants import OWN
from shared.engines.replies import inbox
from shared.engines.replies.ingest import OURS
from shared.status import Verdict

COUNTS = ("enrolled", "contacted", "sent", "replied", "positive", "bounced", "unsubscribed", "complained",
          "in_doubt", "failed", "deferred")
RATES = {"reply_rate": ("replied", "contacted"), "positive_rate": ("positive", "replied"),
         "bounce_rate": ("bounced", "contacted"), "unsubscribe_rate": ("unsubscribed", "contacted"),
         "complaint_rate": ("complained", "contacted")}
IN_DOUBT_STATUSES = ("sending", "in_doubt", "unknown")
MAX_DAYS = 366
# What a per-step table shows (the CLI's `outbound campaigns stats` and the console's analytics page).
TABLE_COUNTS = ("enrolled", "sent", "contacted", "replied", "positive", "bounced", "unsubscribed", "complained",
                "in_doubt", "failed", "deferred")
TABLE_RATES = ("reply_rate", "bounce_rate", "unsubscribe_rate")

# An inbound row that counts: matched to a send, not stored as unverified, not our own mail.
_COUNTS_INBOUND = "i.message_pk IS NOT NULL AND i.verified IS NOT FALSE AND i.outcome IS DISTINCT FROM :ours"

# The leads an operator judged interested: their current (newest) verdict says so.
_POSITIVE_LEADS = (f"positive_leads AS (SELECT lead_id FROM ({inbox.LATEST_VERDICTS}) latest "
                   f"WHERE verdict = '{Verdict.INTERESTED.value}')")

_CAMPAIGN = """
    SELECT c.id, c.client_id, cl.name AS client, c.name, c.status, coalesce(sq.fallback_timezone, 'UTC') AS timezone,
           coalesce((SELECT array_agg(st.step ORDER BY st.step) FROM sequence_steps st
                     WHERE st.campaign_id = c.id AND st.client_id = c.client_id), '{}') AS steps,
           coalesce((SELECT json_agg(json_build_array(v.step, v.variant)) FROM step_variants v
                     WHERE v.campaign_id = c.id AND v.client_id = c.client_id), '[]') AS variants
    FROM campaigns c JOIN clients cl ON cl.id = c.client_id
    LEFT JOIN sequences sq ON sq.campaign_id = c.id AND sq.client_id = c.client_id
    WHERE c.id = :camp
"""

_FACTS = """
WITH sends AS (
    SELECT s.id, s.lead_id, s.step, s.status, s.variant FROM messages s WHERE s.campaign_id = :camp AND s.client_id = :c
), {positive}, answers AS (
    SELECT s.step, s.variant, i.lead_id, i.kind AS fact FROM inbound_messages i
    JOIN sends s ON s.id = i.message_pk
    WHERE i.client_id = :c AND i.campaign_id = :camp AND {counts}
      AND i.kind IN ('human_reply', 'hard_bounce', 'unsubscribe_request', 'complaint')
), one_click AS (
    SELECT last.step, last.variant, last.lead_id FROM (
        SELECT DISTINCT ON (l.id) l.id AS lead_id, m.step, m.variant, m.campaign_id
        FROM suppressions u
        JOIN leads l ON l.client_id = u.client_id AND l.email = u.value
        JOIN messages m ON m.lead_id = l.id AND m.client_id = l.client_id AND m.status NOT IN ('failed', 'deferred')
        WHERE u.client_id = :c AND u.kind = 'email' AND u.source = :one_click
        ORDER BY l.id, m.reserved_at DESC, m.id DESC) last
    WHERE last.campaign_id = :camp
), facts AS (
    SELECT 1 AS step, CAST(NULL AS text) AS variant, e.lead_id, 'enrolled' AS fact FROM enrollments e
        WHERE e.campaign_id = :camp AND e.client_id = :c
    UNION ALL SELECT s.step + 1, NULL, s.lead_id, 'enrolled' FROM sends s
        WHERE s.status = 'sent' AND s.step + 1 = ANY(CAST(:steps AS int[]))
    UNION ALL SELECT s.step, s.variant, s.lead_id, 'assigned' FROM sends s WHERE s.variant IS NOT NULL
    UNION ALL SELECT s.step, s.variant, s.lead_id, CASE WHEN s.status = ANY(CAST(:in_doubt AS text[])) THEN 'in_doubt'
                                                        ELSE s.status END FROM sends s
    UNION ALL SELECT step, variant, lead_id, fact FROM answers
    UNION ALL SELECT a.step, a.variant, a.lead_id, 'positive' FROM answers a
        JOIN positive_leads p ON p.lead_id = a.lead_id WHERE a.fact = 'human_reply'
    UNION ALL SELECT step, variant, lead_id, 'unsubscribe_request' FROM one_click
)
SELECT step, variant, GROUPING(variant) = 0 AS per_variant,
       count(DISTINCT lead_id) FILTER (WHERE fact = 'enrolled') AS enrolled,
       count(DISTINCT lead_id) FILTER (WHERE fact = 'assigned') AS assigned,
       count(DISTINCT lead_id) FILTER (WHERE fact = 'sent') AS contacted,
       count(*) FILTER (WHERE fact = 'sent') AS sent,
       count(DISTINCT lead_id) FILTER (WHERE fact = 'human_reply') AS replied,
       count(DISTINCT lead_id) FILTER (WHERE fact = 'positive') AS positive,
       count(DISTINCT lead_id) FILTER (WHERE fact = 'hard_bounce') AS bounced,
       count(DISTINCT lead_id) FILTER (WHERE fact = 'unsubscribe_request') AS unsubscribed,
       count(DISTINCT lead_id) FILTER (WHERE fact = 'complaint') AS complained,
       count(*) FILTER (WHERE fact = 'in_doubt') AS in_doubt,
       count(*) FILTER (WHERE fact = 'failed') AS failed,
       count(*) FILTER (WHERE fact = 'deferred') AS deferred
FROM facts GROUP BY GROUPING SETS ((step), (step, variant), ())
"""

_DAILY = """
WITH camp AS (SELECT id, client_id FROM campaigns WHERE id = :camp),
days AS (
    SELECT CAST(d AS date) AS day FROM camp, generate_series(CAST(:first AS date), CAST(:last AS date),
                                                            interval '1 day') d
), events AS (
    SELECT CAST(s.sent_at AT TIME ZONE :tz AS date) AS day, s.lead_id, 'sent' AS fact
    FROM messages s JOIN camp ON s.campaign_id = camp.id AND s.client_id = camp.client_id
    WHERE s.status = 'sent' AND s.sent_at >= :since AND s.sent_at < :until
    UNION ALL
    SELECT CAST(i.received_at AT TIME ZONE :tz AS date), i.lead_id, i.kind
    FROM inbound_messages i JOIN camp ON i.campaign_id = camp.id AND i.client_id = camp.client_id
    JOIN messages s ON s.id = i.message_pk AND s.client_id = i.client_id AND s.campaign_id = camp.id
    WHERE {counts} AND i.kind IN ('human_reply', 'hard_bounce') AND i.received_at >= :since AND i.received_at < :until
)
SELECT d.day, count(e.fact) FILTER (WHERE e.fact = 'sent') AS sent,
       count(DISTINCT e.lead_id) FILTER (WHERE e.fact = 'human_reply') AS replied,
       count(DISTINCT e.lead_id) FILTER (WHERE e.fact = 'hard_bounce') AS bounced
FROM days d LEFT JOIN events e ON e.day = d.day GROUP BY d.day ORDER BY d.day
"""


def percent(rate: float | None) -> str:
    """A rate as the tables print it: "12.5 %", or "-" when it is undefined (nothing to divide by)."""
    return "-" if rate is None else f"{rate * 100:.1f} %"


def rates(counts: dict[str, int]) -> dict[str, float | None]:
    """Each rate of `RATES` from one row's counts; None when its denominator is 0."""
    return {name: (counts[num] / counts[den] if counts[den] else None) for name, (num, den) in RATES.items()}


@dataclass(frozen=True)
class CampaignStats:
    """One campaign's figures: `totals` and one row per step (each: `COUNTS` and `rates`)."""

    campaign_id: int
    client_id: int
    client: str
    campaign: str
    status: str
    timezone: str  # the sequence's fallback timezone (UTC without a sequence): the default for `daily`
    totals: dict[str, Any]
    steps: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> list[tuple[str, dict[str, Any]]]:
        """The per-step table's rows as (label, figures): each step followed by its variants ("2 B"), then "total"."""
        rows = []
        for s in self.steps:
            rows += [(str(s["step"]), s), *((f"{s['step']} {v['variant']}", v) for v in s["variants"])]
        return [*rows, ("total", self.totals)]


def _row(counts: Any) -> dict[str, Any]:
    figures = {k: int(counts.get(k, 0) if counts is not None else 0) for k in COUNTS}
    return figures | {"rates": rates(figures)}


def campaign_stats(conn: Connection, campaign_id: int) -> CampaignStats | None:
    """The campaign's totals and per-step figures (every step of its sequence, and any step a send
    names); None when the campaign does not exist or is not the viewer's."""
    camp = conn.execute(text(_CAMPAIGN), {"camp": campaign_id}).first()
    if camp is None:
        return None
    sql = _FACTS.format(positive=_POSITIVE_LEADS, counts=_COUNTS_INBOUND)
    rows = conn.execute(text(sql), {"camp": camp.id, "c": camp.client_id, "steps": list(camp.steps),
                                    "in_doubt": list(IN_DOUBT_STATUSES), "ours": OURS,
                                    "one_click": ONE_CLICK_SOURCE}).mappings().all()
    by_step = {r["step"]: r for r in rows if not r["per_variant"]}
    by_variant = {(r["step"], r["variant"]): dict(r) | {"enrolled": r["assigned"]}
                  for r in rows if r["per_variant"] and r["variant"] is not None}
    steps = sorted(set(camp.steps) | {s for s in by_step if s is not None})
    return CampaignStats(camp.id, camp.client_id, camp.client, camp.name, camp.status, camp.timezone,
                         totals=_row(by_step.get(None)),
                         steps=[{"step": s} | _row(by_step.get(s)) | {"variants": _variant_rows(s, camp.variants,
                                                                                                 by_variant)}
                                for s in steps])


def _variant_rows(step: int, defined: list[list[Any]], by_variant: dict[tuple[int, str], Any]) -> list[dict[str, Any]]:
    """One row per variant of the step: 'A' and every defined one, and any label a send of the step names;
    empty when the step has none of either."""
    labels = {label for s, label in defined if s == step} | {label for s, label in by_variant if s == step}
    if not labels:
        return []
    return [{"variant": label} | _row(by_variant.get((step, label))) for label in sorted(labels | {OWN})]


@lru_cache(maxsize=1)
def _iana_names() -> frozenset[str]:
    # ZoneInfo also opens any other file of the system's zoneinfo directory ("localtime", "posix/...",
    # "right/..."), which Postgres (AT TIME ZONE) does not know: only IANA keys are names here.
    return frozenset(available_timezones() - {"localtime"})


def zone(tz: str) -> ZoneInfo:
    """The IANA timezone named `tz`; ValueError naming it when there is none."""
    try:
        if tz not in _iana_names():
            raise ValueError(tz)
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {tz!r} (an IANA name, e.g. Europe/Berlin)") from None


def daily(conn: Connection, campaign_id: int, days: int = 30, *, tz: str,
          now: datetime | None = None) -> list[dict[str, Any]] | None:
    """Sent messages, replied and bounced leads per calendar day in `tz`, the last `days` days up to
    today (of `now`, default the clock), oldest first, every day present (zeros included). A reply
    or bounce counts on the day it was received, with the same rules as `campaign_stats`. None when
    the campaign is not visible. ValueError: `days` outside 1..MAX_DAYS, or an unknown `tz`."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_DAYS}, not {days}")
    where = zone(tz)
    last = (now or datetime.now(UTC)).astimezone(where).date()
    first = last - timedelta(days=days - 1)
    rows = conn.execute(text(_DAILY.format(counts=_COUNTS_INBOUND)), {
        "camp": campaign_id, "tz": tz, "first": first, "last": last, "ours": OURS,
        "since": _start(first, where), "until": _start(last + timedelta(days=1), where)}).mappings().all()
    if not rows:
        return None
    return [{"day": r["day"], "sent": int(r["sent"]), "replied": int(r["replied"]), "bounced": int(r["bounced"])}
            for r in rows]


def _start(day: date, where: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=where).astimezone(UTC)
