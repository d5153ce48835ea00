"""Token stores: the protocol on every store, then what each store promises on its own.

Redis tests use a real Redis (never a fake) and run on asyncio only.
"""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from token_stores import (
    CorruptTokenData,
    DecryptionError,
    Encryption,
    FileTokenStore,
    InsecurePermissions,
    LockTimeout,
    MemoryTokenStore,
    RedisTokenStore,
    Token,
    TokenStore,
)

ACCESS = "access-SECRET-4f1c"
REFRESH = "refresh-SECRET-9b2e"


def make_token(access: str = ACCESS, refresh: str = REFRESH) -> Token:
    return Token(
        access_token=access,
        refresh_token=refresh,
        expires_at=2_000_000_000.0,
        issued_at=1_999_996_400.0,
        extra={"tenant": "t-1"},
    )


@pytest.fixture(params=["memory", "file", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TokenStore]:
    """Each store, fresh (Redis: a unique prefix, cleaned up after)."""
    if request.param == "memory":
        yield MemoryTokenStore()
    elif request.param == "file":
        yield FileTokenStore(tmp_path / "tokens")
    else:
        url = request.getfixturevalue("redis_url")
        redis_store = RedisTokenStore(url, prefix=f"test-{uuid.uuid4().hex}")
        yield redis_store
        for key in await redis_store.keys():
            await redis_store.delete(key)
        await redis_store.aclose()


async def test_store_round_trips_tokens_and_lists_keys(store: TokenStore) -> None:
    assert await store.load("acme") is None
    odd_key = "acme/prod:1 é {x}"
    await store.save(odd_key, make_token())
    await store.save("acme", make_token("other"))
    loaded = await store.load(odd_key)
    assert loaded == make_token()
    assert loaded is not None
    assert loaded.extra == {"tenant": "t-1"}
    assert await store.keys() == sorted([odd_key, "acme"])
    assert await store.delete(odd_key)
    assert not await store.delete(odd_key)
    assert await store.keys() == ["acme"]
    assert "SECRET" not in repr(store)


async def test_compare_and_set_only_replaces_the_expected_token(store: TokenStore) -> None:
    first, second, third = make_token("t1"), make_token("t2"), make_token("t3")
    assert await store.compare_and_set("k", None, first)
    assert not await store.compare_and_set("k", None, second)
    assert await store.compare_and_set("k", first, second)
    assert not await store.compare_and_set("k", first, third)  # a stale refresher
    stored = await store.load("k")
    assert stored is not None
    assert stored.fingerprint == second.fingerprint


async def test_lock_is_exclusive_and_times_out(store: TokenStore) -> None:
    async with store.lock("k"):
        with pytest.raises(LockTimeout, match="'k'"):
            async with store.lock("k", timeout=0.1):
                pass  # pragma: no cover
        async with store.lock("other", timeout=1):
            pass
    async with store.lock("k", timeout=1):
        pass


async def test_lock_serializes_concurrent_holders(store: TokenStore) -> None:
    inside = peak = 0

    async def hold() -> None:
        nonlocal inside, peak
        async with store.lock("k", timeout=10):
            inside += 1
            peak = max(peak, inside)
            await anyio.sleep(0.005)
            inside -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(hold)
    assert peak == 1


# -- FileTokenStore ---------------------------------------------------------------------


async def test_file_store_files_are_private(tmp_path: Path) -> None:
    store = FileTokenStore(tmp_path / "tokens")
    await store.save("acme", make_token())
    assert stat.S_IMODE((tmp_path / "tokens").stat().st_mode) == 0o700
    assert stat.S_IMODE(store.path_of("acme").stat().st_mode) == 0o600
    assert store.path_of("acme").name == "k-acme.json"


async def test_file_store_refuses_or_warns_about_a_readable_file(tmp_path: Path) -> None:
    store = FileTokenStore(tmp_path)
    await store.save("acme", make_token())
    store.path_of("acme").chmod(0o644)
    with pytest.raises(InsecurePermissions, match=r"k-acme\.json"):
        await store.load("acme")
    lenient = FileTokenStore(tmp_path, on_insecure_file="warn")
    with pytest.warns(UserWarning, match="readable by group or others"):
        assert await lenient.load("acme") == make_token()


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{trunc",
        b"[]",
        b'{"format": 1, "key": "acme"}',
        b'{"format":1,"key":"acme","token":{}}',
    ],
)
async def test_file_store_never_replaces_a_corrupt_file_silently(
    tmp_path: Path, content: bytes
) -> None:
    store = FileTokenStore(tmp_path)
    path = store.path_of("acme")
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(CorruptTokenData, match=r"k-acme\.json"):
        await store.load("acme")
    with pytest.raises(CorruptTokenData):
        await store.save("acme", make_token())
    with pytest.raises(CorruptTokenData):
        await store.compare_and_set("acme", None, make_token())
    assert path.read_bytes() == content
    assert await store.delete("acme")
    await store.save("acme", make_token())
    assert await store.load("acme") == make_token()


