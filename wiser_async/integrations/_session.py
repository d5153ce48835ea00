"""Binding a login to the browser that started it (RFC 9700 section 4.7: login CSRF).

The login route sets an opaque random cookie (or reuses the browser's);
the pending login keeps only its SHA-256 digest, and the callback must come
with the same cookie. The cookie carries no token, code or verifier.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["SESSION_COOKIE", "new_session_id", "session_digest", "session_matches"]

SESSION_COOKIE = "wiser_login"
_LENGTH = 32


def new_session_id() -> str:
    """A fresh opaque session id (256 bits, URL-safe)."""
    return secrets.token_urlsafe(_LENGTH)


def usable(session_id: str | None) -> bool:
    """Whether a cookie value looks like one of ours (else a new one is issued)."""
    return session_id is not None and 40 <= len(session_id) <= 64 and session_id.isascii()


def session_digest(session_id: str) -> str:
    """What the server keeps of a session id."""
    return hashlib.sha256(f"wiser-login\0{session_id}".encode()).hexdigest()


def session_matches(session_id: str | None, digest: str) -> bool:
    """Whether `session_id` is the one `digest` was made of (constant time)."""
    if session_id is None:
        return False
    return hmac.compare_digest(session_digest(session_id), digest)
