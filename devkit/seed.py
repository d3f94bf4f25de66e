"""Rows for tests, benchmarks and chaos runs: clients, campaigns, leads, batches, mailboxes, enrollments.

Each goes through the engine function that makes it in production where one exists (a client's
credits are a ledger top-up, a batch is `create_batch`'s, a mailbox is `add_mailbox`'s). Bulk rows
(leads, the benchmarks' finished items and enrollments, up to a million) are one set-based
INSERT ... SELECT over generate_series each, so seeding stays fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from shared.engines.batches.batches import create_batch
from shared.engines.campaigns.campaigns import create_campaign
from shared.engines.clients.clients import create_client
from shared.engines.mailboxes.mailboxes import add_mailbox
from shared.status import BatchStatus, CampaignStatus, Subscription


def client(conn: Connection, name: str = "acme", *, credits: int = 0, status: str = "active") -> int:
    """A new client whose `credits` are its first top-up (so balance = ledger sum from the start)."""
    return create_client(conn, name, subscription=Subscription(status), credits=credits)


def campaign(conn: Connection, client_id: int, name: str = "q4", *, status: str = "active",
             icp: dict[str, Any] | None = None) -> int:
    """A new campaign of the client, its ICP stored as given."""
    return create_campaign(conn, client_id, name, status=CampaignStatus(status), icp_json=icp)


_LEADS = """
    INSERT INTO leads (client_id, campaign_id, email, first_name, last_name, title, company_name, company_domain,
                       country)
    SELECT :c, :camp, 'person' || g || '@' || co.domain, 'First' || g, 'Last' || g, :title, co.name, co.domain,
           :country
    FROM generate_series(1, :n) g,
         LATERAL (SELECT CASE WHEN :companies > 0 THEN 'co' || g % :companies || '.' || :d ELSE :d END AS domain,
                         CASE WHEN :companies > 0 THEN 'Company ' || g % :companies ELSE 'Example Inc' END AS name) co
    RETURNING id
"""


def leads(conn: Connection, client_id: int, n: int, *, campaign_id: int | None = None, domain: str = "example.com",
          companies: int = 0, country: str | None = None, title: str | None = "VP Sales") -> list[int]:
    """`n` new leads `person<i>@<domain>` (i from 1), in one INSERT; their ids in order.

    With `companies`, they work at that many companies `co<k>.<domain>` instead of one at `domain`.
    """
    rows = conn.execute(text(_LEADS), {"c": client_id, "camp": campaign_id, "n": n, "d": domain,
                                       "companies": companies, "country": country, "title": title})
    return sorted(rows.scalars())


def batch(conn: Connection, client_id: int, lead_ids: Sequence[int] | None = None, *,
          campaign_id: int | None = None, max_attempts: int | None = None, status: str = "draft") -> int:
    """A batch over `lead_ids` (None: the client's new leads) made by `create_batch`, left in `status`.

    Without leads it is a bare batch row (what the launch trigger and the bridge act on), which
    `create_batch` never makes.
    """
    made = None
    if lead_ids is None or len(lead_ids):
        made = create_batch(conn, client=client_id, campaign=campaign_id, lead_ids=lead_ids,
                            launch=status == BatchStatus.LAUNCHED, max_attempts=max_attempts)
    if made is None:
        return _bare_batch(conn, client_id, campaign_id, status)
    if status not in (BatchStatus.DRAFT, BatchStatus.LAUNCHED):
        conn.execute(text("UPDATE batches SET status = :s WHERE id = :b"), {"s": status, "b": made})
    return made


def _bare_batch(conn: Connection, client_id: int, campaign_id: int | None, status: str) -> int:
    return int(conn.execute(
        text("INSERT INTO batches (client_id, campaign_id, status, launched_at) "
             "VALUES (:c, :camp, :s, CASE WHEN :s = 'launched' THEN now() END) RETURNING id"),
        {"c": client_id, "camp": campaign_id, "s": status}).scalar_one())


def finished_batch(conn: Connection, client_id: int) -> int:
    """A batch over every lead of the client with each item DONE after one attempt, in one INSERT.

    No engine path makes a million finished items quickly; the claim benchmark needs them as filler.
    """
    made = _bare_batch(conn, client_id, None, BatchStatus.COMPLETED)
    conn.execute(text("INSERT INTO work_items (batch_id, lead_id, client_id, status, attempts, finished_at) "
                      "SELECT :b, id, client_id, 'DONE', 1, now() FROM leads WHERE client_id = :c"),
                 {"b": made, "c": client_id})
    return made


def mailbox(conn: Connection, client_id: int, from_address: str, *, smtp_host: str = "127.0.0.1",
            smtp_port: int = 25, **fields: Any) -> int:
    """A mailbox through `add_mailbox`, set for a local sink: no TLS, no gap or jitter between sends."""
    defaults = {"tls_mode": "none", "min_gap_seconds": 0, "jitter_seconds": 0}
    return add_mailbox(conn, client_id, **(defaults | fields | {"from_address": from_address,
                                                                 "smtp_host": smtp_host, "smtp_port": smtp_port}))


def enrollments(conn: Connection, client_id: int, campaign_id: int, *, due: datetime, active: int) -> None:
    """Every lead of the client enrolled in the campaign at step 2, due in the 10 hours up to `due`
    across four time zones; the first `active` of them active, the rest finished. One INSERT."""
    conn.execute(text(
        "INSERT INTO enrollments (client_id, campaign_id, lead_id, next_step, next_due_at, timezone, "
        "timezone_source, status) SELECT :c, :camp, l.id, 2, :due - (l.id % 600) * interval '1 minute', "
        "(ARRAY['Europe/London', 'Europe/Berlin', 'America/New_York', 'Asia/Tokyo'])[1 + l.id % 4], 'seed', "
        "CASE WHEN row_number() OVER (ORDER BY l.id) <= :active THEN 'active' ELSE 'finished' END "
        "FROM leads l WHERE l.client_id = :c"),
        {"c": client_id, "camp": campaign_id, "due": due, "active": active})


def contacts(conn: Connection, lead_ids: Sequence[int], phones: Sequence[str | None],
             countries: Sequence[str | None]) -> None:
    """Give each lead its phone and country (the zone a forecast resolves from them). One UPDATE."""
    conn.execute(text(
        "UPDATE leads l SET phone = v.phone, country = v.country "
        "FROM unnest(CAST(:ids AS bigint[]), CAST(:phones AS text[]), CAST(:countries AS text[])) AS v(id, phone, country) "
        "WHERE l.id = v.id"), {"ids": list(lead_ids), "phones": list(phones), "countries": list(countries)})


def enrollments_at(conn: Connection, client_id: int, campaign_id: int,
                   rows: Sequence[tuple[int, int, datetime, str, int | None]]) -> None:
    """Active enrollments as given: (lead id, next step, due at, time zone, mailbox id or None). One INSERT."""
    lead, step, due, zone, box = (list(column) for column in zip(*rows)) if rows else ([], [], [], [], [])
    conn.execute(text(
        "INSERT INTO enrollments (client_id, campaign_id, lead_id, next_step, next_due_at, timezone, "
        "timezone_source, mailbox_id, status) SELECT :c, :camp, v.lead, v.step, v.due, v.zone, 'seed', v.box, 'active' "
        "FROM unnest(CAST(:lead AS bigint[]), CAST(:step AS int[]), CAST(:due AS timestamptz[]), "
        "CAST(:zone AS text[]), CAST(:box AS bigint[])) AS v(lead, step, due, zone, box)"),
        {"c": client_id, "camp": campaign_id, "lead": lead, "step": step, "due": due, "zone": zone, "box": box})
