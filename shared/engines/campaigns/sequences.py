"""A campaign's sequence: its steps (subject, body, delay) and its sending schedule (weekdays, hours, zone).

Every function takes the client id where it writes and filters on it: no query reaches another
client's rows. Templates are syntax-checked on the way in (`outreach.templates`).

Messages name their step by number, so a step that went out to a lead is fixed: `edit_step`,
`delete_step` and `move_step` (the console's sequence editor) refuse to change what any step
already sent (or possibly sent: a send in flight or in doubt) is, naming the step and how many
leads got it. `set_step` (the CLI) writes as it always has.

A/B variants (`set_variant`, `delete_variant`, `variants`): a step's other subjects and bodies under
labels 'B', 'C', ... (the step's own text is 'A'); each lead gets one by `outreach.variants.variant_for`
and its message records which. A variant some message names (sent, being sent, or to be retried)
is fixed: changing or deleting it is refused. Adding one to a step already sent is allowed: the
leads who got the step keep what they got, the others are split over the new set of labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, text

from shared.engines.outreach import templates, timezones
from shared.engines.outreach.variants import LABEL, OWN
from shared.engines.outreach.timezones import Window
from shared.errors import OutreachError
from shared.status import DelayUnit, values

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
    if delay_unit not in values(DelayUnit):
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


SENT_STATUSES = ("sent", "sending", "in_doubt", "unknown")  # a message that may have reached the lead
_RENUMBER_OFFSET = 1_000_000  # steps are moved out of the way first: (campaign_id, step) is checked row by row


def sent_counts(conn: Connection, campaign_id: int) -> dict[int, int]:
    """How many leads each step of the campaign went out to (steps no one got are absent)."""
    rows = conn.execute(text("SELECT step, count(DISTINCT lead_id) AS n FROM messages WHERE campaign_id = :camp "
                             "AND status = ANY(:st) GROUP BY step"),
                        {"camp": campaign_id, "st": list(SENT_STATUSES)})
    return {r.step: r.n for r in rows}


def check_unsent(conn: Connection, campaign_id: int, numbers: Iterable[int], doing: str) -> None:
    """OutreachError naming the first of `numbers` that some lead already got, and how many did."""
    counts = sent_counts(conn, campaign_id)
    for number in sorted(numbers):
        if counts.get(number):
            n = counts[number]
            raise OutreachError(f"cannot {doing}: step {number} was already sent to {n} lead{'s' if n != 1 else ''}")


def edit_step(conn: Connection, client_id: int, campaign_id: int, *, step: int, subject: str, body: str,
              delay_amount: int, delay_unit: str) -> None:
    """`set_step`, refused when it would change a step some lead already got (saving it unchanged is fine)."""
    new = {"step": step, "delay_amount": delay_amount, "delay_unit": delay_unit, "subject_template": subject,
           "body_template": body}
    old = next((s for s in steps(conn, campaign_id) if s["step"] == step), None)
    if old is not None and old != new:
        check_unsent(conn, campaign_id, [step], f"change step {step}")
    set_step(conn, client_id, campaign_id, step=step, subject=subject, body=body, delay_amount=delay_amount,
             delay_unit=delay_unit)


def _numbers(conn: Connection, client_id: int, campaign_id: int) -> list[int]:
    return list(conn.execute(text("SELECT step FROM sequence_steps WHERE campaign_id = :camp AND client_id = :c "
                                  "ORDER BY step"), {"camp": campaign_id, "c": client_id}).scalars())


def _renumber(conn: Connection, client_id: int, campaign_id: int, moves: dict[int, int]) -> None:
    """Give steps new numbers (old -> new) in two statements, so no two rows share a number in between."""
    if not moves:
        return
    args = {"camp": campaign_id, "c": client_id, "old": list(moves), "new": list(moves.values()),
            "off": _RENUMBER_OFFSET}
    conn.execute(text("UPDATE sequence_steps SET step = step + :off WHERE campaign_id = :camp AND client_id = :c "
                      "AND step = ANY(:old)"), args)
    conn.execute(text("UPDATE sequence_steps st SET step = m.new FROM unnest(CAST(:old AS int[]), "
                      "CAST(:new AS int[])) AS m(old, new) WHERE st.campaign_id = :camp AND st.client_id = :c "
                      "AND st.step = m.old + :off"), args)


def _require(numbers: list[int], step: int) -> None:
    if step not in numbers:
        raise OutreachError(f"step {step} does not exist (the sequence has {len(numbers)} steps)")


def delete_step(conn: Connection, client_id: int, campaign_id: int, step: int) -> None:
    """Remove a step; the later ones move up one. Refused when it or any later step went out to a lead."""
    numbers = _numbers(conn, client_id, campaign_id)
    _require(numbers, step)
    check_unsent(conn, campaign_id, [n for n in numbers if n >= step], f"delete step {step}")
    conn.execute(text("DELETE FROM sequence_steps WHERE campaign_id = :camp AND client_id = :c AND step = :s"),
                 {"camp": campaign_id, "c": client_id, "s": step})
    _renumber(conn, client_id, campaign_id, {n: n - 1 for n in numbers if n > step})


def move_step(conn: Connection, client_id: int, campaign_id: int, step: int, to: int) -> None:
    """Move step `step` to position `to`, the steps between shifting one place. Refused when any step
    whose number would change went out to a lead."""
    numbers = _numbers(conn, client_id, campaign_id)
    _require(numbers, step)
    _require(numbers, to)
    low, high = min(step, to), max(step, to)
    check_unsent(conn, campaign_id, range(low, high + 1), f"move step {step} to {to}")
    order = [n for n in numbers if n != step]
    order.insert(to - 1, step)
    _renumber(conn, client_id, campaign_id, {old: new for new, old in enumerate(order, 1) if old != new})


def steps(conn: Connection, campaign_id: int) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(
        text("SELECT step, delay_amount, delay_unit, subject_template, body_template FROM sequence_steps "
             "WHERE campaign_id = :camp ORDER BY step"), {"camp": campaign_id}).mappings()]


def variants(conn: Connection, campaign_id: int, step: int) -> list[dict[str, Any]]:
    """The step's variants other than its own text ('A'), by label: label, subject_template, body_template."""
    return [dict(r) for r in conn.execute(
        text("SELECT variant, subject_template, body_template FROM step_variants WHERE campaign_id = :camp "
             "AND step = :s ORDER BY variant"), {"camp": campaign_id, "s": step}).mappings()]


