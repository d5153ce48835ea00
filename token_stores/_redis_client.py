"""The Redis client as the Redis store sees it: where it connects, its options, its errors.

Everything here reads a redis-py client or error for the store's messages and
set-up; nothing sends a command but the subscription's.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from ._errors import CorruptTokenData, ForeignToken

if TYPE_CHECKING:
    from redis.asyncio import ConnectionPool, Redis, RedisCluster
    from redis.asyncio.client import PubSub

__all__ = [
    "check_account",
    "check_options",
    "client_from_url",
    "close_subscription",
    "described",
    "location_of",
    "new_subscription",
    "shown_key",
    "unwrapped",
    "url_timeouts",
    "wrong_type",
]


@contextmanager
def unwrapped() -> Iterator[None]:
    """Let an error of the locked block out as itself, not in the task group's ExceptionGroup."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            error = group.exceptions[0]
            raise error from error.__cause__
        raise


def wrong_type(error: BaseException) -> bool:
    """Whether `error` is Redis saying a key holds another type than the command's."""
    from redis.exceptions import ResponseError

    # Searched, not a prefix: Redis 6 wraps an error raised in a script
    # ("ERR Error running script ... WRONGTYPE ..."). Our commands' errors
    # never echo their arguments, so a token value cannot match.
    return isinstance(error, ResponseError) and "WRONGTYPE" in str(error)


# What an operator reads for an error's cause (the class name alone says little).
_ERRNO_WORDS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset",
    errno.ECONNABORTED: "connection aborted",
    errno.EPIPE: "connection closed",
    errno.ETIMEDOUT: "timed out",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.EADDRNOTAVAIL: "address not available",
    errno.ENOENT: "no such socket file",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}

# Errors the server answers, by redis-py's class name.
_REDIS_WORDS = (
    ("AuthenticationError", "authentication failed"),
    ("AuthorizationError", "not authorized"),
    ("NoPermissionError", "no permission (ACL)"),
    ("ReadOnlyError", "read-only (a replica?)"),
    ("OutOfMemoryError", "out of memory"),
    ("BusyLoadingError", "loading its data"),
    ("MaxConnectionsError", "too many connections"),
)


def _reason(error: BaseException) -> str:
    """The cause of a Redis client's error in words, from it and the errors it wraps.

    redis-py keeps the socket's error as the cause (or context) of its own.
    Empty if nothing better than the class name is known.
    """
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for link in chain:
        words = _words(link)
        if words:
            return words
    return ""


def _words(error: BaseException) -> str:
    from redis import exceptions

    if isinstance(error, socket.gaierror):
        if error.errno == socket.EAI_AGAIN:
            return "name does not resolve now (temporary failure of the resolver)"
        return "name does not resolve"
    if isinstance(error, TimeoutError | exceptions.TimeoutError):
        return "timed out"
    if isinstance(error, ssl.SSLCertVerificationError):
        return "TLS certificate not trusted"
    if isinstance(error, ssl.SSLError):
        return "TLS failed"
    if isinstance(error, OSError) and error.errno is not None:
        return _ERRNO_WORDS.get(error.errno) or os.strerror(error.errno).lower()
    for name, words in _REDIS_WORDS:
        # By name: not every redis-py version the extra allows has each class.
        kind = getattr(exceptions, name, None)
        if isinstance(kind, type) and isinstance(error, kind):
            return words
    if isinstance(error, exceptions.ConnectionError) and "closed by server" in str(error):
        return "connection closed by the server"
    return ""


