"""The sequence editor over HTTP against the real app and Postgres, and its engine functions (edit, delete,
move, refused once a step went out) on real rows."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from shared.engines.campaigns import sequences
from shared.engines.mailboxes import mailboxes
from shared.errors import OutreachError
from tests import factories
from tests.console_helpers import SECRET, accounts, csrf_of, post_form, sign_in
from web.app import create_app

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 1, 10, tzinfo=UTC)


def _steps(conn, campaign):
    return [(s["step"], s["subject_template"], s["body_template"]) for s in sequences.steps(conn, campaign)]


def _send(conn, client, campaign, lead, box, step, status="sent"):
    sent = {"sent": ("'250 ok'", ":t"), "failed": ("NULL", "NULL")}.get(status, ("NULL", "NULL"))
    error = "'boom'" if status in ("failed", "deferred") else "NULL"
    retry = ":t" if status == "deferred" else "NULL"
    conn.execute(text(
        "INSERT INTO messages (client_id, campaign_id, lead_id, step, mailbox_id, message_id, subject, status, "
        f"smtp_reply, sent_at, error, retry_at, reserved_at) VALUES (:c, :camp, :l, :s, :b, :mid, 'Hello', :st, "
        f"{sent[0]}, {sent[1]}, {error}, {retry}, :t)"),
        {"c": client, "camp": campaign, "l": lead, "s": step, "b": box, "mid": f"<{campaign}.{lead}.{step}@t>",
         "st": status, "t": NOW})


@pytest.fixture
def world(engine):
    """Alpha: a campaign of three steps and three leads, one mailbox. Bravo: its own campaign."""
    with engine.begin() as conn:
        a = factories.client(conn, "alpha")
        b = factories.client(conn, "bravo")
        box = mailboxes.add_mailbox(conn, a, from_address="rep@alpha.example", from_name="Rita Rep",
                                    smtp_host="127.0.0.1", smtp_port=2525, tls_mode="none", daily_cap=50)
        camp = factories.campaign(conn, a, "q4", status="draft")
        leads = factories.leads(conn, a, 3, campaign_id=camp, domain="alpha.example")
        for step, subject, body in ((1, "Hello {{ first_name }}", "Hi {{ first_name }} at {{ company_name }}."),
                                    (2, "unused", "Following up, {{ first_name }}."),
                                    (3, "unused", "Last note from {{ sender_name }}.")):
            sequences.set_step(conn, a, camp, step=step, subject=subject, body=body, delay_amount=step - 1,
                               delay_unit="days")
        camp_b = factories.campaign(conn, b, "bravo-q4", status="draft")
        factories.leads(conn, b, 1, campaign_id=camp_b, domain="bravo.example")
        sequences.set_step(conn, b, camp_b, step=1, subject="Bravo secret subject", body="bravo body")
    return {"a": a, "b": b, "box": box, "camp": camp, "leads": leads, "camp_b": camp_b,
            "acc": accounts(engine, a, b)}


@pytest.fixture
def app(engine):
    return create_app(engine=engine, secret="unsub-secret", console_secret=SECRET)


def _client(app, email) -> TestClient:
    c = TestClient(app, base_url="http://testserver", follow_redirects=False)
    assert sign_in(c, email).status_code == 303
    return c


def _page(world) -> str:
    return f"/console/campaigns/{world['camp']}/sequence"


# -- the engine ------------------------------------------------------------------------------------
def test_delete_and_move_renumber_the_steps_and_keep_them_contiguous(engine, world):
    camp, a = world["camp"], world["a"]
    with engine.begin() as conn:
        sequences.move_step(conn, a, camp, 3, 1)
        assert [s for s, _, _ in _steps(conn, camp)] == [1, 2, 3]
        assert [b for _, _, b in _steps(conn, camp)] == ["Last note from {{ sender_name }}.",
                                                         "Hi {{ first_name }} at {{ company_name }}.",
                                                         "Following up, {{ first_name }}."]
        sequences.move_step(conn, a, camp, 1, 3)  # and back
        assert _steps(conn, camp)[0][1] == "Hello {{ first_name }}"
        sequences.delete_step(conn, a, camp, 2)
        assert _steps(conn, camp) == [(1, "Hello {{ first_name }}", "Hi {{ first_name }} at {{ company_name }}."),
                                      (2, "unused", "Last note from {{ sender_name }}.")]
        with pytest.raises(OutreachError, match=r"step 5 does not exist \(the sequence has 2 steps\)"):
            sequences.move_step(conn, a, camp, 1, 5)
        with pytest.raises(OutreachError, match="step 3 does not exist"):
            sequences.delete_step(conn, a, camp, 3)
        with pytest.raises(OutreachError, match="step 2 does not exist"):  # another client's campaign: not there
            sequences.delete_step(conn, world["b"], camp, 2)


def test_a_step_that_went_out_is_fixed_and_the_refusal_says_which_and_to_how_many(engine, world):
    camp, a, box, (l1, l2, l3) = world["camp"], world["a"], world["box"], world["leads"]
    with engine.begin() as conn:
        _send(conn, a, camp, l1, box, 1)
        _send(conn, a, camp, l2, box, 1, status="in_doubt")  # may have gone out: counts
        _send(conn, a, camp, l3, box, 1, status="failed")  # did not: does not
        _send(conn, a, camp, l1, box, 2, status="deferred")  # not yet: does not
        assert sequences.sent_counts(conn, camp) == {1: 2}
        with pytest.raises(OutreachError, match="cannot change step 1: step 1 was already sent to 2 leads"):
            sequences.edit_step(conn, a, camp, step=1, subject="New", body="x", delay_amount=0, delay_unit="days")
        sequences.edit_step(conn, a, camp, step=1, subject="Hello {{ first_name }}",  # unchanged: fine
                            body="Hi {{ first_name }} at {{ company_name }}.", delay_amount=0, delay_unit="days")
        with pytest.raises(OutreachError, match="cannot move step 2 to 1: step 1 was already sent to 2 leads"):
            sequences.move_step(conn, a, camp, 2, 1)
        with pytest.raises(OutreachError, match="cannot delete step 1: step 1 was already sent to 2 leads"):
            sequences.delete_step(conn, a, camp, 1)
        sequences.move_step(conn, a, camp, 3, 2)  # neither was sent
        sequences.edit_step(conn, a, camp, step=2, subject="s", body="changed", delay_amount=1, delay_unit="days")
        _send(conn, a, camp, l1, box, 3)
        assert sequences.sent_counts(conn, camp) == {1: 2, 3: 1}
        with pytest.raises(OutreachError, match="cannot delete step 2: step 3 was already sent to 1 lead$"):
            sequences.delete_step(conn, a, camp, 2)  # step 3 would become step 2
        sequences.edit_step(conn, a, camp, step=4, subject="s", body="a new last step", delay_amount=1,
                            delay_unit="days")
        sequences.delete_step(conn, a, camp, 4)
        assert [s for s, _, _ in _steps(conn, camp)] == [1, 2, 3]


# -- the page --------------------------------------------------------------------------------------
def test_the_operator_sees_every_step_with_its_form_and_preview(app, world):
    c = _client(app, world["acc"].operator)
    page = c.get(_page(world))
    assert page.status_code == 200
    assert page.text.count('data-testid="step"') == 3 and page.text.count('data-testid="step-form"') == 4  # + new
    assert "Hi First1 at Example Inc." in page.text and "Last note from Rita Rep." in page.text
    assert page.text.count("<b>Subject:</b> Re: Hello First1") == 2  # follow-ups: step 1's subject, as a reply
    assert 'data-preview="/console/campaigns/%d/sequence/preview"' % world["camp"] in page.text
    assert "style=" not in page.text and "<script>" not in page.text
    second = c.get(_page(world), params={"lead": world["leads"][1]}).text
    assert "Hi First2 at Example Inc." in second
    campaign = c.get(f"/console/campaigns/{world['camp']}").text
    assert f'href="/console/campaigns/{world["camp"]}/sequence"' in campaign


def test_the_preview_names_and_underlines_each_undefined_variable(app, world):
    c = _client(app, world["acc"].operator)
    token = csrf_of(c.get(_page(world)).text)
    draft = {"csrf": token, "step": "2", "subject": "ignored", "lead": str(world["leads"][0]),
             "body": "Hey {{ frist_name }}, {{ enrichment.funding }} and {{ first_name }} <b>", "first_subject":
             "Hello {{ first_name }}"}
    frag = c.post(f"{_page(world)}/preview", data=draft)
    assert frag.status_code == 200 and "<html" not in frag.text
    assert re.search(r"Not defined for this lead: <code>frist_name</code>, <code>funding</code>", frag.text)
    assert '<u class="undefined" data-testid="undefined" title="not defined for this lead">{{ frist_name }}</u>' \
        in frag.text
    assert "and First1 &lt;b&gt;" in frag.text  # the rest renders, escaped
    assert "step 2 needs {{ frist_name }}" in frag.text  # activation's words
    assert "<b>Subject:</b> Re: Hello First1" in frag.text
    first = c.post(f"{_page(world)}/preview", data=draft | {"step": "1", "subject": "Re: {{ first_name }}"})
    assert "<b>Subject:</b> Re: First1</p>" in first.text  # already a reply: no second Re:
    broken = c.post(f"{_page(world)}/preview", data=draft | {"body": "{% if %}"})
    assert broken.status_code == 200 and "step 2 body: line 1:" in broken.text
    unknown_lead = c.post(f"{_page(world)}/preview", data=draft | {"lead": "99999999", "step": "x"})
    assert unknown_lead.status_code == 200 and "For person1@alpha.example" in unknown_lead.text  # the first lead
    assert c.post(f"{_page(world)}/preview", data={k: v for k, v in draft.items() if k != "csrf"}).status_code == 403


def test_the_operator_adds_edits_moves_and_deletes_steps(app, engine, world):
    c = _client(app, world["acc"].operator)
    page, camp = _page(world), world["camp"]
    added = post_form(c, page, f"{page}/save", {"step": "4", "subject": "s", "body": "P.S. {{ title }}",
                                                "delay_amount": "3", "delay_unit": "business_days",
                                                "lead": str(world["leads"][1])})
    assert added.status_code == 303 and added.headers["location"].startswith(f"{page}?lead={world['leads'][1]}&")
    edited = post_form(c, page, f"{page}/save", {"step": "2", "subject": "s", "body": "Second, edited",
                                                 "delay_amount": "0", "delay_unit": "days"})
    assert edited.status_code == 303 and "step+2+saved" in edited.headers["location"].replace("%20", "+")
    assert post_form(c, page, f"{page}/move", {"step": "4", "to": "3"}).status_code == 303
    assert post_form(c, page, f"{page}/delete", {"step": "1"}).status_code == 303
    with engine.connect() as conn:
        assert [(s, b) for s, _, b in _steps(conn, camp)] == [(1, "Second, edited"), (2, "P.S. {{ title }}"),
                                                              (3, "Last note from {{ sender_name }}.")]
        assert sequences.steps(conn, camp)[1]["delay_amount"] == 3
    shown = c.get(page).text
    assert "P.S. VP Sales" in shown and "Re: s" in shown


def test_bad_input_and_refusals_are_said_on_the_page(app, engine, world):
    c = _client(app, world["acc"].operator)
    page, camp = _page(world), world["camp"]
    with engine.begin() as conn:
        _send(conn, world["a"], camp, world["leads"][0], world["box"], 2)
    refused = post_form(c, page, f"{page}/save", {"step": "2", "subject": "s", "body": "My careful rewrite",
                                                  "delay_amount": "1", "delay_unit": "days"})
    assert refused.status_code == 400
    assert "not saved: cannot change step 2: step 2 was already sent to 1 lead" in refused.text
    assert "My careful rewrite</textarea>" in refused.text  # the draft is kept
    assert "sent to 1 lead: fixed" in refused.text
    for data, words in (({"step": "3", "body": "{% if %}", "delay_amount": "0"}, "not saved: step 3 body: line 1:"),
                        ({"step": "3", "delay_amount": "-1"}, "not saved: delay: &#39;-1&#39; is not a number"),
                        ({"step": "3", "delay_amount": "0", "delay_unit": "weeks"}, "delay unit must be"),
                        ({"step": "9", "delay_amount": "0", "delay_unit": "days"}, "step 9 needs step 8 first"),
                        ({"step": "zero"}, "step: &#39;zero&#39; is not a number")):
        r = post_form(c, page, f"{page}/save", data)
        assert r.status_code == 400 and words in r.text, (data, r.text[-2000:])
    moved = post_form(c, page, f"{page}/move", {"step": "3", "to": "2"})
    assert "cannot+move+step+3+to+2" in moved.headers["location"].replace("%20", "+")
    gone = post_form(c, page, f"{page}/delete", {"step": "1"})
    assert "not+deleted" in gone.headers["location"].replace("%20", "+")
    assert post_form(c, page, f"{page}/move", {"step": "x", "to": "1"}).status_code == 303
    with engine.connect() as conn:
        assert len(sequences.steps(conn, camp)) == 3 and _steps(conn, camp)[1][2] == "Following up, {{ first_name }}."
    assert c.get("/console/campaigns/99999999/sequence").status_code == 404
    assert c.get("/console/campaigns/abc/sequence").status_code == 404


def test_viewers_read_only_and_not_another_clients(app, world):
    own = _client(app, world["acc"].viewer_a)
    page = own.get(_page(world))
    assert page.status_code == 200 and "Hi First1 at Example Inc." in page.text
    assert 'data-testid="step-form"' not in page.text and "/sequence/save" not in page.text
    assert "Hello {{ first_name }}" in page.text  # the templates, read-only
    token = csrf_of(page.text)  # the sign-out form's
    for action in ("preview", "save", "move", "delete"):
        r = own.post(f"{_page(world)}/{action}", data={"csrf": token, "step": "1", "to": "2", "body": "x"})
        assert r.status_code == 403, action
    other = _client(app, world["acc"].viewer_b)
    assert other.get(_page(world)).status_code == 404
    assert "Bravo secret subject" not in other.get(_page(world)).text
    assert other.get(f"/console/campaigns/{world['camp_b']}/sequence").status_code == 200


# -- A/B variants ----------------------------------------------------------------------------------
def test_the_operator_adds_edits_and_deletes_a_variant_with_its_preview(app, engine, world):
    c = _client(app, world["acc"].operator)
    page, camp = _page(world), world["camp"]
    assert 'data-testid="new-variant"' in c.get(page).text
    added = post_form(c, page, f"{page}/variant", {"step": "1", "label": "B", "subject": "Quick one, {{ first_name }}",
                                                   "body": "B body for {{ company_name }}."})
    assert added.status_code == 303 and "variant+B+saved" in added.headers["location"].replace("%20", "+")
    shown = c.get(page).text
    assert 'data-variant="B"' in shown and "Quick one, First1" in shown and "B body for Example Inc." in shown
    edited = post_form(c, page, f"{page}/variant", {"step": "1", "label": "B", "subject": "Edited {{ first_name }}",
                                                    "body": "B2"})
    assert edited.status_code == 303
    with engine.connect() as conn:
        assert sequences.variants(conn, camp, 1) == [{"variant": "B", "subject_template": "Edited {{ first_name }}",
                                                      "body_template": "B2"}]
    gone = post_form(c, page, f"{page}/variant/delete", {"step": "1", "label": "B"})
    assert gone.status_code == 303 and "variant+B+deleted" in gone.headers["location"].replace("%20", "+")
    with engine.connect() as conn:
        assert sequences.variants(conn, camp, 1) == []


def test_variant_refusals_and_bad_input_are_said_on_the_page(app, engine, world):
    c = _client(app, world["acc"].operator)
    page, camp = _page(world), world["camp"]
    with engine.begin() as conn:
        sequences.set_variant(conn, world["a"], camp, 2, "B", "s", "Two B")
        _send(conn, world["a"], camp, world["leads"][0], world["box"], 2)
        conn.execute(text("UPDATE messages SET variant = 'B' WHERE step = 2"))
    assert "sent to 1 lead: fixed" in c.get(page).text
    for data, words in (({"step": "2", "label": "B", "subject": "s", "body": "rewrite"},
                         "variant not saved: cannot change step 2 variant B: step 2 variant B was already sent"),
                        ({"step": "1", "label": "A", "subject": "s", "body": "b"},
                         "variant not saved: variant A is step 1&#39;s own subject and body"),
                        ({"step": "1", "label": "b b", "subject": "s", "body": "b"}, "a variant label is a capital"),
                        ({"step": "1", "label": "C", "subject": "s", "body": "{% if %}"},
                         "variant not saved: step 1 variant C body: line 1:"),
                        ({"step": "7", "label": "C", "subject": "s", "body": "b"}, "step 7 does not exist"),
                        ({"step": "zero", "label": "C"}, "step: &#39;zero&#39; is not a number")):
        r = post_form(c, page, f"{page}/variant", data)
        assert r.status_code == 400 and words in r.text, (data, r.text[-2000:])
    refused = post_form(c, page, f"{page}/variant/delete", {"step": "2", "label": "B"})
    assert "variant+not+deleted" in refused.headers["location"].replace("%20", "+")
    with engine.connect() as conn:
        assert [v["body_template"] for v in sequences.all_variants(conn, camp)] == ["Two B"]


def test_viewers_read_variants_only_and_not_another_clients(app, engine, world):
    with engine.begin() as conn:
        sequences.set_variant(conn, world["a"], world["camp"], 1, "B", "Viewer sees {{ first_name }}", "vb")
    own = _client(app, world["acc"].viewer_a)
    page = own.get(_page(world))
    assert page.status_code == 200 and "Viewer sees {{ first_name }}" in page.text and "Viewer sees First1" in page.text
    assert 'data-testid="variant-form"' not in page.text and "/sequence/variant" not in page.text
    token = csrf_of(page.text)
    for action in ("variant", "variant/delete"):
        r = own.post(f"{_page(world)}/{action}", data={"csrf": token, "step": "1", "label": "B", "body": "x"})
        assert r.status_code == 403, action
    other = _client(app, world["acc"].viewer_b)
    assert "Viewer sees" not in other.get(_page(world)).text
    operator = _client(app, world["acc"].operator)
    missing = "/console/campaigns/99999999/sequence"
    assert post_form(operator, _page(world), f"{missing}/variant", {"step": "1", "label": "B"}).status_code == 404