def all_variants(conn: Connection, campaign_id: int) -> list[dict[str, Any]]:
    """Every step's variants (as `variants`, with the step), by step then label."""
    return [dict(r) for r in conn.execute(
        text("SELECT step, variant, subject_template, body_template FROM step_variants WHERE campaign_id = :camp "
             "ORDER BY step, variant"), {"camp": campaign_id}).mappings()]


def variant_sent_counts(conn: Connection, campaign_id: int) -> dict[tuple[int, str], int]:
    """How many leads a message of each (step, variant) names, in any status (a failed or deferred send is
    tried again with the variant it recorded); variants no message names are absent."""
    rows = conn.execute(text("SELECT step, variant, count(DISTINCT lead_id) AS n FROM messages "
                             "WHERE campaign_id = :camp AND variant IS NOT NULL GROUP BY step, variant"),
                        {"camp": campaign_id})
    return {(r.step, r.variant): r.n for r in rows}


def _check_variant_unsent(conn: Connection, campaign_id: int, step: int, label: str, doing: str) -> None:
    """OutreachError when a message of the campaign names this variant."""
    n = variant_sent_counts(conn, campaign_id).get((step, label), 0)
    if n:
        raise OutreachError(f"cannot {doing}: step {step} variant {label} was already sent (or is being sent) "
                            f"to {n} lead{'s' if n != 1 else ''}")


def _check_label(conn: Connection, client_id: int, campaign_id: int, step: int, label: str) -> None:
    if label == OWN:
        raise OutreachError(f"variant {OWN} is step {step}'s own subject and body: edit the step instead")
    if not LABEL.fullmatch(label):
        raise OutreachError(f"a variant label is a capital letter then up to 7 capitals or digits, got {label!r}")
    _require(_numbers(conn, client_id, campaign_id), step)


def set_variant(conn: Connection, client_id: int, campaign_id: int, step: int, label: str, subject: str,
                body: str) -> None:
    """Add or replace variant `label` of step `step`; refused when it would change a variant already sent."""
    _check_label(conn, client_id, campaign_id, step, label)
    templates.check_syntax(subject, where=f"step {step} variant {label} subject")
    templates.check_syntax(body, where=f"step {step} variant {label} body")
    old = next((v for v in variants(conn, campaign_id, step) if v["variant"] == label), None)
    if old is not None and (old["subject_template"], old["body_template"]) != (subject, body):
        _check_variant_unsent(conn, campaign_id, step, label, f"change step {step} variant {label}")
    conn.execute(
        text("INSERT INTO step_variants (client_id, campaign_id, step, variant, subject_template, body_template) "
             "VALUES (:c, :camp, :s, :v, :subj, :body) ON CONFLICT (campaign_id, step, variant) DO UPDATE SET "
             "subject_template = EXCLUDED.subject_template, body_template = EXCLUDED.body_template"),
        {"c": client_id, "camp": campaign_id, "s": step, "v": label, "subj": subject, "body": body})


def delete_variant(conn: Connection, client_id: int, campaign_id: int, step: int, label: str) -> None:
    """Remove variant `label` of step `step`; refused when it does not exist or was already sent."""
    _check_label(conn, client_id, campaign_id, step, label)
    _check_variant_unsent(conn, campaign_id, step, label, f"delete step {step} variant {label}")
    gone = conn.execute(text("DELETE FROM step_variants WHERE campaign_id = :camp AND client_id = :c AND step = :s "
                             "AND variant = :v RETURNING id"),
                        {"camp": campaign_id, "c": client_id, "s": step, "v": label}).first()
    if gone is None:
        raise OutreachError(f"step {step} has no variant {label}")


def window(conn: Connection, campaign_id: int) -> tuple[Window, str]:
    r = conn.execute(text("SELECT weekdays, start_hour, end_hour, fallback_timezone FROM sequences "
                          "WHERE campaign_id = :camp"), {"camp": campaign_id}).first()
    if r is None:
        raise OutreachError(f"campaign {campaign_id} has no sequence")
    return Window(frozenset(r.weekdays), r.start_hour, r.end_hour), r.fallback_timezone
