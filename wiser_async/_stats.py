"""`ClientStats`: what a client, or one walk, sent and met."""

from __future__ import annotations

import attrs

__all__ = ["ClientStats"]


@attrs.define
class ClientStats:
    """Request counters.

    ``client.stats`` counts for the client and every `for_account` sibling
    sharing its pool; each walk counts its own requests in a `ClientStats` of
    its own as well, so two walks at once on one client never mix.

    Attributes:
        requests: HTTP requests sent (retries and 401 re-sends included).
        retries: Requests repeated after a transient failure or a 429.
        throttled: 429 answers received.
        failures: Calls that ended in an error, after retries.
    """

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    failures: int = 0
