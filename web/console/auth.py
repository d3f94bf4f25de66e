"""Console sessions and CSRF: a signed cookie names the user and their session epoch; Postgres decides the rest.

The session cookie is `{"u": user id, "e": session epoch, "s": random session id}` signed with
CONSOLE_SECRET (itsdangerous, timestamped, SESSION_SECONDS max age), HttpOnly, SameSite=Lax, and
Secure when the console is served over https. It carries no role and no client: on every request
the user is read again from Postgres (`shared.engines.users.users.principal`), so disabling a user, a
password change or signing out (all bump the epoch) ends every session at once.

CSRF: every form carries `csrf`, an HMAC of the session id under the secret (checked in constant
time before any action). The sign-in form, which has no session yet, is tied the same way to a
short-lived signed pre-session cookie, so another site cannot sign a browser in to its account.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

from shared.errors import CsrfRefused, NotSignedIn

SESSION_COOKIE = "outbound_session"
LOGIN_COOKIE = "outbound_login"
SESSION_SECONDS = 12 * 3600
LOGIN_FORM_SECONDS = 30 * 60


@dataclass(frozen=True, slots=True)
class Session:
    user_id: int
    epoch: int
    sid: str


class Sessions:
    """Signing and reading the session and sign-in cookies with one secret."""

    def __init__(self, secret: str, *, secure: bool) -> None:
        if len(secret) < 16:
            raise ValueError("CONSOLE_SECRET must be at least 16 characters")
        self._secret = secret.encode()
        self._sessions = URLSafeTimedSerializer(secret, salt="outbound-console-session")
        self._logins = URLSafeTimedSerializer(secret, salt="outbound-console-login")
        self.secure = secure

    def cookie_options(self, max_age: int) -> dict[str, Any]:
        return {"max_age": max_age, "httponly": True, "samesite": "lax", "secure": self.secure, "path": "/console"}

    # -- the session ---------------------------------------------------------------------------
    def issue(self, user_id: int, epoch: int) -> tuple[str, Session]:
        session = Session(user_id, epoch, secrets.token_urlsafe(18))
        return self._sessions.dumps({"u": user_id, "e": epoch, "s": session.sid}), session

    def read(self, cookie: str | None) -> Session:
        if not cookie:
            raise NotSignedIn()
        try:
            data = self._sessions.loads(cookie, max_age=SESSION_SECONDS)
            return Session(int(data["u"]), int(data["e"]), str(data["s"]))
        except (BadSignature, KeyError, TypeError, ValueError) as exc:
            raise NotSignedIn() from exc

    # -- CSRF ----------------------------------------------------------------------------------
    def csrf_token(self, sid: str) -> str:
        return hmac.new(self._secret, f"csrf|{sid}".encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, sid: str, token: str | None) -> None:
        if not token or not hmac.compare_digest(self.csrf_token(sid), token):
            raise CsrfRefused()

    # -- the sign-in form ----------------------------------------------------------------------
    def login_nonce(self) -> tuple[str, str]:
        """(cookie value, the form's csrf token) for a fresh sign-in form."""
        nonce = secrets.token_urlsafe(18)
        return self._logins.dumps(nonce), self.csrf_token(f"login|{nonce}")

    def check_login_form(self, cookie: str | None, token: str | None) -> None:
        try:
            nonce = self._logins.loads(cookie or "", max_age=LOGIN_FORM_SECONDS)
        except BadSignature as exc:
            raise CsrfRefused() from exc
        self.check_csrf(f"login|{nonce}", token)
