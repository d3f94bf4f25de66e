"""Batch pages: the list, create from a client's new leads, launch, cancel, live progress (server-sent events).

Launching is the same `UPDATE batches SET status = 'launched'` as `outbound batch launch`: the
trigger of migration 0002 hands it on (pg_net → Edge Function → Prefect in production, NOTIFY →
`outbound bridge` or `outbound serve --run-launches` locally). The page then follows the batch by
server-sent events, each one read again from Postgres in the viewer's scope.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse

from shared.engines.batches import views as q
from shared.engines.batches import batches
from shared.errors import NotFound
from shared.status import FINISHED_BATCH
from web.console.deps import (PREFIX, Conn, Operator, Page, PostedForm, SessionDep, Viewer, client_filter,
                              form_int, in_scope, path_id, redirect)
from web.state import Web

EVENT_POLL_SECONDS = 1.0  # how often a watched batch is read again
EVENT_STREAM_MAX_SECONDS = 15 * 60  # then the browser's EventSource reconnects (re-checking the session)


def _live(p: dict[str, Any]) -> dict[str, Any]:
    """The JSON an event carries: only what the page updates."""
    return {"status": p["status"], "counts": p["counts"], "total": p["total"], "skip_reasons": p["skip_reasons"],
            "credits_spent": p["credits_spent"], "provider_calls": p["provider_calls"],
            "finished": p["status"] in FINISHED_BATCH}


router = APIRouter(prefix=PREFIX)
BatchId = Annotated[int, path_id("batch_id")]


@router.get("/batches")
def batch_list(view: Page, conn: Conn, client: str | None = None, notice: str | None = None) -> Response:
    client_id, problem = client_filter(client)
    return view.page("batches.html", client=client_id, notice=notice or problem,
                     batches=q.list_batches(conn, client_id=client_id), clients=q.clients(conn))


@router.post("/batches")
def batch_create(form: PostedForm, _who: Operator, conn: Conn) -> Response:
    try:
        client_id = form_int(form, "client_id")
    except ValueError as exc:
        return redirect("/batches", str(exc))
    if client_id is None:
        return redirect("/batches", "choose a client")
    if not q.visible_client(conn, client_id):
        raise NotFound()
    batch_id = batches.create_batch(conn, client=client_id, launch=form.get("launch") == "1")
    if batch_id is None:
        return redirect("/batches", "that client has no new leads to batch")
    return redirect(f"/batches/{batch_id}", "batch created")


@router.get("/batches/{batch_id}")
def batch_page(batch_id: BatchId, view: Page, conn: Conn, notice: str | None = None) -> Response:
    p = q.progress(conn, batch_id)
    if p is None:
        raise NotFound()
    return view.page("batch.html", notice=notice, live=json.dumps(_live(p), default=str), item_limit=q.ITEMS_SHOWN,
                     batch=p, items=q.items(conn, batch_id))


@router.post("/batches/{batch_id}/launch")
def batch_launch(batch_id: BatchId, _form: PostedForm, _who: Operator, conn: Conn) -> Response:
    if q.progress(conn, batch_id) is None:
        raise NotFound()
    done = batches.launch(conn, batch_id)
    return redirect(f"/batches/{batch_id}", "launched" if done else "only a draft can be launched")


@router.post("/batches/{batch_id}/cancel")
def batch_cancel(batch_id: BatchId, _form: PostedForm, _who: Operator, conn: Conn) -> Response:
    if q.progress(conn, batch_id) is None:
        raise NotFound()
    done = batches.cancel(conn, batch_id)
    return redirect(f"/batches/{batch_id}", "cancelled: no further claims; items in flight finish"
                    if done else "only a draft, launched or running batch can be cancelled")


@router.get("/batches/{batch_id}/items.json")
def batch_items(batch_id: BatchId, _who: Viewer, conn: Conn) -> Response:
    """The item table's rows, for the page to refresh as the batch moves."""
    if q.progress(conn, batch_id) is None:
        raise NotFound()
    return Response(json.dumps(q.items(conn, batch_id), default=str), media_type="application/json",
                    headers={"Cache-Control": "no-store"})


@router.get("/batches/{batch_id}/events")
async def batch_events(batch_id: BatchId, request: Request, web: Web, session: SessionDep) -> Response:
    """Server-sent events: `progress` whenever something changed, then `finished` once the batch is over.

    No transaction stays open while the stream does: every poll is one of its own, which reads the
    user again first (a session ended elsewhere stops the stream)."""
    def load() -> dict[str, Any] | None:
        with in_scope(web.engine(), session) as (conn, _who):
            p = q.progress(conn, batch_id)
        return None if p is None else _live(p)

    first = await run_in_threadpool(load)
    if first is None:
        raise NotFound()
    return StreamingResponse(_stream(request, first, load), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def _stream(request: Request, first: dict[str, Any], load: Callable[[], dict[str, Any] | None]
                  ) -> AsyncIterator[str]:
    current: dict[str, Any] | None = first
    last = None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + EVENT_STREAM_MAX_SECONDS
    yield "retry: 2000\n\n"
    while current is not None:
        if current != last:
            yield f"event: progress\ndata: {json.dumps(current, default=str)}\n\n"
            last = current
        if current["finished"]:
            yield "event: finished\ndata: {}\n\n"
            return
        if loop.time() > deadline or await request.is_disconnected():
            return
        await asyncio.sleep(EVENT_POLL_SECONDS)
        try:
            current = await run_in_threadpool(load)
        except Exception:  # noqa: BLE001 - signed out or the database blinked: the browser reconnects
            return
