"""`open_store`: a token store from a one-line spelling (a command-line option, a setting)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

from ._crypto import Encryption
from ._file import FileTokenStore
from ._memory import MemoryTokenStore
from ._protocol import TokenStore
from ._redaction import redact_store_spec
from ._redis import RedisTokenStore

__all__ = ["open_store"]

_EXPECTED = "expected memory, file:DIRECTORY, or a redis://, rediss:// or unix:// URL"
_REDIS_SCHEMES = ("redis", "rediss", "unix")


def open_store(spec: str, *, encryption: Encryption | None = None) -> TokenStore:
    """A token store from its one-line spelling.

    - ``memory``: a `MemoryTokenStore` (tokens live as long as the process;
      `encryption` does not apply, as nothing is at rest).
    - ``file:DIRECTORY``: a `FileTokenStore` in DIRECTORY (``~`` is expanded).
    - ``redis://[[USER]:PASSWORD@]HOST[:PORT][/DB][?prefix=NAME]``, ``rediss://``
      (TLS) or ``unix:///PATH/TO/SOCKET[?db=N][&prefix=NAME]``: a
      `RedisTokenStore`; ``prefix`` names the key prefix (default
      ``wiser-tokens``), other query parameters go to redis-py's ``from_url``
      (``socket_connect_timeout`` and ``socket_timeout`` default to
      `RedisTokenStore.DEFAULT_TIMEOUT`).

    Args:
        spec: The spelling.
        encryption: Encryption at rest for the file and Redis stores.

    Returns:
        The store; the caller closes it with ``aclose()``.

    Raises:
        ValueError: `spec` is malformed; the message says how and shows it
            through `redact_store_spec`.
        ImportError: a Redis store without the ``redis`` package.

    .. versionadded:: 0.1.0
    """
    if spec == "memory":
        return MemoryTokenStore()
    if spec.startswith("file:"):
        return FileTokenStore(_directory(spec), encryption=encryption)
    scheme, separator, _ = spec.partition("://")
    if separator and scheme.lower() in _REDIS_SCHEMES:
        url, prefix = _redis_url(spec)
        try:
            if prefix is None:
                return RedisTokenStore(url, encryption=encryption)
            return RedisTokenStore(url, prefix=prefix, encryption=encryption)
        except ImportError as exc:
            raise ImportError(
                "a Redis token store needs the redis package: pip install 'wiser-async[redis]'"
            ) from exc
    raise ValueError(f"{_EXPECTED}, not {redact_store_spec(spec)!r}")


def _directory(spec: str) -> Path:
    path = spec.removeprefix("file:")
    if path.startswith("//"):
        raise ValueError(
            "file: takes a directory path (file:/var/lib/tokens), not a URL: "
            f"{redact_store_spec(spec)!r}"
        )
    if not path.strip():
        raise ValueError("file: needs a directory: file:DIRECTORY")
    return Path(path).expanduser()


def _redis_url(spec: str) -> tuple[str, str | None]:
    """The URL for redis-py, without ``prefix``; and the prefix, if given."""
    shown = redact_store_spec(spec)
    try:
        parts = urlsplit(spec)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{shown} is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme == "unix":
        if not parts.path or parts.path == "/":
            raise ValueError(f"{shown} names no socket: unix:///PATH/TO/SOCKET")
    else:
        if not parts.hostname:
            raise ValueError(f"{shown} names no host: {scheme}://HOST[:PORT][/DB]")
        database = parts.path.strip("/")
        if database and not database.isdigit():
            raise ValueError(f"{shown}: the database is a number (/0, /1...), not {database!r}")
        del port  # parsed only to refuse a malformed one
    if parts.fragment:
        raise ValueError(f"{shown}: a #fragment means nothing to Redis")
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [value for name, value in pairs if name == "prefix"]
    if len(prefixes) > 1:
        raise ValueError(f"{shown}: prefix is given {len(prefixes)} times")
    if prefixes and not prefixes[0]:
        raise ValueError(f"{shown}: prefix is empty (?prefix=NAME)")
    rest = [(name, value) for name, value in pairs if name != "prefix"]
    # Not urlunsplit: it writes unix:///PATH as unix:/PATH, which redis-py refuses.
    url = f"{parts.scheme}://{parts.netloc}{parts.path}"
    if rest:
        url += f"?{urlencode(rest)}"
    return url, prefixes[0] if prefixes else None
