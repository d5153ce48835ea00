"""Encrypted stores refuse forgeries: planted plain tokens and ciphertexts copied across accounts.

Real files and a real Redis. The forger writes what anyone with write access
to the store can: a plain token through an unencrypted store on the same
place, or another account's ciphertext copied over (its envelope or ``key``
field edited to match). Tokens from before account binding are written as the
earlier version wrote them: ``Encryption.encrypt`` of the token's JSON.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import make_oauth
from token_stores import (
    CorruptTokenData,
    DecryptionError,
    Encryption,
    FileTokenStore,
    ForeignToken,
    RedisTokenStore,
    Token,
    UnboundToken,
    UnsupportedTokenFormat,
)
from wiser_async import errors
from wiser_async.sandbox import SandboxUrls

KEY = Encryption.generate_key()


def make_token(name: str) -> Token:
    return Token(
        access_token=f"access-SECRET-{name}",
        refresh_token=f"refresh-SECRET-{name}",
        expires_at=2e9,
        issued_at=2e9 - 3600,
    )


def assert_no_token_in(text: str) -> None:
    assert "SECRET" not in text


class Place:
    """Where a store keeps its tokens, with the forger's tools (file or Redis)."""

    kind: str

    def open(self, encryption: Encryption | None = None) -> FileTokenStore | RedisTokenStore:
        raise NotImplementedError

    async def plant_plain(self, key: str, token: Token) -> None:
        """Store `token` in plain text as `key`'s, as an unencrypted store writes it."""
        raise NotImplementedError

    async def copy(self, source: str, target: str, *, claim: bool) -> None:
        """Copy `source`'s stored token over `target`'s; `claim`: rename it to `target` too."""
        raise NotImplementedError

    async def write_unbound(self, key: str, token: Token, encryption: Encryption) -> None:
        """Store `token` encrypted as the earlier version did: without its account."""
        raise NotImplementedError

    async def write_sealed(self, key: str, payload: dict[str, Any], encryption: Encryption) -> None:
        """Store the ciphertext of `payload` as `key`'s token."""
        raise NotImplementedError

    async def raw(self, key: str) -> bytes:
        raise NotImplementedError


class FilePlace(Place):
    kind = "file"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def open(self, encryption: Encryption | None = None) -> FileTokenStore | RedisTokenStore:
        return FileTokenStore(self.directory, encryption=encryption)

    def _path(self, key: str) -> Path:
        return FileTokenStore(self.directory).path_of(key)

    def _write(self, key: str, envelope: dict[str, Any]) -> None:
        path = self._path(key)
        path.write_text(json.dumps(envelope))
        path.chmod(0o600)

    async def plant_plain(self, key: str, token: Token) -> None:
        self._write(key, {"format": 1, "key": key, "token": token.to_dict()})

    async def copy(self, source: str, target: str, *, claim: bool) -> None:
        envelope = json.loads(self._path(source).read_text())
        if claim:
            envelope["key"] = target
        self._write(target, envelope)

    async def write_unbound(self, key: str, token: Token, encryption: Encryption) -> None:
        ciphertext = encryption.encrypt(token.to_json()).decode()
        self._write(key, {"format": 1, "key": key, "encrypted": ciphertext})

    async def write_sealed(self, key: str, payload: dict[str, Any], encryption: Encryption) -> None:
        ciphertext = encryption.encrypt(json.dumps(payload).encode()).decode()
        self._write(key, {"format": 2, "key": key, "encrypted": ciphertext})

    async def raw(self, key: str) -> bytes:
        return self._path(key).read_bytes()


class RedisPlace(Place):
    kind = "redis"

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.opened: list[RedisTokenStore] = []

    def open(self, encryption: Encryption | None = None) -> FileTokenStore | RedisTokenStore:
        store = RedisTokenStore(self.client, prefix=self.prefix, encryption=encryption)
        self.opened.append(store)
        return store

    def token_key(self, key: str) -> str:
        return RedisTokenStore(self.client, prefix=self.prefix).redis_keys(key)[0]

    async def plant_plain(self, key: str, token: Token) -> None:
        await self.open().save(key, token)

    async def aclose(self) -> None:
        """Close the stores opened (their subscriptions), remove the keys, close the client."""
        for store in self.opened:
            await store.aclose()
        async for key in self.client.scan_iter(match=f"{self.prefix}:*"):
            await self.client.delete(key)
        await self.client.aclose()

    async def copy(self, source: str, target: str, *, claim: bool) -> None:
        await self.client.copy(self.token_key(source), self.token_key(target), replace=True)
        if claim:
            await self.client.hset(self.token_key(target), "key", target)

    async def write_unbound(self, key: str, token: Token, encryption: Encryption) -> None:
        ciphertext = encryption.encrypt(token.to_json()).decode()
        fields = {"fp": token.fingerprint, "data": ciphertext, "enc": "1", "key": key}
        await self.client.hset(self.token_key(key), mapping=fields)

    async def write_sealed(self, key: str, payload: dict[str, Any], encryption: Encryption) -> None:
        ciphertext = encryption.encrypt(json.dumps(payload).encode()).decode()
        fields = {"fp": "0" * 32, "data": ciphertext, "enc": "1", "key": key}
        await self.client.hset(self.token_key(key), mapping=fields)

    async def raw(self, key: str) -> bytes:
        return repr(await self.client.hgetall(self.token_key(key))).encode()


