"""Store specs shown with credentials masked; an unreachable Redis named by its cause.

Real sockets and a real Redis: a closed port, a name that cannot resolve
(RFC 6761's ``.invalid``), and a listening socket of the test's own that
never answers.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from tests.support import free_port
from token_stores import (
    CorruptTokenData,
    ForeignToken,
    LockTimeout,
    RedisTokenStore,
    StoreUnavailable,
    Token,
    TokenStoreError,
    open_store,
    redact_store_spec,
)

SECRET = "hunter2-SECRET"
USER = "operator-SECRETUSER"


def make_token() -> Token:
    return Token(access_token="access-SECRET-1", refresh_token="refresh-SECRET-1", expires_at=2e9)


def shown(error: BaseException) -> str:
    return f"{error} {error!r}"


# -- redact_store_spec ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("memory", "memory"),
        ("file:/var/lib/tokens@2", "file:/var/lib/tokens@2"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        (f"redis://{USER}:{SECRET}@h:6379/0", "redis://***@h:6379/0"),
        (f"redis://:{SECRET}@h", "redis://***@h"),
        (f"redis://h/0?password={SECRET}", "redis://h/0?password=***"),
        (f"redis://h/0?prefix=p&password={SECRET}&db=1", "redis://h/0?prefix=p&password=***&db=1"),
        (f"redis://h/0?Password={SECRET}", "redis://h/0?Password=***"),
        (f"redis://h/0?PASSWORD={SECRET}", "redis://h/0?PASSWORD=***"),
        (f"redis://h/0?pass%77ord={SECRET}", "redis://h/0?pass%77ord=***"),
        (f"redis://h/0?%70assword={SECRET}", "redis://h/0?%70assword=***"),
        (f"redis://h/0?username={USER}&password={SECRET}", "redis://h/0?username=***&password=***"),
        (f"redis://h/0?Username={USER}", "redis://h/0?Username=***"),
        (f"rediss://h:6380/0?ssl_password={SECRET}", "rediss://h:6380/0?ssl_password=***"),
        (f"rediss://{USER}:{SECRET}@h:6380", "rediss://***@h:6380"),
        (f"unix://{USER}:{SECRET}@/run/redis.sock?db=2", "unix://***@/run/redis.sock?db=2"),
        (
            f"unix:///run/redis.sock?db=2&password={SECRET}",
            "unix:///run/redis.sock?db=2&password=***",
        ),
        (f"REDIS://H/0?password={SECRET}", "REDIS://H/0?password=***"),
        # Raw special characters in a password (not percent-encoded, as they should be).
        (f"redis://:p@{SECRET}@h/0", "redis://***@h/0"),
        (f"redis://:p/{SECRET}@h/0", "redis://***@h/0"),
        (f"redis://:p#{SECRET}@h/0", "redis://***@h/0"),
        (f"redis://h/0?password=a@{SECRET}", "redis://h/0?password=***"),
        (f"redis://h/0?password={SECRET}#fragment", "redis://h/0?password=***"),
        (f"redis://h/0?password={SECRET};username={USER}", "redis://h/0?password=***;username=***"),
        # An "@" in a query value is that value's, not the end of a user part.
        ("redis://h/0?prefix=team@acme", "redis://h/0?prefix=team@acme"),
        # A mistyped scheme still hides its user part.
        (f"redis//:{SECRET}@h/0", "***@h/0"),
        (f"file://{USER}:{SECRET}@h/tokens", "file://***@h/tokens"),
    ],
)
def test_redact_store_spec_masks_user_information_and_credential_parameters(
    spec: str, expected: str
) -> None:
    assert redact_store_spec(spec) == expected


# -- open_store's errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        f"redis://h:port/0?password={SECRET}",
        f"redis://h/zero?Password={SECRET}",
        f"redis:///0?pass%77ord={SECRET}",
        f"redis://h/0?password={SECRET}#fragment",
        f"redis://h/0?prefix=a&prefix=b&username={USER}",
        f"redis://h/0?prefix=&password={SECRET}",
        f"rediss://h:port?ssl_password={SECRET}",
        f"unix://?password={SECRET}",
        f"unix://{USER}:{SECRET}@/?db=0",
        f"nosuch://h/0?password={SECRET}",
        f"file://{USER}:{SECRET}@h/tokens",
        # Well formed, but not an option of redis-py (which reads names as written).
        f"redis://h/0?Password={SECRET}",
    ],
)
def test_open_store_errors_never_show_a_credential(spec: str) -> None:
    with pytest.raises(ValueError) as caught:  # noqa: PT011 - every malformed spec
        open_store(spec)
    assert SECRET not in shown(caught.value)
    assert USER not in shown(caught.value)
    assert "***" in str(caught.value)  # the spec is shown, masked


# -- the Redis store's messages ----------------------------------------------------------


@pytest.fixture
def closed_port() -> int:
    return free_port()


def down_specs(port: int) -> list[str]:
    return [
        f"redis://127.0.0.1:{port}/0?password={SECRET}",
        f"redis://127.0.0.1:{port}/0?pass%77ord={SECRET}",
        f"redis://127.0.0.1:{port}/0?username={USER}&password={SECRET}",
        f"redis://{USER}:{SECRET}@127.0.0.1:{port}/0",
        f"rediss://127.0.0.1:{port}/0?password={SECRET}",
        f"unix:///nonexistent-{port}/redis.sock?db=0&password={SECRET}",
    ]


async def every_operation(store: RedisTokenStore) -> list[TokenStoreError]:
    """The error of each operation of `store` (each must fail)."""
    token = make_token()
    operations: list[Callable[[], Awaitable[Any]]] = [
        lambda: store.load("acme"),
        lambda: store.save("acme", token),
        lambda: store.compare_and_set("acme", None, token),
        lambda: store.delete("acme"),
        store.keys,
        lambda: store.change_marker("acme"),
    ]
    errors: list[TokenStoreError] = []
    for operation in operations:
        with pytest.raises(StoreUnavailable) as caught:
            await operation()
        errors.append(caught.value)
    with pytest.raises(StoreUnavailable) as caught:
        async with store.lock("acme", timeout=1.0):
            pass  # pragma: no cover
    errors.append(caught.value)
    return errors


@pytest.mark.asyncio_only
@pytest.mark.timeout(60)
@pytest.mark.parametrize("opened_by", ["RedisTokenStore", "open_store"])
async def test_a_redis_store_down_never_shows_a_credential_of_its_url(
    closed_port: int, opened_by: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for spec in down_specs(closed_port):
        store = RedisTokenStore(spec) if opened_by == "RedisTokenStore" else open_store(spec)
        assert isinstance(store, RedisTokenStore)
        try:
            for error in await every_operation(store):
                assert SECRET not in shown(error), spec
                assert USER not in shown(error), spec
                assert redact_store_spec(spec).split("?")[0] in str(error)  # where, masked
            assert SECRET not in repr(store)
            assert USER not in repr(store)
        finally:
            await store.aclose()
    assert SECRET not in caplog.text
    assert USER not in caplog.text


@pytest.fixture
async def redis_with_credentials(redis_url: str) -> str:
    """The test Redis's URL with a password and user name as query parameters.

    The test Redis's default user has no password, which then accepts any.
    """
    import redis.asyncio

    if "@" in redis_url or "password" in redis_url.lower():
        pytest.skip("the test Redis has credentials of its own")
    separator = "&" if "?" in redis_url else "?"
    url = f"{redis_url}{separator}username=default&password={SECRET}"
    client = redis.asyncio.from_url(url)
    try:
        await client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"the test Redis refuses the user default with a password: {exc}")
    finally:
        await client.aclose()
    return url


@pytest.mark.asyncio_only
@pytest.mark.timeout(30)
async def test_a_working_redis_stores_errors_never_show_a_credential_of_its_url(
    redis_with_credentials: str,
) -> None:
    import redis.asyncio

    store = open_store(f"{redis_with_credentials}&prefix=specs-{time.monotonic_ns()}")
    assert isinstance(store, RedisTokenStore)
    raw = redis.asyncio.from_url(redis_with_credentials)
    errors: list[TokenStoreError] = []
    try:
        async with store.lock("acme"):
            with pytest.raises(LockTimeout) as timed_out:
                async with store.lock("acme", timeout=0.05):
                    pass  # pragma: no cover
        errors.append(timed_out.value)
        await store.save("mallory", make_token())
        token_key = store.redis_keys("acme")[0]
        await raw.copy(store.redis_keys("mallory")[0], token_key)
        with pytest.raises(ForeignToken) as foreign:
            await store.load("acme")
        errors.append(foreign.value)
        await raw.delete(token_key)
        await raw.set(token_key, "another program's value")
        with pytest.raises(CorruptTokenData, match="WRONGTYPE") as wrong_type:
            await store.load("acme")
        errors.append(wrong_type.value)
        for error in errors:
            assert SECRET not in shown(error)
            assert "password=***" in str(error)  # where, masked
        assert SECRET not in repr(store)
    finally:
        async for key in raw.scan_iter(match=f"{store.prefix}:*"):
            await raw.delete(key)
        await raw.aclose()
        await store.aclose()


@pytest.mark.asyncio_only
async def test_a_borrowed_clients_store_shows_where_it_connects_without_credentials(
    redis_url: str,
) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis(
        host="127.0.0.1", port=free_port(), db=3, username=USER, password=SECRET
    )
    store = RedisTokenStore(client, prefix="specs")
    try:
        assert "redis://127.0.0.1:" in repr(store)
        assert SECRET not in repr(store)
        assert USER not in repr(store)
        with pytest.raises(StoreUnavailable) as caught:
            await store.load("acme")
        assert "/3 is unavailable: connection refused" in str(caught.value)
        assert SECRET not in shown(caught.value)
    finally:
        await store.aclose()
        await client.aclose()


# -- an unreachable Redis, named by its cause ----------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port of the test's own that accepts connections (the kernel does) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


async def failure_of(url: str) -> tuple[StoreUnavailable, float]:
    """The store's error on a first load from `url`, and how long it took to come."""
    store = RedisTokenStore(url)
    started = time.monotonic()
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await store.load("acme")
        return caught.value, time.monotonic() - started
    finally:
        await store.aclose()


