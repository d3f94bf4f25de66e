"""Bad input is never a 500, and the console's other hostile-input guards (issue 17, last section).

Against the real app (FastAPI TestClient), real Postgres and, for the access log, a real uvicorn.
"""

from __future__ import annotations

import io
import logging
import re
import threading
import time
import tracemalloc
from datetime import UTC, datetime
from urllib.parse import quote

import httpx
import pytest
import uvicorn
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from typer.testing import CliRunner

from devkit.net import free_port
from orchestrator.cli import app as cli
from shared.engines.leads.importer import import_csv
from shared import errors
from shared.engines.mailboxes import mailboxes
from shared.engines.campaigns import sequences
from shared.engines.outreach import store, suppression, templates
from shared.errors import Busy, TemplateProblem
from tests import factories
from tests.console_helpers import PASSWORD, SECRET, accounts, csrf_of, sign_in
from web.app import create_app
from web.console.forecasts import Forecasts

pytestmark = pytest.mark.integration

UNSUB_SECRET = "unsub-secret-for-hostile-tests"


@pytest.fixture
def world(engine, env):
    env(OUTREACH_SECRET=UNSUB_SECRET, PUBLIC_BASE_URL="http://testserver")
    now = datetime.now(UTC)
    with engine.begin() as conn:
        a = factories.client(conn, "alpha", credits=100)
        b = factories.client(conn, "bravo", credits=100)
        box = mailboxes.add_mailbox(conn, a, from_address="rep@alpha.example", smtp_host="127.0.0.1", smtp_port=2525,
                                tls_mode="none", daily_cap=50)
        camp = factories.campaign(conn, a, "q4", status="draft")
        leads = factories.leads(conn, a, 3, campaign_id=camp, domain="alpha.example")
        sequences.set_schedule(conn, a, camp, weekdays=[1, 2, 3, 4, 5, 6, 7], start_hour=0, end_hour=24,
                           fallback_timezone="UTC")
        sequences.set_step(conn, a, camp, step=1, subject="Hi {{ first_name }}", body="About {{ company_name }}.",
                       delay_amount=0, delay_unit="days")
        store.enroll(conn, a, camp, now=now)
    acc = accounts(engine, a, b)
    return {"a": a, "b": b, "box": box, "campaign": camp, "leads": leads, "acc": acc}


@pytest.fixture
def app(engine, world):
    return create_app(engine=engine, secret=UNSUB_SECRET, console_secret=SECRET)


def _client(app) -> TestClient:
    return TestClient(app, base_url="http://testserver", follow_redirects=False)


def _signed_in(app, email: str) -> TestClient:
    c = _client(app)
    assert sign_in(c, email).status_code == 303
    return c


# -- the reported cases ---------------------------------------------------------------------------

def test_the_reported_inputs_are_clean_4xx_answers(app, world):
    anon = _client(app)
    assert anon.post("/u/³.x").status_code == 403  # a Unicode digit: not a token
    assert anon.get("/u/٣.x").status_code == 403
    assert anon.post(f"/u/{'9' * 40}.x").status_code == 403
    ops = _signed_in(app, world["acc"].operator)
    assert ops.get("/console/suppressions?page=²").status_code == 200
    assert ops.get(f"/console/campaigns/{world['campaign']}?lead=99999999999999999999999").status_code == 200
    for path in ("/console/campaigns/99999999999999999999999", "/console/campaigns/²", "/console/leads/-1",
                 "/console/mailboxes/0", "/console/batches/1e3", "/console/campaigns/9223372036854775808/forecast"):
        assert ops.get(path).status_code == 404, path
    assert ops.get("/console/campaigns?client=99999999999999999999999").status_code == 200
    token = csrf_of(ops.get("/console/suppressions").text)
    refused = ops.post("/console/suppressions", data={"csrf": token, "client_id": "²", "value": "x@y.test"})
    assert refused.status_code == 303 and "client_id" in refused.headers["location"]
    # a NUL in the email at sign-in: the ordinary refusal
    nul = sign_in(_client(app), "ops\x00@agency.test")
    assert nul.status_code == 401 and "Wrong email or password" in nul.text