@pytest.fixture(params=["file", "redis"])
async def place(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Place]:
    if request.param == "file":
        yield FilePlace(tmp_path / "tokens")
        return
    import redis.asyncio

    redis_place = RedisPlace(
        redis.asyncio.from_url(request.getfixturevalue("redis_url")), f"forgery-{uuid.uuid4().hex}"
    )
    yield redis_place
    await redis_place.aclose()


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The store's WARNING lines (not another library's, such as a slow event loop's)."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and record.name.startswith("token_stores")
    ]


# -- plain tokens ------------------------------------------------------------------------


@pytest.mark.timeout(30)
async def test_a_plain_token_planted_in_an_encrypted_store_is_refused_and_left_alone(
    place: Place,
) -> None:
    store = place.open(Encryption([KEY]))
    await store.save("acme", make_token("acme"))
    # The forger needs no key: a plain token, written as an unencrypted store writes it.
    await place.plant_plain("acme", make_token("forged"))
    planted = await place.raw("acme")
    with pytest.raises(UnboundToken, match=r"plain text.*accept_plaintext") as caught:
        await store.load("acme")
    assert isinstance(caught.value, DecryptionError)
    assert_no_token_in(f"{caught.value} {caught.value!r}")
    assert await place.raw("acme") == planted  # never adopted, nor encrypted over


@pytest.mark.timeout(30)
async def test_accept_plaintext_reads_a_plain_token_for_a_migration_and_logs_its_account(
    place: Place, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="token_stores")
    await place.open().save("acme", make_token("acme"))  # before encryption was turned on
    migrating = place.open(Encryption([KEY], accept_plaintext=True))
    assert await migrating.load("acme") == make_token("acme")
    (warning,) = warnings_of(caplog)
    assert "'acme'" in warning
    assert "plain text" in warning
    assert_no_token_in(caplog.text)
    assert await migrating.rotate_encryption() == 1
    caplog.clear()
    strict = place.open(Encryption([KEY]))
    assert await strict.load("acme") == make_token("acme")  # now sealed with its account
    assert b"SECRET" not in await place.raw("acme")
    assert warnings_of(caplog) == []


@pytest.mark.timeout(30)
async def test_rotation_refuses_a_plain_token_it_was_not_told_to_accept(place: Place) -> None:
    await place.open().save("acme", make_token("acme"))
    with pytest.raises(UnboundToken):
        await place.open(Encryption([KEY])).rotate_encryption()
    assert await place.open().load("acme") == make_token("acme")  # left as it was


# -- copies across accounts ----------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("claim", [True, False], ids=["renamed", "as-is"])
async def test_a_ciphertext_copied_from_another_account_is_refused(
    place: Place, claim: bool
) -> None:
    store = place.open(Encryption([KEY]))
    await store.save("acme", make_token("acme"))
    await store.save("mallory", make_token("mallory"))
    await place.copy("mallory", "acme", claim=claim)
    with pytest.raises(ForeignToken, match="another account") as caught:
        await store.load("acme")
    assert isinstance(caught.value, CorruptTokenData)
    assert_no_token_in(f"{caught.value} {caught.value!r}")
    assert "mallory" not in str(caught.value)  # what the forged data names is not echoed
    assert await store.load("mallory") == make_token("mallory")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("encrypted", [True, False], ids=["encrypted", "plain"])
