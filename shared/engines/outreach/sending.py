"""The send engine: what a worker (Modal or a local thread) does for one chunk of send items.

A chunk is started (QUEUED → IN_PROGRESS, fenced by attempt, as enrichment items are), then worked in
rounds of at most one item per mailbox (`rounds`), so that each (campaign, lead, step) is sent at
most once and each mailbox's messages still go one at a time. Per round:
1. in ONE transaction, a fixed number of statements whatever the round's size: the lease renewal, one
   context query (which locks each enrollment row and reads a message already made for the step and a
   follow-up's thread), the suppression check for every address, the just-in-time checks on those
   fresh rows (lead unsubscribed, suppressed, replied, bounced or invalid; campaign not active; step
   pushed back (auto-reply); subscription inactive; mailbox paused; already sent; outside the lead's
   window), the rendering, then the mailbox rows locked in id order and one guarded UPDATE for their
   slots (`capacity.lock`, `capacity.reserve_many`) and one INSERT of the `messages` rows as 'sending' (with the step's A/B
   variant the lead gets, `chosen_variant`, and their headers) — committed *before* any SMTP command;
2. SMTP, one message per transaction, the round's mailboxes side by side on threads, each on a
   pooled connection to its account (`SESSIONS`, `smtp.Session`: RSET between messages; a connection
   found dead at RSET is replaced before anything is offered, and any error that leaves the session
   unknown closes it); each reply taken as the definite answer it is (RFC 5321,
   `errors.SmtpError.outcome`): 4xx → the message is 'deferred' and the step is due again after
   the backoff (`retry`), same row and Message-ID, until it fails with the server's words; 5xx →
   'failed', the enrollment stopped; 5.1.x to RCPT → a hard bounce for the lead through the
   replies engine's bounce path; the mailbox's own server failing (connection, TLS, AUTH, 421,
   5xx to MAIL FROM) → 'failed' (the step stays due) and the mailbox backs off, paused with the
   server's words after `retry.PAUSE_AFTER` permanent failures. Only no reply after the final
   dot marks it 'in_doubt' and holds the enrollment: never resent automatically (the reconciler
   decides);
3. after the round's 250s: the messages 'sent' with the servers' replies and the enrollments advanced
   (one statement, `mark_sent_many`), the items DONE — one transaction, committed before any of those
   mailboxes' next message is prepared. A worker lost between a 250 and that commit leaves the row
   'sending': in doubt, never resent (recovery and the reconciler settle it).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address, HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from sqlalchemy import Connection, Engine, text

from shared import leases, liveness, mailids, workitems
from shared.db import get_engine, transaction
from shared.engines.outreach import capacity, retry, suppression, templates, timezones
from shared.engines.outreach.variants import OWN, variant_for
from shared.engines.replies import ingest
from shared.errors import BOUNCED, DEFERRED, IN_DOUBT, REFUSED, OutreachConfigError, SmtpError
from shared.integrations import mailauth, smtp
from shared.leases import SEND_LEASE_SECONDS
from shared.settings import Settings, get_settings
from shared.status import ACTIVE_SUBSCRIPTIONS, ItemStatus
from shared.workitems import Outcome, Started

log = logging.getLogger(__name__)

FENCED = "fenced"  # not a skip reason: the attempt lost its item to recovery
STOP_LEAD_STATUSES = {"unsubscribed": "unsubscribed", "replied": "replied", "bounced": "bounced",
                      "invalid": "invalid_lead"}


class SendLog(logging.LoggerAdapter):
    """Every line carries lead_id, item_id, batch_id and, once known, message and mailbox ids."""

    def process(self, msg: Any, kwargs: Any) -> tuple[str, Any]:
        c = self.extra or {}
        ids = " ".join(f"{k}={c[k]}" for k in ("lead_id", "item_id", "batch_id", "message_pk", "mailbox_id")
                       if c.get(k) is not None)
        return f"{ids} {msg}", kwargs


@dataclass(slots=True)
class SendReport:
    """What one chunk did; small and plain so it travels back from Modal."""

    requested: int = 0
    started: int = 0
    not_startable: int = 0
    sent: int = 0
    done: int = 0
    failed: int = 0
    in_doubt: int = 0
    retried: int = 0
    deferred: int = 0  # 4xx: tried again after the backoff
    bounced: int = 0  # 5.1.x to RCPT: a hard bounce
    mailbox_failures: int = 0  # the mailbox's server failed before a message was offered
    fenced: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


# Everything the JIT checks and the messages of a round need, in one statement: each enrollment
# locked (a lead's sends and replies wait on it), its mailbox's settings (the slots' own locks come
# later, `capacity.lock`, held only for the few statements that reserve), a message already made for the
# step (a retry keeps its row and Message-ID), the id a new one will take (its unsubscribe token
# goes in the headers the INSERT writes) and, for a follow-up, its thread (RFC 5322 §3.6.4:
# References = the parent's References + the parent's Message-ID; step 1's subject).
# A dozen joins cost ~35 ms to plan and 0.4 ms to run: keep the written order (the work items first,
# then one row per join by key) so planning is cheap; the SET LOCAL goes in the same round trip.
_CONTEXT = text(
    """
    SET LOCAL join_collapse_limit = 1;
    SELECT ex.id AS existing_id, ex.status AS existing_status, ex.message_id AS existing_message_id,
           ex.variant AS existing_variant,
           nextval(pg_get_serial_sequence('messages', 'id')) AS new_message_pk,
           w.id AS item_id, w.step, w.mailbox_id, w.client_id, b.campaign_id,
           c.subscription_status, camp.status AS campaign_status, camp.name AS campaign_name,
           l.id AS lead_id, l.email, l.first_name, l.last_name, l.title, l.company_name, l.company_domain,
           l.phone, l.country, l.linkedin_url, l.status AS lead_status, l.enrichment,
           e.id AS enrollment_id, e.status AS enrollment_status, e.next_step, e.next_due_at, e.timezone, e.mailbox_id AS sticky_mailbox,
           m.from_address, m.from_name, m.smtp_host, m.smtp_port, m.tls_mode, m.username, m.secret_name,
           m.status AS mailbox_status, m.status_reason AS mailbox_reason,
           m.keeps_verp, m.dkim_selector, m.dkim_secret_name,
           st.subject_template, st.body_template,
           (SELECT json_agg(json_build_array(v.variant, v.subject_template, v.body_template))
            FROM step_variants v WHERE v.campaign_id = b.campaign_id AND v.step = w.step) AS variants,
           nx.delay_amount AS next_delay, nx.delay_unit AS next_unit,
           sq.weekdays, sq.start_hour, sq.end_hour,
           th.first_subject, th.parent_message_id, th.thread_references
    FROM work_items w
    JOIN batches b ON b.id = w.batch_id AND b.client_id = w.client_id
    JOIN clients c ON c.id = w.client_id
    JOIN campaigns camp ON camp.id = b.campaign_id AND camp.client_id = w.client_id
    JOIN leads l ON l.id = w.lead_id AND l.client_id = w.client_id
    JOIN enrollments e ON e.campaign_id = b.campaign_id AND e.lead_id = w.lead_id AND e.client_id = w.client_id
    JOIN mailboxes m ON m.id = w.mailbox_id AND m.client_id = w.client_id
    JOIN sequences sq ON sq.campaign_id = b.campaign_id AND sq.client_id = w.client_id
    LEFT JOIN sequence_steps st ON st.campaign_id = b.campaign_id AND st.step = w.step
    LEFT JOIN sequence_steps nx ON nx.campaign_id = b.campaign_id AND nx.step = w.step + 1
    LEFT JOIN messages ex ON ex.campaign_id = b.campaign_id AND ex.lead_id = w.lead_id AND ex.step = w.step
    LEFT JOIN LATERAL (
        SELECT (array_agg(t.subject ORDER BY t.step))[1] AS first_subject,
               (array_agg(t.message_id ORDER BY t.step DESC))[1] AS parent_message_id,
               string_agg(t.message_id, ' ' ORDER BY t.step) AS thread_references
        FROM messages t WHERE w.step > 1 AND t.campaign_id = b.campaign_id AND t.lead_id = w.lead_id
          AND t.step < w.step AND t.status IN ('sent', 'in_doubt', 'unknown')) th ON true
    WHERE w.id = ANY(:items) AND w.client_id = :client
    ORDER BY w.id
    FOR UPDATE OF e
    """
)


def jit_skip_reason(ctx: Any, now: datetime, suppressed: str | None) -> str | None:
    """The checks right before a send, on rows read in the sending transaction (`suppressed`: the
    suppression entry's reason for the lead's address, read there too); None means go."""
    if ctx.lead_status in STOP_LEAD_STATUSES:
        return STOP_LEAD_STATUSES[ctx.lead_status]
    if suppressed is not None:
        return "suppressed"
    if ctx.subscription_status not in ACTIVE_SUBSCRIPTIONS:
        return "subscription_inactive"
    if ctx.campaign_status != "active":
        return f"campaign_{ctx.campaign_status}" if ctx.campaign_status in ("paused", "completed") else "campaign_inactive"
    if ctx.enrollment_id is None or ctx.enrollment_status != "active":
        return "not_enrolled"
    if ctx.next_step != ctx.step:
        return "step_already_sent" if ctx.next_step > ctx.step else "step_out_of_order"
    if ctx.subject_template is None:
        return "step_missing"
    # Pushed back after it was queued (an auto-reply's wait, a soft bounce's retry): not yet.
    if ctx.next_due_at > now:
        return "not_due"
    if ctx.mailbox_status != "active":
        return "mailbox_paused"
    if ctx.sticky_mailbox is not None and ctx.sticky_mailbox != ctx.mailbox_id:
        return "wrong_mailbox"
    # An item queued near the window's end, or recovered later, must not go out at night.
    if not timezones.is_open(now, ctx.timezone, timezones.Window(frozenset(ctx.weekdays), ctx.start_hour, ctx.end_hour)):
        return "outside_window"
    return None


@dataclass(slots=True)
class Prepared:
    message_pk: int
    message: EmailMessage
    envelope_from: str
    account: smtp.SmtpAccount
    raw: bytes | None = None  # the exact bytes to send when we DKIM-sign (the signature covers them)


@dataclass(slots=True)
class Turn:
    """One item's part in a round: its context row, then either what to deliver or why not."""

    item: Started
    ctx: Any = None
    prepared: Prepared | None = None
    skip: str | None = None
    error: str | None = None  # preparing it raised: the item fails, the round goes on
    reply: str | SmtpError | None = None  # the server's answer to the final dot, or the failure

    @property
    def log(self) -> SendLog:
        extra = {"lead_id": self.item.lead_id, "item_id": self.item.id, "batch_id": self.item.batch_id}
        if self.prepared is not None:
            extra.update(message_pk=self.prepared.message_pk, mailbox_id=self.ctx.mailbox_id)
        return SendLog(log, extra)