async def test_file_store_removes_temporaries_left_by_a_dead_writer(tmp_path: Path) -> None:
    store = FileTokenStore(tmp_path)
    # Named as tempfile.mkstemp names them: the prefix, then 8 of [a-z0-9_].
    stale = tmp_path / f".{store.path_of('acme').name}.tmp-abc12_yz"
    stale.write_bytes(b'{"half": ')
    # Other accounts whose file names start like this one's keep their temporaries:
    # "acme.json.tmp-x" has the file k-acme.json.tmp-x.json, whose temporaries match
    # the glob .k-acme.json.tmp-* of "acme".
    others = [
        tmp_path / f".{store.path_of('acme.json.x').name}.tmp-def45678",
        tmp_path / f".{store.path_of('acme.json.tmp-x').name}.tmp-ghi90123",
    ]
    for other in others:
        other.write_bytes(b'{"in flight": ')
    await store.save("acme", make_token())
    assert not stale.exists()
    assert all(other.exists() for other in others)
    assert await store.keys() == ["acme"]


# -- encryption ----------------------------------------------------------------------


@pytest.fixture(params=["file", "redis"])
async def encrypted_pair(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[object, object]]:
    """Factories of (store with keys) and (raw stored bytes of an account)."""
    if request.param == "file":

        def open_store(*keys: str, **options: bool) -> TokenStore:
            encryption = Encryption(list(keys), **options) if keys else None
            return FileTokenStore(tmp_path, encryption=encryption)

        async def raw(key: str) -> bytes:
            return FileTokenStore(tmp_path).path_of(key).read_bytes()

        yield open_store, raw
        return
    import redis.asyncio

    url = request.getfixturevalue("redis_url")
    prefix = f"test-{uuid.uuid4().hex}"
    client = redis.asyncio.from_url(url)
    stores: list[RedisTokenStore] = []

    def open_redis(*keys: str, **options: bool) -> TokenStore:
        opened = RedisTokenStore(
            client, prefix=prefix, encryption=Encryption(list(keys), **options) if keys else None
        )
        stores.append(opened)
        return opened

    async def raw_redis(key: str) -> bytes:
        token_key = stores[0].redis_keys(key)[0]
        values = await client.hgetall(token_key)
        return str(values).encode()

    yield open_redis, raw_redis
    for key in await stores[0].keys():
        await stores[0].delete(key)
    await client.aclose()


async def test_encrypted_store_holds_no_token_substring(
    encrypted_pair: tuple[object, object],
) -> None:
    open_store, raw = encrypted_pair
    key = Encryption.generate_key()
    store = open_store(key)  # type: ignore[operator]
    await store.save("acme", make_token())
    stored = await raw("acme")  # type: ignore[operator]
    for secret in (ACCESS, REFRESH, "SECRET", "tenant"):
        assert secret.encode() not in stored
    assert await store.load("acme") == make_token()


async def test_wrong_or_missing_key_raises_decryption_error(
    encrypted_pair: tuple[object, object],
) -> None:
    open_store, _ = encrypted_pair
    await open_store(Encryption.generate_key()).save("acme", make_token())  # type: ignore[operator]
    with pytest.raises(DecryptionError, match="key this store was not given") as caught:
        await open_store(Encryption.generate_key()).load("acme")  # type: ignore[operator]
    assert "SECRET" not in str(caught.value)
    with pytest.raises(DecryptionError, match="is encrypted"):
        await open_store().load("acme")  # type: ignore[operator]


async def test_key_rotation_re_encrypts_with_the_new_key(
    encrypted_pair: tuple[object, object],
) -> None:
    open_store, raw = encrypted_pair
    old, new = Encryption.generate_key(), Encryption.generate_key()
    await open_store(old).save("a", make_token("a1"))  # type: ignore[operator]
    plain = open_store()  # type: ignore[operator]
    await plain.save("b", make_token("b1"))  # written before encryption was turned on
    before = await raw("a")  # type: ignore[operator]
    # The plain token is read on purpose: a migration (refused otherwise).
    rotating = open_store(new, old, accept_plaintext=True)  # type: ignore[operator]
    assert await rotating.rotate_encryption() == 2
    assert await raw("a") != before  # type: ignore[operator]
    only_new = open_store(new)  # type: ignore[operator]
    assert (await only_new.load("a")) == make_token("a1")
    assert (await only_new.load("b")) == make_token("b1")
    with pytest.raises(DecryptionError):
        await open_store(old).load("a")  # type: ignore[operator]


def test_encryption_rejects_bad_keys_without_echoing_them() -> None:
    with pytest.raises(ValueError, match="not a valid Fernet key") as caught:
        Encryption(["not-a-key-SECRET"])
    assert "SECRET" not in str(caught.value)
    with pytest.raises(ValueError, match="non-empty list"):
        Encryption("a-single-string")
    assert "keys=2" in repr(Encryption([Encryption.generate_key(), Encryption.generate_key()]))


# -- RedisTokenStore ---------------------------------------------------------------------


