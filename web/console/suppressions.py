"""Suppression list pages: search with paging, add one entry, import a CSV upload, export a client's CSV.

Every action is the engine's own function (`shared.engines.outreach.suppression`): `suppress` (its
one normalizer) for an entry typed in, `import_stream` (the CLI's parser) for an upload,
`write_export` (the CLI's columns and spreadsheet-safe writer) for the download. What is added
here is what the just-in-time check before every send reads (`is_suppressed`).

Viewers read and export their own client's list (row-level security decides what "own" is);
only operators add or import. An upload is refused with 413 once it passes IMPORT_MAX_BYTES,
counted while it arrives, so an oversized body is never read whole (the form parser spools the
file part to a private, already-unlinked temporary file beyond 1 MB).
"""

from __future__ import annotations

import io
import math
import re
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlalchemy import Connection, Engine

from shared import db, ids
from shared.engines.clients import clients
from shared.engines.leads.importer import clean_name
from shared.engines.outreach import suppression
from shared.engines.outreach import suppression_list as queries
from shared.engines.users.users import Principal
from shared.errors import NotFound
from web.console.deps import (PREFIX, SECURITY_HEADERS, Conn, Console, Operator, Page, Pages, PostedForm,
                              SignedInOperator, SignedInPage, client_filter, form_int, in_scope, posted_upload, redirect,
                              session_of, upload_form, upload_name)
from web.state import Web

IMPORT_MAX_BYTES = 20 * 1024 * 1024  # a whole upload request; `outbound suppressions import` has no limit
PROBLEMS_SHOWN = 2000  # rejected lines listed on the page after an import (the count covers all)
REASON_MAX_CHARS = 200
DEFAULT_REASON = "manual"


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _reason(raw: Any, default: str) -> str:
    """One line, no control characters, no formula prefix, bounded: it is shown and exported."""
    return (clean_name(_str(raw)) or default)[:REASON_MAX_CHARS]


def _download_name(client: str, client_id: int) -> str:
    """`suppressions-<client>-<id>.csv` with only filename-safe ASCII: nothing for a header to trip on."""
    slug = re.sub(r"[^A-Za-z0-9_]+", "-", client).strip("-_")[:60] or "client"
    return f"suppressions-{slug}-{client_id}.csv"


def _link(client: int | None, text: str, page: int) -> str:
    params = {k: v for k, v in (("client", client), ("q", text), ("page", page if page > 1 else None)) if v}
    return f"{PREFIX}/suppressions" + (f"?{urlencode(params)}" if params else "")


def _listing(conn: Connection, who: Principal, client: int | None, text: str, page: int) -> dict[str, Any]:
    """What the page shows: the entries (one page), the paging, the client choices."""
    if client is not None and queries.client_name(conn, client) is None:
        raise NotFound()  # another client's id reads exactly like one that does not exist
    total = queries.count(conn, client_id=client, q=text)
    pages = max(1, math.ceil(total / queries.PAGE_SIZE))
    return {
        "entries": queries.search(conn, client_id=client, q=text, page=page),
        "total": total, "page": page, "pages": pages, "first": (page - 1) * queries.PAGE_SIZE + 1,
        "prev_link": _link(client, text, page - 1) if page > 1 else None,
        "next_link": _link(client, text, page + 1) if page < pages else None,
        "clients": clients.visible(conn),
        "export_client": client if client is not None else (None if who.is_operator else who.client_id),
    }


router = APIRouter(prefix=PREFIX)


