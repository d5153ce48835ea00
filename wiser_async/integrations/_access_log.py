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
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

__all__ = ["ACCESS_LOGGERS", "OAuthQueryFilter", "install_access_log_filter"]

# uvicorn, hypercorn, gunicorn (which also runs uvicorn's and aiohttp's
# workers, logging through its own logger) and aiohttp.
ACCESS_LOGGERS = ("uvicorn.access", "hypercorn.access", "gunicorn.access", "aiohttp.access")
# A parameter at the start of a query string too (hypercorn's %(q)s atom).
_PARAMETERS = re.compile(r"(?i)((?:^|[?&])(?:code|state|session_state)=)[^&\s\"']*")
# What every record has; anything else came from ``extra=`` (aiohttp puts the
# request line there too, which a structured formatter would write out).
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


def _mask(value: Any) -> Any:
    return _PARAMETERS.sub(r"\1***", value) if isinstance(value, str) else value


class OAuthQueryFilter(logging.Filter):
    """Masks ``code=``, ``state=`` and ``session_state=`` query values in a log record.

    It rewrites the message, each string argument and each string attribute
    given with ``extra=`` in place (a mapping of arguments keeps its own
    class: hypercorn's looks headers up by any case), so the server's own
    formatter (uvicorn's unpacks the arguments) still works.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _mask(record.msg)
        args = record.args
        if isinstance(args, MutableMapping):
            for key, value in list(args.items()):
                if isinstance(value, str):
                    args[key] = _mask(value)
        elif isinstance(args, Mapping):
            record.args = {key: _mask(value) for key, value in args.items()}
        elif isinstance(args, tuple):
            record.args = tuple(_mask(value) for value in args)
        for name, value in list(vars(record).items()):
            if name not in _STANDARD and isinstance(value, str):
                setattr(record, name, _mask(value))
        return True


_FILTER = OAuthQueryFilter()


def install_access_log_filter(names: Iterable[str] = ACCESS_LOGGERS) -> None:
    """Put the filter on the loggers named (once each; idempotent)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, OAuthQueryFilter) for existing in logger.filters):
            logger.addFilter(_FILTER)