@pytest.mark.asyncio_only
@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("where", "cause"),
    [("closed port", "connection refused"), ("name", "name does not resolve")],
)
async def test_an_unreachable_redis_is_named_by_its_cause_at_once(
    where: str, cause: str, closed_port: int
) -> None:
    url = f"redis://127.0.0.1:{closed_port}/0"
    if where == "name":
        url = "redis://nosuchhost.invalid:6379/0"  # RFC 6761: never resolves
    error, elapsed = await failure_of(url)
    assert f"{url} is unavailable: {cause}" in str(error)
    # Refused or unresolved at once: well within the connect timeout, not after it.
    assert elapsed < RedisTokenStore.DEFAULT_TIMEOUT


@pytest.mark.asyncio_only
@pytest.mark.timeout(30)
async def test_a_redis_that_never_answers_is_reported_as_timed_out_after_the_timeout(
    silent_port: int,
) -> None:
    timeout = RedisTokenStore.DEFAULT_TIMEOUT
    url = f"redis://127.0.0.1:{silent_port}/0"  # no timeout in the URL: the store's default
    error, elapsed = await failure_of(url)
    assert f"{url} is unavailable: timed out" in str(error)
    # One timeout: not before it (something else failed), not two (a retry, or none applied).
    assert timeout * 0.9 <= elapsed < 2 * timeout


@pytest.mark.asyncio_only
@pytest.mark.timeout(30)
async def test_a_timeout_in_the_url_is_the_one_that_applies(silent_port: int) -> None:
    timeout = RedisTokenStore.DEFAULT_TIMEOUT / 5
    url = f"redis://127.0.0.1:{silent_port}/0?socket_timeout={timeout:g}"
    error, elapsed = await failure_of(url)
    assert "is unavailable: timed out" in str(error)
    assert timeout * 0.9 <= elapsed < 2 * timeout
