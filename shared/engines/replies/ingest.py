"""One path for every received message, webhook or IMAP: store, match, classify, act — once.

1. `record` (one transaction): classify (pure), match the message to one of our sends by the
   ordered keys (`matching.match_keys`), only among THIS client's messages when the client is
   known (IMAP: the mailbox's client) and, for a webhook, taking the client from the matched
   row in Postgres (a key from outside only names a candidate). Our own mail seen again (a
   follow-up in Sent, a copy sent back) is recognized with `matching.is_inbound` and never
   acted on. The row is INSERTed with ON CONFLICT DO NOTHING on (client, dedupe key) and
   (provider, webhook id): a replay finds the row that is already there. Committed before
   anything is acted on.
2. `process` (one transaction per message): lock the stored row while it is unprocessed, act,
   and mark it processed with the outcome — the action and the state it guards commit together,
   so the next just-in-time check in `outreach.sending` sees a replied/bounced/suppressed lead.
   A crash between 1 and 2 leaves an unprocessed row; the next delivery, replay or recovery run
   processes it (`process_pending`).

Only a verified match acts (`trust.decide`): a bounce or complaint that came back to our signed
VERP address or quotes a keyed Message-ID only we can produce; a reply that does the same or
whose From domain passed SPF/DKIM/DMARC (trusted Authentication-Results, the provider's signed
verdicts). Spoofing a From or quoting a legacy uuid5 Message-ID is free, so an unverified match is
stored final with `verified = false` and the reason, shown to the operator, and changes nothing:
no stop, no unsubscribe, no suppression, no bounce-shield count.

Actions: human reply → lead `replied`, its enrollments stopped (and, when the campaign says so,
every enrollment of the same company in that campaign); auto-reply → nothing stops, the next
step waits `auto_reply_wait_days`; unsubscribe request → suppressed and `unsubscribed`; hard
bounce → lead `bounced` and suppressed; soft bounce → the step is tried again later, up to
`soft_bounce_retries` times, then handled as hard; complaint → suppressed for the client.
Hard bounces and complaints then run the bounce shield in the same transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from typing import Any, Literal

from sqlalchemy import Connection, Engine, text

from shared.db import transaction
from shared.lead_rules import is_free_mail
from shared.engines.outreach import suppression
from shared.engines.replies import shield
from shared.engines.replies.classify import Classification, classify
from shared.engines.replies.matching import MatchKey, dedupe_key, is_inbound, match_keys, normalize_subject
from shared.engines.replies.mime import header, sender
from shared.engines.replies.trust import AuthResult, decide, parse_authentication_results
from shared.settings import Settings

log = logging.getLogger(__name__)

Source = Literal["webhook", "imap"]
REPLY_KINDS = ("human_reply", "auto_reply", "unsubscribe_request")
BOUNCE_KINDS = ("hard_bounce", "soft_bounce")
OURS = "ignored: our own message"
UNMATCHED = "unmatched: no send of ours found"
UNVERIFIED = "unverified, nothing changed"


@dataclass(frozen=True)
class Received:
    """A message as it arrived, before anything is known about it."""

    raw: bytes
    message: Message
    source: Source
    provider: str | None = None  # standard_webhooks | mailgun
    webhook_id: str | None = None
    envelope_to: tuple[str, ...] = ()
    client_id: int | None = None  # IMAP: the mailbox's client; webhook: unknown until matched
    mailbox_id: int | None = None
    folder: str | None = None
    imap_uid: int | None = None
    auth: tuple[AuthResult, ...] = ()  # the webhook provider's own signed SPF/DKIM verdicts, if it gives them


@dataclass(frozen=True)
class Match:
    message_pk: int
    client_id: int
    lead_id: int
    campaign_id: int
    mailbox_id: int
    step: int
    by: str
    message_id: str | None = None  # the send's Message-ID when matched by it


@dataclass
class Ingested:
    """What happened to one received message."""

    inbound_id: int
    new: bool  # stored by this call (False: the same message was already recorded)
    kind: str
    evidence: str
    client_id: int | None
    match: Match | None
    ours: bool
    outcome: str | None = None
    paused: list[str] = field(default_factory=list)
    verified: bool | None = None  # None: unmatched or ours; False: stored as unverified, changed nothing
    trust: str | None = None

    @property
    def acted(self) -> bool:
        return self.match is not None and not self.ours and self.verified is not False


# -- matching ------------------------------------------------------------------------------------

_BY_MESSAGE_ID = text(
    "SELECT s.id, s.client_id, s.lead_id, s.campaign_id, s.mailbox_id, s.step, s.message_id, l.email FROM messages s "
    "JOIN leads l ON l.id = s.lead_id AND l.client_id = s.client_id "
    "WHERE s.message_id = :mid AND (CAST(:c AS bigint) IS NULL OR s.client_id = :c)")
BOUNCE_KINDS = ("hard_bounce", "soft_bounce", "complaint")
_BY_PK = text(
    "SELECT id, client_id, lead_id, campaign_id, mailbox_id, step FROM messages "
    "WHERE id = :pk AND (CAST(:c AS bigint) IS NULL OR client_id = :c)")
_BY_SENDER = text(
    "SELECT s.id, s.client_id, s.lead_id, s.campaign_id, s.mailbox_id, s.step, s.subject FROM messages s "
    "JOIN leads l ON l.id = s.lead_id AND l.client_id = s.client_id "
    "WHERE l.email = :e AND s.status IN ('sent', 'in_doubt', 'unknown') "
    "AND (CAST(:c AS bigint) IS NULL OR s.client_id = :c) ORDER BY s.sent_at DESC NULLS LAST, s.id DESC LIMIT 50")


def corroborated(lead_email: str, from_address: str, verdict: Classification) -> bool:
    """Does the message itself back up a Message-ID match?

    A Message-ID names a send, not who is writing: a real one may be forwarded, and the legacy uuid5
    ones can be computed by anyone, so a match by id must also fit the lead (whether it may then act
    is `trust.decide`'s question). A bounce or complaint must name the
    lead's address among its recipients; anything else must come from the lead's own domain (a
    colleague answering counts), or from the lead's exact address when that is free mail.
    """
    lead = lead_email.lower()
    if verdict.kind in BOUNCE_KINDS:
        return lead in {r.lower() for r in verdict.recipients}
    sender_address = (from_address or "").lower()
    lead_domain, sender_domain = lead.rpartition("@")[2], sender_address.rpartition("@")[2]
    if is_free_mail(lead_domain):
        return sender_address == lead
    return bool(sender_domain) and sender_domain == lead_domain


def find_match(conn: Connection, keys: list[MatchKey], client_id: int | None, *, from_address: str = "",
               verdict: Classification | None = None) -> Match | None:
    """The first key that names one of our sends (of `client_id` when given), read from Postgres.

    A Message-ID match counts only when the message corroborates it (`corroborated`); the signed
    VERP token and the exact sender need nothing more.
    """
    for key in keys:
        if key.kind == "message_id" and key.message_id:
            row = conn.execute(_BY_MESSAGE_ID, {"mid": key.message_id.lower(), "c": client_id}).first()
            if (row is not None and verdict is not None and not corroborated(row.email, from_address, verdict)
                    and not _from_our_mailbox(conn, row.client_id, from_address)):
                log.warning("message id %s names a send to lead_id=%s, but the message does not come from or "
                            "report that lead; not matched by message id", key.message_id, row.lead_id)
                continue
        elif key.kind == "verp" and key.message_pk:
            row = conn.execute(_BY_PK, {"pk": key.message_pk, "c": client_id}).first()
        elif key.kind == "sender_subject" and key.sender:
            rows = [r for r in conn.execute(_BY_SENDER, {"e": key.sender.lower(), "c": client_id})
                    if key.subject is None or normalize_subject(r.subject) == key.subject]
            if len({r.client_id for r in rows}) > 1:  # the same person written to by two clients: ambiguous
                log.warning("sender %s matches sends of several clients; not matched by sender", key.sender)
                continue
            row = rows[0] if rows else None
        else:
            continue
        if row is not None:
            return Match(row.id, row.client_id, row.lead_id, row.campaign_id, row.mailbox_id, row.step, key.kind,
                         row.message_id if key.kind == "message_id" else None)
    return None


def _from_our_mailbox(conn: Connection, client_id: int, from_address: str) -> bool:
    """Our own copied-back mail matches (and is then recorded as ours, never acted on)."""
    return conn.execute(text("SELECT 1 FROM mailboxes WHERE client_id = :c AND lower(from_address) = :a"),
                        {"c": client_id, "a": (from_address or "").lower()}).first() is not None


def _ours(conn: Connection, msg: Message, client_id: int | None) -> bool:
    if client_id is None:
        return False
    addresses = list(conn.execute(text("SELECT from_address FROM mailboxes WHERE client_id = :c"),
                                  {"c": client_id}).scalars())
    domains = {a.rpartition("@")[2] for a in addresses}
    return not is_inbound(msg, addresses, domains)


# -- store ---------------------------------------------------------------------------------------

_INSERT = text(
    """
    INSERT INTO inbound_messages (client_id, source, provider, webhook_id, mailbox_id, folder, imap_uid, dedupe_key,
        raw, raw_bytes, from_address, subject, message_pk, lead_id, campaign_id, match_kind, kind, evidence,
        status_code, processed_at, outcome, verified, trust, reason, rule, diagnostic)
    VALUES (:client, :source, :provider, :webhook_id, :mailbox, :folder, :uid, :key, :raw, :size, :from_, :subject,
        :pk, :lead, :campaign, :by, :kind, :evidence, :status, :processed_at, :outcome, :verified, :trust,
        :reason, :rule, :diagnostic)
    ON CONFLICT DO NOTHING
    RETURNING id
    """
)


def record(conn: Connection, received: Received, *, verp_secret: str, raw_limit: int,
           authserv_ids: tuple[str, ...] = ()) -> Ingested:
    """Store the message (or find it stored already) with its match, class and trust; nothing is acted on here."""
    msg = received.message
    verdict: Classification = classify(msg)
    keys = match_keys(msg, verp_secret, envelope_to=received.envelope_to, classification=verdict)
    match = find_match(conn, keys, received.client_id, from_address=sender(msg), verdict=verdict)
    client_id = match.client_id if match else received.client_id
    ours = _ours(conn, msg, client_id)
    key = dedupe_key(msg, received.raw)
    trust = None
    if match is not None and not ours:
        results = [*received.auth, *parse_authentication_results(msg, authserv_ids)]
        trust = decide(verdict.kind, match.by, match.message_id, sender(msg), results)
        if not trust.verified:
            log.warning("lead_id=%s message_pk=%s %s matched by %s but not acted on: %s", match.lead_id,
                        match.message_pk, verdict.kind, match.by, trust.why)
    # Our own mail, unmatched mail and unverified mail are final when stored: nothing to act on.
    final = OURS if ours else (UNMATCHED if match is None else (
        f"{UNVERIFIED} ({trust.why})" if trust is not None and not trust.verified else None))
    mailbox = received.mailbox_id if received.mailbox_id is not None else (match.mailbox_id if match else None)
    row = conn.execute(_INSERT, {
        "client": client_id, "source": received.source, "provider": received.provider,
        "webhook_id": received.webhook_id, "mailbox": mailbox, "folder": received.folder, "uid": received.imap_uid,
        "key": key, "raw": received.raw[:raw_limit], "size": len(received.raw), "from_": sender(msg)[:320] or None,
        "subject": header(msg, "Subject")[:500] or None, "pk": match.message_pk if match else None,
        "lead": match.lead_id if match else None, "campaign": match.campaign_id if match else None,
        "by": match.by if match else None, "kind": verdict.kind, "evidence": verdict.evidence[:1000],
        "status": verdict.status, "processed_at": datetime.now(UTC) if final else None, "outcome": final,
        "verified": trust.verified if trust else None, "trust": trust.why[:1000] if trust else None,
        "reason": verdict.reason, "rule": verdict.rule,
        "diagnostic": verdict.diagnostic[:1000] if verdict.diagnostic else None,
    }).first()
    if row is not None:
        return Ingested(int(row.id), True, verdict.kind, verdict.evidence, client_id, match, ours, final,
                        verified=trust.verified if trust else None, trust=trust.why if trust else None)
    existing = conn.execute(
        text("SELECT id, kind, evidence, client_id, outcome, verified, trust FROM inbound_messages WHERE "
             "(client_id IS NOT DISTINCT FROM :c AND dedupe_key = :k) OR "
             "(CAST(:p AS text) IS NOT NULL AND provider = :p AND webhook_id = :w) ORDER BY id LIMIT 1"),
        {"c": client_id, "k": key, "p": received.provider, "w": received.webhook_id}).one()
    return Ingested(int(existing.id), False, existing.kind, existing.evidence, existing.client_id, match, ours,
                    existing.outcome, verified=existing.verified, trust=existing.trust)


# -- act -----------------------------------------------------------------------------------------


def _stop_lead(conn: Connection, client_id: int, lead_id: int, reason: str, lead_status: str | None) -> int:
    if lead_status:
        conn.execute(text("UPDATE leads SET status = :s, updated_at = now() WHERE id = :l AND client_id = :c "
                          "AND status NOT IN ('unsubscribed', 'bounced')"),
                     {"s": lead_status, "l": lead_id, "c": client_id})
    return len(conn.execute(
        text("UPDATE enrollments SET status = 'stopped', stop_reason = :r WHERE lead_id = :l AND client_id = :c "
             "AND status IN ('active', 'held') RETURNING id"), {"r": reason, "l": lead_id, "c": client_id}).all())


def _human_reply(conn: Connection, m: Match) -> str:
    stopped = _stop_lead(conn, m.client_id, m.lead_id, "replied", "replied")
    policy = conn.execute(
        text("SELECT sq.stop_company_on_reply, l.company_domain, l.company_name FROM sequences sq "
             "JOIN leads l ON l.id = :l AND l.client_id = sq.client_id WHERE sq.campaign_id = :camp "
             "AND sq.client_id = :c"), {"l": m.lead_id, "camp": m.campaign_id, "c": m.client_id}).first()
    colleagues = 0
    if policy is not None and policy.stop_company_on_reply and (policy.company_domain or policy.company_name):
        colleagues = len(conn.execute(
            text("UPDATE enrollments e SET status = 'stopped', stop_reason = 'company_replied' FROM leads l "
                 "WHERE l.id = e.lead_id AND l.client_id = e.client_id AND e.campaign_id = :camp "
                 "AND e.client_id = :c AND e.status IN ('active', 'held') AND l.id <> :l AND "
                 "(CASE WHEN CAST(:d AS text) IS NOT NULL THEN lower(l.company_domain) = lower(:d) "
                 "ELSE lower(l.company_name) = lower(:n) END) RETURNING e.id"),
            {"camp": m.campaign_id, "c": m.client_id, "l": m.lead_id, "d": policy.company_domain,
             "n": policy.company_name}).all())
    return f"replied: {stopped} enrollment(s) stopped" + (f", {colleagues} at the same company" if colleagues else "")


def _auto_reply(conn: Connection, m: Match, now: datetime) -> str:
    row = conn.execute(
        text("UPDATE enrollments e SET next_due_at = greatest(e.next_due_at, CAST(:now AS timestamptz) + "
             "make_interval(days => sq.auto_reply_wait_days)) FROM sequences sq WHERE sq.campaign_id = e.campaign_id "
             "AND sq.client_id = e.client_id AND e.campaign_id = :camp AND e.lead_id = :l AND e.client_id = :c "
             "AND e.status = 'active' RETURNING e.next_due_at"),
        {"now": now, "camp": m.campaign_id, "l": m.lead_id, "c": m.client_id}).first()
    return f"auto-reply: sequence continues, next step not before {row.next_due_at.isoformat()}" if row \
        else "auto-reply: nothing due"


def _hard_bounce(conn: Connection, m: Match, code: str | None, why: str = "hard bounce") -> str:
    email = conn.execute(text("SELECT email FROM leads WHERE id = :l AND client_id = :c"),
                         {"l": m.lead_id, "c": m.client_id}).scalar_one()
    suppression.suppress(conn, m.client_id, email, reason="hard_bounce", source=f"bounce {code or ''}".strip())
    stopped = _stop_lead(conn, m.client_id, m.lead_id, "bounced", "bounced")
    return f"{why} {code or ''}: lead bounced and suppressed, {stopped} enrollment(s) stopped".replace("  ", " ")


def _soft_bounce(conn: Connection, m: Match, code: str | None, now: datetime, settings: Settings) -> tuple[str, bool]:
    """(outcome, became_hard)."""
    e = conn.execute(
        text("UPDATE enrollments SET soft_bounces = soft_bounces + 1 WHERE campaign_id = :camp AND lead_id = :l "
             "AND client_id = :c RETURNING id, soft_bounces, next_step, status"),
        {"camp": m.campaign_id, "l": m.lead_id, "c": m.client_id}).first()
    if e is None:
        return "soft bounce: lead not enrolled", False
    if e.soft_bounces > settings.soft_bounce_retries:
        return _hard_bounce(conn, m, code, why=f"soft bounce #{e.soft_bounces} (after {settings.soft_bounce_retries} "
                                              "retries) treated as hard"), True
    if e.next_step != m.step + 1 or e.status not in ("active", "finished"):
        return f"soft bounce #{e.soft_bounces}: a later step is already under way, not retried", False
    due = now + timedelta(hours=settings.soft_bounce_retry_hours)
    conn.execute(text("UPDATE messages SET status = 'failed', error = :err, updated_at = now() WHERE id = :id "
                      "AND client_id = :c AND status = 'sent'"),
                 {"err": f"soft bounce {code or ''} #{e.soft_bounces}: retried"[:500], "id": m.message_pk,
                  "c": m.client_id})
    conn.execute(text("UPDATE enrollments SET next_step = :s, next_due_at = :due, status = 'active' WHERE id = :e"),
                 {"s": m.step, "due": due, "e": e.id})
    return f"soft bounce #{e.soft_bounces} {code or ''}: step {m.step} retried from {due.isoformat()}", False


def _complaint(conn: Connection, m: Match, code: str | None) -> str:
    email = conn.execute(text("SELECT email FROM leads WHERE id = :l AND client_id = :c"),
                         {"l": m.lead_id, "c": m.client_id}).scalar_one()
    suppression.suppress(conn, m.client_id, email, reason="complaint", source=f"feedback {code or 'report'}")
    stopped = _stop_lead(conn, m.client_id, m.lead_id, "complaint", "unsubscribed")
    return f"complaint ({code or 'abuse'}): suppressed for the client, {stopped} enrollment(s) stopped"


SUPPRESSING_KINDS = ("unsubscribe_request", "hard_bounce", "complaint")


def suppress_and_stop(conn: Connection, m: Match, kind: str, code: str | None) -> str:
    """What an unsubscribe request, a hard bounce or a complaint does to its lead (the address
    suppressed for the client, the lead unsubscribed or bounced, its enrollments stopped); the outcome.

    `process` runs it for a verified message, and `replies.inbox.reclassify` for an operator who
    reclassifies a message to one of these kinds: one action, never a copy."""
    if kind == "unsubscribe_request":
        suppression.unsubscribe_message(conn, m.message_pk, source="reply")
        return "unsubscribe request: suppressed, enrollments stopped"
    if kind == "hard_bounce":
        return _hard_bounce(conn, m, code)
    if kind == "complaint":
        return _complaint(conn, m, code)
    raise ValueError(f"{kind} neither suppresses nor stops a lead")


def stored_match(conn: Connection, row: Any) -> Match | None:
    """The send a stored inbound row names (`message_pk`, `client_id`, `lead_id`, `campaign_id`,
    `match_kind`), re-read with its tenant from Postgres, not from the request; None when it is gone."""
    if row.message_pk is None:
        return None
    sent = conn.execute(text("SELECT mailbox_id, step FROM messages WHERE id = :pk AND client_id = :c"),
                        {"pk": row.message_pk, "c": row.client_id}).first()
    if sent is None:
        return None
    return Match(row.message_pk, row.client_id, row.lead_id, row.campaign_id, sent.mailbox_id, sent.step, row.match_kind)


def bounced_at_send(conn: Connection, *, message_pk: int, client_id: int, code: str | None) -> str:
    """Our own send was refused at RCPT with 5.1.x (no such recipient): the same hard bounce a DSN
    would cause (lead bounced, address suppressed, enrollments stopped), in the caller's transaction.

    No bounce-shield check: the shield's rate is over delivered sends, and this one was never delivered."""
    row = conn.execute(_BY_PK, {"pk": message_pk, "c": client_id}).first()
    if row is None:
        return "refused at RCPT: the send is gone"
    m = Match(row.id, row.client_id, row.lead_id, row.campaign_id, row.mailbox_id, row.step, "smtp")
    return _hard_bounce(conn, m, code, why="refused at RCPT")


def process(conn: Connection, inbound_id: int, *, now: datetime, settings: Settings) -> Ingested | None:
    """Act on one stored, matched, unprocessed message; None when another call already did (or nothing to do)."""
    row = conn.execute(
        text("SELECT id, client_id, message_pk, lead_id, campaign_id, match_kind, kind, evidence, status_code "
             "FROM inbound_messages WHERE id = :id AND processed_at IS NULL AND verified IS NOT FALSE "
             "FOR UPDATE SKIP LOCKED"),
        {"id": inbound_id}).first()
    if row is None:
        return None
    m = stored_match(conn, row)
    if m is None:
        conn.execute(text("UPDATE inbound_messages SET processed_at = now(), outcome = :o WHERE id = :id"),
                     {"o": UNMATCHED, "id": row.id})
        return None
    paused: list[str] = []
    hard = row.kind == "hard_bounce"
    if row.kind == "human_reply":
        outcome = _human_reply(conn, m)
    elif row.kind == "auto_reply":
        outcome = _auto_reply(conn, m, now)
    elif row.kind == "soft_bounce":
        outcome, hard = _soft_bounce(conn, m, row.status_code, now, settings)
    else:
        outcome = suppress_and_stop(conn, m, row.kind, row.status_code)
    if hard or row.kind == "complaint":
        paused = shield.check(conn, client_id=m.client_id, mailbox_id=m.mailbox_id, campaign_id=m.campaign_id,
                              now=now, thresholds=shield.Thresholds.from_settings(settings))
    full = "; ".join([outcome, *paused])
    conn.execute(text("UPDATE inbound_messages SET processed_at = now(), outcome = :o WHERE id = :id"),
                 {"o": full[:1000], "id": row.id})
    log.info("lead_id=%s message_pk=%s inbound_id=%s %s (%s): %s", m.lead_id, m.message_pk, row.id, row.kind,
             row.evidence, full)
    return Ingested(row.id, True, row.kind, row.evidence, m.client_id, m, False, full, paused)


def ingest(engine: Engine, received: Received, *, settings: Settings, now: datetime | None = None) -> Ingested:
    """Store (committed), then act (committed with the state it guards). Safe to call twice for one message."""
    secret = settings.outreach_secret.get_secret_value() if settings.outreach_secret else ""
    with transaction(engine) as conn:
        result = record(conn, received, verp_secret=secret or "-", raw_limit=settings.inbound_raw_max_bytes,
                        authserv_ids=tuple(settings.authserv_ids()))
    if result.outcome is None:  # matched, inbound, not yet acted on (new, or left by a crash)
        with transaction(engine) as conn:
            done = process(conn, result.inbound_id, now=now or datetime.now(UTC), settings=settings)
        if done is not None:
            result.outcome, result.paused = done.outcome, done.paused
    return result


def accept_unverified(engine: Engine, client_id: int, inbound_id: int, *, settings: Settings,
                      now: datetime | None = None) -> Ingested | None:
    """An operator vouches for one unverified message of this client (they checked with the lead): act on it now.

    None when the client has no such unverified message (another client's id reads the same)."""
    with transaction(engine) as conn:
        found = conn.execute(
            text("UPDATE inbound_messages SET verified = true, trust = left('accepted by the operator; was ' || "
                 "coalesce(trust, 'unverified'), 1000), processed_at = NULL, outcome = NULL "
                 "WHERE id = :id AND client_id = :c AND verified = false RETURNING id"),
            {"id": inbound_id, "c": client_id}).first()
        if found is None:
            return None
        done = process(conn, inbound_id, now=now or datetime.now(UTC), settings=settings)
    return done


def process_pending(engine: Engine, *, settings: Settings, now: datetime | None = None,
                    client_id: int | None = None) -> int:
    """Act on stored rows an earlier call recorded but did not get to (a crash between store and act)."""
    with transaction(engine) as conn:
        ids = list(conn.execute(
            text("SELECT id FROM inbound_messages WHERE processed_at IS NULL AND "
                 "(CAST(:c AS bigint) IS NULL OR client_id = :c) ORDER BY id"), {"c": client_id}).scalars())
    done = 0
    for inbound_id in ids:
        with transaction(engine) as conn:
            done += process(conn, inbound_id, now=now or datetime.now(UTC), settings=settings) is not None
    return done


def inbound_summary(conn: Connection, client_id: int) -> list[dict[str, Any]]:
    """Received messages of one client, newest first, for reports and the CLI."""
    return [dict(r) for r in conn.execute(
        text("SELECT i.id, i.source, i.kind, i.reason, i.rule, i.diagnostic, i.evidence, i.status_code, i.from_address, "
             "i.subject, i.received_at, i.outcome, i.verified, i.trust, l.email AS lead FROM inbound_messages i LEFT JOIN leads l ON l.id = i.lead_id "
             "AND l.client_id = i.client_id WHERE i.client_id = :c ORDER BY i.id DESC"), {"c": client_id}).mappings()]


def sent_messages(conn: Connection, campaign_id: int, *, step: int, mailbox_address: str | None = None,
                  exclude_email: str | None = None, limit: int = 6) -> list[Any]:
    """Sent messages of one step (id, lead, addresses, Message-ID, subject), oldest first: the demo answers them."""
    return list(conn.execute(
        text("SELECT s.id, s.lead_id, s.message_id, s.subject, l.email, m.from_address FROM messages s "
             "JOIN leads l ON l.id = s.lead_id AND l.client_id = s.client_id "
             "JOIN mailboxes m ON m.id = s.mailbox_id AND m.client_id = s.client_id "
             "WHERE s.campaign_id = :camp AND s.step = :step AND s.status = 'sent' "
             "AND (CAST(:box AS text) IS NULL OR m.from_address = :box) "
             "AND (CAST(:ex AS text) IS NULL OR l.email <> :ex) ORDER BY s.sent_at, s.id LIMIT :n"),
        {"camp": campaign_id, "step": step, "box": mailbox_address, "ex": exclude_email, "n": limit}))


def lead_outcomes(conn: Connection, campaign_id: int, lead_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Per lead: steps sent, steps that will never be sent (its sequence stopped), and the enrollment's state."""
    rows = conn.execute(
        text("SELECT e.lead_id, e.status, e.stop_reason, "
             "(SELECT count(*) FROM messages s WHERE s.campaign_id = e.campaign_id AND s.lead_id = e.lead_id "
             " AND s.status = 'sent') AS sent, "
             "(SELECT count(*) FROM sequence_steps st WHERE st.campaign_id = e.campaign_id) AS steps "
             "FROM enrollments e WHERE e.campaign_id = :camp AND e.lead_id = ANY(:ids)"),
        {"camp": campaign_id, "ids": list(lead_ids)})
    # Only a stopped sequence has sends that will never go out; an active one still continues.
    return {r.lead_id: {"sent": int(r.sent), "not_sent": int(r.steps) - int(r.sent) if r.status == "stopped" else 0,
                        "enrollment": r.status + (f": {r.stop_reason}" if r.stop_reason else "")} for r in rows}


def set_reply_policy(conn: Connection, client_id: int, campaign_id: int, *, stop_company_on_reply: bool | None = None,
                     auto_reply_wait_days: int | None = None) -> dict[str, Any]:
    """Change a campaign's reply policy (only the given fields); returns the policy now in force."""
    if auto_reply_wait_days is not None and not 0 <= auto_reply_wait_days <= 60:
        raise ValueError(f"auto-reply wait must be 0 to 60 days, got {auto_reply_wait_days}")
    row = conn.execute(
        text("UPDATE sequences SET stop_company_on_reply = coalesce(CAST(:s AS boolean), stop_company_on_reply), "
             "auto_reply_wait_days = coalesce(CAST(:w AS integer), auto_reply_wait_days) "
             "WHERE campaign_id = :camp AND client_id = :c RETURNING stop_company_on_reply, auto_reply_wait_days"),
        {"s": stop_company_on_reply, "w": auto_reply_wait_days, "camp": campaign_id, "c": client_id}).first()
    if row is None:
        raise ValueError(f"campaign {campaign_id} has no sequence yet (add a step first)")
    return dict(row._mapping)


def unmatched_summary(conn: Connection, limit: int = 100) -> list[dict[str, Any]]:
    """Webhook mail no send of ours matched (no client): sender, subject, class, when. Operators only."""
    return [dict(r) for r in conn.execute(
        text("SELECT id, provider, kind, from_address, subject, received_at FROM inbound_messages "
             "WHERE client_id IS NULL ORDER BY id DESC LIMIT :n"), {"n": limit}).mappings()]
