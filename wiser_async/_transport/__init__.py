"""The one request path: a `Session` of shared limits, and a `Requester` per account.

Every API call of the library goes through a `Requester`: signing with the
account's token (refreshing once on 401), the in-flight bound, the rate
limit, the client-wide 429 pause, retries within a budget and a time limit,
whole-attempt timeouts, size bounds, the status-to-error map, and redaction
of whatever the server sends back. Controllers and crawls call its public
methods only.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_names
from .session import DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT, UNSET, Session, Unset

if TYPE_CHECKING:
    from .requester import Requester

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_TIMEOUT",
    "UNSET",
    "Requester",
    "Session",
    "Unset",
]

# The `Requester` (with the decoders, the status map and the events it uses) is
# imported when first asked for, by the first client (PEP 562).
__getattr__, __dir__ = lazy_names(__name__, {"Requester": ".requester"}, __all__)
