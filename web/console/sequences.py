"""The sequence editor: a campaign's steps added, edited, reordered and deleted, with a live preview per step.

The preview is the engine's (`campaigns.views.draft_preview`: the strict render that activation's
dry-run uses, plus every undefined variable marked in place and named; a follow-up's subject as it
is sent, step 1's as a reply). The page's script posts a step's draft to /sequence/preview as the
operator types and puts the returned fragment in place; the page itself renders the same fragment.

Every change goes through the engine (`campaigns.sequences`: `edit_step`, `delete_step`,
`move_step`), which refuses to change a step some lead already got and says which and how many.
A step's A/B variants (labels B, C, ...; the step's own text is A) are listed under it, each with
its preview and, for operators, a form to change or delete it (`sequences.set_variant`,
`delete_variant`: a variant some message names is fixed), and one to add another.
Viewers see the steps and their previews, read-only; every POST is operator-only, CSRF-checked.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi.responses import Response
from sqlalchemy import Connection

from shared import ids
from shared.engines.campaigns import sequences
from shared.engines.campaigns import views as q
from shared.errors import NotFound, OutboundError, TemplateProblem
from web.console.campaigns import _previews as preview_context
from web.console.deps import PREFIX, Conn, Operator, Page, Pages, PostedForm, form_int, path_id, redirect, text_field

router = APIRouter(prefix=PREFIX)
CampaignId = Annotated[int, path_id("campaign_id")]
DELAY_MAX = 365  # days between two steps; more is a typo
UNITS = ("business_days", "days")  # what `sequences.set_step` takes, in the order offered


def _campaign(conn: Connection, campaign_id: int) -> dict[str, Any]:
    camp = q.campaign(conn, campaign_id)
    if camp is None:
        raise NotFound()
    return camp


def _delay(form: dict[str, Any]) -> int:
    raw = (text_field(form.get("delay_amount")) or "0").strip()
    value = 0 if raw == "0" else ids.parse_id(raw, maximum=DELAY_MAX)
    if value is None:
        raise ids.BadNumber(f"delay: {raw[:40]!r} is not a number of days from 0 to {DELAY_MAX}")
    return value


def _draft(form: dict[str, Any]) -> dict[str, Any]:
    """The step as posted: its number, subject, body, delay and unit (BadNumber for a number that is not one)."""
    step = form_int(form, "step")
    if step is None:
        raise ids.BadNumber("step: missing")
    return {"step": step, "subject": text_field(form.get("subject")) or "", "body": text_field(form.get("body")) or "",
            "delay_amount": _delay(form), "delay_unit": text_field(form.get("delay_unit")) or ""}


def _page(view: Pages, conn: Connection, camp: dict[str, Any], lead_id: int | None, *, notice: str | None = None,
          draft: dict[str, Any] | None = None, status: int = 200) -> Response:
    """The editor; `draft`: a step's values as posted, kept in its form when saving them was refused."""
    context = preview_context(conn, camp, lead_id)
    steps = q.editor_steps(conn, camp["id"], context["lead"], context["sender"])
    return view.page("sequence.html", status=status, notice=notice, campaign=camp, leads=context["leads"],
                     lead=context["lead"], sender=context["sender"], steps=steps, draft=draft, units=UNITS,
                     delay_max=DELAY_MAX)


@router.get("/campaigns/{campaign_id}/sequence")
def sequence_page(campaign_id: CampaignId, view: Page, conn: Conn, lead: str | None = None,
                  notice: str | None = None) -> Response:
    return _page(view, conn, _campaign(conn, campaign_id), ids.parse_id(lead), notice=notice)


@router.post("/campaigns/{campaign_id}/sequence/preview")
def sequence_preview(campaign_id: CampaignId, form: PostedForm, _who: Operator, view: Page, conn: Conn) -> Response:
    """The preview fragment for a step's draft (the text the operator is typing), for the chosen lead."""
    camp = _campaign(conn, campaign_id)
    step = ids.parse_id(text_field(form.get("step")), maximum=10_000) or 1
    context = preview_context(conn, camp, ids.parse_id(text_field(form.get("lead"))))
    subject, body = text_field(form.get("subject")) or "", text_field(form.get("body")) or ""
    first = subject if step == 1 else text_field(form.get("first_subject"))
    preview = q.draft_preview(step, subject, body, first, context["lead"], context["sender"])
    return view.page("sequence_preview.html", preview=preview, lead=context["lead"])