def location_of(redis: Any) -> str:
    """Where a client connects, as a URL without credentials (a cluster: "cluster")."""
    pool = getattr(redis, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    if not isinstance(kwargs, dict):
        return "cluster" if hasattr(redis, "get_nodes") else "a client"
    database = kwargs.get("db", 0)
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={database}"
    if "host" in kwargs:
        connection = getattr(pool, "connection_class", type).__name__
        scheme = "rediss" if "SSL" in connection else "redis"
        return f"{scheme}://{kwargs['host']}:{kwargs.get('port', 6379)}/{database}"
    service = getattr(pool, "service_name", None)
    return f"sentinel service {service}" if service else "a client"


def described(error: BaseException) -> str:
    """An error of the Redis client as a store message shows it: the cause, then the class."""
    reason = _reason(error)
    return f"{reason} ({type(error).__name__})" if reason else type(error).__name__


def client_from_url(url: str, timeout: float) -> Redis:
    """A redis-py client for `url`, with `timeout` where the URL sets none (`url_timeouts`)."""
    try:
        import redis.asyncio as redis_asyncio
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "RedisTokenStore needs redis, which is not installed: pip install 'wiser-async[redis]'",
            name=exc.name,
        ) from exc
    client: Redis = redis_asyncio.from_url(url, **url_timeouts(url, timeout))
    return client


def url_timeouts(url: str, default: float) -> dict[str, float]:
    """The timeouts a client made from `url` is given: `default` where the URL sets none.

    Without them redis-py before 8 waits as long as the system does (minutes
    for a host that drops packets), and forever for a server that never answers.
    """
    given = dict(parse_qsl(urlsplit(url).query))
    timeouts = {}
    if "socket_timeout" not in given:
        timeouts["socket_timeout"] = default
    if "socket_connect_timeout" not in given:
        # As redis-py: the socket's timeout, if the URL gives one, bounds connecting too.
        # A value that is no number is left to redis-py, which says so.
        with contextlib.suppress(ValueError):
            timeouts["socket_connect_timeout"] = float(given.get("socket_timeout", default))
    return timeouts


def check_options(redis: Any, location: str) -> None:
    """Refuse a URL option redis-py's connections do not take (``?Password=``), now.

    redis-py would raise the TypeError at the first command, far from its cause.
    Making a connection object connects nothing.
    """
    pool = redis.connection_pool
    try:
        pool.connection_class(**pool.connection_kwargs)
    except TypeError as exc:
        raise ValueError(f"{location}: an option redis-py does not take ({exc})") from None


def shown_key(redis_key: bytes | str) -> str:
    """A Redis key name as a log line shows it."""
    # Our own key names are ASCII; show anything else escaped.
    text = (
        redis_key.decode("ascii", "backslashreplace") if isinstance(redis_key, bytes) else redis_key
    )
    return repr(text)


def check_account(stored: bytes | str | None, key: str, where: str) -> None:
    """Refuse a token hash whose ``key`` field is not `key` (`stored`: that field).

    Raises:
        CorruptTokenData: the hash names no account.
        ForeignToken: it names another: copied or renamed from another
            account's hash. Which one is not shown: the hash is not trusted.
    """
    if stored is None:
        raise CorruptTokenData(
            f"{where} names no account: not a token of this store; delete it to store a new token"
        )
    # A client made with decode_responses=True gives text, otherwise bytes.
    if (stored if isinstance(stored, str) else stored.decode("utf-8", "replace")) != key:
        raise ForeignToken(
            f"{where} holds the token of another account key (copied there?): refused; "
            "delete it to store a new token"
        )


def new_subscription(redis: Redis | RedisCluster) -> tuple[PubSub, ConnectionPool | None]:
    """A subscription object for `redis`, and the pool of its own if it has one."""
    from redis.asyncio import ConnectionPool
    from redis.asyncio.client import PubSub

    pool = getattr(redis, "connection_pool", None)
    if type(pool) is ConnectionPool:
        # A pool of its own: a subscription lost and made again across a
        # Redis restart must not hand a connection in an odd state to the
        # commands (seen with redis-py 8: the first command after a restart
        # failed). Sentinel and Cluster clients subscribe through their own.
        own = ConnectionPool(connection_class=pool.connection_class, **pool.connection_kwargs)
        return PubSub(own), own
    return redis.pubsub(), None


async def close_subscription(pubsub: PubSub | None, pool: ConnectionPool | None) -> None:
    """Close what `new_subscription` made (either may be None)."""
    from redis.exceptions import RedisError

    with contextlib.suppress(RedisError, OSError):  # a connection already gone
        if pubsub is not None:
            # Untyped in redis-py before 8.2, typed since.
            await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
        if pool is not None:
            await pool.disconnect()
