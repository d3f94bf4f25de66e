"""Signed in as client A's viewer, every console page and action is tried on client B's ids.

The routes are read from the app itself, so a page added later is attacked too (a path parameter
this test does not know how to fill fails it). Every GET must answer 404 (or 403) without a trace
of B's data, every POST 403 or 404 with the database unchanged; the same requests with A's own ids
show that they are real pages (not 404 for everyone).
"""

from __future__ import annotations

import hashlib
import re

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import text

from shared.engines.outreach import suppression
from shared.engines.mailboxes import mailboxes
from shared.engines.campaigns import sequences
from shared.engines.replies import ingest
from shared.engines.replies.webhooks import parse_message
from shared.settings import get_settings
from tests import factories
from tests.console_helpers import SECRET, accounts, csrf_of, sign_in
from tests.replies_mail import reply
from web.app import create_app

pytestmark = pytest.mark.integration

B_MARK = "bravo-secret-marker"
# Tables whose contents a refused action must leave exactly as they were.
WATCHED = ("clients", "campaigns", "leads", "batches", "work_items", "mailboxes", "sequences", "sequence_steps",
           "enrollments", "messages", "suppressions", "inbound_messages", "lead_verdicts", "credit_ledger")


def _world(engine) -> dict[str, dict[str, int]]:
    """Two clients, each with a lead, a batch, a campaign with a sequence step, a mailbox, a message,
    an inbound message and a suppression; B's rows all carry B_MARK where text shows."""
    ids: dict[str, dict[str, int]] = {}
    with engine.begin() as conn:
        for name, mark in (("A", "alpha"), ("B", B_MARK)):
            client = factories.client(conn, f"{mark}-client", credits=10)
            campaign = factories.campaign(conn, client, f"{mark}-campaign")
            [lead] = factories.leads(conn, client, 1, campaign_id=campaign, domain=f"{mark}.example")
            batch = factories.batch(conn, client, [lead], campaign_id=campaign)
            mailbox = mailboxes.add_mailbox(conn, client, from_address=f"sender@{mark}.example", smtp_host="smtp.example",
                                        smtp_port=587, username="u", secret_name="SMTP_PASSWORD")
            sequences.set_step(conn, client, campaign, step=1, subject=f"{mark} subject", body="Hi {{ first_name }}")
            suppression.suppress(conn, client, f"gone@{mark}.example", reason="asked", source="test")
            ids[name] = {"client": client, "campaign": campaign, "lead": lead, "batch": batch, "mailbox": mailbox}
    for name, mark in (("A", "alpha"), ("B", B_MARK)):
        ids[name]["inbound"] = _inbound(engine, ids[name], mark)
    return ids


def _inbound(engine, ids: dict[str, int], mark: str) -> int:
    """A message read from the client's mailbox over IMAP, through the one ingest path."""
    raw = reply(frm=f"someone@{mark}.example", to=f"sender@{mark}.example", subject=f"{mark} question", in_reply_to=None)
    received = ingest.Received(raw, parse_message(raw), "imap", client_id=ids["client"], mailbox_id=ids["mailbox"],
                               folder="INBOX", imap_uid=1)
    return ingest.ingest(engine, received, settings=get_settings()).inbound_id


def _snapshot(engine) -> str:
    digest = hashlib.sha256()
    with engine.begin() as conn:
        for table in WATCHED:
            for row in conn.execute(text(f"SELECT * FROM {table} ORDER BY 1")):
                # bytea comes back as a memoryview, whose repr is its address: compare the bytes
                digest.update(repr(tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)).encode())
    return digest.hexdigest()


# Which of the world's ids fills each path parameter the console uses.
PARAMS = {"batch_id": "batch", "lead_id": "lead", "campaign_id": "campaign", "mailbox_id": "mailbox",
          "client_id": "client", "inbound_id": "inbound"}
