"""The console's mailbox add/edit/test forms and the SMTP/IMAP probes, against real local SMTP and IMAP servers."""

from __future__ import annotations

import html

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from devkit.net import free_port
from devkit.smtp_sink import smtp_sink
from shared.engines.mailboxes import mailboxes
from shared.integrations import imap, smtp
from shared.status import TlsMode
from tests import factories
from tests.console_helpers import SECRET, accounts, post_form, signed_in
from tests.email_servers import DEMO_PASSWORD, DEMO_USER, imap_server  # noqa: F401  (fixture)
from web.app import create_app

pytestmark = pytest.mark.integration

LIST = "/console/mailboxes"
SMTP_PASSWORD = "s3cret-smtp-pass"


@pytest.fixture
def server():
    with smtp_sink(password=SMTP_PASSWORD) as (sink, port):
        yield sink, port


@pytest.fixture
def world(engine, env, server):
    env(MAILBOX_TEST_PASSWORD=SMTP_PASSWORD, MAILBOX_WRONG_PASSWORD="not-the-password")
    with engine.begin() as conn:
        a = factories.client(conn, "alpha")
        b = factories.client(conn, "bravo")
        box_b = mailboxes.add_mailbox(conn, b, from_address="rep@bravo.test", smtp_host="127.0.0.1",
                                      smtp_port=server[1], tls_mode="none", username="rep", secret_name="NOPE")
    return {"a": a, "b": b, "box_b": box_b, "acc": accounts(engine, a, b), "port": server[1]}


@pytest.fixture
def app(engine):
    return create_app(engine=engine, secret="unsub-secret", console_secret=SECRET)


def form(port: int, **over) -> dict:
    return {"from_address": "Ann@Alpha.test", "smtp_host": "127.0.0.1", "smtp_port": str(port), "tls_mode": "none",
            "username": "ann", "secret_name": "MAILBOX_TEST_PASSWORD", "daily_cap": "40", "min_gap_seconds": "300",
            "ramp_start": "10", "ramp_step": "5", "ramp_ceiling": "", "imap_host": "", "imap_port": "993",
            "imap_tls_mode": "tls"} | over


def row(engine, box: int) -> dict:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT * FROM mailboxes WHERE id = :m"), {"m": box}).mappings().one())


# -- the probes, straight ------------------------------------------------------------------------
def test_smtp_probe_logs_in_and_reports_each_line(world, server):
    result = smtp.probe(smtp.SmtpAccount("127.0.0.1", world["port"], "none", "ann", "MAILBOX_TEST_PASSWORD"), 5)
    assert result.ok, result.lines
    assert any(line.startswith("connect: 220") for line in result.lines)
    assert any(line.startswith("EHLO: 250") and "AUTH" in line for line in result.lines)
    assert any(line.startswith("AUTH: 235") for line in result.lines)
    assert not server[0].messages  # nothing was sent
    assert SMTP_PASSWORD not in "\n".join(result.lines)


def test_smtp_probe_reports_a_wrong_password_as_auth(world):
    result = smtp.probe(smtp.SmtpAccount("127.0.0.1", world["port"], "none", "ann", "MAILBOX_WRONG_PASSWORD"), 5)
    assert result.failure == "auth" and "535" in result.lines[-1], result.lines
    assert "not-the-password" not in "\n".join(result.lines)


def test_smtp_probe_reports_a_closed_port_as_refused(world):
    result = smtp.probe(smtp.SmtpAccount("127.0.0.1", free_port(), "none", "ann", "MAILBOX_TEST_PASSWORD"), 5)
    assert result.failure == "refused" and result.lines[-1].startswith("refused: connect"), result.lines


def test_smtp_probe_reports_starttls_the_server_lacks_as_tls(world):
    result = smtp.probe(smtp.SmtpAccount("127.0.0.1", world["port"], "starttls", "ann", "MAILBOX_TEST_PASSWORD"), 5)
    assert result.failure == "TLS", result.lines


def test_imap_probe_logs_in_and_examines_inbox(imap_server):  # noqa: F811
    good = imap.probe(imap_server.settings())
    assert good.ok, good.lines
    assert any(line.startswith("LOGIN: OK") for line in good.lines)
    assert any(line.startswith("EXAMINE INBOX: OK") for line in good.lines)
    bad = imap.probe(imap_server.settings(password="wrong"))
    assert bad.failure == "auth" and "wrong" not in "\n".join(bad.lines[1:]), bad.lines
    closed = imap.probe(imap.ImapSettings("127.0.0.1", free_port(), DEMO_USER, DEMO_PASSWORD, tls=TlsMode.NONE))
    assert closed.failure == "refused", closed.lines


def test_cli_tests_a_mailbox_with_smtp_and_imap(world, engine, env, imap_server):  # noqa: F811
    from orchestrator.cli import app as cli

    env(MAILBOX_DEMO_PASSWORD=DEMO_PASSWORD)
    with engine.begin() as conn:
        mailboxes.add_mailbox(conn, world["a"], from_address=f"{DEMO_USER}@alpha.test", smtp_host="127.0.0.1",
                              smtp_port=world["port"], tls_mode="none", username=DEMO_USER,
                              secret_name="MAILBOX_DEMO_PASSWORD", imap_host=imap_server.host,
                              imap_port=imap_server.port, imap_tls_mode="none")
    ok = CliRunner().invoke(cli, ["mailboxes", "test", f"{DEMO_USER}@alpha.test", "--client", "alpha"])
    # the sink takes only SMTP_PASSWORD: SMTP auth is refused, IMAP logs in
    assert ok.exit_code == 1 and "AUTH" in ok.output and "EXAMINE INBOX: OK" in ok.output, ok.output
    assert "connection test failed (auth)" in ok.output
    missing = CliRunner().invoke(cli, ["mailboxes", "test", "nobody@alpha.test", "--client", "alpha"])
    assert missing.exit_code == 1 and "client alpha has no mailbox nobody@alpha.test" in missing.output