async def test_a_redis_hash_naming_another_account_is_refused(
    redis_url: str, encrypted: bool, caplog: pytest.LogCaptureFixture
) -> None:
    import redis.asyncio

    place = RedisPlace(redis.asyncio.from_url(redis_url), f"forgery-{uuid.uuid4().hex}")
    store = place.open(Encryption([KEY]) if encrypted else None)
    try:
        await store.save("mallory", make_token("mallory"))
        await place.copy("mallory", "acme", claim=False)  # its key field still says mallory
        with pytest.raises(ForeignToken, match="another account key"):
            await store.load("acme")
        # Listed once, under its own name: the copy is skipped, with a warning.
        assert await store.keys() == ["mallory"]
        assert "a copy?" in caplog.text
        await place.client.hdel(place.token_key("acme"), "key")
        with pytest.raises(CorruptTokenData, match="names no account"):
            await store.load("acme")
    finally:
        await place.aclose()


# -- tokens encrypted before account binding ---------------------------------------------------


@pytest.mark.timeout(30)
async def test_a_token_encrypted_without_its_account_is_refused_unless_accepted(
    place: Place, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="token_stores")
    encryption = Encryption([KEY])
    await place.write_unbound("acme", make_token("acme"), encryption)
    with pytest.raises(UnboundToken, match=r"earlier version.*accept_unbound") as caught:
        await place.open(encryption).load("acme")
    assert_no_token_in(str(caught.value))
    migrating = place.open(Encryption([KEY], accept_unbound=True))
    assert await migrating.load("acme") == make_token("acme")
    (warning,) = warnings_of(caplog)
    assert "'acme'" in warning
    assert "without its account" in warning
    assert_no_token_in(caplog.text)
    # Accepting them is no licence for plain tokens.
    await place.open().save("plain", make_token("plain"))
    with pytest.raises(UnboundToken, match="plain text"):
        await migrating.load("plain")
    await place.open().delete("plain")
    assert await migrating.rotate_encryption() == 1
    assert await place.open(encryption).load("acme") == make_token("acme")


@pytest.mark.timeout(30)
async def test_a_token_sealed_by_a_newer_version_is_reported_and_left_untouched(
    place: Place,
) -> None:
    encryption = Encryption([KEY])
    sealed = {"format": 3, "key": "acme", "token": make_token("acme").to_dict()}
    await place.write_sealed("acme", sealed, encryption)
    stored = await place.raw("acme")
    with pytest.raises(UnsupportedTokenFormat, match=r"newer version.*format 3.*upgrade"):
        await place.open(encryption).load("acme")
    assert await place.raw("acme") == stored


# -- key rotation ----------------------------------------------------------------------------


@pytest.mark.timeout(30)
async def test_key_rotation_keeps_every_token_bound_to_its_account(place: Place) -> None:
    old, new = Encryption.generate_key(), Encryption.generate_key()
    before = place.open(Encryption([old]))
    for name in ("acme", "mallory"):
        await before.save(name, make_token(name))
    assert await place.open(Encryption([new, old])).rotate_encryption() == 2
    after = place.open(Encryption([new]))
    for name in ("acme", "mallory"):
        assert await after.load(name) == make_token(name)
    with pytest.raises(DecryptionError, match="key this store was not given"):
        await place.open(Encryption([old])).load("acme")
    await place.copy("mallory", "acme", claim=True)
    with pytest.raises(ForeignToken):
        await after.load("acme")


# -- through WiserOAuth ------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("forgery", ["plain", "copied"])
async def test_wiser_oauth_reports_a_forged_token_as_a_typed_store_error(
    place: Place, urls: SandboxUrls, forgery: str
) -> None:
    store = place.open(Encryption([KEY]))
    await store.save("mallory", make_token("mallory"))
    if forgery == "plain":
        await place.plant_plain("acme", make_token("forged"))
        expected: tuple[type[Exception], type[Exception]] = (
            errors.DecryptionError,
            UnboundToken,
        )
    else:
        await place.copy("mallory", "acme", claim=True)
        expected = (errors.CorruptTokenData, ForeignToken)
    oauth = make_oauth(urls, store)
    try:
        with pytest.raises(expected[0]) as caught:
            await oauth.token("acme")
    finally:
        await oauth.aclose()
    assert isinstance(caught.value, errors.StoreError)
    assert isinstance(caught.value.__cause__, expected[1])
    assert_no_token_in(f"{caught.value} {caught.value!r}")


@pytest.mark.asyncio_only
@pytest.mark.timeout(30)
async def test_an_encrypted_redis_store_reads_its_tokens_through_a_decoding_client(
    redis_url: str,
) -> None:
    import redis.asyncio

    client = redis.asyncio.from_url(redis_url, decode_responses=True)
    store = RedisTokenStore(
        client, prefix=f"forgery-{uuid.uuid4().hex}", encryption=Encryption([KEY])
    )
    try:
        await store.save("acme", make_token("acme"))
        assert await store.load("acme") == make_token("acme")
    finally:
        await store.delete("acme")
        await client.aclose()
