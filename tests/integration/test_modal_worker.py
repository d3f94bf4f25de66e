"""The Modal function body in a container-shaped process, configured only by the documented Modal Secrets.

`postgres-connection-string` (DATABASE_URL) and `provider-api-keys` (APOLLO_API_KEY,
HUNTER_API_KEY) are the whole configuration, as in production: real Postgres, Apollo and Hunter
played by a local HTTP server speaking their request and response shapes (the ones in
test_providers_http.py), and only the packages the Modal image installs.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from werkzeug import Request, Response

from modal_apps import enrichment
from shared import workitems
from shared.settings import Settings
from tests import factories
from tests.integration.test_providers_http import APOLLO_HIT, HUNTER_HIT
from tests.modal_container import run_in_container

pytestmark = pytest.mark.integration

APOLLO_KEY = "apollo-live-7Qz"
HUNTER_KEY = "hunter-live-K2w"

# PROVIDER_ORDER=auto (the engine branch) is what lets the documented Secrets alone configure the
# waterfall; before it, the default order needs SANDBOX_URL, which production never has.
needs_auto_waterfall = pytest.mark.skipif(
    Settings.model_fields["provider_order"].default != "auto",
    reason="needs the engine branch's PROVIDER_ORDER=auto default (run again after merging it)",
)


def _secrets(database_url: str) -> dict[str, str]:
    """Exactly the keys of the two Modal Secrets, DATABASE_URL as a user would paste it."""
    pasted = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    return {"DATABASE_URL": pasted, "APOLLO_API_KEY": APOLLO_KEY, "HUNTER_API_KEY": HUNTER_KEY}


def _dns_stand_in(httpserver) -> dict[str, str]:
    """Where api.apollo.io and api.hunter.io answer in this test: the local server (plumbing, not configuration)."""
    base = httpserver.url_for("/").rstrip("/")
    return {"APOLLO_BASE_URL": base, "HUNTER_BASE_URL": base}


def _apollo(request: Request) -> Response:
    if request.headers.get("X-Api-Key") != APOLLO_KEY:
        return Response(json.dumps({"error": "invalid api key"}), status=401, content_type="application/json")
    sent = json.loads(request.get_data())
    person = APOLLO_HIT["person"] if sent.get("email") == "tim.zheng@apollo.io" else None
    return Response(json.dumps({"person": person}), content_type="application/json")


def _hunter(request: Request) -> Response:
    if request.headers.get("X-API-KEY") != HUNTER_KEY:
        body = {"errors": [{"id": "authentication_failed", "code": 401, "details": "No user found"}]}
        return Response(json.dumps(body), status=401, content_type="application/json")
    if request.args.get("domain") == "reddit.com":
        return Response(json.dumps(HUNTER_HIT), content_type="application/json")
    body = {"errors": [{"id": "not_found", "code": 404, "details": "No result"}]}
    return Response(json.dumps(body), status=404, content_type="application/json")


def _queued_chunk(engine) -> tuple[int, int, list[int]]:
    """A client with 100 credits, three leads (an Apollo match, a Hunter find, nobody), claimed QUEUED."""
    with engine.begin() as conn:
        client = factories.client(conn, credits=100)
        campaign = factories.campaign(conn, client)
        leads = []
        for email, first, last, company, domain in (
            ("tim.zheng@apollo.io", "Tim", "Zheng", "Apollo", "apollo.io"),
            ("alexis@reddit.com", "Alexis", "Ohanian", "Reddit", "reddit.com"),
            ("nobody@example.org", "Nobody", "Known", "Example", "example.org"),
        ):
            leads.append(conn.execute(text(
                "INSERT INTO leads (client_id, campaign_id, email, first_name, last_name, company_name, company_domain) "
                "VALUES (:c, :camp, :e, :f, :l, :co, :d) RETURNING id"),
                {"c": client, "camp": campaign, "e": email, "f": first, "l": last, "co": company, "d": domain},
            ).scalar_one())
        batch = factories.batch(conn, client, leads, campaign_id=campaign)
        ids = [item.id for item in workitems.claim(conn, batch, 10)]
    return client, batch, ids


RUN_CHUNK = """
import json
from modal_apps.enrichment import enrich_chunk
print("REPORT " + json.dumps(enrich_chunk.local(%r)))
"""


@needs_auto_waterfall
def test_a_chunk_is_enriched_from_exactly_the_documented_secrets(engine, database_url, httpserver, tmp_path):
    httpserver.expect_request("/api/v1/people/match", method="POST").respond_with_handler(_apollo)
    httpserver.expect_request("/v2/email-finder", method="GET").respond_with_handler(_hunter)
    client, batch, ids = _queued_chunk(engine)

    result = run_in_container(RUN_CHUNK % (ids,), _secrets(database_url) | _dns_stand_in(httpserver), tmp_path,
                              enrichment.WORKER_DISTRIBUTIONS)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.split("REPORT ", 1)[1])
    assert report["started"] == 3 and report["done"] == 3

    with engine.connect() as conn:
        rows = conn.execute(text("SELECT l.email, l.enrichment_provider, w.status FROM work_items w "
                                 "JOIN leads l ON l.id = w.lead_id WHERE w.batch_id = :b ORDER BY w.id"),
                            {"b": batch}).all()
        balance = conn.execute(text("SELECT credit_balance FROM clients WHERE id = :c"), {"c": client}).scalar()
    assert [(r.email, r.enrichment_provider, r.status) for r in rows][:2] == [
        ("tim.zheng@apollo.io", "apollo", "DONE"),
        ("alexis@reddit.com", "hunter", "DONE"),
    ]
    assert rows[2].status == "DONE"
    assert balance == 100 - 2  # two paid hits; the misses were refunded
    # Both providers were asked with the Secrets' keys (the handlers answer 401 to anything else).
    paths = [request.path for request, _response in httpserver.log]
    assert "/api/v1/people/match" in paths and "/v2/email-finder" in paths
    # The per-lead lines reach stderr (Modal's dashboard); the keys never do.
    assert any(f"item_id={ids[0]} batch_id={batch}" in line and "INFO" in line for line in result.stderr.splitlines())
    assert APOLLO_KEY not in result.stderr and HUNTER_KEY not in result.stderr


@needs_auto_waterfall
def test_check_config_reports_the_waterfall_the_secrets_give(database_url, tmp_path, httpserver):
    code = "from modal_apps.enrichment import check_config\nprint('WATERFALL', ','.join(check_config.local()))"
    result = run_in_container(code, _secrets(database_url), tmp_path, enrichment.WORKER_DISTRIBUTIONS)
    assert result.returncode == 0, result.stderr[-3000:]
    waterfall = result.stdout.split("WATERFALL ", 1)[1].strip().split(",")
    assert {"apollo", "hunter"} <= set(waterfall) and "sandbox" not in waterfall


def test_a_misconfigured_container_fails_at_start_naming_the_setting_and_touches_nothing(
        engine, database_url, httpserver, tmp_path):
    """Someone added PROVIDER_ORDER=apollo,hunter to the Secret but left APOLLO_API_KEY empty."""
    httpserver.expect_request("/api/v1/people/match").respond_with_handler(_apollo)
    httpserver.expect_request("/v2/email-finder").respond_with_handler(_hunter)
    _client, batch, ids = _queued_chunk(engine)
    env = _secrets(database_url) | _dns_stand_in(httpserver) | {"APOLLO_API_KEY": "", "PROVIDER_ORDER": "apollo,hunter"}

    result = run_in_container(RUN_CHUNK % (ids,), env, tmp_path, enrichment.WORKER_DISTRIBUTIONS)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "APOLLO_API_KEY" in last and last.split(":", 1)[0].endswith("Error"), last
    assert HUNTER_KEY not in result.stderr

    check = run_in_container("from modal_apps.enrichment import check_config\ncheck_config.local()", env, tmp_path,
                             enrichment.WORKER_DISTRIBUTIONS)
    assert check.returncode != 0 and "APOLLO_API_KEY" in check.stderr.strip().splitlines()[-1]

    with engine.connect() as conn:
        items = conn.execute(text("SELECT status, attempts FROM work_items WHERE batch_id = :b"), {"b": batch}).all()
        attempts = conn.execute(text("SELECT count(*) FROM enrichment_attempts")).scalar()
    assert {(r.status, r.attempts) for r in items} == {("QUEUED", 0)}  # nothing started, nothing charged
    assert attempts == 0
    assert httpserver.log == []