def follow_up_subject(first_subject: str) -> str:
    """A follow-up stays in step 1's thread: step 1's subject as a reply (its own subject template is unused)."""
    return first_subject if first_subject.lower().startswith("re:") else f"Re: {first_subject}"


class _ParsedHeaders(HeaderRegistry):
    """The standard header registry, remembering the header it parsed for each (name, text): parsing is most
    of the cost of building a message, and a round's From, Date, MIME and List-Unsubscribe-Post headers are
    the same text every time. Parsed headers are immutable, so sharing them between messages is safe."""

    def __init__(self) -> None:
        super().__init__()
        self._parsed = functools.lru_cache(maxsize=4096)(super().__call__)

    def __call__(self, name: str, value: Any) -> Any:
        return self._parsed(name, value) if type(value) is str else super().__call__(name, value)


MESSAGE_POLICY = policy.default.clone(header_factory=_ParsedHeaders())


@functools.lru_cache(maxsize=1024)
def _from_header(name: str, address: str) -> str:
    """A mailbox's From text (its display name quoted or encoded as needed); one per mailbox."""
    return str(Address(name, addr_spec=address))


def build_message(*, ctx: Any, rendered: templates.Rendered, message_id: str, first_subject: str | None,
                  in_reply_to: str | None, references: str | None, unsubscribe_url: str,
                  unsubscribe_mailto: str | None, now: datetime) -> EmailMessage:
    msg = EmailMessage(policy=MESSAGE_POLICY)
    msg["From"] = _from_header(ctx.from_name or "", ctx.from_address)
    msg["To"] = ctx.email
    msg["Subject"] = rendered.subject if first_subject is None else follow_up_subject(first_subject)
    msg["Date"] = format_datetime(now.astimezone(UTC))
    msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = references or in_reply_to
    targets = [f"<{unsubscribe_url}>"] + ([f"<mailto:{unsubscribe_mailto}?subject=unsubscribe>"]
                                          if unsubscribe_mailto else [])
    msg["List-Unsubscribe"] = ", ".join(targets)
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"  # RFC 8058, exactly
    msg.set_content(rendered.body)
    return msg


