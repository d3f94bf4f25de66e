"""The console's campaign and mailbox pages: campaign rows with their counts, step previews, forecast, mailbox health.

Run inside `shared.db.transaction(role=who)`: a viewer's transaction sees only its client's rows
(row-level security), so another client's campaign or mailbox id reads as "not found". Every
figure that the engines already compute comes from them: sent / replied / bounced
(`campaigns.analytics`), rendering (`outreach.templates`), the
forecast (`outreach.forecast`), today's cap and ramp (`mailboxes.list_mailboxes` →
`capacity`), bounce and complaint rates (`replies.shield.rates`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from shared.engines.outreach import forecast as forecasting
from shared import errors
from shared.engines.campaigns import analytics, sequences
from shared.engines.outreach.timezones import Window
from shared.engines.outreach import sending, templates
from shared.errors import TemplateProblem

PREVIEW_LEADS_SHOWN = 200  # leads offered in the preview's select (a campaign can have thousands)

_CAMPAIGNS = """
    SELECT c.id, c.client_id, cl.name AS client, c.name, c.status, c.status_reason, c.paused_at,
           (SELECT count(*) FROM sequence_steps st WHERE st.campaign_id = c.id AND st.client_id = c.client_id) AS steps,
           (SELECT coalesce(jsonb_object_agg(x.status, x.n), '{}'::jsonb) FROM (
                SELECT e.status, count(*) AS n FROM enrollments e
                WHERE e.campaign_id = c.id AND e.client_id = c.client_id GROUP BY e.status) x) AS enrollments
    FROM campaigns c JOIN clients cl ON cl.id = c.client_id
    WHERE (CAST(:client AS bigint) IS NULL OR c.client_id = :client)
      AND (CAST(:campaign AS bigint) IS NULL OR c.id = :campaign)
    ORDER BY cl.name, c.id
