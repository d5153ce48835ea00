"""`redact_store_spec`: a store's spelling as it may be shown, its credentials masked."""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

__all__ = ["redact_store_spec"]

_MASK = "***"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# Query parameters whose value is a credential, matched in the name as redis-py
# reads it (percent-decoded) and in any case: "password", "ssl_password",
# "Username"... redis-py passes every query parameter on to its connection.
_CREDENTIAL_NAMES = ("password", "username")


def _credential(name: str) -> bool:
    decoded = unquote_plus(name).casefold()
    return any(word in decoded for word in _CREDENTIAL_NAMES)


def _value_spans(text: str, start: int) -> list[tuple[int, int, str]]:
    """(start, end, name) of each query parameter's value in `text` after `start`.

    The query starts at the first ``?``; its parameters are separated by ``&``
    (or ``;``), and a value runs to the next separator, past a ``#``: a
    fragment means nothing to a store, and a password holding a raw ``#``
    must be masked whole.
    """
    query = text.find("?", start)
    if query == -1:
        return []
    spans = []
    for segment in re.finditer(r"[^&;]+", text[query + 1 :]):
        name, equals, _ = segment.group().partition("=")
        if equals:
            begin = query + 1 + segment.start() + len(name) + 1
            spans.append((begin, query + 1 + segment.end(), name))
    return spans


def redact_store_spec(spec: str) -> str:
    """`spec` as it may be shown: credentials replaced by ``***``, the rest as written.

    Masked: a URL's user information (``redis://user:password@host`` and
    ``unix://user:password@/path``: everything between ``://`` and the last
    ``@`` that is not inside a query value, so a raw ``@``, ``/`` or ``#`` in
    a password is masked too), and the value of every query parameter whose
    name holds ``password`` or ``username`` (any case, percent-encoded or
    not: ``?password=``, ``?Password=``, ``?pass%77ord=``, ``?ssl_password=``).
    Any scheme is read alike (``redis://``, ``rediss://``, ``unix://``), and
    a mistyped URL without one (``redis//:password@host``) from its start;
    ``file:DIRECTORY`` (a path, no credential) is returned as it is.

    Only a password holding a raw ``?`` followed by ``=`` cannot be told from
    a query: percent-encode it (``%3F``), as URLs require.

    Args:
        spec: A store's one-line spelling, as `open_store` takes it.

    Returns:
        The spelling with its credentials masked.

    .. versionadded:: 0.1.0
    """
    if spec.startswith("file:") and not spec.startswith("file://"):
        return spec
    scheme = _SCHEME.match(spec)
    start = 0 if scheme is None else scheme.end()
    values = _value_spans(spec, start)
    # The user information ends at the last "@" outside every query value
    # (an "@" in "?prefix=team@acme" is the prefix's).
    userinfo_end = -1
    for at in (match.start() for match in re.finditer("@", spec[start:])):
        position = start + at
        if not any(begin <= position < end for begin, end, _ in values):
            userinfo_end = position
    if userinfo_end != -1:
        spec = f"{spec[:start]}{_MASK}{spec[userinfo_end:]}"
        start += len(_MASK)
        values = _value_spans(spec, start)
    shown = []
    written = 0
    for begin, end, name in values:
        if _credential(name):
            shown.append(spec[written:begin])
            shown.append(_MASK)
            written = end
    shown.append(spec[written:])
    return "".join(shown)