def test_a_locked_account_answers_like_an_unknown_one(app, world, engine):
    for _ in range(5):
        sign_in(_client(app), world["acc"].viewer_a, "not the password")
    locked = sign_in(_client(app), world["acc"].viewer_a)
    unknown = sign_in(_client(app), "nobody@agency.test")
    strip = lambda page: re.sub(r'value="[^"]*"', "", page)  # noqa: E731 - the csrf token and echoed email differ
    assert locked.status_code == unknown.status_code == 401
    assert (strip(locked.text).replace(world["acc"].viewer_a, "")
            == strip(unknown.text).replace("nobody@agency.test", ""))


# -- every route, hostile values ------------------------------------------------------------------

HOSTILE_VALUES = ["²", "³.x", "٣.abc", "１２.z", "²²².q", "0", "-1", "1e3", "99999999999999999999999",
                  "9223372036854775808", "9223372036854775807", "99999999999999999999999.x", " 1", "1 ", "\x00",
                  "a\x00b", "1.\x00", "\r\nX-Injected: 1", "%00", "%2F..%2F", "../../etc/passwd", "//evil.example",
                  "\\\\evil", "<script>", "'; DROP TABLE leads;--", "x" * 5000, "\u202e", "😀", ""]
HOSTILE = st.one_of(
    st.sampled_from(HOSTILE_VALUES),
    st.text(max_size=30),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
)
FORM_FIELDS = ("client_id", "client", "value", "reason", "email", "password", "next", "confirm_shield", "launch",
               "List-Unsubscribe", "verdict", "note", "kind", "name", "icp", "status", "weekday_1", "start_hour",
               "end_hour", "fallback_timezone")
EXAMPLES_PER_ROUTE = 12


def _api_routes(routes) -> list[APIRoute]:
    """Every APIRoute, inside included routers too (FastAPI keeps an included router whole)."""
    out = []
    for route in routes:
        if isinstance(route, APIRoute):
            out.append(route)
        elif hasattr(route, "original_router"):
            out += _api_routes(route.original_router.routes)
    return out


def _fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"{(\w+)(?::\w+)?}", lambda m: quote(values[m.group(1)], safe=""), path)


def _driver(client, method, path, params, query_names, ids, real_csrf):
    """One route's property: whatever is drawn, the answer is not a 5xx."""
    @settings(max_examples=EXAMPLES_PER_ROUTE, deadline=None, suppress_health_check=list(HealthCheck),
              derandomize=True, database=None)
    @given(data=st.data())
    def drive(data):
        url = _fill(path, {p: data.draw(ids, label=p) for p in params})
        query = {n: data.draw(ids, label=n) for n in query_names if data.draw(st.booleans(), label=f"{n}?")}
        if method == "GET":
            response = client.get(url, params=query, headers={"accept": data.draw(
                st.sampled_from(["text/html", "text/event-stream"]), label="accept")})
        else:
            form = data.draw(st.dictionaries(st.sampled_from(FORM_FIELDS), ids, max_size=5), label="form")
            form["csrf"] = data.draw(st.sampled_from([real_csrf, "forged"]), label="csrf")
            response = client.request(method, url, params=query, data=form)
        assert response.status_code < 500, (method, url, query, response.status_code, response.text[:300])

    return drive


@pytest.mark.parametrize("persona", ["anonymous", "operator", "viewer"])
def test_no_route_answers_5xx_to_hostile_input(app, world, persona):
    """Each route of the app (enumerated, not listed by hand) gets hostile path parameters, its own
    query parameters and form fields, with the real CSRF token half the time, as each persona."""
    routes = _api_routes(app.routes)
    assert len(routes) > 20  # every console page and action, /u/, the webhooks
    client = _client(app) if persona == "anonymous" else _signed_in(
        app, world["acc"].operator if persona == "operator" else world["acc"].viewer_a)
    real_csrf = csrf_of(client.get("/console/suppressions").text) if persona != "anonymous" else "x"
    real = st.sampled_from([str(world["campaign"]), str(world["box"]), str(world["leads"][0]), str(world["a"])])
    for route in routes:
        params = re.findall(r"{(\w+)(?::\w+)?}", route.path)
        query_names = [p.alias for p in route.dependant.query_params]
        # a real batch id would open an event stream; there is no batch in this world, and no real ids there
        ids = HOSTILE if route.path.endswith("/events") else st.one_of(HOSTILE, real)
        for method in sorted(route.methods - {"HEAD"}):
            for value in HOSTILE_VALUES:  # every known-bad value in each place, then what hypothesis draws
                own = "" if route.path.endswith("/events") else str(world["campaign"])
                for path_value, query in ((value, {}), (own or value, dict.fromkeys(query_names, value))):
                    url = _fill(route.path, dict.fromkeys(params, path_value))
                    form = dict.fromkeys(FORM_FIELDS, value) | {"csrf": real_csrf} if method == "POST" else None
                    response = client.request(method, url, params=query, data=form)
                    assert response.status_code < 500, (method, url, query, response.status_code, response.text[:300])
            _driver(client, method, route.path, params, query_names, ids, real_csrf)()


