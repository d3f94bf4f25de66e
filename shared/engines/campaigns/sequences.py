"""A campaign's sequence: its steps (subject, body, delay) and its sending schedule (weekdays, hours, zone).

Every function takes the client id where it writes and filters on it: no query reaches another
client's rows. Templates are syntax-checked on the way in (`outreach.templates`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, text

from shared.engines.outreach import templates, timezones
from shared.engines.outreach.timezones import Window
from shared.errors import OutreachError

# A campaign's schedule until one is set: weekdays (ISO numbers), hours, and the zone for leads without one.
DEFAULT_WEEKDAYS, DEFAULT_START_HOUR, DEFAULT_END_HOUR, DEFAULT_TIMEZONE = (1, 2, 3, 4, 5), 9, 17, "UTC"


def set_schedule(conn: Connection, client_id: int, campaign_id: int, *, weekdays: Sequence[int] = DEFAULT_WEEKDAYS,
                 start_hour: int = DEFAULT_START_HOUR, end_hour: int = DEFAULT_END_HOUR,
                 fallback_timezone: str = DEFAULT_TIMEZONE) -> None:
    """The campaign's sending window, in each lead's local time (OutreachError names a bad value)."""
    if not timezones.valid_zone(fallback_timezone):
        raise OutreachError(f"fallback timezone {fallback_timezone!r} is not an IANA zone")
    if not weekdays or any(d not in range(1, 8) for d in weekdays):
        raise OutreachError(f"weekdays must be ISO numbers 1 (Mon) … 7 (Sun), got {list(weekdays)}")
    if not (0 <= start_hour < end_hour <= 24):
        raise OutreachError(f"hours must satisfy 0 <= start < end <= 24, got {start_hour}-{end_hour}")
    conn.execute(
        text("INSERT INTO sequences (campaign_id, client_id, weekdays, start_hour, end_hour, fallback_timezone) "
             "VALUES (:camp, :c, CAST(:w AS smallint[]), :s, :e, :tz) ON CONFLICT (campaign_id) DO UPDATE SET "
             "weekdays = EXCLUDED.weekdays, start_hour = EXCLUDED.start_hour, end_hour = EXCLUDED.end_hour, "
             "fallback_timezone = EXCLUDED.fallback_timezone"),
        {"camp": campaign_id, "c": client_id, "w": sorted(set(weekdays)), "s": start_hour, "e": end_hour,
         "tz": fallback_timezone})


def set_step(conn: Connection, client_id: int, campaign_id: int, *, step: int, subject: str, body: str,
             delay_amount: int = 0, delay_unit: str = "business_days") -> None:
    templates.check_syntax(subject, where=f"step {step} subject")
    templates.check_syntax(body, where=f"step {step} body")
    if delay_unit not in ("business_days", "days"):
        raise OutreachError(f"delay unit must be business_days or days, got {delay_unit!r}")
    if conn.execute(text("SELECT 1 FROM sequences WHERE campaign_id = :camp AND client_id = :c"),
                    {"camp": campaign_id, "c": client_id}).first() is None:
        set_schedule(conn, client_id, campaign_id)
    if step > 1 and conn.execute(text("SELECT 1 FROM sequence_steps WHERE campaign_id = :camp AND step = :s"),
                                 {"camp": campaign_id, "s": step - 1}).first() is None:
        raise OutreachError(f"step {step} needs step {step - 1} first")
    conn.execute(
        text("INSERT INTO sequence_steps (client_id, campaign_id, step, delay_amount, delay_unit, subject_template, "
             "body_template) VALUES (:c, :camp, :s, :d, :u, :subj, :body) ON CONFLICT (campaign_id, step) DO UPDATE "
             "SET delay_amount = EXCLUDED.delay_amount, delay_unit = EXCLUDED.delay_unit, "
             "subject_template = EXCLUDED.subject_template, body_template = EXCLUDED.body_template"),
        {"c": client_id, "camp": campaign_id, "s": step, "d": delay_amount, "u": delay_unit, "subj": subject,
         "body": body})


def steps(conn: Connection, campaign_id: int) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(
        text("SELECT step, delay_amount, delay_unit, subject_template, body_template FROM sequence_steps "
             "WHERE campaign_id = :camp ORDER BY step"), {"camp": campaign_id}).mappings()]


def window(conn: Connection, campaign_id: int) -> tuple[Window, str]:
    r = conn.execute(text("SELECT weekdays, start_hour, end_hour, fallback_timezone FROM sequences "
                          "WHERE campaign_id = :camp"), {"camp": campaign_id}).first()
    if r is None:
        raise OutreachError(f"campaign {campaign_id} has no sequence")
    return Window(frozenset(r.weekdays), r.start_hour, r.end_hour), r.fallback_timezone