"""


SHOWN_FIGURES = ("sent", "replied", "bounced")  # analytics' totals, the one definition of each


def _with_figures(conn: Connection, row: Any) -> dict[str, Any]:
    stats = analytics.campaign_stats(conn, row.id)
    totals = stats.totals if stats is not None else dict.fromkeys(SHOWN_FIGURES, 0)  # None: deleted meanwhile
    return dict(row._mapping) | {k: totals[k] for k in SHOWN_FIGURES}


def list_campaigns(conn: Connection, *, client_id: int | None = None) -> list[dict[str, Any]]:
    """Every visible campaign with its steps, enrollments by state, and `SHOWN_FIGURES` as analytics counts
    them (`analytics.campaign_stats`: two statements per campaign)."""
    rows = conn.execute(text(_CAMPAIGNS), {"client": client_id, "campaign": None})
    return [_with_figures(conn, r) for r in rows]


def campaign(conn: Connection, campaign_id: int) -> dict[str, Any] | None:
    """One campaign's row (as in the list); None: missing or not the viewer's."""
    row = conn.execute(text(_CAMPAIGNS), {"client": None, "campaign": campaign_id}).first()
    return None if row is None else _with_figures(conn, row)


def steps(conn: Connection, campaign_id: int) -> list[dict[str, Any]]:
    return sequences.steps(conn, campaign_id)


def settings(conn: Connection, campaign_id: int) -> dict[str, Any]:
    """What the campaign's forms start from: its ICP (as stored) and its schedule (`set_schedule`'s defaults
    until one is set: `schedule_set` False)."""
    icp = conn.execute(text("SELECT icp FROM campaigns WHERE id = :camp"), {"camp": campaign_id}).scalar()
    try:
        hours, zone = sequences.window(conn, campaign_id)
        is_set = True
    except errors.OutreachError:  # no sequence yet
        hours = Window(frozenset(sequences.DEFAULT_WEEKDAYS), sequences.DEFAULT_START_HOUR, sequences.DEFAULT_END_HOUR)
        zone, is_set = sequences.DEFAULT_TIMEZONE, False
    return {"icp": icp or {}, "weekdays": sorted(hours.weekdays), "start_hour": hours.start_hour,
            "end_hour": hours.end_hour, "fallback_timezone": zone, "schedule_set": is_set}


def preview_leads(conn: Connection, client_id: int, campaign_id: int, *, lead_id: int | None = None,
                  limit: int = PREVIEW_LEADS_SHOWN) -> list[dict[str, Any]]:
    """The campaign's leads (enrolled or assigned), else the client's, with what a template may use.

    `lead_id`: that lead only (if it belongs to the campaign), e.g. one chosen beyond the first `limit`.
    """
    cols = ", ".join(f"l.{c}" for c in templates.LEAD_VARIABLES)
    rows = conn.execute(text(f"""
        SELECT l.id, {cols}, l.enrichment, e.mailbox_id
        FROM leads l LEFT JOIN enrollments e ON e.campaign_id = :camp AND e.lead_id = l.id AND e.client_id = l.client_id
        WHERE l.client_id = :c AND (l.campaign_id = :camp OR e.id IS NOT NULL)
          AND (CAST(:lead AS bigint) IS NULL OR l.id = :lead)
        ORDER BY l.id LIMIT :limit
    """), {"c": client_id, "camp": campaign_id, "lead": lead_id, "limit": limit}).mappings().all()
    if not rows and lead_id is None:
        rows = conn.execute(text(f"SELECT l.id, {cols}, l.enrichment, NULL AS mailbox_id FROM leads l "
                                 "WHERE l.client_id = :c ORDER BY l.id LIMIT :limit"),
                            {"c": client_id, "limit": limit}).mappings().all()
    return [dict(r) for r in rows]


def sender_for(conn: Connection, client_id: int, mailbox_id: int | None) -> dict[str, Any]:
    """The mailbox a lead's mail comes from: its sticky one, else the client's first active one."""
    row = conn.execute(text(
        "SELECT from_name, from_address FROM mailboxes WHERE client_id = :c "
        "AND (id = :m OR (CAST(:m AS bigint) IS NULL AND status = 'active')) ORDER BY id LIMIT 1"),
        {"c": client_id, "m": mailbox_id}).first()
    return dict(row._mapping) if row is not None else {"from_name": "", "from_address": ""}


def previews(step_rows: Sequence[Mapping[str, Any]], lead: Mapping[str, Any] | None,
             sender: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each step with its rendering for `lead` (pure): `subject`/`body`, or `problem` (the TemplateProblem's words)."""
    ctx = templates.lead_context(lead, sender) if lead is not None else None
    out: list[dict[str, Any]] = []
    first_subject: str | None = None
    for s in step_rows:
        item = dict(s) | {"subject": None, "body": None, "problem": None}
        if ctx is not None:
            try:
                r = templates.render_step(templates.StepTemplate(s["step"], s["subject_template"],
                                                                 s["body_template"]), ctx)
                item["body"] = r.body
                if s["step"] == 1:
                    item["subject"] = first_subject = r.subject
                elif first_subject is not None:  # what goes out: step 1's thread, not this step's template
                    item["subject"] = sending.follow_up_subject(first_subject)
            except TemplateProblem as exc:
                item["problem"] = f"lead {lead['id']} {lead['email']}: {exc}"  # type: ignore[index]
        out.append(item)
    return out


def draft_preview(step: int, subject: str, body: str, first_subject: str | None, lead: Mapping[str, Any] | None,
                  sender: Mapping[str, Any]) -> dict[str, Any]:
    """One step as typed in the sequence editor, rendered for `lead` (pure).

    `problem`: what the strict render (activation's dry-render, `templates.render_step`) says, or the
    syntax error as `set_step` words it; None when the step renders. `subject`/`body`: runs of text
    (`templates.Marking.segments`) with each undefined variable in place and named, `missing` lists
    them. The subject is the one that goes out: a follow-up's is step 1's (`first_subject`) as a reply.
    """
    out: dict[str, Any] = {"problem": None, "subject": None, "body": None, "missing": []}
    try:
        templates.check_syntax(subject, where=f"step {step} subject")
        templates.check_syntax(body, where=f"step {step} body")
        if step > 1:
            templates.check_syntax(first_subject or "", where="step 1 subject")
    except templates.TemplateProblem as exc:
        return out | {"problem": str(exc)}
    if lead is None:
        return out
    ctx = templates.lead_context(lead, sender)
    try:
        templates.render_step(templates.StepTemplate(step, subject, body), ctx)
    except templates.TemplateProblem as exc:
        out["problem"] = f"lead {lead['id']} {lead['email']}: {exc}"
    marking = templates.Marking()
    try:
        own = marking.render(templates.StepTemplate(step, subject, body), ctx)
        sent = own.subject if step == 1 else sending.follow_up_subject(
            marking.render(templates.StepTemplate(1, first_subject or "", ""), ctx).subject)
    except Exception:  # noqa: BLE001 - not a missing variable: the strict render's problem says what
        return out
    return out | {"subject": marking.segments(sent), "body": marking.segments(own.body), "missing": marking.missing}