_INSERT_SENDING = text(
    "INSERT INTO messages (id, client_id, campaign_id, lead_id, step, mailbox_id, work_item_id, attempt, message_id, "
    "in_reply_to, subject, variant, status, reserved_at, headers) VALUES (:id, :c, :camp, :l, :s, :m, :w, :a, :mid, "
    ":irt, :subj, :v, 'sending', :now, CAST(:h AS jsonb))")
_RETRY_SENDING = text(
    "UPDATE messages SET status = 'sending', error = NULL, retry_at = NULL, mailbox_id = :m, work_item_id = :w, "
    "attempt = :a, reserved_at = :now, headers = CAST(:h AS jsonb), updated_at = now() WHERE id = :id "
    "AND status IN ('failed', 'deferred') RETURNING id")


def chosen_variant(ctx: Any) -> tuple[str | None, templates.StepTemplate]:
    """The variant this send renders, and its template: a retry keeps the one its message recorded; a first
    send of a step with variants takes `variants.variant_for` over 'A' (the step's own text) and theirs; a
    step without variants sends its own text and records none (NULL)."""
    others = {label: (subject, body) for label, subject, body in ctx.variants or []}
    if ctx.existing_id is not None:
        label = ctx.existing_variant
    else:
        label = variant_for(ctx.lead_id, ctx.campaign_id, ctx.step, [OWN, *others]) if others else None
    subject, body = others.get(label, (ctx.subject_template, ctx.body_template))
    return label, templates.StepTemplate(ctx.step, subject, body, None if label in (None, OWN) else label)


# JIT reasons that stop the lead's enrollment for good, not just this send.
STOPS_ENROLLMENT = frozenset({"unsubscribed", "replied", "bounced", "invalid_lead", "suppressed"})
_STOP = text("UPDATE enrollments e SET status = 'stopped', stop_reason = v.reason FROM unnest(CAST(:ids AS bigint[]), "
             "CAST(:reasons AS text[])) AS v(id, reason) WHERE e.id = v.id AND e.status = 'active'")


