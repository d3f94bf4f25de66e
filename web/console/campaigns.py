"""Campaign pages: campaigns with their counts, step previews for a chosen lead, the forecast as a chart
(cached per campaign state, bounded: web/console/forecasts.py); pause/resume for operators.

Every action goes through the engine function the CLI uses: `campaigns.update_campaign` (as
`outbound campaigns status`: a pause says "paused by hand" and when, a resume clears reason and
time). Lifting a bounce-shield pause needs an explicit confirmation in the form: nothing resumes
one by accident.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi.responses import Response
from sqlalchemy import Connection

from shared import ids
from shared.engines.campaigns import campaigns
from shared.engines.campaigns import views as q
from shared.engines.clients import clients
from shared.engines.mailboxes import views as mailbox_views
from shared.status import CampaignStatus
from shared.engines.outreach import forecast as forecasting
from shared.errors import Busy, NotFound
from web.console.charts import stacked_bars
from web.console.deps import PREFIX, Conn, Console, Operator, Page, PostedForm, client_filter, path_id, redirect
from web.console.forecasts import RETRY_AFTER_SECONDS
from web.state import SettingsDep

router = APIRouter(prefix=PREFIX)
CampaignId = Annotated[int, path_id("campaign_id")]


def confirmed(form: dict[str, Any]) -> bool:
    """The form's explicit confirmation that a bounce-shield pause is to be lifted."""
    return form.get("confirm_shield") == "1"


@router.get("/campaigns")
def campaign_list(view: Page, conn: Conn, client: str | None = None, notice: str | None = None) -> Response:
    client_id, problem = client_filter(client)
    return view.page("campaigns.html", client=client_id, notice=notice or problem,
                     campaigns=q.list_campaigns(conn, client_id=client_id), clients=clients.visible(conn))


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


@router.get("/campaigns/{campaign_id}")
def campaign_page(campaign_id: CampaignId, view: Page, conn: Conn, lead: str | None = None,
                  notice: str | None = None) -> Response:
    """Steps and previews at once; the forecast (a simulation that can take seconds on a big
    campaign) arrives from /forecast when the page asks for it."""
    camp = q.campaign(conn, campaign_id)
    if camp is None:
        raise NotFound()
    previews = _previews(conn, camp, ids.parse_id(lead))  # not an id: the first lead, as when none is chosen
    return view.page("campaign.html", notice=notice, shield_paused=mailbox_views.shield_paused(camp["status_reason"]),
                     campaign=camp, **previews)


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


@router.post("/campaigns/{campaign_id}/pause")
def campaign_pause(campaign_id: CampaignId, _form: PostedForm, _who: Operator, conn: Conn) -> Response:
    camp = q.campaign(conn, campaign_id)
    if camp is None:
        raise NotFound()
    if camp["status"] != "active":
        return redirect(f"/campaigns/{campaign_id}",
                        f"only an active campaign can be paused (this one is {camp['status']})")
    campaigns.update_campaign(conn, campaign_id, status=CampaignStatus.PAUSED)
    return redirect(f"/campaigns/{campaign_id}", "paused: queued sends re-check this and stop")


@router.post("/campaigns/{campaign_id}/resume")
def campaign_resume(campaign_id: CampaignId, form: PostedForm, _who: Operator, conn: Conn) -> Response:
    camp = q.campaign(conn, campaign_id)
    if camp is None:
        raise NotFound()
    if camp["status"] != "paused":
        notice = f"only a paused campaign can be resumed (this one is {camp['status']})"
    elif mailbox_views.shield_paused(camp["status_reason"]) and not confirmed(form):
        notice = "the bounce shield paused this campaign: tick the confirmation to resume it"
    else:
        campaigns.update_campaign(conn, campaign_id, status=CampaignStatus.ACTIVE)
        notice = "resumed"
    return redirect(f"/campaigns/{campaign_id}", notice)
