"""Classification of received mail: RFC-built reports, real-world shaped samples, opt-outs in five languages."""

from __future__ import annotations

import email

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.engines.replies import classify, parse_bytes
from shared.status import InboundKind, values
from shared.engines.replies.classify import reply_text
from tests.unit.replies_samples import MAIL_DIR, reply, rfc3464_dsn, rfc5965_arf, sample


@pytest.mark.parametrize(
    ("name", "kind", "evidence", "recipients", "status"),
    [
        ("gmail_dsn_failure.eml", "hard_bounce", "DSN Status 5.1.1 for nobody.here@gmail.com", ("nobody.here@gmail.com",), "5.1.1"),
        ("outlook_ndr.eml", "hard_bounce", "DSN Status 5.1.10 for j.smith@contoso.com", ("j.smith@contoso.com",), "5.1.10"),
        ("postfix_bounce.eml", "hard_bounce", "DSN Status 5.1.1 for carol@old-company.example", ("carol@old-company.example",), "5.1.1"),
        ("dsn_delayed.eml", "soft_bounce", "DSN Action delayed Status 4.4.1 for dan@slow.example", ("dan@slow.example",), "4.4.1"),
        ("exim_bounce_plain.eml", "hard_bounce", "bounce from mailer-daemon@mx1.hoster.example: 5.1.1 for bob@gone.example", ("bob@gone.example",), "5.1.1"),
        ("arf_abuse.eml", "complaint", "ARF Feedback-Type: abuse", ("eve@customer.example",), "abuse"),
        ("exchange_oof.eml", "auto_reply", "header Auto-Submitted: auto-generated", (), None),
        ("abwesenheitsnotiz.eml", "auto_reply", "subject prefix 'Abwesenheitsnotiz'", (), None),
        ("human_reply_quoting_footer.eml", "human_reply", "no complaint, bounce, auto-reply or opt-out marker", (), None),
        ("human_reply_outlook_quote.eml", "human_reply", "no complaint, bounce, auto-reply or opt-out marker", (), None),
        ("unsubscribe_request.eml", "unsubscribe_request", "phrase 'remove me' (en)", (), None),
    ],
)
def test_real_world_samples(name, kind, evidence, recipients, status) -> None:
    verdict = classify(sample(name))
    assert (verdict.kind, verdict.evidence, verdict.recipients, verdict.status) == (kind, evidence, recipients, status)


def test_rfc3464_hard_beats_soft_and_names_every_hard_recipient() -> None:
    msg = rfc3464_dsn([("a@x.example", "failed", "5.1.1"), ("b@x.example", "delayed", "4.4.7"), ("c@x.example", "failed", "5.2.2")])
    verdict = classify(msg)
    assert verdict.kind == "hard_bounce"
    assert verdict.recipients == ("a@x.example", "c@x.example")
    assert verdict.evidence == "DSN Status 5.1.1 for a@x.example (+1 more)"


def test_rfc3464_failed_with_4xx_is_soft() -> None:
    verdict = classify(rfc3464_dsn([("a@x.example", "failed", "4.2.2")], headers_only=True))
    assert (verdict.kind, verdict.status, verdict.recipients) == ("soft_bounce", "4.2.2", ("a@x.example",))


def test_success_only_dsn_is_not_a_bounce() -> None:
    verdict = classify(rfc3464_dsn([("a@x.example", "delivered", "2.0.0")]))
    assert verdict.kind == "auto_reply"
    assert verdict.evidence == "DSN Action delivered (no failure)"


@pytest.mark.parametrize("feedback_type", ["abuse", "fraud", "virus", "other"])
def test_rfc5965_complaints(feedback_type) -> None:
    verdict = classify(rfc5965_arf(feedback_type))
    assert (verdict.kind, verdict.status, verdict.recipients) == ("complaint", feedback_type, ("eve@customer.example",))
    assert verdict.evidence == f"ARF Feedback-Type: {feedback_type}"


@pytest.mark.parametrize("feedback_type", ["not-spam", "auth-failure"])
def test_feedback_reports_that_are_not_complaints(feedback_type) -> None:
    verdict = classify(rfc5965_arf(feedback_type))
    assert verdict.kind == "auto_reply"
    assert "not a complaint" in verdict.evidence


@pytest.mark.parametrize(
    ("headers", "evidence"),
    [
        ({"Auto-Submitted": "auto-replied"}, "header Auto-Submitted: auto-replied"),
        ({"Auto-Submitted": "auto-notified; owner-email=x@y"}, "header Auto-Submitted: auto-notified; owner-email=x@y"),
        ({"X-Autoreply": "yes"}, "header X-Autoreply: yes"),
        ({"X-Autorespond": "Out of office"}, "header X-Autorespond: Out of office"),
        ({"Precedence": "bulk"}, "header Precedence: bulk"),
        ({"Precedence": "junk"}, "header Precedence: junk"),
        ({"Precedence": "auto_reply"}, "header Precedence: auto_reply"),
    ],
)
def test_auto_reply_headers(headers, evidence) -> None:
    verdict = classify(reply("I am away.", headers=headers))
    assert (verdict.kind, verdict.evidence) == ("auto_reply", evidence)


