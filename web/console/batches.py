"""Batch pages: the list, create from a client's new leads, launch, cancel, live progress (server-sent events).

Launching is the same `UPDATE batches SET status = 'launched'` as `outbound batch launch`: the
trigger of migration 0002 hands it on (pg_net → Edge Function → Prefect in production, NOTIFY →
`outbound bridge` or `outbound serve --run-launches` locally). The page then follows the batch by
server-sent events, each one read again from Postgres in the viewer's scope.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import Connection

from shared.engines.batches import views as q
from shared.engines.users.users import Principal
from shared.engines.batches import batches
from shared.status import FINISHED_BATCH
from web.console import Console, NotFound, client_filter, form_int, path_id, redirect

EVENT_POLL_SECONDS = 1.0  # how often a watched batch is read again
EVENT_STREAM_MAX_SECONDS = 15 * 60  # then the browser's EventSource reconnects (re-checking the session)


def _live(p: dict[str, Any]) -> dict[str, Any]:
    """The JSON an event carries: only what the page updates."""
    return {"status": p["status"], "counts": p["counts"], "total": p["total"], "skip_reasons": p["skip_reasons"],
            "credits_spent": p["credits_spent"], "provider_calls": p["provider_calls"],
            "finished": p["status"] in FINISHED_BATCH}


def register(router: APIRouter, console: Console) -> None:
    @router.get("/batches")
    async def batch_list(request: Request, client: str | None = None, notice: str | None = None) -> Response:
        client_id, problem = client_filter(client)

        def load(conn: Connection, who: Principal) -> dict[str, Any]:
            return {"batches": q.list_batches(conn, client_id=client_id), "clients": q.clients(conn)}

        data, who, session = await console.read(request, load)
        return console.page("batches.html", who, session, client=client_id, notice=notice or problem, **data)

    @router.post("/batches")
    async def batch_create(request: Request) -> Response:
        def create(conn: Connection, who: Principal, form: dict[str, Any]) -> tuple[int | None, str]:
            client_id = form_int(form, "client_id")
            if client_id is None:
                return None, "choose a client"
            if not q.visible_client(conn, client_id):
                raise NotFound(NotFound.__doc__)
            batch_id = batches.create_batch(conn, client=client_id, launch=form.get("launch") == "1")
            return batch_id, "" if batch_id else "that client has no new leads to batch"

        try:
            (batch_id, problem), _who = await console.act(request, create)
        except ValueError as exc:
            return redirect("/batches", str(exc))
        if batch_id is None:
            return redirect("/batches", problem)
        return redirect(f"/batches/{batch_id}", "batch created")

    @router.get("/batches/{batch_id}")
    async def batch_page(request: Request, batch_id: int = path_id("batch_id"),
                         notice: str | None = None) -> Response:
        def load(conn: Connection, who: Principal) -> dict[str, Any] | None:
            p = q.progress(conn, batch_id)
            return None if p is None else {"batch": p, "items": q.items(conn, batch_id)}

        data, who, session = await console.read(request, load)
        if data is None:
            raise NotFound(NotFound.__doc__)
        return console.page("batch.html", who, session, notice=notice, live=json.dumps(_live(data["batch"]), default=str),
                            item_limit=q.ITEMS_SHOWN, **data)

    @router.post("/batches/{batch_id}/launch")
    async def batch_launch(request: Request, batch_id: int = path_id("batch_id")) -> Response:
        def launch(conn: Connection, who: Principal, form: dict[str, Any]) -> bool:
            if q.progress(conn, batch_id) is None:
                raise NotFound(NotFound.__doc__)
            return batches.launch(conn, batch_id)

        done, _who = await console.act(request, launch)
        return redirect(f"/batches/{batch_id}", "launched" if done else "only a draft can be launched")

    @router.post("/batches/{batch_id}/cancel")
    async def batch_cancel(request: Request, batch_id: int = path_id("batch_id")) -> Response:
        def cancel(conn: Connection, who: Principal, form: dict[str, Any]) -> bool:
            if q.progress(conn, batch_id) is None:
                raise NotFound(NotFound.__doc__)
            return batches.cancel(conn, batch_id)

        done, _who = await console.act(request, cancel)
        return redirect(f"/batches/{batch_id}", "cancelled: no further claims; items in flight finish"
                        if done else "only a draft, launched or running batch can be cancelled")

    @router.get("/batches/{batch_id}/items.json")
    async def batch_items(request: Request, batch_id: int = path_id("batch_id")) -> Response:
        """The item table's rows, for the page to refresh as the batch moves."""
        def load(conn: Connection, who: Principal) -> list[dict[str, Any]] | None:
            return None if q.progress(conn, batch_id) is None else q.items(conn, batch_id)

        rows, _who, _session = await console.read(request, load)
        if rows is None:
            raise NotFound(NotFound.__doc__)
        return Response(json.dumps(rows, default=str), media_type="application/json",
                        headers={"Cache-Control": "no-store"})

    @router.get("/batches/{batch_id}/events")
    async def batch_events(request: Request, batch_id: int = path_id("batch_id")) -> Response:
        """Server-sent events: `progress` whenever something changed, then `finished` once the batch is over."""
        session = console.session(request)

        def load() -> dict[str, Any] | None:
            who = console.principal(session)  # every poll: a session ended elsewhere stops the stream
            with console.scoped(who) as conn:
                p = q.progress(conn, batch_id)
            return None if p is None else _live(p)

        first = await run_in_threadpool(load)
        if first is None:
            raise NotFound(NotFound.__doc__)

        async def stream():  # type: ignore[no-untyped-def]
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

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
