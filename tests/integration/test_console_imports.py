"""The console's lead import over HTTP against the real app and Postgres: upload, column map, progress, rejects, walls."""

from __future__ import annotations

import csv
import io
import re
import time
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from shared.csvsafe import is_dangerous
from tests import factories
from tests.console_helpers import SECRET, accounts, csrf_of, signed_in
from web.app import create_app
from web.console import imports as page

pytestmark = pytest.mark.integration

PAGE = "/console/imports"
BAD_ROWS = ("Email,First Name,Company\n"
            "ann@acme.example,Ann,Acme\n"
            "not-an-email,Bob,Acme\n"
            "ann@acme.example,Ann again,Acme\n"
            "=cmd@evil.example,Eve,Evil\n"
            "cy@acme.example,Cy,Acme\n")


@pytest.fixture
def world(engine):
    with engine.begin() as conn:
        a = factories.client(conn, "alpha")
        b = factories.client(conn, "bravo")
    return {"a": a, "b": b, "acc": accounts(engine, a, b)}


@pytest.fixture
def app(engine):
    return create_app(engine=engine, secret="unsub-secret", console_secret=SECRET)


def leads_of(engine, client_id: int) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT email FROM leads WHERE client_id = :c ORDER BY email"),
                                 {"c": client_id}).scalars())


def upload(c: TestClient, client_id: int, content: str | bytes, *, name: str = "leads.csv", campaign: str = ""):
    token = csrf_of(c.get(PAGE).text)
    return c.post(PAGE, data={"csrf": token, "client_id": str(client_id), "campaign": campaign},
                  files={"file": (name, content, "text/csv")})


def job_of(response) -> str:
    assert response.status_code == 303, response.text
    return parse_qs(urlsplit(response.headers["location"]).query)["job"][0]


def notice_of(response) -> str:
    assert response.status_code == 303, response.text
    return unquote(parse_qs(urlsplit(response.headers["location"]).query)["notice"][0])


def start(c: TestClient, job: str, mapping: dict[str, str] | None = None):
    token = csrf_of(c.get(PAGE, params={"job": job}).text)
    return c.post(f"{PAGE}/start", data={"csrf": token, "job": job, **(mapping or {})})


def finished(c: TestClient, job: str) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = c.get(f"{PAGE}/status", params={"job": job})
        assert status.status_code == 200 and status.headers["content-type"].startswith("application/json")
        if status.json()["finished"]:
            return status.json()
        time.sleep(0.1)
    raise AssertionError("the import did not finish")


def test_bad_rows_are_rejected_with_their_lines_listed_and_downloadable(app, world, engine):
    ops = signed_in(app, world["acc"].operator)
    job = job_of(upload(ops, world["a"], BAD_ROWS, name="C:\\exports\\q3 leads.csv", campaign="Q3 push"))
    mapping = ops.get(PAGE, params={"job": job})
    assert mapping.status_code == 200 and 'data-testid="column-map"' in mapping.text
    assert "q3 leads.csv" in mapping.text and "About 5 data rows" in mapping.text
    chosen = re.findall(r'<select name="col(\d)".*?<option value="(\w+)" selected>', mapping.text, re.S)
    assert chosen == [("0", "email"), ("1", "first_name"), ("2", "company_name")]  # each column's detected field
    assert leads_of(engine, world["a"]) == []  # nothing is imported before the operator starts it

    assert start(ops, job).status_code == 303
    status = finished(ops, job)
    assert status == {"state": "done", "rows_done": 5, "total": 5, "finished": True}
    done = ops.get(PAGE, params={"job": job}).text
    assert 'data-count="imported">2<' in done and 'data-count="duplicates">1<' in done
    assert 'data-count="rejected">2<' in done and 'data-count="existing">0<' in done
    assert "(created as a draft)" in done
    assert "<td>3</td><td>invalid email &#39;not-an-email&#39;: there is no @-sign</td>" in done
    assert "<td>5</td><td>invalid email &#39;=cmd@evil.example&#39;: starts with" in done
    assert leads_of(engine, world["a"]) == ["ann@acme.example", "cy@acme.example"]

    rejects = ops.get(f"{PAGE}/rejects", params={"job": job})
    assert rejects.status_code == 200 and rejects.headers["content-type"].startswith("text/csv")
    assert 'filename="q3-leads.rejects.csv"' in rejects.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(rejects.content.decode("utf-8-sig"))))
    assert rows[0] == ["line", "reason", "Email", "First Name", "Company"]
    assert [r[0] for r in rows[1:]] == ["3", "4", "5"]
    # The importer's spreadsheet-safe writer, served as written: no cell a spreadsheet would run.
    assert rows[3][2].endswith("cmd@evil.example") and not any(is_dangerous(cell) for row in rows for cell in row)
    again = start(ops, job)  # the same staged file is imported once
    assert "was imported already" in notice_of(again)