# -- the console ---------------------------------------------------------------------------------
def test_operator_adds_edits_and_tests_a_mailbox(app, world, engine, server):
    c = signed_in(app, world["acc"].operator)
    page = c.get(LIST)
    assert 'data-testid="add-mailbox"' in page.text and 'type="password"' not in page.text
    added = post_form(c, LIST, LIST, {"client": str(world["a"])} | form(world["port"]))
    assert added.status_code == 303 and "is+active" in added.headers["location"].replace("%20", "+")
    box = int(added.headers["location"].split("/mailboxes/")[1].split("?")[0])
    stored = row(engine, box)
    assert (stored["client_id"], stored["from_address"], stored["daily_cap"], stored["ramp_start"],
            stored["min_gap_seconds"], stored["secret_name"], stored["imap_host"]) == (
        world["a"], "ann@alpha.test", 40, 10, 300, "MAILBOX_TEST_PASSWORD", None)

    mine = f"/console/mailboxes/{box}"
    edited = post_form(c, mine, f"{mine}/edit", form(world["port"], daily_cap="80", ramp_start="", username="ann2",
                                                    secret_name="MAILBOX_WRONG_PASSWORD"))
    assert edited.status_code == 303, edited.text
    after = row(engine, box)
    assert (after["daily_cap"], after["ramp_start"], after["username"], after["status"]) == (80, None, "ann2", "active")
    assert after["ramp_started_at"] == stored["ramp_started_at"] and after["keeps_verp"] is True

    failed = post_form(c, mine, f"{mine}/test")
    assert failed.status_code == 200 and 'data-ok="no"' in failed.text and "FAILED: auth" in failed.text
    post_form(c, mine, f"{mine}/edit", form(world["port"]))
    passed = post_form(c, mine, f"{mine}/test")
    assert 'data-ok="yes"' in passed.text and "AUTH: 235" in passed.text and SMTP_PASSWORD not in passed.text
    assert not server[0].messages


@pytest.mark.parametrize(("over", "message"), [
    ({"from_address": "not-an-address"}, "from address 'not-an-address' is not an email address"),
    ({"tls_mode": "ssl"}, "tls mode must be starttls, tls or none, got 'ssl'"),
    ({"smtp_port": "99999"}, "port must be a whole number from 1 to 65535, got '99999'"),
    ({"daily_cap": "-3"}, "daily cap must be a whole number from 0 to 100000, got '-3'"),
    ({"min_gap_seconds": "²"}, "gap must be a whole number from 0 to 604800, got '²'"),
    ({"ramp_start": "9" * 30}, "ramp start must be a whole number from 0 to 100000, got '" + "9" * 30 + "'"),
    ({"smtp_host": " "}, "an SMTP host is required (--host)"),
    ({"username": "a\r\nRCPT TO:<x@y>"}, "username 'a\\r\\nRCPT TO:<x@y>' holds a line break or control character"),
])
def test_bad_settings_are_named_not_stored(app, world, engine, over, message):
    c = signed_in(app, world["acc"].operator)
    answer = post_form(c, LIST, LIST, {"client": str(world["a"])} | form(world["port"]) | over, follow_redirects=True)
    assert answer.status_code == 200 and message in html.unescape(answer.text)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM mailboxes WHERE client_id = :c"), {"c": world["a"]}).scalar() == 0
    edit = f"/console/mailboxes/{world['box_b']}"
    answer = post_form(c, edit, f"{edit}/edit", form(world["port"]) | over, follow_redirects=True)
    assert answer.status_code == 200 and message in html.unescape(answer.text)
    assert row(engine, world["box_b"])["from_address"] == "rep@bravo.test"


def test_add_needs_a_real_client_and_edit_refuses_a_taken_address(app, world, engine):
    c = signed_in(app, world["acc"].operator)
    for client in ("", "abc", "999999"):
        answer = post_form(c, LIST, LIST, {"client": client} | form(world["port"]), follow_redirects=True)
        assert answer.status_code == 200, client
        assert "choose the client the mailbox sends for" in answer.text or "number" in answer.text
    with engine.begin() as conn:
        mailboxes.add_mailbox(conn, world["b"], from_address="other@bravo.test", smtp_host="h", smtp_port=25)
    edit = f"/console/mailboxes/{world['box_b']}"
    answer = post_form(c, edit, f"{edit}/edit", form(world["port"], from_address="other@bravo.test"),
                       follow_redirects=True)
    assert "mailbox &#39;other@bravo.test&#39; already exists for this client" in answer.text


def test_viewers_see_no_forms_are_refused_and_never_reach_another_client(app, world):
    mine = signed_in(app, world["acc"].viewer_b)
    page = mine.get(f"/console/mailboxes/{world['box_b']}")
    assert page.status_code == 200 and "Test connection" not in page.text and 'data-testid="edit-mailbox"' not in page.text
    assert 'data-testid="add-mailbox"' not in mine.get(LIST).text
    for action in (LIST, f"/console/mailboxes/{world['box_b']}/edit", f"/console/mailboxes/{world['box_b']}/test"):
        assert post_form(mine, LIST, action, {"client": str(world["b"])} | form(world["port"])).status_code == 403
    other = signed_in(app, world["acc"].viewer_a)
    assert other.get(f"/console/mailboxes/{world['box_b']}").status_code == 404
    for action in ("edit", "test"):
        assert post_form(other, LIST, f"/console/mailboxes/{world['box_b']}/{action}", form(world["port"])).status_code \
            in (403, 404)