def _prepare_round(conn: Connection, turns: Sequence[Turn], now: datetime, settings: Settings) -> None:
    """One transaction for a round (at most one item per mailbox): the JIT checks, the mailbox slots and
    the 'sending' rows, in a fixed number of statements whatever the round's size. Fills each turn's
    `ctx` and `prepared`, or its `skip` / `error`; the caller commits before any SMTP command."""
    # Still ours? A slow chunk (SMTP timeouts) may have outlived its lease and been recovered:
    # renew it round by round, and drop what recovery took.
    lost = set(workitems.extend_lease(conn, [(t.item.id, t.item.attempt) for t in turns],
                                      lease_seconds=SEND_LEASE_SECONDS).lost)
    live = [t for t in turns if t.item.id not in lost]
    for t in turns:
        if t.item.id in lost:
            t.skip = FENCED
    if not live:
        return
    client = live[0].item.client_id
    rows = {r.item_id: r for r in conn.execute(_CONTEXT, {"items": [t.item.id for t in live], "client": client})}
    suppressed = suppression.reasons(conn, client, [r.email for r in rows.values()])
    stops: list[tuple[int, str]] = []
    for t in live:
        t.ctx = ctx = rows.get(t.item.id)
        t.skip = "not_enrolled" if ctx is None else _checked(ctx, now, suppressed.get(ctx.email))
        if t.skip in STOPS_ENROLLMENT and ctx.enrollment_id:
            stops.append((ctx.enrollment_id, t.skip))
    if stops:
        conn.execute(_STOP, {"ids": [e for e, _ in stops], "reasons": [r for _, r in stops]})
    # Rendered before the slots are taken: a send that cannot be prepared takes no slot.
    writes: dict[int, dict[str, Any]] = {}
    for t in live:
        if t.skip is None:
            try:
                t.prepared, writes[t.item.id] = _prepared(t.ctx, t.item, now, settings)
            except Exception as exc:  # noqa: BLE001 - this item fails with the reason; the round goes on
                t.error = f"prepare: {type(exc).__name__}: {exc}"[:500]
                t.log.exception("could not prepare the send")
    ready = [t for t in live if t.prepared is not None]
    # The mailboxes locked only now, after the rendering, so concurrent rounds wait on each other briefly.
    locked = capacity.lock(conn, client_id=client, mailbox_ids=[t.ctx.mailbox_id for t in ready]) if ready else {}
    slots = capacity.reserve_many(conn, client_id=client, locked=locked, now=now)
    for t in ready:
        t.skip = slots.get(t.ctx.mailbox_id, "mailbox_missing")
        if t.skip is not None:
            t.prepared = None
    # The messages rows are written only under the enrollments' locks, and the writes are guarded
    # (the unique (campaign, lead, step), `status IN ('failed', 'deferred')`): nothing sends twice.
    fresh = [writes[t.item.id] for t in ready if t.prepared is not None and t.ctx.existing_id is None]
    if fresh:
        conn.execute(_INSERT_SENDING, fresh)
    for t in ready:  # a send that failed or was deferred is tried again under the same row and Message-ID
        if t.prepared is not None and t.ctx.existing_id is not None:
            conn.execute(_RETRY_SENDING, writes[t.item.id]).scalar_one()
    workitems.finish(conn, [Outcome(t.item.id, t.item.attempt, ItemStatus.FAILED, error=t.error) if t.error else
                            Outcome(t.item.id, t.item.attempt, ItemStatus.SKIPPED, skip_reason=t.skip)
                            for t in live if t.error or (t.skip is not None and t.prepared is None)])


def _checked(ctx: Any, now: datetime, suppressed: str | None) -> str | None:
    """The JIT checks, then a message already made for the step: None means go."""
    reason = jit_skip_reason(ctx, now, suppressed)
    if reason is None and ctx.existing_id is not None and ctx.existing_status not in ("failed", "deferred"):
        return "already_sent" if ctx.existing_status == "sent" else f"message_{ctx.existing_status}"
    return reason


def _prepared(ctx: Any, item: Started, now: datetime, settings: Settings) -> tuple[Prepared, dict[str, Any]]:
    """The message for one checked send (rendered, threaded, signed) and the row its 'sending' write takes."""
    variant, template = chosen_variant(ctx)
    rendered = templates.render(template, templates.lead_context(ctx._mapping, ctx._mapping))
    domain = ctx.from_address.rpartition("@")[2]
    # A retry keeps the stored id (an old uuid5 one too): the Sent-folder reconciler looks for that one.
    pk = ctx.new_message_pk if ctx.existing_id is None else ctx.existing_id
    mid = ctx.existing_message_id if ctx.existing_id is not None else \
        mailids.message_id(ctx.campaign_id, ctx.lead_id, ctx.step, domain, settings.message_id_key())
    first_subject, parent = ctx.first_subject, ctx.parent_message_id
    secret = settings.outreach_secret.get_secret_value() if settings.outreach_secret else ""
    url = f"{settings.public_base_url.rstrip('/')}/u/{suppression.make_token(pk, secret)}"
    msg = build_message(ctx=ctx, rendered=rendered, message_id=mid, first_subject=first_subject, in_reply_to=parent,
                        references=ctx.thread_references, unsubscribe_url=url,
                        unsubscribe_mailto=settings.unsubscribe_mailto, now=now)
    row = {"id": pk, "m": ctx.mailbox_id, "w": item.id, "a": item.attempt, "now": now,
           "h": json.dumps({k: str(v) for k, v in msg.items()})}
    if ctx.existing_id is None:
        row.update(c=ctx.client_id, camp=ctx.campaign_id, l=ctx.lead_id, s=ctx.step, mid=mid, irt=parent, v=variant,
                   subj=rendered.subject if first_subject is None else first_subject)
    account = smtp.SmtpAccount(ctx.smtp_host, ctx.smtp_port, ctx.tls_mode, ctx.username, ctx.secret_name)
    # A relay that rewrites MAIL FROM (keeps_verp false) gets our own address; its bounces then come back
    # to the mailbox and are known by the keyed Message-ID they quote (reply recovery reads them).
    envelope = mailids.verp_address(pk, domain, secret) if ctx.keeps_verp else ctx.from_address
    return Prepared(pk, msg, envelope, account, _dkim_signed(ctx, msg, domain)), row


