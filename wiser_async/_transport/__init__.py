"""The one request path: a `Session` of shared limits, and a `Requester` per account.

Every API call of the library goes through a `Requester`: signing with the
account's token (refreshing once on 401), the in-flight bound, the rate
limit, the client-wide 429 pause, retries within a budget and a time limit,
whole-attempt timeouts, size bounds, the status-to-error map, and redaction
of whatever the server sends back. Controllers and crawls call its public
methods only.
"""

from .requester import Requester
from .session import DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT, UNSET, Session, Unset

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_TIMEOUT",
    "UNSET",
    "Requester",
    "Session",
    "Unset",
]
