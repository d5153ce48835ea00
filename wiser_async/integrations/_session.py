"""Binding a login to the browser that started it (RFC 9700 section 4.7: login CSRF).

Every login sets a **new** random login cookie, issued by the server: a
value the browser brought is never adopted (session fixation), it only
names the browser's earlier logins, which move to the new value. The
server keeps a digest of the cookie, never the value; the cookie carries no
token, code or verifier.

With ``Secure`` (the default) the cookie is named ``__Host-wiser_login``:
browsers then refuse it from a subdomain or a plain-http page, so another
site cannot plant one (cookie tossing). Browsers treat ``http://127.0.0.1``
and ``http://localhost`` as secure, so development on loopback keeps it.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import TypeGuard

__all__ = [
    "LOGIN_COOKIE",
    "SECURE_LOGIN_COOKIE",
    "cookie_digest",
    "cookie_name",
    "new_browser_id",
    "new_cookie",
    "usable",
]

LOGIN_COOKIE = "wiser_login"
SECURE_LOGIN_COOKIE = "__Host-wiser_login"
_LENGTH = 32


def cookie_name(secure: bool) -> str:
    """The login cookie's name: ``__Host-`` prefixed when it is ``Secure``."""
    return SECURE_LOGIN_COOKIE if secure else LOGIN_COOKIE


def new_cookie() -> str:
    """A fresh login cookie value (256 bits, URL-safe)."""
    return secrets.token_urlsafe(_LENGTH)


def new_browser_id() -> str:
    """A server-side id of a browser's pending logins (never sent to the browser)."""
    return secrets.token_hex(16)


def usable(value: str | None) -> TypeGuard[str]:
    """Whether a cookie value has the shape of ours (only such values are looked up)."""
    return value is not None and 40 <= len(value) <= 64 and value.isascii()


def cookie_digest(value: str) -> str:
    """What the server keeps of a login cookie value."""
    return hashlib.sha256(f"wiser-login\0{value}".encode()).hexdigest()