def _dkim_signed(ctx: Any, msg: EmailMessage, domain: str) -> bytes | None:
    """The message signed with the mailbox's DKIM key (h= in mailauth.SIGNED_HEADERS), or None when it has none."""
    if not ctx.dkim_selector:
        return None
    key = mailauth.private_key(ctx.dkim_secret_name, smtp.lookup_secret(ctx.dkim_secret_name))
    return mailauth.sign(msg.as_bytes(policy=policy.SMTP), domain=domain, selector=ctx.dkim_selector, private_key=key)


def preflight(settings: Settings | None = None) -> None:
    """Check every setting a send needs, before anything is claimed. No network call.

    Raises OutreachConfigError naming the first missing or bad one: OUTREACH_SECRET (unsubscribe
    links, VERP addresses and the Message-ID key are signed with it), PUBLIC_BASE_URL (the
    unsubscribe links point there), UNSUBSCRIBE_MAILTO, SMTP_TIMEOUT_SECONDS, OUTREACH_CHUNK_SIZE."""
    from urllib.parse import urlsplit

    settings = settings or get_settings()
    if settings.outreach_secret is None or not settings.outreach_secret.get_secret_value().strip():
        raise OutreachConfigError("OUTREACH_SECRET is not set: unsubscribe links, VERP addresses and Message-IDs "
                                  "cannot be signed (set it in the environment, `.env` or the `outreach` Secret)")
    url = (settings.public_base_url or "").strip()
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and url.isascii() and url.isprintable()
    except ValueError:
        ok = False
    if not ok:
        raise OutreachConfigError("PUBLIC_BASE_URL must be an http(s) URL with a host, like https://unsub.example.com "
                                  "(the unsubscribe links point there)")
    mailto = settings.unsubscribe_mailto
    if mailto is not None and ("@" not in mailto or not mailto.isprintable() or " " in mailto.strip()):
        raise OutreachConfigError("UNSUBSCRIBE_MAILTO must be one email address")
    if not settings.smtp_timeout_seconds > 0:
        raise OutreachConfigError(f"SMTP_TIMEOUT_SECONDS must be positive, got {settings.smtp_timeout_seconds}")
    if settings.outreach_chunk_size < 1:
        raise OutreachConfigError(f"OUTREACH_CHUNK_SIZE must be at least 1, got {settings.outreach_chunk_size}")


# Idle SMTP sessions kept between chunks in this process (a warm Modal container, a local worker).
SESSIONS = smtp.SessionPool()
MAX_DELIVERY_THREADS = 32  # a round's mailboxes delivered side by side, at most this many at once


def send_chunk(item_ids: Sequence[int], *, now: datetime | None = None, worker_id: str | None = None,
               engine: Engine | None = None, settings: Settings | None = None,
               after_reply: Callable[[int], None] | None = None) -> SendReport:
    """Work one chunk of QUEUED send items to a terminal status, round by round (`rounds`). `now` is the
    scheduler's clock (real time when None); `after_reply` is a test seam run between the 250 and the commit."""
    t0 = time.perf_counter()
    settings = settings or get_settings()
    preflight(settings)  # before starting anything: a misconfigured worker leaves its items QUEUED
    engine = engine or get_engine()
    report = SendReport(requested=len(item_ids))
    with transaction(engine) as conn:
        # A short lease renewed while the chunk works, under a shared.liveness token: if this process
        # dies, a rerun takes its items over at once (same host, or its session gone) or in 30 s.
        worker_id = worker_id or liveness.me(conn).token()
        started, not_startable = workitems.start(conn, item_ids, worker_id=worker_id,
                                                 lease_seconds=SEND_LEASE_SECONDS)
    report.started, report.not_startable = len(started), len(not_startable)
    width = min(MAX_DELIVERY_THREADS, len({i.mailbox_id for i in started}))
    with leases.Renewer(engine, [(i.id, i.attempt) for i in started], lease_seconds=SEND_LEASE_SECONDS) as renewer, \
            ThreadPoolExecutor(max_workers=max(1, width), thread_name_prefix="smtp") as threads:
        for items in rounds(started):
            _send_round(items, now or datetime.now(UTC), engine, settings, report, after_reply,
                        threads if width > 1 else None)
            for item in items:
                renewer.drop(item.id)
    report.seconds = time.perf_counter() - t0
    return report


