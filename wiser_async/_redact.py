"""Blanking out the secrets this process knows from server text, and escaping control characters.

A server may echo what it was sent: a 401 body quoting the bearer token, an
``error_description`` quoting the refresh token, the client secret or the
whole ``Authorization: Basic`` header, a header repeating the authorization
code. Every piece of server text that enters an error, a failure record, an
output file or a log line passes through a `Secrets` first, so none of those
ever holds a secret: the ones this process knows, in every form they were
sent in, and whatever stands where a credential stands (``Bearer ...``,
``Basic ...``, ``refresh_token=...``) even when it is not known here.
"""

from __future__ import annotations

import base64
import contextvars
import logging
import re
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

__all__ = [
    "MASK",
    "Secrets",
    "escape_controls",
    "install_log_filter",
    "mask_named_secrets",
    "request_secrets",
]

MASK = "***"
# Shorter values would blank out ordinary words; every real secret is longer.
_MIN_LENGTH = 6
# Codes and verifiers of recent authorizations, kept for errors of their callbacks.
_RECENT_ONE_TIME = 256
# C0 and C1 controls, DEL, and the bidirectional overrides that can disguise text.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def escape_controls(text: str) -> str:
    """`text` with control characters shown as ``\\xNN`` / ``\\uNNNN`` escapes."""
    if not _CONTROLS.search(text):
        return text
    return _CONTROLS.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def _percent_encoded(text: str) -> str:
    return quote(text, safe="")


# As sent: raw, form-urlencoded (a body echoed back), percent-encoded (a URL).
_ENCODINGS = (str, quote_plus, _percent_encoded)


def _variants(secret: str) -> set[str]:
    return {encode(secret) for encode in _ENCODINGS}


def _basic_variants(client_id: str, client_secret: str) -> set[str]:
    """The base64 of ``client_id:client_secret`` in every form a Basic header may carry it.

    RFC 6749 section 2.3.1 form-urlencodes id and secret before joining them
    (percent-encoding a space is what the library sends; ``+`` what a form
    encoder gives); many clients join them raw. Unpadded too: a server may
    quote it without its ``=``.
    """
    found: set[str] = set()
    for encode in _ENCODINGS:
        pair = f"{encode(client_id)}:{encode(client_secret)}"
        encoded = base64.b64encode(pair.encode()).decode("ascii")
        found |= {encoded, encoded.rstrip("=")}
    return found


