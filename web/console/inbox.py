"""Inbox pages (issue 19): every received reply and bounce, newest first, one message read safely, and operators' verdicts.

Everything read or done is `shared.engines.replies.inbox`'s, the functions `outbound replies
inbox|show|mark|reclassify` call, run in the request's scope: a viewer sees its own client's mail
(row-level security) and the page shows it no action; a viewer's post is refused before anything
is read (Operator: 403). Paging is the engine's keyset: the "older" link carries the cursor of the
last row shown (`cursor_text`); a cursor that is not one shows the first page. A message's text is
a stranger's: the page renders only the text the engine extracted, escaped, with the quoted
history in a <details> element (folded without any script).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter
from fastapi.responses import Response
from sqlalchemy import Connection

from shared.engines.campaigns import campaigns
from shared.engines.clients import clients
from shared.engines.mailboxes import mailboxes
from shared.engines.replies import inbox
from shared.engines.users.users import Principal
from shared.errors import InboxRefused, NotFound
from shared.status import InboundKind, Verdict, values
from web.console.deps import PREFIX, Conn, Operator, Page, PostedForm, client_filter, path_id, redirect, text_field

router = APIRouter(prefix=PREFIX)
InboundId = Annotated[int, path_id("inbound_id")]
VERDICTS = tuple(Verdict)


def _id_filter(raw: str | None, name: str, problems: list[str]) -> int | None:
    """An optional id from the query; a malformed one is dropped with a notice (every row is shown)."""
    value, problem = client_filter(raw, name)
    problems += [problem] if problem else []
    return value


def _page(conn: Connection, filters: dict[str, Any], before: inbox.Cursor | None, problems: list[str]) -> inbox.Page:
    """The engine's page; a `kind` that is not a class is dropped with the engine's words (every class is shown)."""
    query = {"kind": filters["kind"], "campaign_id": filters["campaign"], "mailbox_id": filters["mailbox"],
             "unverified": True if filters["unverified"] else None, "before": before, "client_id": filters["client"]}
    try:
        return inbox.inbound(conn, **query)
    except ValueError as exc:  # unknown class
        problems.append(f"{exc}; showing every class")
        filters["kind"] = None
        return inbox.inbound(conn, **query | {"kind": None})


def _choices(conn: Connection, client_id: int | None) -> dict[str, Any]:
    """The filter form's campaigns and mailboxes (of the chosen client, else every visible one) and clients."""
    visible = clients.visible(conn)
    boxes = [m | {"client": c["name"]} for c in visible if client_id in (None, c["id"])
             for m in mailboxes.list_mailboxes(conn, c["id"])]
    return {"clients": visible, "campaigns": campaigns.list_campaigns(conn, client_id), "mailboxes": boxes}


def _link(filters: dict[str, Any], before: inbox.Cursor | None = None) -> str:
    """The inbox with these filters (from the page after `before`, when given)."""
    params = {k: ("1" if v is True else v) for k, v in filters.items() if v not in (None, False, "")}
    return f"{PREFIX}/inbox?" + urlencode(params | ({"before": inbox.cursor_text(before)} if before else {}))


@router.get("/inbox")
def inbox_list(view: Page, conn: Conn, kind: str | None = None, campaign: str | None = None,
               mailbox: str | None = None, client: str | None = None, unverified: str | None = None,
               before: str | None = None, notice: str | None = None) -> Response:
    problems: list[str] = []
    client_id = _id_filter(client, "client", problems) if view.who.is_operator else None  # a viewer's is its own
    filters = {"kind": kind or None, "campaign": _id_filter(campaign, "campaign", problems),
               "mailbox": _id_filter(mailbox, "mailbox", problems), "client": client_id,
               "unverified": bool(unverified)}
    cursor = inbox.parse_cursor(before)  # a value that is not a cursor: the first page
    page = _page(conn, filters, cursor, problems)
    return view.page("inbox.html", rows=page.rows, filters=filters, kinds=values(InboundKind), paged=cursor is not None,
                     older_link=_link(filters, page.next) if page.next else None, newest_link=_link(filters),
                     notice="; ".join(([notice] if notice else []) + problems) or None, **_choices(conn, client_id))


def _found(conn: Connection, inbound_id: int) -> dict[str, Any]:
    found = inbox.message(conn, inbound_id)
    if found is None:
        raise NotFound()  # another client's message reads exactly like one that does not exist
    return found


@router.get("/inbox/{inbound_id}")
def inbox_message(inbound_id: InboundId, view: Page, conn: Conn, notice: str | None = None) -> Response:
    return view.page("inbox_message.html", m=_found(conn, inbound_id), kinds=values(InboundKind), verdicts=VERDICTS,
                     notice=notice)


def _mark(conn: Connection, who: Principal, found: dict[str, Any], form: dict[str, Any]) -> str:
    if found["lead_id"] is None:
        return "this message has no lead to mark (it matched none of our sends)"
    try:
        row = inbox.mark(conn, found["lead_id"], text_field(form.get("verdict")) or "", by=who.email,
                         inbound_message_id=found["id"], note=text_field(form.get("note")))
    except ValueError as exc:  # not a verdict, or a note too long
        return f"not marked: {exc}"
    return f"lead {found['lead']}: {row['verdict'].replace('_', ' ')} (verdict {row['id']}, by {row['decided_by']})"


@router.post("/inbox/{inbound_id}/mark")
def inbox_mark(inbound_id: InboundId, form: PostedForm, who: Operator, conn: Conn) -> Response:
    return redirect(f"/inbox/{inbound_id}", _mark(conn, who, _found(conn, inbound_id), form))


def _reclassify(conn: Connection, who: Principal, inbound_id: int, kind: str) -> str:
    try:
        done = inbox.reclassify(conn, inbound_id, kind, by=who.email)
    except InboxRefused as exc:  # our own mail seen again, or not processed yet
        return f"not reclassified: {exc}"
    except ValueError as exc:  # not a class
        return f"not reclassified: {exc}"
    if done.was == done.kind:
        return f"received message {inbound_id} is already {done.kind}: nothing changed"
    return f"received message {inbound_id}: {done.was} -> {done.kind}" + (f"; {done.effect}" if done.effect else "")


@router.post("/inbox/{inbound_id}/reclassify")
def inbox_reclassify(inbound_id: InboundId, form: PostedForm, who: Operator, conn: Conn) -> Response:
    return redirect(f"/inbox/{inbound_id}", _reclassify(conn, who, inbound_id, text_field(form.get("kind")) or ""))