def rounds(started: Sequence[Started]) -> list[list[Started]]:
    """The chunk's items in rounds of at most one item per mailbox, in order (one client each). A round is
    checked, reserved and written 'sending' in one transaction, delivered (its mailboxes side by side), and
    its sent messages committed in one more: a mailbox's next message is prepared only after its previous
    one is committed, so the JIT checks stay one SMTP exchange from each send."""
    out: dict[tuple[int, int], list[Started]] = {}
    depth: dict[tuple[int, int | None], int] = {}
    for item in started:
        key = (item.client_id, item.mailbox_id)
        depth[key] = depth.get(key, -1) + 1
        out.setdefault((item.client_id, depth[key]), []).append(item)
    return list(out.values())


def _send_round(items: Sequence[Started], now: datetime, engine: Engine, settings: Settings, report: SendReport,
                after_reply: Callable[[int], None] | None = None, threads: ThreadPoolExecutor | None = None) -> None:
    turns = [Turn(item) for item in items]
    try:
        with transaction(engine) as conn:
            _prepare_round(conn, turns, now, settings)
        # committed: the 'sending' rows exist before any SMTP command
    except Exception as exc:
        log.exception("item_ids=%s could not prepare the round's sends", ",".join(str(i.id) for i in items))
        with transaction(engine) as conn:
            workitems.finish(conn, [Outcome(i.id, i.attempt, ItemStatus.FAILED,
                                            error=f"prepare: {type(exc).__name__}: {exc}"[:500]) for i in items])
        report.failed += len(items)
        return
    for t in turns:
        if t.skip == FENCED:
            t.log.warning("lease lost to recovery before sending; not sent")
            report.fenced += 1
        elif t.error is not None:
            report.failed += 1
        elif t.prepared is None:
            t.log.info("skipped: %s", t.skip)
            report.skip(t.skip or "?")
    ready = [t for t in turns if t.prepared is not None]
    _deliver(ready, settings, threads)
    sent = [t for t in ready if isinstance(t.reply, str)]
    if sent:
        if after_reply is not None:
            for t in sent:
                after_reply(t.prepared.message_pk)
        with transaction(engine) as conn:
            mark_sent_many(conn, [(t.prepared.message_pk, t.reply, t.ctx) for t in sent], sent_at=now)
            moved = workitems.finish(conn, [Outcome(t.item.id, t.item.attempt, ItemStatus.DONE) for t in sent])
        report.sent += len(sent)
        report.done += len(moved.moved)
        report.fenced += len(moved.lost)
        for t in sent:
            t.log.info("sent step %d to %s via %s: %s", t.ctx.step, t.ctx.email, t.ctx.from_address, t.reply)
    for t in ready:
        if isinstance(t.reply, SmtpError):
            _after_failure(engine, t.item, t.prepared.message_pk, t.ctx, t.reply, report, t.log, now)


def _deliver(ready: Sequence[Turn], settings: Settings, threads: ThreadPoolExecutor | None) -> None:
    """SMTP for a round's prepared messages (one per mailbox), side by side on `threads`, each on a pooled
    session to its mailbox's account. Each turn gets its reply, or the SmtpError."""
    def deliver(t: Turn) -> None:
        p = t.prepared
        session = SESSIONS.take(p.account, timeout=settings.smtp_timeout_seconds)
        try:
            t.reply = session.send(p.message, envelope_from=p.envelope_from, recipient=t.ctx.email, raw=p.raw)
        except SmtpError as exc:
            t.reply = exc
        finally:
            SESSIONS.give(session)

    if threads is None or len(ready) == 1:
        for t in ready:
            deliver(t)
    else:
        list(threads.map(deliver, ready))


_STEP_AFTER = text(
    "SELECT e.id AS enrollment_id, e.timezone, nx.delay_amount AS next_delay, nx.delay_unit AS next_unit "
    "FROM messages s JOIN enrollments e ON e.campaign_id = s.campaign_id AND e.lead_id = s.lead_id "
    "AND e.client_id = s.client_id LEFT JOIN sequence_steps nx ON nx.campaign_id = s.campaign_id "
    "AND nx.step = s.step + 1 WHERE s.id = :id")