# -- the forecast ---------------------------------------------------------------------------------

def test_at_most_two_forecasts_compute_at_once_and_the_rest_wait_or_get_503():
    forecasts = Forecasts(wait_seconds=0.3)
    running, peak, lock = 0, 0, threading.Lock()

    def slow() -> str:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.5)
        with lock:
            running -= 1
        return "done"

    outcomes: list[str] = []

    def one(i: int) -> None:
        try:
            outcomes.append(forecasts.get(i, "state", slow))
        except Busy:
            outcomes.append("busy")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 2 and forecasts.computed == 2
    assert outcomes.count("done") == 2 and outcomes.count("busy") == 6


def test_the_forecast_fragment_is_cached_per_campaign_state_and_busy_is_a_503(app, world, engine):
    ops = _signed_in(app, world["acc"].operator)
    forecasts = app.state.console.forecasts
    url = f"/console/campaigns/{world['campaign']}/forecast"
    first = ops.get(url)
    assert first.status_code == 200 and forecasts.computed == 1
    viewer = _signed_in(app, world["acc"].viewer_a)
    assert viewer.get(url).text.count("<svg") == first.text.count("<svg") and forecasts.computed == 1  # cached
    assert _signed_in(app, world["acc"].viewer_b).get(url).status_code == 404  # the cache is behind the tenant wall
    with engine.begin() as conn:  # anything the forecast reads changes: a new key
        factories.leads(conn, world["a"], 2, campaign_id=world["campaign"], domain="more.example")
    assert ops.get(url).status_code == 200 and forecasts.computed == 2
    with engine.begin() as conn:
        conn.execute(text("UPDATE mailboxes SET daily_cap = 7 WHERE id = :m"), {"m": world["box"]})
    assert ops.get(url).status_code == 200 and forecasts.computed == 3
    assert ops.get(url).status_code == 200 and forecasts.computed == 3
    # every slot taken: an answer within the wait, 503 with Retry-After
    forecasts.wait_seconds = 0.1
    with engine.begin() as conn:
        conn.execute(text("UPDATE mailboxes SET daily_cap = 8 WHERE id = :m"), {"m": world["box"]})
    for _ in range(2):
        forecasts._slots.acquire()
    try:
        busy = ops.get(url)
    finally:
        for _ in range(2):
            forecasts._slots.release()
    assert busy.status_code == 503 and busy.headers["retry-after"] == "10"


# -- values that would break later ----------------------------------------------------------------

def test_a_mailbox_from_name_with_a_line_break_is_refused_when_added(engine):
    runner = CliRunner()
    assert runner.invoke(cli, ["clients", "add", "acme"]).exit_code == 0
    out = runner.invoke(cli, ["mailboxes", "add", "acme", "rep@acme.test", "--host", "smtp.acme.test",
                              "--from-name", "Rep\r\nBcc: everyone@evil.test"])
    assert out.exit_code != 0 and "from name" in out.output
    with engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM mailboxes")).scalar_one() == 0
        client = conn.execute(text("SELECT id FROM clients")).scalar_one()
        for field in ("smtp_host", "username", "from_address"):
            with pytest.raises(errors.OutreachError, match=field.replace("_", " ")):
                mailboxes.add_mailbox(conn, client, **{"from_address": "a@acme.test", "smtp_host": "h", field: "x\ny@z"})


def test_every_imported_text_field_is_one_clean_line(engine, tmp_path):
    with engine.begin() as conn:
        factories.client(conn, "acme")
    path = tmp_path / "leads.csv"
    path.write_text('email,first_name,company_name,title,country\n'
                    'ann@acme-corp.com,"Ann\nLee","Acme\r\nInc\x1b[31m","CEO\u202e","U\nS"\n', encoding="utf-8")
    import_csv(path, client_name="acme", engine=engine)
    with engine.begin() as conn:
        row = conn.execute(text("SELECT first_name, company_name, title, country FROM leads")).one()
    assert tuple(row) == ("Ann Lee", "Acme Inc [31m", "CEO", "U S")


