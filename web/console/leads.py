"""Lead pages: search every lead the scope can see, and one lead's story (its whole history in time order).

Read-only for everyone: the pages run `shared.engines.leads.story` in the caller's scope, so a viewer's
search never returns another client's leads and another client's lead id answers 404, the same as
an id that does not exist.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import Connection

from shared.engines.clients import clients
from shared.engines.leads import story
from shared.engines.users.users import Principal
from web.console import Console, NotFound, client_filter, path_id

QUERY_MAX_CHARS = 200  # a search box, not a document


def register(router: APIRouter, console: Console) -> None:
    @router.get("/leads")
    async def lead_list(request: Request, q: str | None = None, client: str | None = None,
                        notice: str | None = None) -> Response:
        text = (q or "").replace("\x00", "").strip()[:QUERY_MAX_CHARS]  # Postgres refuses NUL in text
        # The filter form sends `client=` for "all": an empty or malformed value means every client.
        client_id, problem = client_filter(client)
        notice = notice or problem

        def load(conn: Connection, who: Principal) -> dict[str, Any]:
            return {"leads": story.search(conn, text, client_id=client_id), "clients": clients.visible(conn)}

        data, who, session = await console.read(request, load)
        return console.page("leads.html", who, session, q=text, client=client_id, notice=notice,
                            limit=story.SEARCH_LIMIT, **data)

    @router.get("/leads/{lead_id}")
    async def lead_page(request: Request, lead_id: int = path_id("lead_id")) -> Response:
        data, who, session = await console.read(request, lambda conn, who: story.story(conn, lead_id))
        if data is None:
            raise NotFound(NotFound.__doc__)
        return console.page("lead.html", who, session, **data)