# One statement for a round: the messages sent, their mailboxes' failures over (their servers took a
# message), the leads' enrollments moved to their next steps.
_MARK_SENT = text(
    """
    WITH v AS (
        SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:replies AS text[]), CAST(:dues AS timestamptz[]),
                             CAST(:lasts AS boolean[]), CAST(:enrollments AS bigint[]))
                      AS v(id, reply, due, last, enrollment_id)
    ), sent AS (
        UPDATE messages s SET status = 'sent', smtp_reply = v.reply, sent_at = :t, error = NULL, updated_at = now()
        FROM v WHERE s.id = v.id AND s.status IN ('sending', 'in_doubt', 'unknown') RETURNING s.id, s.step, s.mailbox_id
    ), healed AS (
        UPDATE mailboxes m SET smtp_failures = 0, smtp_last_error = NULL, smtp_retry_at = NULL
        FROM (SELECT DISTINCT mailbox_id FROM sent) h
        WHERE m.id = h.mailbox_id AND (m.smtp_failures > 0 OR m.smtp_retry_at IS NOT NULL)
    )
    UPDATE enrollments e SET next_step = greatest(e.next_step, sent.step + 1), last_sent_at = :t, next_due_at = v.due,
        mailbox_id = coalesce(e.mailbox_id, sent.mailbox_id),
        status = CASE WHEN v.last THEN 'finished' WHEN e.status = 'held' THEN 'active' ELSE e.status END
    FROM sent JOIN v ON v.id = sent.id WHERE e.id = v.enrollment_id AND e.status IN ('active', 'held')
    """
)


def mark_sent(conn: Connection, message_pk: int, *, reply: str, sent_at: datetime, ctx: Any | None = None) -> None:
    """The message is sent: record the reply and move the lead's enrollment to its next step. `ctx`: the
    send's context row (its enrollment and the next step's delay), else read here (the reconciler)."""
    step = ctx if ctx is not None else conn.execute(_STEP_AFTER, {"id": message_pk}).first()
    mark_sent_many(conn, [(message_pk, reply, step)], sent_at=sent_at)


def mark_sent_many(conn: Connection, sent: Sequence[tuple[int, str, Any]], *, sent_at: datetime) -> None:
    """`mark_sent` for many messages in one statement: (message pk, the server's reply, its context row or
    None when it has no enrollment)."""
    dues, lasts = [], []
    for _, _, step in sent:
        last = step is None or step.next_delay is None
        lasts.append(last)
        dues.append(sent_at if last else timezones.add_delay(sent_at, step.next_delay, step.next_unit, step.timezone))
    conn.execute(_MARK_SENT, {"ids": [pk for pk, _, _ in sent], "replies": [r[:500] for _, r, _ in sent],
                              "t": sent_at, "dues": dues, "lasts": lasts,
                              "enrollments": [step.enrollment_id if step is not None else None for _, _, step in sent]})


def _after_failure(engine: Engine, item: Started, message_pk: int, ctx: Any, exc: SmtpError,
                   report: SendReport, ilog: SendLog, now: datetime) -> None:
    with transaction(engine) as conn:
        if exc.outcome == IN_DOUBT:
            # RFC 1047: the server may have accepted it. Never resend on our own; hold the lead.
            conn.execute(text("UPDATE messages SET status = 'in_doubt', error = :e, updated_at = now() "
                              "WHERE id = :id AND status = 'sending'"), {"e": str(exc), "id": message_pk})
            conn.execute(text("UPDATE enrollments SET status = 'held' WHERE id = :e AND status = 'active'"),
                         {"e": ctx.enrollment_id})
            _finish_failed(conn, item, f"in doubt after the final dot: {exc}")
            report.in_doubt += 1
            ilog.warning("in doubt after the final dot (not resent): %s", exc)
            return
        if exc.outcome == DEFERRED:
            _deferred(conn, item, message_pk, ctx, exc, report, ilog, now)
            return
        conn.execute(text("UPDATE messages SET status = 'failed', error = :e, updated_at = now() "
                          "WHERE id = :id AND status = 'sending'"), {"e": str(exc), "id": message_pk})
        report.failed += 1
        if exc.outcome == BOUNCED:
            outcome = ingest.bounced_at_send(conn, message_pk=message_pk, client_id=ctx.client_id, code=exc.status)
            _finish_failed(conn, item, f"refused at RCPT ({outcome}): {exc}")
            report.bounced += 1
            ilog.warning("recipient refused, hard bounce: %s (%s)", exc, outcome)
        elif exc.outcome == REFUSED:
            conn.execute(text("UPDATE enrollments SET status = 'stopped', stop_reason = 'rejected' WHERE id = :e "
                              "AND status IN ('active', 'held')"), {"e": ctx.enrollment_id})
            _finish_failed(conn, item, f"refused ({exc.stage}): {exc}")
            ilog.warning("refused by the server, not retried: %s", exc)
        else:  # the mailbox's server: the step stays due (another mailbox or a later try takes it)
            paused = _mailbox_failed(conn, ctx, exc, now)
            _finish_failed(conn, item, f"mailbox failed before sending ({'permanent' if exc.permanent else 'transient'}"
                                       f"{', mailbox paused' if paused else ''}): {exc}")
            report.retried += 1
            report.mailbox_failures += 1
            ilog.warning("mailbox failed before sending (%s): %s", "paused" if paused else "backing off", exc)


def _finish_failed(conn: Connection, item: Started, error: str) -> None:
    workitems.finish(conn, [Outcome(item.id, item.attempt, ItemStatus.FAILED, error=error[:500])])