@pytest.mark.parametrize(
    "subject",
    [
        "Auto: Quick question",
        "Automatic reply: Quick question",
        "Autosvar: Quick question",
        "Out of Office: Quick question",
        "Abwesenheitsnotiz: Quick question",
        "Automatische Antwort: Quick question",
        "Réponse automatique : Quick question",
        "Respuesta automática: Quick question",
        "Risposta automatica: Quick question",
        "Automatisch antwoord: Quick question",
        "[Out of Office] Quick question",
    ],
)
def test_localized_auto_reply_subjects(subject) -> None:
    verdict = classify(reply("Away until Monday.", subject=subject))
    assert verdict.kind == "auto_reply", subject
    assert verdict.evidence.startswith("subject prefix")


@pytest.mark.parametrize(
    "headers",
    [
        {"Auto-Submitted": "no"},
        {"X-Auto-Response-Suppress": "All"},  # a request to others, not a marker
        {"Precedence": "list"},  # a person answering through a group address
    ],
)
def test_headers_that_do_not_make_an_auto_reply(headers) -> None:
    assert classify(reply("Sounds good, call me.", headers=headers)).kind == "human_reply"


def test_human_subject_mentioning_out_of_office_is_not_auto() -> None:
    assert classify(reply("Let's talk.", subject="Re: Out of office tooling for Acme")).kind == "human_reply"


def test_noreply_sender_is_automatic() -> None:
    verdict = classify(reply("We received your request.", sender="Support <no-reply@customer.example>"))
    assert (verdict.kind, verdict.evidence) == ("auto_reply", "sender no-reply@customer.example")


@pytest.mark.parametrize(
    ("body", "phrase", "lang"),
    [
        ("Please remove me from your list.", "remove me", "en"),
        ("Unsubscribe", "unsubscribe", "en"),
        ("Stop emailing me, thanks.", "stop emailing", "en"),
        ("Don’t contact me again.", "don't contact me", "en"),
        ("Bitte nehmen Sie mich aus Ihrem Verteiler.", "mich aus ihrem verteiler", "de"),
        ("Ich möchte mich abmelden.", "abmelden", "de"),
        ("Bitte keine weiteren E-Mails.", "keine weiteren e-mails", "de"),
        ("Merci de me retirer de votre liste.", "retirer de votre liste", "fr"),
        ("Je souhaite me désabonner.", "désabonner", "fr"),
        ("Ne me contactez plus.", "ne me contactez plus", "fr"),
        ("Por favor, quiero darme de baja.", "darme de baja", "es"),
        ("No me envíen más correos.", "no me envíen más", "es"),
        ("Graag afmelden voor deze mails.", "afmelden", "nl"),
        ("Verwijder mij uit uw bestand.", "verwijder mij", "nl"),
    ],
)
def test_opt_out_phrases(body, phrase, lang) -> None:
    verdict = classify(reply(body))
    assert (verdict.kind, verdict.evidence) == ("unsubscribe_request", f"phrase '{phrase}' ({lang})")


@pytest.mark.parametrize(
    "body",
    [
        "Not interested, thanks.",  # stops the sequence as a human reply; it is not a request to be suppressed
        "Yes, let's talk on Tuesday.",
        "Ich bin interessiert, rufen Sie mich an.",
        "I unsubscribed from another vendor last week, but your offer sounds good.",
    ],
)
def test_replies_without_opt_out_intent(body) -> None:
    assert classify(reply(body)).kind == "human_reply"


def test_quoted_footer_in_each_quoting_style_is_ignored() -> None:
    german = reply(
        "Gerne, passt Donnerstag?\n\nAm 23.11.2026 um 10:00 schrieb Alice Rep <alice@agency.example>:\n"
        "> Hallo,\n> Abmelden: https://agency.example/u/TOKEN\n"
    )
    french = reply(
        "Avec plaisir, jeudi ?\n\nLe lun. 23 nov. 2026 à 10:00, Alice Rep <alice@agency.example> a écrit :\n"
        "> Se désabonner : https://agency.example/u/TOKEN\n"
    )
    bare_quote = reply("Sure, call me.\n> unsubscribe: https://agency.example/u/TOKEN\n")
    for msg in (german, french, bare_quote):
        assert classify(msg).kind == "human_reply"
    assert reply_text(german) == "Gerne, passt Donnerstag?"


