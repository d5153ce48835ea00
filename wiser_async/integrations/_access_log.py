"""No OAuth ``code`` or ``state`` in a web server's access log.

An access log writes each request line, query included, so every callback
(``/wiser/callback?code=...&state=...``) would leave its one-time code and
its state in the log. `OAuthQueryFilter` masks those values in the records
of the servers' access loggers; the integrations put it on them in
``setup()``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "AIOHTTP_ACCESS_LOGGERS",
    "ASGI_ACCESS_LOGGERS",
    "OAuthQueryFilter",
    "install_access_log_filter",
]

# uvicorn, hypercorn and gunicorn (which also runs uvicorn's workers).
ASGI_ACCESS_LOGGERS = ("uvicorn.access", "hypercorn.access", "gunicorn.access")
AIOHTTP_ACCESS_LOGGERS = ("aiohttp.access",)
_PARAMETERS = re.compile(r"(?i)([?&](?:code|state|session_state)=)[^&\s\"']*")


def _mask(value: Any) -> Any:
    return _PARAMETERS.sub(r"\1***", value) if isinstance(value, str) else value


class OAuthQueryFilter(logging.Filter):
    """Masks ``code=``, ``state=`` and ``session_state=`` query values in a log record.

    It rewrites the message and each string argument in place, so the
    server's own formatter (uvicorn's unpacks the arguments) still works.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _mask(record.msg)
        if isinstance(record.args, Mapping):
            record.args = {key: _mask(value) for key, value in record.args.items()}
        elif isinstance(record.args, tuple):
            record.args = tuple(_mask(value) for value in record.args)
        return True


_FILTER = OAuthQueryFilter()


def install_access_log_filter(names: Iterable[str]) -> None:
    """Put the filter on the loggers named (once each; idempotent)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, OAuthQueryFilter) for existing in logger.filters):
            logger.addFilter(_FILTER)
