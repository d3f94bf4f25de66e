"""Campaign pages: campaigns with their counts, step previews for a chosen lead, the forecast as a chart
(cached per campaign state, bounded: web/console/forecasts.py); for operators, the CLI's actions as forms.

Every action goes through the engine function the CLI uses, with its validation and its wording:
create (`campaigns.create_campaign`, as `outbound campaigns add`), the ICP (`scoring.validated_icp`,
then `campaigns.update_campaign`), the sending schedule (`sequences.set_schedule`, as `outbound
sequences schedule`), activation (`store.enroll` then `campaigns.activate`, as `outbound sequences
activate`: a refusal lists every lead and step that does not render), pause / resume / complete
(`campaigns.update_campaign`, as `outbound campaigns status`: a pause says "paused by hand" and when,
any other status clears reason and time). Lifting a bounce-shield pause needs an explicit
confirmation in the form: nothing resumes one by accident. Bad input re-shows the page with the
engine's message (422), what was typed kept.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi.responses import Response
from sqlalchemy import Connection

from shared import ids
from shared.engines.campaigns import campaigns, sequences
from shared.engines.campaigns import views as q
from shared.engines.clients import clients
from shared.engines.leads.importer import clean_name
from shared.engines.leads.scoring import validated_icp
from shared.engines.mailboxes import views as mailbox_views
from shared.engines.outreach import forecast as forecasting
from shared.engines.outreach import store
from shared.errors import Busy, IcpError, NotFound, OutreachError
from shared.status import CampaignStatus
from web.console.charts import stacked_bars
from web.console.deps import (PREFIX, Conn, Console, Operator, Page, Pages, PostedForm, client_filter, form_int,
                              path_id, redirect, text_field)
from web.console.forecasts import RETRY_AFTER_SECONDS
from web.state import SettingsDep

router = APIRouter(prefix=PREFIX)
CampaignId = Annotated[int, path_id("campaign_id")]
WEEKDAYS = ((1, "Mon"), (2, "Tue"), (3, "Wed"), (4, "Thu"), (5, "Fri"), (6, "Sat"), (7, "Sun"))  # ISO numbers
REPORT_SHOWN = 500  # activation problems listed on the page (the count covers all)
INVALID = 422  # the answer to a form the engine refused: the page again, with its message


def confirmed(form: dict[str, Any]) -> bool:
    """The form's explicit confirmation that a bounce-shield pause is to be lifted."""
    return form.get("confirm_shield") == "1"


def _field(form: dict[str, Any], name: str) -> str:
    return text_field(form.get(name)) or ""


def _found(conn: Connection, campaign_id: int) -> dict[str, Any]:
    """The campaign's row as the pages show it; NotFound (404) when missing or not the viewer's."""
    camp = q.campaign(conn, campaign_id)
    if camp is None:
        raise NotFound()
    return camp


def _icp_text(icp: dict[str, Any]) -> str:
    return json.dumps(icp, indent=2, ensure_ascii=False)


def _icp(raw: str) -> dict[str, Any]:
    """The ICP typed in a form (blank: none, the defaults), validated as the CLI validates a file (IcpError)."""
    return validated_icp(raw) if raw.strip() else {}


def _list_page(view: Pages, conn: Connection, client_id: int | None, *, status: int = 200,
               **extra: Any) -> Response:
    return view.page("campaigns.html", status=status, client=client_id, statuses=list(CampaignStatus),
                     campaigns=q.list_campaigns(conn, client_id=client_id), clients=clients.visible(conn), **extra)


@router.get("/campaigns")
def campaign_list(view: Page, conn: Conn, client: str | None = None, notice: str | None = None) -> Response:
    client_id, problem = client_filter(client)
    return _list_page(view, conn, client_id, notice=notice or problem)


def _new_campaign(conn: Connection, form: dict[str, Any]) -> tuple[int, str, str]:
    """(id, name, status) of the campaign the form creates; ValueError (the engine's words) when refused."""
    client_id = form_int(form, "client_id")  # BadNumber, a ValueError naming the field
    if client_id is None:
        raise ValueError("choose a client")
    if not any(c["id"] == client_id for c in clients.visible(conn)):
        raise NotFound()
    name = clean_name(_field(form, "name"))
    if name is None:
        raise ValueError("name: a campaign needs a name")
    status = CampaignStatus(_field(form, "status") or CampaignStatus.DRAFT)  # ValueError names a bad one
    cid = campaigns.create_campaign(conn, client_id, name, status=status, icp_json=_icp(_field(form, "icp")))
    return cid, name, status.value