def test_html_only_reply_with_gmail_quote() -> None:
    raw = (
        b"From: lead@customer.example\r\nTo: alice@agency.example\r\nSubject: Re: hi\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b"<div>Please remove me.</div><div class=\"gmail_quote\">On Mon wrote:<blockquote>hi</blockquote></div>"
    )
    assert classify(parse_bytes(raw)).evidence == "phrase 'remove me' (en)"
    human = raw.replace(b"Please remove me.", b"Great, talk soon.").replace(b"hi</blockquote>", b"unsubscribe</blockquote>")
    assert classify(parse_bytes(human)).kind == "human_reply"


def test_bounce_outranks_auto_reply_headers_and_complaint_outranks_bounce() -> None:
    # The Gmail DSN carries Auto-Submitted too; the DSN decides.
    assert classify(sample("gmail_dsn_failure.eml")).kind == "hard_bounce"
    assert classify(rfc5965_arf()).kind == "complaint"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_classify_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    assert classify(parse_bytes(raw)).kind in values(InboundKind)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["multipart/report; report-type=delivery-status; boundary=B", "multipart/report; report-type=feedback-report; boundary=B", "text/plain"]),
    st.text(max_size=400),
    st.sampled_from(["MAILER-DAEMON@x.example", "a@b", "", "<>", "=?utf-8?q?=E2=82?= <x@y>"]),
)
def test_classify_never_raises_on_broken_reports(ctype: str, body: str, sender: str) -> None:
    raw = f"From: {sender}\r\nContent-Type: {ctype}\r\n\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\n{body}\r\n--B--\r\n"
    assert classify(parse_bytes(raw.encode("utf-8", "surrogateescape"))).kind in values(InboundKind)


@pytest.mark.parametrize(
    "body",
    [
        # Gmail's Spanish and Dutch attributions, which mail-parser-reply 1.36 does not cut.
        "Claro, hablemos el jueves.\n\nEl lun, 23 nov 2026 a las 10:00, Alice Rep (<alice@agency.example>) escribió:\n\n"
        "Para darme de baja: https://agency.example/u/TOKEN\n",
        "Prima, donderdag?\n\nOp ma 23 nov. 2026 om 10:00 schreef Alice Rep <alice@agency.example>:\n\n"
        "Afmelden: https://agency.example/u/TOKEN\n",
        # An attribution wrapped over two lines.
        "Sure.\n\nOn Mon, Nov 23, 2026 at 10:01 AM Alice Rep <\nalice@agency.example> wrote:\n\nunsubscribe: https://x\n",
        # Outlook headers and separators, localized.
        "Gerne.\n\nVon: Alice Rep <alice@agency.example>\nGesendet: Montag, 23. November 2026 10:00\nAn: Greta\n"
        "Betreff: Frage\n\nAbmelden: https://agency.example/u/TOKEN\n",
        "Oui.\n\nDe : Alice Rep <alice@agency.example>\nEnvoyé : lundi 23 novembre 2026 10:00\nÀ : Paul\nObjet : Question\n\n"
        "Se désabonner : https://agency.example/u/TOKEN\n",
        "Gerne.\n\n-----Ursprüngliche Nachricht-----\nVon: Alice\nAbmelden: https://x\n",
    ],
)
def test_quoted_footer_in_localized_clients_is_ignored(body) -> None:
    verdict = classify(reply(body))
    assert verdict.kind == "human_reply", reply_text(reply(body))


def test_opt_out_above_a_localized_quote_still_counts() -> None:
    body = "Por favor, denme de baja.\n\nEl lun, 23 nov 2026 a las 10:00, Alice Rep (<alice@agency.example>) escribió:\n\nhola\n"
    assert classify(reply(body)).evidence == "phrase 'denme de baja' (es)"


def test_html_thread_with_nested_quotes_hides_every_level() -> None:
    raw = (
        b"From: lead@customer.example\r\nTo: alice@agency.example\r\nSubject: Re: hi\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b"<p>Yes, call me.</p><blockquote>Step 2 text<blockquote>Step 1, unsubscribe here</blockquote>"
        b"Step 2 footer: unsubscribe here</blockquote><p>Thanks</p>"
    )
    assert classify(parse_bytes(raw)).kind == "human_reply"
    outlook = (
        b"From: lead@customer.example\r\nTo: alice@agency.example\r\nSubject: RE: hi\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b"<div>Send me times.</div><div id=\"divRplyFwdMsg\"><b>From:</b> Alice</div><div>Unsubscribe</div>"
    )
    assert classify(parse_bytes(outlook)).kind == "human_reply"


def test_compat32_messages_classify_the_same() -> None:
    """imap-tools and older code hand over `email.message_from_bytes` (compat32) messages."""
    for path in sorted(MAIL_DIR.glob("*.eml")):
        raw = path.read_bytes()
        assert classify(email.message_from_bytes(raw)) == classify(parse_bytes(raw)), path.name
