"""Stores under hostile state: planted symlinks, foreign files, wrong Redis types, odd keys.

Real files and a real Redis; the hostile state is set up by hand, as another
program or user would leave it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from token_stores import (
    CorruptTokenData,
    FileTokenStore,
    RedisTokenStore,
    StoreUnavailable,
    Token,
    UnsupportedTokenFormat,
)

ROOT = Path(__file__).parent.parent


def make_token(name: str = "a") -> Token:
    return Token(access_token=f"access-{name}", refresh_token=f"refresh-{name}", expires_at=2e9)


def names_in(directory: Path) -> set[str]:
    return {path.name for path in directory.iterdir()}


def temporary_of(token_file: Path) -> str:
    """The name of a temporary made as the store makes them, left as by a writer that died."""
    fd, name = tempfile.mkstemp(dir=token_file.parent, prefix=f".{token_file.name}.tmp-")
    os.close(fd)
    return Path(name).name


# -- the file store -------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".lock", ".wlock"])
async def test_a_symlink_planted_at_a_lock_file_is_refused_and_creates_nothing(
    tmp_path: Path, suffix: str
) -> None:
    store = FileTokenStore(tmp_path / "tokens")
    outside = tmp_path / "outside" / "created-by-the-store"
    outside.parent.mkdir()
    lock_file = store.path_of("acme").with_suffix(suffix)
    lock_file.symlink_to(outside)

    async def use_the_lock_file() -> None:
        if suffix == ".lock":
            async with store.lock("acme"):
                pass
        else:
            await store.save("acme", make_token())  # writes take the write lock

    with pytest.raises(StoreUnavailable, match="symbolic link") as caught:
        await use_the_lock_file()
    assert str(lock_file) in str(caught.value)
    assert not outside.exists()


async def test_a_file_holding_another_accounts_token_is_not_loaded_as_this_one(
    tmp_path: Path,
) -> None:
    store = FileTokenStore(tmp_path)
    await store.save("alice", make_token("alice"))
    store.path_of("bob").write_bytes(store.path_of("alice").read_bytes())
    store.path_of("bob").chmod(0o600)
    with pytest.raises(CorruptTokenData, match="another account") as caught:
        await store.load("bob")
    assert "access-alice" not in str(caught.value)
    with pytest.raises(CorruptTokenData):
        await store.save("bob", make_token("bob"))  # never replaced unseen
    with pytest.raises(CorruptTokenData):
        await store.compare_and_set("bob", None, make_token("bob"))
    assert store.path_of("bob").read_bytes() == store.path_of("alice").read_bytes()
    assert await store.load("alice") == make_token("alice")
    # Listing does not name "alice" twice (and "bob" never).
    with pytest.raises(CorruptTokenData, match=r"k-bob\.json holds the token of another"):
        await store.keys()


async def test_cleaning_up_temporaries_spares_another_accounts_in_flight_write(
    tmp_path: Path,
) -> None:
    store = FileTokenStore(tmp_path)
    # Made as the store makes them: ".{file name}.tmp-" and mkstemp's suffix.
    # Account "a.json.tmp-x" has the file k-a.json.tmp-x.json, so its temporary
    # also matches the glob .k-a.json.tmp-* of account "a".
    in_flight = temporary_of(store.path_of("a.json.tmp-x"))
    stale = temporary_of(store.path_of("a"))
    assert in_flight.startswith(".k-a.json.tmp-")
    await store.save("a", make_token())
    assert in_flight in names_in(tmp_path)
    assert stale not in names_in(tmp_path)  # a dead writer's temporary of "a" is removed


async def test_a_file_of_a_newer_format_is_reported_as_such_and_left_untouched(
    tmp_path: Path,
) -> None:
    store = FileTokenStore(tmp_path)
    path = store.path_of("acme")
    content = json.dumps({"format": 3, "key": "acme", "sealed": "..."}).encode()
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(
        UnsupportedTokenFormat, match=r"newer version.*format 3.*upgrade.*untouched"
    ) as caught:
        await store.load("acme")
    assert "delete" not in str(caught.value)
    with pytest.raises(UnsupportedTokenFormat):
        await store.save("acme", make_token())
    with pytest.raises(UnsupportedTokenFormat):
        await store.compare_and_set("acme", None, make_token())
    with pytest.raises(UnsupportedTokenFormat):
        await store.keys()
    assert path.read_bytes() == content
    # Truly malformed files stay corrupt: a format that is no integer, or no
    # envelope of this store (which names its account).
    for malformed in (b'{"format": "two", "key": "acme"}', b'{"format": 3}', b"[3]"):
        path.write_bytes(malformed)
        with pytest.raises(CorruptTokenData):
            await store.load("acme")


def test_importing_the_packages_needs_no_fcntl_and_the_file_store_says_why_it_does() -> None:
    code = (
        "import sys, tempfile\n"
        "sys.modules['fcntl'] = None  # as on a platform without it\n"
        "import token_stores, wiser_async\n"
        "try:\n"
        "    token_stores.FileTokenStore(tempfile.mkdtemp())\n"
        "except NotImplementedError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "fcntl" in done.stdout


@pytest.mark.parametrize("key", ["a\udcff", "\ud800"])
async def test_an_account_key_that_is_not_valid_text_is_a_clear_value_error(
    tmp_path: Path, key: str
) -> None:
    store = FileTokenStore(tmp_path)

    async def in_lock() -> None:
        async with store.lock(key):
            pass  # pragma: no cover

    for call in (
        lambda: store.save(key, make_token()),
        lambda: store.load(key),
        lambda: store.compare_and_set(key, None, make_token()),
        lambda: store.delete(key),
        in_lock,
    ):
        with pytest.raises(ValueError, match="valid Unicode") as caught:
            await call()
        assert not isinstance(caught.value, UnicodeError)
    assert names_in(tmp_path) == set()  # nothing created, not even a lock file


# -- the Redis store ------------------------------------------------------------------


@pytest.fixture
async def redis_store(redis_url: str) -> AsyncIterator[RedisTokenStore]:
    store = RedisTokenStore(redis_url, prefix=f"hostile-{uuid.uuid4().hex}")
    yield store
    import redis.asyncio as redis_asyncio

    raw = redis_asyncio.from_url(redis_url)
    async for key in raw.scan_iter(match=f"{store.prefix}:*"):
        await raw.delete(key)
    await raw.aclose()
    await store.aclose()


async def test_a_redis_key_of_the_wrong_type_is_corrupt_data_of_that_account_alone(
    redis_store: RedisTokenStore, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    import redis.asyncio as redis_asyncio

    await redis_store.save("good", make_token("good"))
    await redis_store.save("bad", make_token("bad"))
    raw = redis_asyncio.from_url(redis_url)
    try:
        (bad_key,) = [
            key
            async for key in raw.scan_iter(match=f"{redis_store.prefix}:*:token")
            if (await raw.hget(key, "key")) == b"bad"
        ]
        await raw.delete(bad_key)
        await raw.set(bad_key, "someone else's string")
        with pytest.raises(CorruptTokenData, match="WRONGTYPE") as caught:
            await redis_store.load("bad")
        assert bad_key.decode() in str(caught.value)
        with pytest.raises(CorruptTokenData):
            await redis_store.save("bad", make_token())
        with pytest.raises(CorruptTokenData):
            await redis_store.compare_and_set("bad", None, make_token())
        assert await raw.get(bad_key) == b"someone else's string"  # never replaced
        with caplog.at_level(logging.WARNING, logger="token_stores"):
            assert await redis_store.keys() == ["good"]
        assert "WRONGTYPE" in caplog.text
        assert bad_key.decode() in caplog.text
        assert "someone else" not in caplog.text
        assert await redis_store.load("good") == make_token("good")
    finally:
        await raw.aclose()


async def test_an_account_name_that_is_not_utf8_is_skipped_by_keys(
    redis_store: RedisTokenStore, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    import redis.asyncio as redis_asyncio

    await redis_store.save("good", make_token("good"))
    await redis_store.save("odd", make_token("odd"))
    raw = redis_asyncio.from_url(redis_url)
    try:
        async for key in raw.scan_iter(match=f"{redis_store.prefix}:*:token"):
            if await raw.hget(key, "key") == b"odd":
                await raw.hset(key, "key", b"\xff\xfe")
        with caplog.at_level(logging.WARNING, logger="token_stores"):
            assert await redis_store.keys() == ["good"]
        assert "not UTF-8" in caplog.text
        assert f"{redis_store.prefix}:{{" in caplog.text  # names the Redis key
    finally:
        await raw.aclose()


async def test_a_redis_account_key_that_is_not_valid_text_is_a_clear_value_error(
    redis_store: RedisTokenStore,
) -> None:
    async def in_lock() -> None:
        async with redis_store.lock("a\udcff"):
            pass  # pragma: no cover

    for call in (
        lambda: redis_store.save("a\udcff", make_token()),
        lambda: redis_store.load("a\udcff"),
        lambda: redis_store.compare_and_set("a\udcff", None, make_token()),
        lambda: redis_store.delete("a\udcff"),
        in_lock,
    ):
        with pytest.raises(ValueError, match="valid Unicode") as caught:
            await call()
        assert not isinstance(caught.value, UnicodeError)
    assert await redis_store.keys() == []


async def test_a_write_onto_a_redis_key_of_the_wrong_type_leaves_that_key_as_it_was(
    redis_url: str,
) -> None:
    import redis.asyncio as redis_asyncio

    raw = redis_asyncio.from_url(redis_url)
    # With a TTL, a write also sets the key's expiry: it must not reach someone else's key.
    store = RedisTokenStore(raw, prefix=f"hostile-{uuid.uuid4().hex}", ttl=60)
    try:
        await store.save("bad", make_token())
        (bad_key,) = [key async for key in raw.scan_iter(match=f"{store.prefix}:*:token")]
        await raw.delete(bad_key)
        await raw.set(bad_key, "someone else's string")
        with pytest.raises(CorruptTokenData, match="WRONGTYPE"):
            await store.save("bad", make_token())
        with pytest.raises(CorruptTokenData, match="WRONGTYPE"):
            await store.compare_and_set("bad", None, make_token())
        assert await raw.get(bad_key) == b"someone else's string"
        assert await raw.pttl(bad_key) == -1  # no expiry set on it: it is not deleted later
    finally:
        async for key in raw.scan_iter(match=f"{store.prefix}:*"):
            await raw.delete(key)
        await store.aclose()
        await raw.aclose()


async def test_keys_skips_a_non_utf8_account_name_with_a_decoding_client_too(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    import redis.asyncio as redis_asyncio

    # decode_responses=True makes redis-py itself fail to decode the field.
    client = redis_asyncio.from_url(redis_url, decode_responses=True)
    store = RedisTokenStore(client, prefix=f"hostile-{uuid.uuid4().hex}")
    try:
        await store.save("good", make_token("good"))
        await store.save("odd", make_token("odd"))
        async for key in client.scan_iter(match=f"{store.prefix}:*:token"):
            if await client.hget(key, "key") == "odd":
                await client.hset(key, "key", b"\xff\xfe")
        with caplog.at_level(logging.WARNING, logger="token_stores"):
            assert await store.keys() == ["good"]
        assert "not UTF-8" in caplog.text
    finally:
        async for key in client.scan_iter(match=f"{store.prefix}:*"):
            await client.delete(key)
        await store.aclose()
        await client.aclose()