class Secrets:
    """The secrets one `WiserOAuth` knows, by account, to redact from server text.

    Per account: the access and refresh tokens in use and the ones they
    replaced (requests still in flight carry those). For the whole client:
    the client secret, its HTTP Basic credential, and the codes and PKCE
    verifiers of recent authorizations.
    """

    def __init__(self) -> None:
        self._shared: set[str] = set()
        self._one_time: OrderedDict[str, None] = OrderedDict()
        self._accounts: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
        _LIVE.add(self)

    def __repr__(self) -> str:
        return f"Secrets(accounts={len(self._accounts)})"

    def add_client(self, client_id: str, client_secret: str | None) -> None:
        """The client's secret, and the Basic credential it makes with `client_id`."""
        if not client_secret:
            return
        if len(client_secret) >= _MIN_LENGTH:
            self._shared |= _variants(client_secret)
        # Masked whatever the secret's length: the id makes it long and specific.
        self._shared |= _basic_variants(client_id, client_secret)

    def add_one_time(self, *secrets: str | None) -> None:
        """Secrets of one authorization (a code, a verifier)."""
        for secret in secrets:
            if secret and len(secret) >= _MIN_LENGTH:
                for variant in _variants(secret):
                    self._one_time[variant] = None
        while len(self._one_time) > _RECENT_ONE_TIME * 3:
            self._one_time.popitem(last=False)

    def set_tokens(self, account: str, *secrets: str | None) -> None:
        """The tokens `account` uses now; the previous ones are kept one generation more."""
        current = frozenset(
            variant
            for secret in secrets
            if secret and len(secret) >= _MIN_LENGTH
            for variant in _variants(secret)
        )
        previous = self._accounts.get(account)
        if previous is not None and previous[0] == current:
            return
        self._accounts[account] = (current, previous[0] if previous else frozenset())

    def _of(self, account: str | None, *, tokens: bool = True) -> Iterable[str]:
        yield from self._shared
        yield from self._one_time
        if not tokens:
            return
        if account is None:
            for current, previous in self._accounts.values():
                yield from current
                yield from previous
            return
        known = self._accounts.get(account)
        if known is not None:
            yield from known[0]
            yield from known[1]

    def redact(self, text: str, account: str | None = None, *, tokens: bool = True) -> str:
        """`text` with every known secret (of `account`, or of all accounts) as ``***``.

        Credentials this process does not know are masked by where they stand
        (see `mask_named_secrets`). Control characters are escaped too, so
        server text cannot forge lines or hide what follows it.

        Args:
            text: Server text.
            account: Whose tokens to look for; None: every account's.
            tokens: False: only the client's secrets, codes and verifiers.
        """
        return escape_controls(mask_named_secrets(self.mask(text, account, tokens=tokens)))

    def mask(self, text: str, account: str | None = None, *, tokens: bool = True) -> str:
        """`text` with every known secret as ``***``, nothing else changed (for JSON text)."""
        found = [secret for secret in self._of(account, tokens=tokens) if secret in text]
        # Longest first: an encoded form may contain the raw one.
        for secret in sorted(found, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text

    def contains_secret(self, data: bytes, account: str | None = None) -> bool:
        """True if `data` holds a known secret (a quick test before redacting a line)."""
        return any(secret.encode() in data for secret in self._of(account))


_LIVE: weakref.WeakSet[Secrets] = weakref.WeakSet()

# The secrets and account of the request being sent in this task, for log records
# written while it runs (httpcore2 logs response headers at DEBUG).
request_secrets: contextvars.ContextVar[tuple[Secrets, str | None] | None] = contextvars.ContextVar(
    "wiser_async_request_secrets", default=None
)


# Secrets a log line can show before this process knows them (the code in a
# redirect's Location header, logged as it arrives): masked by their names.
_NAMED_SECRETS = re.compile(
    r"(?i)\b(code|code_verifier|refresh_token|access_token|id_token|client_secret)=[^&\s'\"]+"
)
# An authorization scheme and its token68 (RFC 9110 section 11.4).
_CREDENTIALS = re.compile(r"(?i)\b(bearer|basic)\s+([A-Za-z0-9\-._~+/]+=*)")
# A word after a scheme ("Basic authentication", "Bearer error=...") is left
# as it is; a credential is longer than this, or holds a digit, + or /.
_PLAIN_WORD = re.compile(r"[A-Za-z\-._~]{1,15}=*")


def mask_named_secrets(text: str) -> str:
    """`text` with ``code=...``-like parameters and ``Bearer``/``Basic`` credentials masked."""
    text = _NAMED_SECRETS.sub(lambda match: f"{match.group(1)}={MASK}", text)
    return _CREDENTIALS.sub(_mask_credential, text)


def _mask_credential(match: re.Match[str]) -> str:
    if _PLAIN_WORD.fullmatch(match.group(2)):
        return match.group()
    return f"{match.group(1)} {MASK}"


class _RedactingFilter(logging.Filter):
    """Redacts every log record of the HTTP stack with the secrets this process knows."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record: leave it to logging
            return True
        context = request_secrets.get()
        redacted = message
        if context is not None:
            # The request's own account: its tokens are the ones a server can echo.
            redacted = context[0].redact(redacted, context[1])
        for secrets in list(_LIVE):
            redacted = secrets.redact(redacted, tokens=context is None)
        redacted = mask_named_secrets(redacted)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_FILTER = _RedactingFilter()
# Loggers of the HTTP stack that can print what a server sent (httpcore2 logs
# response headers at DEBUG). Filters do not reach child loggers: each is named.
_HTTP_LOGGERS = (
    "httpx2",
    "stamina",
    "httpcore2.connection",
    "httpcore2.http11",
    "httpcore2.http2",
    "httpcore2.proxy",
    "httpcore2.socks",
    # The library's own: their messages are built from redacted text, checked once more.
    "wiser_async.oauth",
    "wiser_async.http",
    "wiser_async.crawl",
    "wiser_async.events",
    "wiser_async.queue",
    "wiser_async.web",
)


def install_log_filter() -> None:
    """Put the redacting filter on the HTTP stack's loggers (once; idempotent).

    It runs only for records a logger is enabled for, so it costs nothing
    while debug logging is off.
    """
    for name in _HTTP_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