@pytest.fixture
async def redis_store(redis_url: str) -> AsyncIterator[RedisTokenStore]:
    store = RedisTokenStore(redis_url, prefix=f"test-{uuid.uuid4().hex}", lease=0.3)
    yield store
    for key in await store.keys():
        await store.delete(key)
    await store.aclose()


async def test_redis_keys_of_an_account_share_a_cluster_slot(redis_store: RedisTokenStore) -> None:
    from redis.crc import key_slot

    token_key, lock_key = redis_store.redis_keys("acme")
    assert key_slot(token_key.encode()) == key_slot(lock_key.encode())
    assert redis_store.redis_keys("acme") != redis_store.redis_keys("other")


async def test_redis_lock_lease_is_extended_while_held(redis_store: RedisTokenStore) -> None:
    async with redis_store.lock("acme"):
        await anyio.sleep(1.0)  # more than three leases of 0.3 s
        with pytest.raises(LockTimeout):
            async with redis_store.lock("acme", timeout=0.2):
                pass  # pragma: no cover


async def test_redis_lock_of_a_dead_holder_frees_itself_after_the_lease(
    redis_store: RedisTokenStore, redis_url: str
) -> None:
    import redis.asyncio

    _, lock_key = redis_store.redis_keys("acme")
    # A holder that died: its lock key stays until the lease runs out.
    client = redis.asyncio.from_url(redis_url)
    abandoned = client.lock(lock_key, timeout=redis_store.lease)
    assert await abandoned.acquire(blocking=False)
    started = anyio.current_time()
    async with redis_store.lock("acme", timeout=2):
        waited = anyio.current_time() - started
    await client.aclose()
    assert 0.1 < waited < 1.0


async def test_refresher_whose_lease_expired_cannot_overwrite_a_newer_token(
    redis_store: RedisTokenStore, redis_url: str
) -> None:
    import redis.asyncio

    await redis_store.save("acme", make_token("t1"))
    _, lock_key = redis_store.redis_keys("acme")
    client = redis.asyncio.from_url(redis_url)
    # A holder paused long enough to lose its lease: it took the lock and read the token.
    paused = client.lock(lock_key, timeout=redis_store.lease)
    assert await paused.acquire(blocking=False)
    slow_view = await redis_store.load("acme")
    for _ in range(1000):  # the lease runs out (0.3 s)
        if not await client.exists(lock_key):
            break
        await anyio.sleep(0.01)
    # Another worker takes the lock and refreshes.
    async with redis_store.lock("acme", timeout=1):
        assert await redis_store.compare_and_set("acme", slow_view, make_token("t2"))
    # The paused refresher comes back with what it read before.
    assert not await redis_store.compare_and_set("acme", slow_view, make_token("t3"))
    await client.aclose()
    stored = await redis_store.load("acme")
    assert stored is not None
    assert stored.access_token == "t2"


async def test_redis_ttl_expires_tokens(redis_url: str) -> None:
    import redis.asyncio

    client = redis.asyncio.from_url(redis_url)
    store = RedisTokenStore(redis_url, prefix=f"test-{uuid.uuid4().hex}", ttl=60)
    try:
        await store.save("acme", make_token())
        ttl_ms = await client.pttl(store.redis_keys("acme")[0])
        assert 55_000 < ttl_ms <= 60_000
        assert await store.compare_and_set("acme", make_token(), make_token("t2"))
        assert await client.pttl(store.redis_keys("acme")[0]) > 55_000
    finally:
        await store.delete("acme")
        await store.aclose()
        await client.aclose()


async def test_redis_store_borrows_a_client_without_closing_it(redis_url: str) -> None:
    import redis.asyncio

    client = redis.asyncio.from_url(redis_url)
    store = RedisTokenStore(client, prefix=f"test-{uuid.uuid4().hex}")
    await store.save("acme", make_token())
    await store.aclose()
    assert await client.ping()
    await store.delete("acme")
    await client.aclose()
    assert "SECRET" not in repr(store)


@pytest.mark.asyncio_only
async def test_redis_down_raises_store_unavailable_without_the_url_password() -> None:
    from token_stores import StoreUnavailable

    store = RedisTokenStore("redis://:hunter2-SECRET@127.0.0.1:1/0")
    try:
        with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1:1") as caught:
            await store.load("acme")
        assert "hunter2" not in str(caught.value)
        assert "hunter2" not in repr(store)
        with pytest.raises(StoreUnavailable):
            async with store.lock("acme", timeout=0.5):
                pass  # pragma: no cover
    finally:
        await store.aclose()


def test_stores_satisfy_the_protocol(tmp_path: Path) -> None:
    assert isinstance(FileTokenStore(tmp_path), TokenStore)
    assert isinstance(RedisTokenStore("redis://127.0.0.1:1/0"), TokenStore)
    assert os.name == "posix"  # the file store's locks are POSIX flock


def test_file_store_refuses_or_warns_about_a_directory_open_to_others(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    with pytest.raises(InsecurePermissions, match="chmod 700"):
        FileTokenStore(shared)
    with pytest.warns(UserWarning, match="open to group or others"):
        FileTokenStore(shared, on_insecure_file="warn")
