"""Campaign and mailbox pages: campaigns with their counts, step previews for a chosen lead, the forecast
as a chart (cached per campaign state, bounded: web/console/forecasts.py), mailbox health; pause/resume
for operators.

Every action goes through the engine function the CLI uses: `campaigns.update_campaign` (as
`outbound campaigns status`: a pause says "paused by hand" and when, a resume clears reason and
time) and `mailboxes.set_mailbox_status` (as `outbound mailboxes pause/resume`). Lifting a
bounce-shield pause needs an explicit confirmation in the form: nothing resumes one by accident.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import Connection

from shared import ids
from shared.engines.mailboxes import views as mailbox_views
from shared import errors
from shared.engines.mailboxes import mailboxes
from shared.engines.campaigns import campaigns
from shared.engines.campaigns import views as q
from shared.engines.users.users import Principal
from shared.status import CampaignStatus
from shared.engines.outreach import forecast as forecasting
from shared.engines.replies import shield
from shared.settings import get_settings
from web.console import Console, NotFound, client_filter, path_id, redirect
from web.console.charts import stacked_bars
from web.console.forecasts import RETRY_AFTER_SECONDS, Busy

REASON_MAX_CHARS = 500  # a pause reason is a sentence, not a document


def _confirmed(form: dict[str, Any]) -> bool:
    return form.get("confirm_shield") == "1"


def register(router: APIRouter, console: Console) -> None:
    forecasts = console.forecasts
    # -- campaigns ---------------------------------------------------------------------------------
    @router.get("/campaigns")
    async def campaign_list(request: Request, client: str | None = None, notice: str | None = None) -> Response:
        client_id, problem = client_filter(client)

        def load(conn: Connection, who: Principal) -> dict[str, Any]:
            return {"campaigns": q.list_campaigns(conn, client_id=client_id), "clients": q.client_choices(conn)}

        data, who, session = await console.read(request, load)
        return console.page("campaigns.html", who, session, client=client_id, notice=notice or problem, **data)

    @router.get("/campaigns/{campaign_id}")
    async def campaign_page(request: Request, campaign_id: int = path_id("campaign_id"), lead: str | None = None,
                            notice: str | None = None) -> Response:
        """Steps and previews at once; the forecast (a simulation that can take seconds on a big
        campaign) arrives from /forecast when the page asks for it."""
        lead_id = ids.parse_id(lead)  # not an id: the first lead, as when none is chosen

        def load(conn: Connection, who: Principal) -> dict[str, Any] | None:
            camp = q.campaign(conn, campaign_id)
            if camp is None:
                return None
            leads = q.preview_leads(conn, camp["client_id"], campaign_id)
            chosen = next((r for r in leads if r["id"] == lead_id), None)
            if chosen is None and lead_id is not None:  # beyond the select's first rows, or not this campaign's
                found = q.preview_leads(conn, camp["client_id"], campaign_id, lead_id=lead_id)
                chosen = found[0] if found else None
                leads = leads + found
            if chosen is None:
                chosen = leads[0] if leads else None
            sender = q.sender_for(conn, camp["client_id"], chosen["mailbox_id"] if chosen else None)
            return {"campaign": camp, "leads": leads, "lead": chosen, "sender": sender,
                    "steps": q.previews(q.steps(conn, campaign_id), chosen, sender)}

        data, who, session = await console.read(request, load)
        if data is None:
            raise NotFound(NotFound.__doc__)
        return console.page("campaign.html", who, session, notice=notice,
                            shield_paused=mailbox_views.shield_paused(data["campaign"]["status_reason"]), **data)

    @router.get("/campaigns/{campaign_id}/forecast")
    async def campaign_forecast(request: Request, campaign_id: int = path_id("campaign_id")) -> Response:
        """The forecast section of the campaign page (an HTML fragment): the chart and its table."""
        per_lead = forecasting.paid_credits_per_lead(get_settings())

        def load(conn: Connection, who: Principal) -> dict[str, Any] | None:
            camp = q.campaign(conn, campaign_id)  # in the caller's scope: a cached forecast only for who may see it
            if camp is None:
                return None
            state = f"{per_lead}|{q.forecast_state(conn, camp['client_id'], campaign_id)}"
            return {"campaign": camp, "forecast": forecasts.get(campaign_id, state, lambda: q.forecast(
                conn, camp["client_id"], campaign_id, now=datetime.now(UTC), credits_per_lead=per_lead))}

        try:
            data, who, session = await console.read(request, load)
        except Busy as exc:
            return Response(f"{exc}\n", status_code=503, media_type="text/plain",
                            headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        if data is None:
            raise NotFound(NotFound.__doc__)
        result = data.pop("forecast")
        fc, chart, boxes, problem = None, None, [], None
        if isinstance(result, str):
            problem = result
        else:
            fc, boxes = result, sorted(result.caps)
            chart = stacked_bars(result.per_day, boxes) if result.per_day else None
        return console.page("forecast.html", who, session, forecast=fc, chart=chart, boxes=boxes,
                            forecast_problem=problem, credits_per_lead=per_lead, **data)

    @router.post("/campaigns/{campaign_id}/pause")
    async def campaign_pause(request: Request, campaign_id: int = path_id("campaign_id")) -> Response:
        def pause(conn: Connection, who: Principal, form: dict[str, Any]) -> str:
            camp = q.campaign(conn, campaign_id)
            if camp is None:
                raise NotFound(NotFound.__doc__)
            if camp["status"] != "active":
                return f"only an active campaign can be paused (this one is {camp['status']})"
            campaigns.update_campaign(conn, campaign_id, status=CampaignStatus.PAUSED)
            return "paused: queued sends re-check this and stop"

        notice, _who = await console.act(request, pause)
        return redirect(f"/campaigns/{campaign_id}", notice)

    @router.post("/campaigns/{campaign_id}/resume")
    async def campaign_resume(request: Request, campaign_id: int = path_id("campaign_id")) -> Response:
        def resume(conn: Connection, who: Principal, form: dict[str, Any]) -> str:
            camp = q.campaign(conn, campaign_id)
            if camp is None:
                raise NotFound(NotFound.__doc__)
            if camp["status"] != "paused":
                return f"only a paused campaign can be resumed (this one is {camp['status']})"
            if mailbox_views.shield_paused(camp["status_reason"]) and not _confirmed(form):
                return "the bounce shield paused this campaign: tick the confirmation to resume it"
            campaigns.update_campaign(conn, campaign_id, status=CampaignStatus.ACTIVE)
            return "resumed"

        notice, _who = await console.act(request, resume)
        return redirect(f"/campaigns/{campaign_id}", notice)

    # -- mailboxes ---------------------------------------------------------------------------------
    def health(client: int | None, mailbox_id: int | None) -> Callable[[Connection, Principal], dict[str, Any]]:
        """The mailbox pages' read: the shield's thresholds as configured now, each mailbox's health."""
        thresholds = shield.Thresholds.from_settings(get_settings())

        def load(conn: Connection, who: Principal) -> dict[str, Any]:
            return {"mailboxes": mailbox_views.mailbox_health(conn, now=datetime.now(UTC), thresholds=thresholds,
                                                  client_id=client, mailbox_id=mailbox_id),
                    "clients": q.client_choices(conn), "thresholds": thresholds}

        return load

    @router.get("/mailboxes")
    async def mailbox_list(request: Request, client: str | None = None, notice: str | None = None) -> Response:
        client_id, problem = client_filter(client)
        data, who, session = await console.read(request, health(client_id, None))
        return console.page("mailboxes.html", who, session, client=client_id, notice=notice or problem, single=False,
                            **data)

    @router.get("/mailboxes/{mailbox_id}")
    async def mailbox_page(request: Request, mailbox_id: int = path_id("mailbox_id"),
                           notice: str | None = None) -> Response:
        data, who, session = await console.read(request, health(None, mailbox_id))
        if not data["mailboxes"]:
            raise NotFound(NotFound.__doc__)
        return console.page("mailboxes.html", who, session, client=None, notice=notice, single=True, **data)

    @router.post("/mailboxes/{mailbox_id}/pause")
    async def mailbox_pause(request: Request, mailbox_id: int = path_id("mailbox_id")) -> Response:
        def pause(conn: Connection, who: Principal, form: dict[str, Any]) -> str:
            box = mailbox_views.mailbox(conn, mailbox_id)
            if box is None:
                raise NotFound(NotFound.__doc__)
            reason = " ".join(str(form.get("reason") or "").split())[:REASON_MAX_CHARS]
            try:
                mailboxes.set_mailbox_status(conn, box["client_id"], box["from_address"], paused=True, reason=reason)
            except errors.OutreachError as exc:
                return str(exc)
            return f"{box['from_address']} paused: {reason}"

        notice, _who = await console.act(request, pause)
        return redirect(f"/mailboxes/{mailbox_id}", notice)

    @router.post("/mailboxes/{mailbox_id}/resume")
    async def mailbox_resume(request: Request, mailbox_id: int = path_id("mailbox_id")) -> Response:
        def resume(conn: Connection, who: Principal, form: dict[str, Any]) -> str:
            box = mailbox_views.mailbox(conn, mailbox_id)
            if box is None:
                raise NotFound(NotFound.__doc__)
            if box["status"] != "paused":
                return f"{box['from_address']} is not paused"
            if mailbox_views.shield_paused(box["status_reason"]) and not _confirmed(form):
                return "the bounce shield paused this mailbox: tick the confirmation to resume it"
            mailboxes.set_mailbox_status(conn, box["client_id"], box["from_address"], paused=False, reason=None)
            return f"{box['from_address']} is active"

        notice, _who = await console.act(request, resume)
        return redirect(f"/mailboxes/{mailbox_id}", notice)