def _render(view: Pages, data: dict[str, Any], *, client: int | None, text: str, status: int = 200,
            **extra: Any) -> Response:
    return view.page("suppressions.html", status=status, client=client, q=text, page_size=queries.PAGE_SIZE,
                     import_max_mb=IMPORT_MAX_BYTES // (1024 * 1024), **data, **extra)


@router.get("/suppressions")
def suppression_list(view: Page, conn: Conn, client: str | None = None, q: str | None = None,
                     page: str | None = None, notice: str | None = None) -> Response:
    client_id, problem = client_filter(client)  # blank ("all") or malformed: every client in the scope
    text, page_no = queries.clean_query(q), ids.parse_page(page)
    data = _listing(conn, view.who, client_id, text, page_no)
    return _render(view, data, client=client_id, text=text, notice=notice or problem)


def _add(conn: Connection, who: Principal, form: dict[str, Any], client_id: int) -> str:
    value = _str(form.get("value"))
    try:
        kind, normalized = suppression.normalize(value)
        added = suppression.suppress(conn, client_id, value, reason=_reason(form.get("reason"), DEFAULT_REASON),
                                     source=f"console:{who.email}")
    except ValueError as exc:
        return f"not added: {exc}"
    return f"{normalized} added ({kind})" if added else f"{normalized} was already on the list"


@router.post("/suppressions")
def suppression_add(form: PostedForm, who: Operator, conn: Conn) -> Response:
    try:
        client_id = form_int(form, "client_id")
    except ValueError as exc:  # a client id that is not a number
        return redirect("/suppressions", str(exc))
    if client_id is None:
        return redirect("/suppressions", "choose a client")
    if queries.client_name(conn, client_id) is None:
        raise NotFound()
    return redirect(f"/suppressions?client={client_id}", _add(conn, who, form, client_id))


def _import(engine: Engine, who: Principal, client_id: int, upload: Any, reason: str,
            filename: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The engine's parser on the upload, then the listing (which already shows what was added), in one transaction."""
    with db.transaction(engine, role=who) as conn:
        if queries.client_name(conn, client_id) is None:
            raise NotFound()
        try:
            added, problems = suppression.import_stream(conn, client_id, upload.file, reason=reason,
                                                        source=f"import:{filename}")
            outcome = {"added": added, "rejected": len(problems), "problems": problems[:PROBLEMS_SHOWN]}
        except suppression.UnreadableFile as exc:
            outcome = {"error": str(exc)}
        return outcome, _listing(conn, who, client_id, "", 1)


Upload = upload_form(lambda: IMPORT_MAX_BYTES)


@router.post("/suppressions/import")
async def suppression_import(form: Upload, who: SignedInOperator, view: SignedInPage, web: Web) -> Response:
    """A CSV upload (`deps.upload_form`: operator, size, CSRF), then the engine's parser."""
    if form is None:
        return view.message(413, "Too large", f"The file is larger than {IMPORT_MAX_BYTES // (1024 * 1024)} MB; "
                                              "split it, or use `outbound suppressions import`.")
    parts = posted_upload(form)
    if isinstance(parts, str):
        return redirect("/suppressions", parts)
    client_id, upload = parts
    filename = upload_name(upload.filename, "upload")
    outcome, data = await run_in_threadpool(_import, web.engine(), who, client_id, upload,
                                            _reason(form.get("reason"), "imported"), filename)
    return _render(view, data, client=client_id, text="", imported={"filename": filename, **outcome},
                   problems_shown=PROBLEMS_SHOWN)


def _export(conn: Connection, who: Principal, client_id: int | None) -> tuple[str, int, str] | None:
    """(client name, client id, the CLI's CSV), or None when no client is chosen (an operator must choose)."""
    wanted = client_id if client_id is not None else (None if who.is_operator else who.client_id)
    if wanted is None:
        return None
    name = queries.client_name(conn, wanted)
    if name is None:
        raise NotFound()
    buffer = io.StringIO()
    suppression.write_export(conn, wanted, buffer)
    return name, wanted, buffer.getvalue()


@router.get("/suppressions/export")
def suppression_export(request: Request, web: Web, console: Console, client: str | None = None) -> Response:
    """A client's list as the CLI's CSV. A malformed `client` is answered before the session is read."""
    client_id, problem = client_filter(client)
    if problem:
        return redirect("/suppressions", problem)
    with in_scope(web.engine(), session_of(console, request)) as (conn, who):
        found = _export(conn, who, client_id)
    if found is None:
        return redirect("/suppressions", "choose a client to export")
    name, wanted, content = found
    headers = SECURITY_HEADERS | {"Content-Disposition": f'attachment; filename="{_download_name(name, wanted)}"'}
    return Response(content, media_type="text/csv; charset=utf-8", headers=headers)