def _deferred(conn: Connection, item: Started, message_pk: int, ctx: Any, exc: SmtpError, report: SendReport,
              ilog: SendLog, now: datetime) -> None:
    """4xx: not delivered. The step is due again after the backoff, same row and Message-ID, or fails at the end."""
    deferrals = conn.execute(text("UPDATE messages SET deferrals = deferrals + 1 WHERE id = :id RETURNING deferrals"),
                             {"id": message_pk}).scalar_one()
    at = retry.deferral_retry_at(deferrals, now)
    if at is None:
        conn.execute(text("UPDATE messages SET status = 'failed', error = :e, updated_at = now() WHERE id = :id "
                          "AND status = 'sending'"),
                     {"e": f"deferred {deferrals} times, last: {exc}"[:500], "id": message_pk})
        conn.execute(text("UPDATE enrollments SET status = 'stopped', stop_reason = 'deferred_too_long' "
                          "WHERE id = :e AND status IN ('active', 'held')"), {"e": ctx.enrollment_id})
        _finish_failed(conn, item, f"deferred {deferrals} times, given up: {exc}")
        report.failed += 1
        ilog.warning("deferred %d times, given up: %s", deferrals, exc)
        return
    conn.execute(text("UPDATE messages SET status = 'deferred', error = :e, retry_at = :at, updated_at = now() "
                      "WHERE id = :id AND status = 'sending'"), {"e": str(exc)[:500], "at": at, "id": message_pk})
    conn.execute(text("UPDATE enrollments SET next_due_at = greatest(next_due_at, :at) WHERE id = :e "
                      "AND status = 'active'"), {"at": at, "e": ctx.enrollment_id})
    _finish_failed(conn, item, f"deferred #{deferrals} (retry at {at.isoformat()}): {exc}")
    report.deferred += 1
    ilog.info("deferred #%d, retry at %s: %s", deferrals, at.isoformat(), exc)


def _mailbox_failed(conn: Connection, ctx: Any, exc: SmtpError, now: datetime) -> bool:
    """Count one failure per backoff step of an active mailbox (concurrent sends that fail together count
    once, a paused one no more); True: this failure paused it."""
    row = conn.execute(
        text("UPDATE mailboxes SET smtp_failures = smtp_failures + CASE WHEN status = 'active' AND "
             "(smtp_retry_at IS NULL OR smtp_retry_at <= :now) THEN 1 ELSE 0 END, smtp_last_error = :e "
             "WHERE id = :m AND client_id = :c RETURNING smtp_failures"), {"now": now, "e": str(exc)[:500], "m": ctx.mailbox_id, "c": ctx.client_id}).first()
    if row is None:
        return False
    if retry.should_pause(row.smtp_failures, transient=exc.transient):
        conn.execute(text("UPDATE mailboxes SET status = 'paused', paused_at = :now, status_reason = :r, "
                          "smtp_retry_at = NULL WHERE id = :m AND status = 'active'"),
                     {"now": now, "m": ctx.mailbox_id,
                      "r": f"SMTP failed {row.smtp_failures} times: {exc}"[:500]})
        return True
    conn.execute(text("UPDATE mailboxes SET smtp_retry_at = greatest(coalesce(smtp_retry_at, :at), :at) WHERE id = :m"),
                 {"at": retry.mailbox_retry_at(row.smtp_failures, now), "m": ctx.mailbox_id})
    return False


def in_doubt_from_gone_workers(conn: Connection, gone: Mapping[str, str]) -> int:
    """'sending' rows of attempts held by workers that are provably gone (`workitems.gone_workers`):
    in doubt now (DATA may have run), their leads held, never resent; run before `recover` hands the
    items back. Returns how many."""
    if not gone:
        return 0
    rows = conn.execute(
        text("WITH moved AS (UPDATE messages s SET status = 'in_doubt', error = 'worker gone while sending: ' || g.why, "
             "updated_at = now() FROM work_items w JOIN unnest(CAST(:gone AS text[]), CAST(:why AS text[])) "
             "AS g(worker, why) ON g.worker = w.worker_id "
             "WHERE w.status = 'IN_PROGRESS' AND s.work_item_id = w.id AND s.attempt = w.attempts "
             "AND s.status = 'sending' RETURNING s.campaign_id, s.lead_id, s.client_id) "
             "UPDATE enrollments e SET status = 'held' FROM moved WHERE e.campaign_id = moved.campaign_id "
             "AND e.lead_id = moved.lead_id AND e.client_id = moved.client_id AND e.status = 'active' RETURNING e.id"),
        {"gone": list(gone), "why": list(gone.values())}).all()
    return len(rows)


def stale_sending(conn: Connection, *, older_than_seconds: float) -> int:
    """'sending' rows whose worker vanished (lease long gone) are in doubt: we cannot know if DATA ran."""
    rows = conn.execute(
        text("WITH moved AS (UPDATE messages s SET status = 'in_doubt', error = 'worker lost while sending', "
             "updated_at = now() WHERE s.status = 'sending' AND s.updated_at < now() - make_interval(secs => :t) "
             "RETURNING s.campaign_id, s.lead_id, s.client_id) "
             "UPDATE enrollments e SET status = 'held' FROM moved WHERE e.campaign_id = moved.campaign_id "
             "AND e.lead_id = moved.lead_id AND e.client_id = moved.client_id AND e.status = 'active' RETURNING e.id"),
        {"t": older_than_seconds}).all()
    return len(rows)
