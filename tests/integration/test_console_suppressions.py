"""The console's suppression list over HTTP against the real app and Postgres: search, add, import, export, tenant walls."""

from __future__ import annotations

import csv
import html
import io
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from shared.engines.outreach import sending, suppression
from tests import factories
from tests.console_helpers import SECRET, accounts, csrf_of, post_form, signed_in
from tests.integration.test_outreach import MONDAY_10_UTC, _queue_all, outreach, sink  # noqa: F401  (fixtures)
from web.app import create_app
from web.console import suppressions as page

pytestmark = pytest.mark.integration

PAGE = "/console/suppressions"


@pytest.fixture
def world(engine):
    with engine.begin() as conn:
        a = factories.client(conn, "alpha")
        b = factories.client(conn, "bravo")
        for i in range(230):  # three pages for alpha
            suppression.suppress(conn, a, f"person{i:03}@alpha-list.example", reason="Do Not Contact" if i % 2 else
                                 "hard_bounce", source="crm sync" if i < 10 else "test")
        suppression.suppress(conn, a, "@competitor.example", reason="competitor", source="test")
        suppression.suppress(conn, a, "odd@100%_off.example", reason="literal 100%_off", source="test")
        suppression.suppress(conn, b, "secret-prospect@bravo-only.example", reason="bravo private", source="bravo crm")
        suppression.suppress(conn, b, "@bravo-domain.example", reason="bravo private", source="bravo crm")
    return {"a": a, "b": b, "acc": accounts(engine, a, b)}


@pytest.fixture
def app(engine):
    return create_app(engine=engine, secret="unsub-secret", console_secret=SECRET)


