"""The console's session: the tenant's API key and a CSRF token, sealed in one cookie.

The cookie is AES-256-GCM ciphertext under the service's key ring (so every admin process
opens it, and it rotates with the master keys), HttpOnly, SameSite=Strict and Path=/console.
The key never appears in a URL or a page: the browser holds only the sealed cookie.
"""

from __future__ import annotations

import hmac
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aiohttp import web

from crmsync.common.crypto import CryptoError, KeyRing

COOKIE = "crmsync_console"
PATH = "/console/"
# Associated data of the ciphertext: a webhook secret or credential sealed under the same
# key ring can never be replayed as a session, nor a session as one of them.
_CONTEXT = "console-session"
# A working day: an operator signs in once in the morning; a stolen cookie dies by night.
LIFETIME = timedelta(hours=8)


@dataclass(frozen=True)
class Session:
    key: str = field(repr=False)
    scope: str
    csrf: str = field(repr=False)
    issued_at: datetime

    @classmethod
    def new(cls, key: str, scope: str, now: datetime) -> Session:
        return cls(key, scope, secrets.token_urlsafe(32), now)

    def seal(self, keyring: KeyRing) -> str:
        plain = json.dumps(
            {"k": self.key, "s": self.scope, "c": self.csrf, "t": self.issued_at.isoformat()}
        )
        return keyring.encrypt(plain, _CONTEXT)

    @classmethod
    def open(cls, keyring: KeyRing, sealed: str | None, now: datetime) -> Session | None:
        """The session in ``sealed``, or None if there is none, it was tampered with, or it
        is older than ``LIFETIME``."""
        if not sealed:
            return None
        try:
            data = json.loads(keyring.decrypt(sealed, _CONTEXT))
            session = cls(
                str(data["k"]), str(data["s"]), str(data["c"]), datetime.fromisoformat(data["t"])
            )
        except (CryptoError, ValueError, KeyError, TypeError):
            return None
        if not session.issued_at.tzinfo or now - session.issued_at > LIFETIME:
            return None
        return session

    def csrf_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())


def set_cookie(response: web.StreamResponse, request: web.Request, sealed: str) -> None:
    response.set_cookie(
        COOKIE,
        sealed,
        path=PATH,
        httponly=True,
        samesite="Strict",
        secure=_secure(request),
        max_age=int(LIFETIME.total_seconds()),
    )


def clear_cookie(response: web.StreamResponse, request: web.Request) -> None:
    response.del_cookie(COOKIE, path=PATH, secure=_secure(request), samesite="Strict")


def _secure(request: web.Request) -> bool:
    # Behind a TLS-terminating proxy the request arrives as plain HTTP; the proxy says so.
    return request.secure or request.headers.get("X-Forwarded-Proto") == "https"


def now() -> datetime:
    return datetime.now(UTC)
