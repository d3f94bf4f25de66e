"""Lead pages: search every lead the scope can see, and one lead's story (its whole history in time order).

Read-only for everyone: the pages run `shared.engines.leads.story` in the caller's scope, so a viewer's
search never returns another client's leads and another client's lead id answers 404, the same as
an id that does not exist.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi.responses import Response

from shared.engines.clients import clients
from shared.engines.leads import story
from shared.errors import NotFound
from web.console.deps import PREFIX, Conn, Page, client_filter, path_id

QUERY_MAX_CHARS = 200  # a search box, not a document

router = APIRouter(prefix=PREFIX)
LeadId = Annotated[int, path_id("lead_id")]


@router.get("/leads")
def lead_list(view: Page, conn: Conn, q: str | None = None, client: str | None = None,
              notice: str | None = None) -> Response:
    text = (q or "").replace("\x00", "").strip()[:QUERY_MAX_CHARS]  # Postgres refuses NUL in text
    # The filter form sends `client=` for "all": an empty or malformed value means every client.
    client_id, problem = client_filter(client)
    return view.page("leads.html", q=text, client=client_id, notice=notice or problem, limit=story.SEARCH_LIMIT,
                     leads=story.search(conn, text, client_id=client_id), clients=clients.visible(conn))


@router.get("/leads/{lead_id}")
def lead_page(lead_id: LeadId, view: Page, conn: Conn) -> Response:
    data = story.story(conn, lead_id)
    if data is None:
        raise NotFound()
    return view.page("lead.html", **data)