def test_a_template_cannot_render_100_mb():
    tracemalloc.start()
    try:
        with pytest.raises(TemplateProblem, match=r"step 3: the template renders more than 100,000"):
            templates.render_step(templates.StepTemplate(3, "hi", "{{ 'a' * 10**8 }}"), {})
        with pytest.raises(TemplateProblem, match="step 2"):
            templates.render_step(templates.StepTemplate(2, "{% for i in range(99999) %}{{ 'abc' }}{% endfor %}",
                                                         "x"), {})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 * 1024 * 1024  # refused before the string exists
    assert templates.render_step(templates.StepTemplate(1, "{{ 'ab' * 2 }}", "{{ n + 1 }}"), {"n": 1}) == \
        templates.Rendered("abab", "2")
    assert templates.dry_render([{"id": 1, "email": "a@b.test"}],
                                [templates.StepTemplate(4, "s", "{{ 'x' * 200000 }}")]) == \
        ["lead 1 a@b.test: step 4: the template renders more than 100,000 characters (a repetition of 200,000)"]


# -- logs and headers -----------------------------------------------------------------------------

def test_uvicorns_access_log_never_holds_an_unsubscribe_token(app, world):
    token = suppression.make_token(123456, UNSUB_SECRET)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info", access_log=True,
                                           lifespan="off"))
    captured = io.StringIO()
    handler = logging.StreamHandler(captured)
    handler.setFormatter(uvicorn.logging.AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s',
                                                         use_colors=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        logging.getLogger("uvicorn.access").addHandler(handler)
        httpx.get(f"http://127.0.0.1:{port}/u/{token}?token=abc")
        httpx.post(f"http://127.0.0.1:{port}/u/{token}")
        time.sleep(0.2)
    finally:
        logging.getLogger("uvicorn.access").removeHandler(handler)
        server.should_exit = True
        thread.join(10)
    log = captured.getvalue()
    assert '"GET /u/***?token=*** HTTP/1.1"' in log and '"POST /u/*** HTTP/1.1"' in log
    assert token not in log and token.split(".")[1] not in log and "abc" not in log
    ours = io.StringIO()
    logging.getLogger("web.app").addHandler(h := logging.StreamHandler(ours))
    try:
        logging.getLogger("web.app").warning("link %s", f"https://x.test/u/{token}")
        logging.getLogger("web.app").warning("path /u/%s refused", token)
    finally:
        logging.getLogger("web.app").removeHandler(h)
    assert ours.getvalue().splitlines() == ["link https://x.test/u/***", "path /u/*** refused"]


def test_every_response_has_the_security_headers(app, world):
    c = _client(app)
    anon_u = c.get("/u/1.forged")
    answers = [anon_u, c.post("/u/1.forged"), c.get("/healthz"), c.post("/webhooks/inbound", content=b"{}"),
               c.get("/nowhere"), c.get("/console/batches"), c.get("/console/login")]
    ops = _signed_in(app, world["acc"].operator)
    answers += [ops.get("/console/batches/999/items.json"), ops.get(f"/console/campaigns/{world['campaign']}/forecast")]
    for r in answers:
        assert "frame-ancestors 'none'" in r.headers.get("content-security-policy", ""), (r.url, r.headers)
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["cache-control"] == "no-store" and r.headers["referrer-policy"] == "same-origin"
    static = c.get("/console/static/console.css")  # the same file for everyone: cacheable, still framed by the CSP
    assert static.status_code == 200 and "no-store" not in static.headers.get("cache-control", "")
    assert "frame-ancestors 'none'" in static.headers["content-security-policy"]


def test_a_trailing_slash_redirect_never_points_at_the_host_header(app, world):
    c = _client(app)
    r = c.get("/console/login/", headers={"host": "evil.example"})
    assert r.status_code in (307, 308)
    assert r.headers["location"] == "/console/login" and "evil" not in r.headers["location"]
    assert r.headers["cache-control"] == "no-store"
    trusted = c.get("/healthz/")  # Host: testserver, PUBLIC_BASE_URL's own: kept as Starlette built it
    assert trusted.headers["location"] == "http://testserver/healthz"