def editor_steps(conn: Connection, campaign_id: int, lead: Mapping[str, Any] | None,
                 sender: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The campaign's steps for the sequence editor: each with how many leads got it and its `draft_preview`,
    and its A/B `variants` (each with how many leads got it and its own preview)."""
    rows = sequences.steps(conn, campaign_id)
    sent = sequences.sent_counts(conn, campaign_id)
    variant_sent = sequences.variant_sent_counts(conn, campaign_id)
    by_step: dict[int, list[dict[str, Any]]] = {}
    first = rows[0]["subject_template"] if rows else None
    for v in sequences.all_variants(conn, campaign_id):
        by_step.setdefault(v["step"], []).append(v | {
            "sent": variant_sent.get((v["step"], v["variant"]), 0),
            "preview": draft_preview(v["step"], v["subject_template"], v["body_template"], first, lead, sender)})
    return [s | {"sent": sent.get(s["step"], 0), "variants": by_step.get(s["step"], []),
                 "preview": draft_preview(s["step"], s["subject_template"], s["body_template"], first, lead, sender)}
            for s in rows]


def forecast(conn: Connection, client_id: int, campaign_id: int, *, now: datetime,
             credits_per_lead: int) -> forecasting.Forecast | str:
    """The engine's forecast from `now`, or why there is none (no sequence, no steps) as one line."""
    try:
        return forecasting.forecast(conn, client_id, campaign_id, now=now, credits_per_lead=credits_per_lead)
    except errors.OutreachError as exc:
        return str(exc)


def forecast_state(conn: Connection, client_id: int, campaign_id: int) -> str:
    """A digest of every row `forecasting.forecast` reads for this campaign (the campaign, its
    sequence and steps, its enrollments and leads, the client's mailboxes and credit balance, the
    last day's reserved sends): it changes whenever the forecast's inputs change."""
    return str(conn.execute(text(
        "SELECT md5(concat_ws('|', "
        " (SELECT md5(string_agg(c::text, ',')) FROM campaigns c WHERE c.id = :camp), "
        " (SELECT md5(string_agg(s::text, ',')) FROM sequences s WHERE s.campaign_id = :camp), "
        " (SELECT md5(string_agg(st::text, ',' ORDER BY st.step)) FROM sequence_steps st "
        "   WHERE st.campaign_id = :camp), "
        " (SELECT md5(string_agg(e::text, ',' ORDER BY e.id)) FROM enrollments e "
        "   WHERE e.campaign_id = :camp AND e.client_id = :c), "
        " (SELECT md5(string_agg(l::text, ',' ORDER BY l.id)) FROM leads l "
        "   WHERE l.campaign_id = :camp AND l.client_id = :c), "
        " (SELECT md5(string_agg(m::text, ',' ORDER BY m.id)) FROM mailboxes m WHERE m.client_id = :c), "
        " (SELECT credit_balance::text FROM clients WHERE id = :c), "
        " (SELECT md5(string_agg(concat_ws(':', s.id, s.status, s.reserved_at), ',' ORDER BY s.id)) FROM messages s "
        "   JOIN mailboxes m ON m.id = s.mailbox_id "
        "   WHERE m.client_id = :c AND s.reserved_at > now() - interval '25 hours')))"),
        {"c": client_id, "camp": campaign_id}).scalar_one())