# Query parameters that name another row: tried with B's ids on A's own pages too.
QUERY = {"client": "client", "lead": "lead", "campaign": "campaign", "mailbox": "mailbox"}


def _console_routes(app) -> list[tuple[str, str]]:
    out = []
    for route in app.state.console_routes:
        if isinstance(route, APIRoute) and route.path.startswith("/console") and "{path" not in route.path:
            for method in route.methods - {"HEAD"}:
                out.append((method, route.path))
    return sorted(out)


def _fill(path: str, ids: dict[str, int]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in PARAMS, f"{path}: this test does not know how to fill {{{name}}}: add it to PARAMS"
        return str(ids[PARAMS[name]])

    return re.sub(r"\{(\w+)\}", one, path)


@pytest.fixture
def setup(engine):
    world = _world(engine)
    acc = accounts(engine, world["A"]["client"], world["B"]["client"])
    app = create_app(engine=engine, secret="unsubscribe-secret", console_secret=SECRET)
    client = TestClient(app, follow_redirects=False)
    assert sign_in(client, acc.viewer_a).status_code == 303
    return app, client, world


def test_every_page_on_another_clients_ids_is_not_found_and_shows_nothing_of_it(setup):
    app, client, world = setup
    tried = 0
    for method, path in _console_routes(app):
        if method != "GET" or "{" not in path:
            continue
        if not path.endswith("/events"):  # A's batch is still a draft: its event stream stays open
            own = client.get(_fill(path, world["A"]))
            assert own.status_code == 200, f"GET {path} with A's own ids: {own.status_code}"
        theirs = client.get(_fill(path, world["B"]))
        assert theirs.status_code in (403, 404), f"GET {path} with B's ids answered {theirs.status_code}"
        assert B_MARK not in theirs.text, f"GET {path} with B's ids shows B's data"
        tried += 1
    assert tried >= 2  # the batch page and its event stream at least


def test_every_page_with_another_clients_ids_in_the_query_shows_nothing_of_it(setup):
    app, client, world = setup
    for method, path in _console_routes(app):
        if method != "GET" or path.endswith(("/login", "/events")):
            continue
        url = _fill(path, world["A"]) if "{" in path else path
        for name, key in QUERY.items():
            response = client.get(url, params={name: world["B"][key]})
            assert B_MARK not in response.text, f"GET {url}?{name}=<B's {key}> shows B's data"


def test_every_action_on_another_clients_ids_is_refused_and_changes_nothing(setup, engine):
    app, client, world = setup
    token = csrf_of(client.get("/console/batches").text)
    before = _snapshot(engine)
    tried = 0
    for method, path in _console_routes(app):
        if method != "POST" or path.endswith(("/login", "/logout")):
            continue
        form = {"csrf": token, **{name: str(world["B"][key]) for name, key in
                                  {**QUERY, "client_id": "client", "lead_id": "lead"}.items()},
                "value": "victim@bravo.example", "reason": "x", "launch": "1"}
        response = client.post(_fill(path, world["B"]), data=form)
        assert response.status_code in (403, 404), f"POST {path} with B's ids answered {response.status_code}"
        own = client.post(_fill(path, world["A"]), data=form)  # A's viewer reads; acting is the operator's
        assert own.status_code == 403, f"POST {path} by a viewer answered {own.status_code}"
        tried += 1
    assert tried >= 3  # create, launch, cancel at least
    assert _snapshot(engine) == before


def test_every_list_takes_the_filters_all_and_a_malformed_client(setup):
    """The client filter's "all" option sends `client=`; a hand-edited `client=x` is a notice, not a 422."""
    app, client, world = setup
    for method, path in _console_routes(app):
        if method != "GET" or "{" in path or path.endswith("/login"):
            continue
        for value in ("", "x"):
            response = client.get(path, params={"client": value})
            assert response.status_code in (200, 303, 404), f"GET {path}?client={value!r}: {response.status_code}"
            assert B_MARK not in response.text