def _lead_of(form: dict[str, Any]) -> int | None:
    return ids.parse_id(text_field(form.get("lead")))


def _back(campaign_id: int, form: dict[str, Any], notice: str) -> Response:
    lead = _lead_of(form)
    return redirect(f"/campaigns/{campaign_id}/sequence" + (f"?lead={lead}" if lead else ""), notice)


@router.post("/campaigns/{campaign_id}/sequence/save")
def sequence_save(campaign_id: CampaignId, form: PostedForm, _who: Operator, view: Page, conn: Conn) -> Response:
    """Add a step (the next number) or change one; refused, with the draft kept on the page, when the engine says no."""
    camp = _campaign(conn, campaign_id)
    try:
        draft = _draft(form)
    except ValueError as exc:
        return _page(view, conn, camp, _lead_of(form), notice=f"not saved: {exc}", status=400)
    try:
        with conn.begin_nested():  # nothing half-written: the page below reads the sequence as it was
            sequences.edit_step(conn, camp["client_id"], campaign_id, **draft)
    except (OutboundError, TemplateProblem) as exc:
        return _page(view, conn, camp, _lead_of(form), notice=f"not saved: {exc}", draft=draft, status=400)
    return _back(campaign_id, form, f"step {draft['step']} saved")


@router.post("/campaigns/{campaign_id}/sequence/move")
def sequence_move(campaign_id: CampaignId, form: PostedForm, _who: Operator, conn: Conn) -> Response:
    camp = _campaign(conn, campaign_id)
    try:
        step, to = form_int(form, "step"), form_int(form, "to")
        if step is None or to is None:
            raise ids.BadNumber("choose a step and where it goes")
        sequences.move_step(conn, camp["client_id"], campaign_id, step, to)
    except (OutboundError, ValueError) as exc:
        return _back(campaign_id, form, f"not moved: {exc}")
    return _back(campaign_id, form, f"step {step} is now step {to}")


@router.post("/campaigns/{campaign_id}/sequence/delete")
def sequence_delete(campaign_id: CampaignId, form: PostedForm, _who: Operator, conn: Conn) -> Response:
    camp = _campaign(conn, campaign_id)
    try:
        step = form_int(form, "step")
        if step is None:
            raise ids.BadNumber("choose a step")
        sequences.delete_step(conn, camp["client_id"], campaign_id, step)
    except (OutboundError, ValueError) as exc:
        return _back(campaign_id, form, f"not deleted: {exc}")
    return _back(campaign_id, form, f"step {step} deleted")


def _variant_of(form: dict[str, Any]) -> tuple[int, str]:
    """(step, label) as posted (BadNumber for a step that is not a number; the engine checks the label)."""
    step = form_int(form, "step")
    if step is None:
        raise ids.BadNumber("step: missing")
    return step, (text_field(form.get("label")) or "").strip()


@router.post("/campaigns/{campaign_id}/sequence/variant")
def sequence_variant_save(campaign_id: CampaignId, form: PostedForm, _who: Operator, view: Page,
                          conn: Conn) -> Response:
    """Add or change a step's variant; refused, with the reason on the page, when the engine says no."""
    camp = _campaign(conn, campaign_id)
    try:
        step, label = _variant_of(form)
        with conn.begin_nested():
            sequences.set_variant(conn, camp["client_id"], campaign_id, step, label,
                                  text_field(form.get("subject")) or "", text_field(form.get("body")) or "")
    except (OutboundError, TemplateProblem, ValueError) as exc:
        return _page(view, conn, camp, _lead_of(form), notice=f"variant not saved: {exc}", status=400)
    return _back(campaign_id, form, f"step {step} variant {label} saved")


@router.post("/campaigns/{campaign_id}/sequence/variant/delete")
def sequence_variant_delete(campaign_id: CampaignId, form: PostedForm, _who: Operator, conn: Conn) -> Response:
    camp = _campaign(conn, campaign_id)
    try:
        step, label = _variant_of(form)
        sequences.delete_variant(conn, camp["client_id"], campaign_id, step, label)
    except (OutboundError, ValueError) as exc:
        return _back(campaign_id, form, f"variant not deleted: {exc}")
    return _back(campaign_id, form, f"step {step} variant {label} deleted")
