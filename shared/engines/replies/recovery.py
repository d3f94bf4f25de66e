"""Reply recovery for one mailbox: read new mail over IMAP from the stored cursor and ingest it like a webhook.

The safety net for missed webhooks. Per folder (`REPLY_FOLDERS`, default INBOX): only UIDs above
the stored cursor are fetched; a changed UIDVALIDITY makes `imap.fetch_new` rescan the folder,
and the (client, Message-ID) uniqueness of `inbound_messages` keeps the rescan from recording
anything twice. Fetches never mark mail seen. The cursor is stored only after the messages it
covers are recorded, so a crash re-reads (and dedupes) rather than skips.

What was NEW here and matched one of our sends is what the webhooks had missed: the backfill,
counted per mailbox as replies (human, auto, opt-out), bounces and complaints.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, text

from shared.db import get_engine, transaction
from shared.engines.replies import ingest
from shared.engines.replies.webhooks import parse_message
from shared.errors import ImapError, MalformedMessage
from shared.integrations import imap
from shared.integrations.smtp import lookup_secret
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)

CATEGORY = {"human_reply": "replies", "auto_reply": "replies", "unsubscribe_request": "replies",
            "hard_bounce": "bounces", "soft_bounce": "bounces", "complaint": "complaints"}


@dataclass
class MailboxRecovery:
    """What one recovery call found in one mailbox; plain, so it travels back from Modal."""

    mailbox_id: int
    address: str = ""
    fetched: int = 0
    already_recorded: int = 0
    ours: int = 0
    unmatched: int = 0
    unverified: int = 0  # matched, but neither authenticated nor quoting a token of ours: stored, not acted on
    unreadable: int = 0
    backfilled: dict[str, int] = field(default_factory=lambda: {"replies": 0, "bounces": 0, "complaints": 0})
    rescanned: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def recoverable_mailboxes(conn: Connection) -> list[int]:
    """Every mailbox with IMAP settings. Paused ones too: a mailbox paused by the shield still gets replies."""
    return list(conn.execute(text("SELECT id FROM mailboxes WHERE imap_host IS NOT NULL ORDER BY id")).scalars())


def load_cursor(conn: Connection, mailbox_id: int, folder: str) -> imap.Cursor | None:
    row = conn.execute(text("SELECT uidvalidity, last_uid FROM imap_cursors WHERE mailbox_id = :m AND folder = :f"),
                       {"m": mailbox_id, "f": folder}).first()
    return imap.Cursor(int(row.uidvalidity), int(row.last_uid)) if row else None


def save_cursor(conn: Connection, client_id: int, mailbox_id: int, folder: str, cursor: imap.Cursor) -> None:
    conn.execute(
        text("INSERT INTO imap_cursors (mailbox_id, folder, client_id, uidvalidity, last_uid) VALUES (:m, :f, :c, :v, :u) "
             "ON CONFLICT (mailbox_id, folder) DO UPDATE SET uidvalidity = EXCLUDED.uidvalidity, "
             "last_uid = EXCLUDED.last_uid, updated_at = now()"),
        {"m": mailbox_id, "f": folder, "c": client_id, "v": cursor.uidvalidity, "u": cursor.last_uid})


def recover_mailbox(mailbox_id: int, *, engine: Engine | None = None, settings: Settings | None = None,
                    now: datetime | None = None) -> MailboxRecovery:
    """Read every folder of one mailbox from its cursor and ingest what is new. Never raises for IMAP trouble."""
    settings = settings or get_settings()
    engine = engine or get_engine()
    result = MailboxRecovery(mailbox_id)
    with transaction(engine) as conn:
        box = conn.execute(text("SELECT id, client_id, from_address, username, secret_name, imap_host, imap_port, "
                                "imap_tls_mode FROM mailboxes WHERE id = :m"), {"m": mailbox_id}).first()
    if box is None or not box.imap_host:
        result.error = "no IMAP settings"
        return result
    result.address = box.from_address
    password = lookup_secret(box.secret_name)
    if password is None:
        result.error = f"secret {box.secret_name!r} is not set"
        log.warning("mailbox_id=%s not recovered: %s", mailbox_id, result.error)
        return result
    account = imap.mailbox_login(box.imap_host, box.imap_port, box.username, box.from_address, password,
                                 box.imap_tls_mode)
    # Leftovers of an earlier crash between store and act are acted on first.
    ingest.process_pending(engine, settings=settings, now=now, client_id=box.client_id)
    try:
        for folder in settings.reply_folder_list():
            _recover_folder(engine, settings, box, account, folder, result, now)
    except ImapError as exc:
        result.error = str(exc)
        log.warning("mailbox_id=%s recovery stopped: %s", mailbox_id, exc)
    return result


def _recover_folder(engine: Engine, settings: Settings, box: Any, account: imap.ImapSettings, folder: str,
                    result: MailboxRecovery, now: datetime | None) -> None:
    with transaction(engine) as conn:
        cursor = load_cursor(conn, box.id, folder)
    while True:
        fetched = imap.fetch_new(account, folder, cursor, limit=settings.imap_fetch_limit)
        if fetched.rescanned and cursor is not None:
            result.rescanned.append(folder)
        for item in fetched.messages:
            result.fetched += 1
            try:
                msg = parse_message(item.raw)
            except MalformedMessage as exc:
                result.unreadable += 1
                log.warning("mailbox_id=%s folder=%s uid=%s unreadable: %s", box.id, folder, item.uid, exc)
                continue
            done = ingest.ingest(engine, ingest.Received(item.raw, msg, "imap", client_id=box.client_id,
                                                         mailbox_id=box.id, folder=folder, imap_uid=item.uid),
                                 settings=settings, now=now or datetime.now(UTC))
            if not done.new:
                result.already_recorded += 1
            elif done.ours:
                result.ours += 1
            elif done.match is None:
                result.unmatched += 1
            elif done.verified is False:
                result.unverified += 1
            else:
                result.backfilled[CATEGORY[done.kind]] += 1
        with transaction(engine) as conn:
            save_cursor(conn, box.client_id, box.id, folder, fetched.cursor)
        cursor = fetched.cursor
        if not fetched.more:
            return


def recover_chunk(mailbox_ids: list[int]) -> dict[str, Any]:
    """The executor's unit (local thread or Modal call): one mailbox per call, normally."""
    return {"mailboxes": [recover_mailbox(m).as_dict() for m in mailbox_ids]}
