"""Console accounts: argon2id password hashes, sign-in with lockout, session epochs.

Read and written with the application's own database role (the table is owner-only under
row-level security), never inside a tenant or operator scope.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Connection, text

from shared.errors import AccountLocked, SignInRefused, UserError
from shared.status import Role, values

MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024  # argon2 hashes anything, but a megabyte "password" is only a way to burn CPU
MAX_FAILED_LOGINS = 5  # wrong passwords in a row before the account is locked
LOCK_MINUTES = 15

_hasher = PasswordHasher()  # argon2id with the library's (RFC 9106 low-memory) parameters
# Verified against when the email is unknown, so a wrong email costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("not a password anyone has")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is signed in, as Postgres says now (re-read on every request)."""

    user_id: int
    email: str
    role: Role
    client_id: int | None  # None for an operator
    client_name: str | None
    session_epoch: int

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"


def normalize_email(email: str) -> str:
    value = (email or "").strip().lower()
    if "@" not in value or len(value) > 320 or any(c.isspace() or not c.isprintable() for c in value):
        raise UserError(f"email {email!r} is not an email address")
    return value


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise UserError(f"password: at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise UserError(f"password: at most {MAX_PASSWORD_CHARS} characters")


def hash_password(password: str) -> str:
    check_password(password)
    return _hasher.hash(password)


def create_user(conn: Connection, email: str, password: str, *, role: Role, client_id: int | None = None) -> int:
    """A new console user; an operator has no client, a viewer exactly one."""
    if role not in values(Role):
        raise UserError(f"role {role!r}: use one of {', '.join(values(Role))}")
    if (role == "operator") != (client_id is None):
        raise UserError("an operator sees every client (no --client); a viewer needs --client")
    address = normalize_email(email)
    row = conn.execute(
        text("INSERT INTO console_users (email, password_hash, role, client_id) VALUES (:e, :h, :r, :c) "
             "ON CONFLICT (email) DO NOTHING RETURNING id"),
        {"e": address, "h": hash_password(password), "r": role, "c": client_id},
    ).first()
    if row is None:
        raise UserError(f"console user {address} already exists")
    return int(row.id)


def ensure_user(conn: Connection, email: str, password: str, *, role: Role, client_id: int | None = None) -> int:
    """Create the user, or give an existing one this role, client and password (ending its sessions)."""
    if (role == "operator") != (client_id is None):
        raise UserError("an operator sees every client (no client); a viewer needs one")
    return int(conn.execute(
        text("INSERT INTO console_users (email, password_hash, role, client_id) VALUES (:e, :h, :r, :c) "
             "ON CONFLICT (email) DO UPDATE SET password_hash = EXCLUDED.password_hash, role = EXCLUDED.role, "
             "client_id = EXCLUDED.client_id, session_epoch = console_users.session_epoch + 1, failed_logins = 0, "
             "locked_until = NULL, disabled_at = NULL RETURNING id"),
        {"e": normalize_email(email), "h": hash_password(password), "r": role, "c": client_id},
    ).scalar_one())


def set_password(conn: Connection, email: str, password: str) -> None:
    """A new password; every session of the user ends (the epoch moves on) and a lock is lifted."""
    done = conn.execute(
        text("UPDATE console_users SET password_hash = :h, session_epoch = session_epoch + 1, failed_logins = 0, "
             "locked_until = NULL WHERE email = :e RETURNING id"),
        {"h": hash_password(password), "e": normalize_email(email)},
    ).first()
    if done is None:
        raise UserError(f"no console user {normalize_email(email)}")


def set_disabled(conn: Connection, email: str, disabled: bool) -> None:
    done = conn.execute(
        text("UPDATE console_users SET disabled_at = CASE WHEN :d THEN now() END, "
             "session_epoch = session_epoch + 1 WHERE email = :e RETURNING id"),
        {"d": disabled, "e": normalize_email(email)},
    ).first()
    if done is None:
        raise UserError(f"no console user {normalize_email(email)}")


def list_users(conn: Connection) -> list[dict[str, object]]:
    rows = conn.execute(text(
        "SELECT u.email, u.role, c.name AS client, u.disabled_at IS NOT NULL AS disabled, u.locked_until, "
        "u.last_login_at, u.created_at FROM console_users u LEFT JOIN clients c ON c.id = u.client_id ORDER BY u.email"))
    return [dict(r._mapping) for r in rows]


_PRINCIPAL = """
    SELECT u.id, u.email, u.role, u.client_id, c.name AS client_name, u.session_epoch, u.password_hash,
           u.locked_until, u.locked_until > now() AS locked, u.disabled_at
    FROM console_users u LEFT JOIN clients c ON c.id = u.client_id
"""


def authenticate(conn: Connection, email: str, password: str) -> Principal:
    """The principal for a correct email and password; SignInRefused (or AccountLocked) otherwise.

    The message never says which of the two was wrong, nor that an account exists or is locked, and
    an unknown or locked email costs one argon2 verification like a known one. MAX_FAILED_LOGINS wrong passwords in a row lock the account for
    LOCK_MINUTES (checked before the password, so a locked account cannot be probed).
    """
    try:
        address = normalize_email(email)
    except UserError:
        address = ""
    row = conn.execute(text(_PRINCIPAL + " WHERE u.email = :e FOR UPDATE OF u"), {"e": address}).first()
    if row is None or row.disabled_at is not None or len(password) > MAX_PASSWORD_CHARS:
        _verify(_DUMMY_HASH, password[:MAX_PASSWORD_CHARS])
        raise SignInRefused()
    if row.locked:
        _verify(_DUMMY_HASH, password)
        raise AccountLocked()
    if not _verify(row.password_hash, password):
        conn.execute(
            text("UPDATE console_users SET failed_logins = failed_logins + 1, "
                 "locked_until = CASE WHEN failed_logins + 1 >= :max THEN now() + make_interval(mins => :mins) END "
                 "WHERE id = :id"),
            {"id": row.id, "max": MAX_FAILED_LOGINS, "mins": LOCK_MINUTES})
        raise SignInRefused()
    updates = {"id": row.id, "h": _hasher.hash(password) if _hasher.check_needs_rehash(row.password_hash) else None}
    conn.execute(text("UPDATE console_users SET failed_logins = 0, locked_until = NULL, last_login_at = now(), "
                      "password_hash = coalesce(:h, password_hash) WHERE id = :id"), updates)
    return _principal(row)


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def principal(conn: Connection, user_id: int, session_epoch: int) -> Principal | None:
    """The signed-in user as the database says now: None when disabled, gone, or the session was ended."""
    row = conn.execute(text(_PRINCIPAL + " WHERE u.id = :id"), {"id": user_id}).first()
    if row is None or row.disabled_at is not None or row.session_epoch != session_epoch:
        return None
    return _principal(row)


def end_sessions(conn: Connection, user_id: int) -> None:
    """Sign out everywhere: every cookie carrying the old epoch stops working."""
    conn.execute(text("UPDATE console_users SET session_epoch = session_epoch + 1 WHERE id = :id"), {"id": user_id})


def _principal(row: object) -> Principal:
    return Principal(int(row.id), row.email, row.role, row.client_id, row.client_name,  # type: ignore[attr-defined]
                     int(row.session_epoch))  # type: ignore[attr-defined]


def locked_until(conn: Connection, email: str) -> datetime | None:
    return conn.execute(text("SELECT locked_until FROM console_users WHERE email = :e"),
                        {"e": normalize_email(email)}).scalar()