def test_an_unknown_header_mapped_to_email_makes_the_import_work(app, world, engine):
    ops = signed_in(app, world["acc"].operator)
    job = job_of(upload(ops, world["a"], "Contact;Who\njane@acme.example;Jane Doe\nbo@acme.example;Bo Li\n"))
    mapping = ops.get(PAGE, params={"job": job}).text
    assert mapping.count('<span class="badge">unknown</span>') == 2
    assert "no email column found; columns in the file: 'Contact', 'Who'" in notice_of(start(ops, job))
    assert "&#39;password&#39; is not a lead field" in ops.get(
        start(ops, job, {"col0": "password"}).headers["location"]).text
    assert start(ops, job, {"col0": "email", "col1": "full_name"}).status_code == 303
    assert finished(ops, job)["state"] == "done"
    assert leads_of(engine, world["a"]) == ["bo@acme.example", "jane@acme.example"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT first_name, last_name FROM leads WHERE email = 'jane@acme.example'")).one() \
            == ("Jane", "Doe")
    assert ops.get(f"{PAGE}/rejects", params={"job": job}).status_code == 404  # nothing was left out


def test_an_oversized_upload_is_refused_with_a_clear_message_and_nothing_imported(app, world, engine, monkeypatch):
    monkeypatch.setattr(page, "UPLOAD_MAX_BYTES", 1024 * 1024)
    ops = signed_in(app, world["acc"].operator)
    big = "email\n" + "".join(f"person{i}@acme.example\n" for i in range(60_000))
    refused = upload(ops, world["a"], big)
    assert refused.status_code == 413 and "Nothing imported: the file is larger than 1 MB" in refused.text

    # No Content-Length (a chunked upload): counted as it arrives, refused at the limit.
    monkeypatch.setattr(page, "UPLOAD_MAX_BYTES", 4096)
    token = csrf_of(ops.get(PAGE).text)
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{token}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"client_id\"\r\n\r\n{world['a']}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.csv\"\r\n"
            f"Content-Type: text/csv\r\n\r\nemail\n").encode() + b"a@chunked.example\n" * 400 + \
        f"\r\n--{boundary}--\r\n".encode()
    streamed = ops.post(PAGE, content=(body[i:i + 1000] for i in range(0, len(body), 1000)),
                        headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert streamed.request.headers.get("content-length") is None
    assert streamed.status_code == 413 and "larger than 4 KB" in streamed.text
    assert leads_of(engine, world["a"]) == [] and "recent-imports" not in ops.get(PAGE).text


def test_bad_input_is_a_clear_message(app, world, engine, monkeypatch):
    ops = signed_in(app, world["acc"].operator)
    monkeypatch.setattr(page, "MAX_RUNNING", 0)
    waiting = job_of(upload(ops, world["a"], BAD_ROWS))
    assert "0 imports are running already" in notice_of(start(ops, waiting))
    assert ops.get(f"{PAGE}/status", params={"job": waiting}).json()["state"] == "mapping"
    assert "Nothing imported: no email column found; columns in the file: none" in notice_of(
        upload(ops, world["a"], b"\n\n"))
    assert "client_id" in notice_of(upload(ops, "x", BAD_ROWS))
    token = csrf_of(ops.get(PAGE).text)
    assert "choose a client and a CSV file" in notice_of(ops.post(PAGE, data={"csrf": token, "client_id": "1"},
                                                                  files={"x": ("a", b"")}))
    assert upload(ops, 999_999, BAD_ROWS).status_code == 404
    for job in ("nope", "A" * 22, "../../etc/passwd"):
        assert ops.get(PAGE, params={"job": job}).status_code == 404
        assert ops.get(f"{PAGE}/status", params={"job": job}).status_code == 404
        assert ops.post(f"{PAGE}/start", data={"csrf": token, "job": job}).status_code == 404
    assert ops.post(f"{PAGE}/start", data={"csrf": "forged", "job": "x"}).status_code == 403
    assert leads_of(engine, world["a"]) == []


def test_a_job_is_its_sessions_only_and_viewers_are_told_imports_are_for_operators(app, world, engine):
    ops = signed_in(app, world["acc"].operator)
    job = job_of(upload(ops, world["a"], BAD_ROWS))
    start(ops, job)
    finished(ops, job)
    other_ops = signed_in(app, world["acc"].operator)  # the same operator, another session
    for c in (other_ops, signed_in(app, world["acc"].viewer_a), signed_in(app, world["acc"].viewer_b)):
        for path in (PAGE, f"{PAGE}/status", f"{PAGE}/rejects"):
            response = c.get(path, params={"job": job})
            assert response.status_code == 404 and "acme.example" not in response.text, (path, response.text)
    viewer = signed_in(app, world["acc"].viewer_a)
    own = viewer.get(PAGE)
    assert own.status_code == 200 and "Lead imports are for operators" in own.text
    assert 'data-testid="upload-leads"' not in own.text
    token = csrf_of(own.text)
    assert viewer.post(PAGE, data={"csrf": token, "client_id": str(world["a"])},
                       files={"file": ("l.csv", BAD_ROWS, "text/csv")}).status_code == 403
    assert viewer.post(f"{PAGE}/start", data={"csrf": token, "job": job}).status_code == 403
    assert len(leads_of(engine, world["a"])) == 2  # the operator's import, nothing more


def test_a_session_keeps_its_newest_jobs_and_drops_the_oldest_with_its_files(app, world, monkeypatch):
    monkeypatch.setattr(page, "MAX_JOBS_PER_SESSION", 2)
    ops = signed_in(app, world["acc"].operator)
    first, second, third = (job_of(upload(ops, world["a"], BAD_ROWS)) for _ in range(3))
    store = app.state.lead_imports
    assert ops.get(PAGE, params={"job": first}).status_code == 404
    assert [j.id for j in store.of(next(iter(store._jobs.values())).owner)] == [third, second]
    assert all(j.upload.is_file() for j in store._jobs.values())
    start(ops, second)
    finished(ops, second)
    assert not store._jobs[second].upload.exists()  # the staged upload goes once imported