def rows_of(page_html: str) -> list[list[str]]:
    """The table's rows as cell texts (unescaped), header excluded."""
    body = page_html.split('data-testid="suppressions"', 1)[1].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [[html.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def count_in_db(engine, client_id: int) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM suppressions WHERE client_id = :c"), {"c": client_id}).scalar()


def test_operator_searches_every_client_pages_and_filters(app, world):
    c = signed_in(app, world["acc"].operator)
    first = c.get(PAGE)
    assert first.status_code == 200 and "of 234" in first.text and "page 1 of 3" in first.text
    assert len(rows_of(first.text)) == page.queries.PAGE_SIZE
    assert rows_of(first.text)[0][5] in ("alpha", "bravo")  # the client column
    third = c.get(PAGE, params={"page": 3})
    assert len(rows_of(third.text)) == 34 and "201–234 of 234" in third.text and 'rel="next"' not in third.text
    seen = {r[1] for p in (1, 2, 3) for r in rows_of(c.get(PAGE, params={"page": p}).text)}
    assert len(seen) == 234  # paging neither skips nor repeats an entry

    only_b = rows_of(c.get(PAGE, params={"client": world["b"]}).text)
    assert {r[1] for r in only_b} == {"secret-prospect@bravo-only.example", "bravo-domain.example"}
    assert {r[0] for r in only_b} == {"email", "domain"}

    # Substring, case-insensitive, on value, reason and source; `%` and `_` are characters, not wildcards.
    assert len(rows_of(c.get(PAGE, params={"q": "DO NOT contact"}).text)) == 100  # and a next page
    assert "of 115" in c.get(PAGE, params={"q": "do not contact"}).text
    assert {r[1] for r in rows_of(c.get(PAGE, params={"q": "CRM SYNC", "client": world["a"]}).text)} == \
        {f"person{i:03}@alpha-list.example" for i in range(10)}
    assert [r[1] for r in rows_of(c.get(PAGE, params={"q": "PERSON007"}).text)] == ["person007@alpha-list.example"]
    assert [r[1] for r in rows_of(c.get(PAGE, params={"q": "100%_"}).text)] == ["odd@100%_off.example"]
    assert rows_of(c.get(PAGE, params={"q": "0%x"}).text) == [["Nothing matches."]]
    nxt = c.get(PAGE, params={"q": "do not contact", "client": world["a"]}).text
    assert f'href="/console/suppressions?client={world["a"]}&amp;q=do+not+contact&amp;page=2"' in nxt
    assert c.get(PAGE, params={"client": 999999}).status_code == 404
    every = c.get(PAGE, params={"client": "", "q": "\x00 bravo private"})  # the filter's "all"; a NUL is dropped
    assert every.status_code == 200 and len(rows_of(every.text)) == 2
    assert "is not a number; showing every client" in c.get(PAGE, params={"client": "x"}).text


def test_operator_adds_an_entry_through_the_engines_normalizer(app, engine, world):
    c = signed_in(app, world["acc"].operator)
    added = post_form(c, PAGE, PAGE, {"client_id": world["a"], "value": "  New.Person@Alpha.Example ", "reason": "asked"})
    assert added.status_code == 303 and added.headers["location"].startswith(f"/console/suppressions?client={world['a']}")
    shown = c.get(added.headers["location"])
    assert "new.person@alpha.example added (email)" in shown.text
    with engine.connect() as conn:
        row = conn.execute(text("SELECT kind, value, reason, source FROM suppressions WHERE value = 'new.person@alpha.example'")).one()
        assert tuple(row) == ("email", "new.person@alpha.example", "asked", f"console:{world['acc'].operator}")
        assert suppression.is_suppressed(conn, world["a"], "NEW.person@alpha.example") == "asked"
        assert suppression.is_suppressed(conn, world["b"], "new.person@alpha.example") is None  # per client
    domain = post_form(c, PAGE, PAGE, {"client_id": world["a"], "value": "@Whole-Co.example"})
    assert "whole-co.example added (domain)" in c.get(domain.headers["location"]).text
    with engine.connect() as conn:
        assert suppression.is_suppressed(conn, world["a"], "anyone@whole-co.example") == "manual"
    again = post_form(c, PAGE, PAGE, {"client_id": world["a"], "value": "new.person@alpha.example"})
    assert "was already on the list" in c.get(again.headers["location"]).text

    before = count_in_db(engine, world["a"])
    for bad, says in (("not an address", "is neither an email address nor a domain"),
                      ("ann@localhost", "is not an email address"), ("<b>nodot</b>", "is not a domain"),
                      ("nul\x00@x.example", "is neither")):
        refused = post_form(c, PAGE, PAGE, {"client_id": world["a"], "value": bad})
        assert refused.status_code == 303
        notice = c.get(refused.headers["location"]).text
        assert says in notice and "not added" in notice, bad
        assert "<b>nodot" not in notice  # the value is named, escaped
    assert count_in_db(engine, world["a"]) == before
    assert post_form(c, PAGE, PAGE, {"client_id": 999999, "value": "x@y.example"}).status_code == 404


def test_a_bad_value_is_named_escaped_in_the_notice(app, world):
    c = signed_in(app, world["acc"].operator)
    refused = post_form(c, PAGE, PAGE, {"client_id": world["a"], "value": "<script>x</script>"})
    shown = c.get(refused.headers["location"]).text
    assert "&#39;&lt;script&gt;x&lt;/script&gt;&#39; is not a domain" in shown and "<script>x" not in shown


def _import(c: TestClient, client_id: int, content: bytes, name: str = "dnc.csv", **extra):
    token = csrf_of(c.get(PAGE).text)
    return c.post(f"{PAGE}/import", data={"csrf": token, "client_id": str(client_id), **extra},
                  files={"file": (name, content, "text/csv")})


def test_import_adds_good_rows_and_names_every_bad_row_escaped(app, engine, world):
    c = signed_in(app, world["acc"].operator)
    before = count_in_db(engine, world["b"])
    content = ("\ufeffName,Email\n"
               "Ann,Ann@Import.example\n"
               "Bad,not an address\n"
               "Dom,@import-domain.example\n"
               "Evil,<img src=x onerror=alert(1)>\n"
               "Again,ann@import.example\n"
               "Empty,\n").encode()
    done = _import(c, world["b"], content, name="C:\\Users\\me\\dnc list.csv", reason="customer list")
    assert done.status_code == 200
    result = done.text.split('data-testid="import-result"', 1)[1].split("</section>", 1)[0]
    assert "Import of dnc list.csv" in result
    assert "<strong>2</strong> added, <strong>3</strong> rejected" in result
    problems = [html.unescape(p) for p in re.findall(r"<li>(.*?)</li>", result, re.S)]
    assert problems == ["line 3: 'not an address' is neither an email address nor a domain",
                        "line 5: '<img src=x onerror=alert(1)>' is neither an email address nor a domain",
                        "line 7: '' is neither an email address nor a domain"]
    assert "<img src=x" not in done.text  # shown escaped
    assert count_in_db(engine, world["b"]) == before + 2
    with engine.connect() as conn:
        assert suppression.is_suppressed(conn, world["b"], "x@import-domain.example") == "customer list"
        assert conn.execute(text("SELECT DISTINCT source FROM suppressions WHERE reason = 'customer list'")).scalar() \
            == "import:dnc list.csv"
    assert "ann@import.example" in [r[1] for r in rows_of(done.text)]  # the list below shows the new rows

    latin1 = _import(c, world["b"], "value\nren\xe9@x.example\n".encode("latin-1"))
    assert latin1.status_code == 200 and "Nothing imported: the file is not UTF-8 text" in latin1.text
    assert count_in_db(engine, world["b"]) == before + 2
    assert _import(c, 999999, b"value\nx@y.example\n").status_code == 404
    no_file = c.post(f"{PAGE}/import", data={"csrf": csrf_of(c.get(PAGE).text), "client_id": str(world["b"]),
                                            "file": "not a file"}, files={"other": ("x.csv", b"", "text/csv")})
    assert no_file.status_code == 303 and "choose%20a%20client%20and%20a%20CSV%20file" in no_file.headers["location"]
    forged = c.post(f"{PAGE}/import", data={"csrf": "forged", "client_id": str(world["b"])},
                    files={"file": ("dnc.csv", b"value\nforged@x.example\n", "text/csv")})
    assert forged.status_code == 403 and count_in_db(engine, world["b"]) == before + 2


def test_an_oversized_upload_is_refused_with_413_before_it_is_read(app, engine, world, monkeypatch):
    c = signed_in(app, world["acc"].operator)
    before = count_in_db(engine, world["a"])
    big = b"value\n" + b"someone@too-big.example\n" * (page.IMPORT_MAX_BYTES // 24 + 10)  # just over 20 MB
    refused = _import(c, world["a"], big)
    assert refused.status_code == 413 and "larger than 20 MB" in refused.text

    # No Content-Length (a chunked upload): counted as it arrives, refused at the limit.
    monkeypatch.setattr(page, "IMPORT_MAX_BYTES", 4096)
    token = csrf_of(c.get(PAGE).text)
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{token}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"client_id\"\r\n\r\n{world['a']}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.csv\"\r\n"
            f"Content-Type: text/csv\r\n\r\nvalue\n").encode() + b"a@chunked.example\n" * 400 + \
        f"\r\n--{boundary}--\r\n".encode()

    def chunks():
        for i in range(0, len(body), 1000):
            yield body[i:i + 1000]

    streamed = c.post(f"{PAGE}/import", content=chunks(),
                      headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert streamed.request.headers.get("content-length") is None
    assert streamed.status_code == 413 and count_in_db(engine, world["a"]) == before
    monkeypatch.setattr(page, "IMPORT_MAX_BYTES", 64 * 1024)  # the same chunked upload, under the limit
    accepted = c.post(f"{PAGE}/import", content=chunks(),
                      headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert accepted.status_code == 200 and "<strong>1</strong> added" in accepted.text
    assert count_in_db(engine, world["a"]) == before + 1


def test_export_is_the_clis_csv_with_injection_quoting_and_a_safe_filename(app, engine, world):
    with engine.begin() as conn:
        odd = factories.client(conn, 'Acme "Ltd"/../\r\nX')
        suppression.suppress(conn, odd, "ann@acme.example", reason="=HYPERLINK(\"http://evil\")", source="crm")
        suppression.suppress(conn, odd, "acme-rival.example", reason="ok", source="x;=cmd|' /C calc'!A0;y")
    c = signed_in(app, world["acc"].operator)
    assert c.get(f"{PAGE}/export").status_code == 303  # an operator chooses a client
    got = c.get(f"{PAGE}/export", params={"client": odd})
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    assert got.headers["content-disposition"] == f'attachment; filename="suppressions-Acme-Ltd-X-{odd}.csv"'
    with engine.connect() as conn:  # byte for byte what `outbound suppressions export` writes
        expected = io.StringIO()
        suppression.write_export(conn, odd, expected)
    assert got.text == expected.getvalue()
    lines = got.text.splitlines()
    assert lines[0] == '"kind","value","reason","source","created_at"'
    rows = list(csv.reader(io.StringIO(got.text)))
    assert [r[:4] for r in rows[1:]] == [["domain", "acme-rival.example", "ok", "x;'=cmd|' /C calc'!A0;y"],
                                         ["email", "ann@acme.example", 'HYPERLINK("http://evil")', "crm"]]


def test_a_viewer_sees_and_exports_only_their_client_and_may_not_act(app, engine, world):
    c = signed_in(app, world["acc"].viewer_a)
    listing = c.get(PAGE)
    assert listing.status_code == 200 and "of 232" in listing.text
    assert "bravo" not in listing.text and 'data-testid="add-suppression"' not in listing.text
    assert 'data-testid="import-suppressions"' not in listing.text
    assert rows_of(c.get(PAGE, params={"q": "bravo"}).text) == [["Nothing matches."]]
    assert c.get(PAGE, params={"client": world["b"]}).status_code == 404
    assert c.get(PAGE, params={"client": world["b"], "q": "secret"}).status_code == 404
    assert c.get(f"{PAGE}/export", params={"client": world["b"]}).status_code == 404

    own = c.get(f"{PAGE}/export")
    assert own.status_code == 200 and f"suppressions-alpha-{world['a']}.csv" in own.headers["content-disposition"]
    assert len(own.text.splitlines()) == 1 + 232 and "bravo" not in own.text
    assert c.get(f"{PAGE}/export", params={"client": world["a"]}).text == own.text

    before = (count_in_db(engine, world["a"]), count_in_db(engine, world["b"]))
    for client_id in (world["a"], world["b"]):
        assert post_form(c, PAGE, PAGE, {"client_id": client_id, "value": "x@viewer.example"}).status_code == 403
        assert _import(c, client_id, b"value\nx@viewer.example\n").status_code == 403
    assert (count_in_db(engine, world["a"]), count_in_db(engine, world["b"])) == before

    b_viewer = signed_in(app, world["acc"].viewer_b)
    assert {r[1] for r in rows_of(b_viewer.get(PAGE).text)} == {"secret-prospect@bravo-only.example",
                                                                 "bravo-domain.example"}
    assert b_viewer.get(PAGE, params={"client": world["a"]}).status_code == 404


def test_an_entry_added_in_the_console_stops_a_send_already_queued(app, engine, sink, outreach):  # noqa: F811
    """The just-in-time check before each send reads what the console added (the real send path, real SMTP)."""
    s, _ = sink
    with engine.begin() as conn:
        from shared.engines.users import users

        users.create_user(conn, "ops@agency.test", "correct horse battery staple", role="operator")
    _, items = _queue_all(engine, outreach)
    lead = outreach["leads"][0]
    with engine.connect() as conn:
        email = conn.execute(text("SELECT email FROM leads WHERE id = :l"), {"l": lead}).scalar()
    c = signed_in(app, "ops@agency.test")
    added = post_form(c, PAGE, PAGE, {"client_id": outreach["client"], "value": email.upper(), "reason": "asked by phone"})
    assert "added (email)" in c.get(added.headers["location"]).text
    with engine.connect() as conn:
        assert suppression.is_suppressed(conn, outreach["client"], email) == "asked by phone"
    report = sending.send_chunk([items[lead]], now=MONDAY_10_UTC)
    assert report.skipped == {"suppressed": 1} and report.sent == 0
    assert s.messages == []
    other = outreach["leads"][1]
    assert sending.send_chunk([items[other]], now=MONDAY_10_UTC).sent == 1  # everyone else still goes out