@router.post("/campaigns")
def campaign_create(form: PostedForm, _who: Operator, view: Page, conn: Conn) -> Response:
    """A new campaign of a client (an existing name is refused), its ICP validated as `outbound campaigns add`."""
    try:
        cid, name, status = _new_campaign(conn, form)
    except ValueError as exc:  # IcpError and AlreadyExists are ValueErrors
        return _list_page(view, conn, None, status=INVALID, create_error=str(exc), typed=form)
    return redirect(f"/campaigns/{cid}", f"campaign {name} (id {cid}) is {status}")


def _previews(conn: Connection, camp: dict[str, Any], lead_id: int | None) -> dict[str, Any]:
    """The lead chosen for the previews (the first when none or an unknown one is), and the steps rendered for it."""
    campaign_id = camp["id"]
    leads = q.preview_leads(conn, camp["client_id"], campaign_id)
    chosen = next((r for r in leads if r["id"] == lead_id), None)
    if chosen is None and lead_id is not None:  # beyond the select's first rows, or not this campaign's
        found = q.preview_leads(conn, camp["client_id"], campaign_id, lead_id=lead_id)
        chosen = found[0] if found else None
        leads = leads + found
    if chosen is None:
        chosen = leads[0] if leads else None
    sender = q.sender_for(conn, camp["client_id"], chosen["mailbox_id"] if chosen else None)
    return {"leads": leads, "lead": chosen, "sender": sender,
            "steps": q.previews(q.steps(conn, campaign_id), chosen, sender)}


def _campaign_page(view: Pages, conn: Connection, camp: dict[str, Any], *, lead_id: int | None = None,
                   status: int = 200, **extra: Any) -> Response:
    """The campaign page; `extra` carries a form's refusal (its message, what was typed) or the activation report."""
    current = q.settings(conn, camp["id"])
    return view.page("campaign.html", status=status, shield_paused=mailbox_views.shield_paused(camp["status_reason"]),
                     campaign=camp, settings=current, weekdays=WEEKDAYS,
                     icp_text=extra.pop("icp_text", None) or _icp_text(current["icp"]),
                     **_previews(conn, camp, lead_id), **extra)


@router.get("/campaigns/{campaign_id}")
def campaign_page(campaign_id: CampaignId, view: Page, conn: Conn, lead: str | None = None,
                  notice: str | None = None) -> Response:
    """Steps and previews at once; the forecast (a simulation that can take seconds on a big
    campaign) arrives from /forecast when the page asks for it."""
    camp = _found(conn, campaign_id)
    # not an id: the first lead, as when none is chosen
    return _campaign_page(view, conn, camp, lead_id=ids.parse_id(lead), notice=notice)


@router.get("/campaigns/{campaign_id}/forecast")
def campaign_forecast(campaign_id: CampaignId, view: Page, conn: Conn, console: Console,
                      settings: SettingsDep) -> Response:
    """The forecast section of the campaign page (an HTML fragment): the chart and its table."""
    per_lead = forecasting.paid_credits_per_lead(settings)
    camp = q.campaign(conn, campaign_id)  # in the caller's scope: a cached forecast only for who may see it
    if camp is None:
        raise NotFound()
    state = f"{per_lead}|{q.forecast_state(conn, camp['client_id'], campaign_id)}"
    try:
        result = console.forecasts.get(campaign_id, state, lambda: q.forecast(
            conn, camp["client_id"], campaign_id, now=datetime.now(UTC), credits_per_lead=per_lead))
    except Busy as exc:
        return Response(f"{exc}\n", status_code=503, media_type="text/plain",
                        headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    fc, chart, boxes, problem = None, None, [], None
    if isinstance(result, str):
        problem = result
    else:
        fc, boxes = result, sorted(result.caps)
        chart = stacked_bars(result.per_day, boxes) if result.per_day else None
    return view.page("forecast.html", forecast=fc, chart=chart, boxes=boxes, forecast_problem=problem,
                     credits_per_lead=per_lead, campaign=camp)


@router.post("/campaigns/{campaign_id}/icp")
def campaign_icp(campaign_id: CampaignId, form: PostedForm, _who: Operator, view: Page, conn: Conn) -> Response:
    """A new ICP, validated as `outbound campaigns update --icp` validates its file; the status is kept."""
    camp = _found(conn, campaign_id)
    typed = _field(form, "icp")
    try:
        changes = campaigns.update_campaign(conn, campaign_id, icp_json=_icp(typed))
    except IcpError as exc:
        return _campaign_page(view, conn, camp, status=INVALID, icp_error=str(exc), icp_text=typed)
    if "icp" not in changes:
        return redirect(f"/campaigns/{campaign_id}", "ICP: nothing changed")
    old, new = changes["icp"]
    return redirect(f"/campaigns/{campaign_id}", f"ICP: {len(old)} settings -> {len(new)} settings")


def _hour(form: dict[str, Any], name: str) -> int:
    raw = _field(form, name).strip()
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 2:
        raise OutreachError(f"{name.replace('_', ' ')}: {raw[:40]!r} is not an hour (0-24)")
    return int(raw)


def _weekdays(form: dict[str, Any]) -> list[int]:
    """The ticked weekdays: one checkbox per day, `weekday_<ISO number>` (the form arrives as a plain dict)."""
    return [day for day, _ in WEEKDAYS if form.get(f"weekday_{day}") == "on"]


@router.post("/campaigns/{campaign_id}/schedule")
def campaign_schedule(campaign_id: CampaignId, form: PostedForm, _who: Operator, view: Page, conn: Conn) -> Response:
    """When the campaign sends, in each lead's local time: `set_schedule`, as `outbound sequences schedule`."""
    camp = _found(conn, campaign_id)
    days, zone = _weekdays(form), _field(form, "fallback_timezone").strip()
    try:
        start, end = _hour(form, "start_hour"), _hour(form, "end_hour")
        sequences.set_schedule(conn, camp["client_id"], campaign_id, weekdays=days, start_hour=start, end_hour=end,
                               fallback_timezone=zone)
    except OutreachError as exc:
        return _campaign_page(view, conn, camp, status=INVALID, schedule_error=str(exc))
    return redirect(f"/campaigns/{campaign_id}", f"campaign {camp['name']} sends on {days} {start}:00-{end}:00 local")


@router.post("/campaigns/{campaign_id}/activate")
def campaign_activate(campaign_id: CampaignId, _form: PostedForm, _who: Operator, view: Page,
                      conn: Conn) -> Response:
    """Enroll the campaign's leads, dry-render every lead for every step, and activate if all render
    (as `outbound sequences activate`: the enrollments stay when it refuses, nothing is sent)."""
    camp = _found(conn, campaign_id)
    try:
        sources = store.enroll(conn, camp["client_id"], campaign_id, now=datetime.now(UTC))
    except OutreachError as exc:
        return _campaign_page(view, conn, camp, status=INVALID, report=[str(exc)], report_total=1)
    problems = campaigns.activate(conn, camp["client_id"], campaign_id)
    enrolled = f"enrolled: {sources or 'nobody new'}"
    if problems:
        return _campaign_page(view, conn, _found(conn, campaign_id), status=INVALID, notice=enrolled,
                              report=problems[:REPORT_SHOWN], report_total=len(problems))
    return redirect(f"/campaigns/{campaign_id}", f"{enrolled}; campaign {camp['name']} is active")


@router.post("/campaigns/{campaign_id}/pause")
def campaign_pause(campaign_id: CampaignId, _form: PostedForm, _who: Operator, conn: Conn) -> Response:
    camp = _found(conn, campaign_id)
    if camp["status"] != "active":
        return redirect(f"/campaigns/{campaign_id}",
                        f"only an active campaign can be paused (this one is {camp['status']})")
    campaigns.update_campaign(conn, campaign_id, status=CampaignStatus.PAUSED)
    return redirect(f"/campaigns/{campaign_id}", "paused: queued sends re-check this and stop")


@router.post("/campaigns/{campaign_id}/resume")
def campaign_resume(campaign_id: CampaignId, form: PostedForm, _who: Operator, conn: Conn) -> Response:
    camp = _found(conn, campaign_id)
    if camp["status"] != "paused":
        notice = f"only a paused campaign can be resumed (this one is {camp['status']})"
    elif mailbox_views.shield_paused(camp["status_reason"]) and not confirmed(form):
        notice = "the bounce shield paused this campaign: tick the confirmation to resume it"
    else:
        campaigns.update_campaign(conn, campaign_id, status=CampaignStatus.ACTIVE)
        notice = "resumed"
    return redirect(f"/campaigns/{campaign_id}", notice)


@router.post("/campaigns/{campaign_id}/complete")
def campaign_complete(campaign_id: CampaignId, _form: PostedForm, _who: Operator, conn: Conn) -> Response:
    """Done: no further step goes out (queued sends re-check the status just in time)."""
    camp = _found(conn, campaign_id)
    if camp["status"] == "completed":
        return redirect(f"/campaigns/{campaign_id}", "this campaign is already completed")
    campaigns.update_campaign(conn, campaign_id, status=CampaignStatus.COMPLETED)
    return redirect(f"/campaigns/{campaign_id}", f"campaign {camp['name']} is completed")
