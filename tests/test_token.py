"""`Token` and `MemoryTokenStore`: values, secrecy, compare-and-set, locks."""

from __future__ import annotations

import pickle

import anyio
import pytest

from token_stores import (
    CorruptTokenData,
    LockTimeout,
    MemoryTokenStore,
    Token,
    TokenStore,
)

ACCESS = "access-SECRET-value"
REFRESH = "refresh-SECRET-value"


def make_token(access: str = ACCESS, refresh: str | None = REFRESH, **extra: object) -> Token:
    return Token(
        access_token=access,
        refresh_token=refresh,
        expires_at=2_000_000_000.0,
        issued_at=1_999_996_400.0,
        scope="read",
        extra=dict(extra),
    )


def test_repr_of_token_never_shows_a_secret() -> None:
    token = make_token(id_token="ID-SECRET")
    text = repr(token) + str(token)
    assert "SECRET" not in text
    assert "***" in text
    assert "id_token" in text  # the key is shown, its value is not


def test_token_from_response_computes_expiry_and_keeps_unknown_fields() -> None:
    token = Token.from_response(
        {
            "access_token": ACCESS,
            "token_type": "bearer",
            "expires_in": 3600,
            "refresh_token": REFRESH,
            "scope": "a b",
            "tenant": "t-1",
        },
        now=1000.0,
    )
    assert token.expires_at == 4600.0
    assert token.issued_at == 1000.0
    assert token.lifetime == 3600.0
    assert token.extra == {"tenant": "t-1"}
    assert token.scope == "a b"


@pytest.mark.parametrize("response", [{}, {"access_token": ""}, {"access_token": 5}])
def test_token_from_response_rejects_a_response_without_access_token(
    response: dict[str, object],
) -> None:
    with pytest.raises(ValueError, match="access_token"):
        Token.from_response(response)


@pytest.mark.parametrize(
    ("expires_in", "expected"),
    [
        (3600, 4600.0),
        ("3600", 4600.0),
        ("3600.0", 4600.0),
        (1.5, 1001.5),
        ("soon", 1060.0),  # unusable: the default lifetime
        (True, 1060.0),
        (-5, 1060.0),
        (None, 1060.0),
    ],
)
def test_token_from_response_reads_expires_in_leniently(
    expires_in: object, expected: float
) -> None:
    response = {"access_token": "a"}
    if expires_in is not None:
        response["expires_in"] = expires_in  # type: ignore[assignment]
    token = Token.from_response(response, now=1000.0, default_lifetime=60.0)
    assert token.expires_at == expected
    assert Token.from_response({"access_token": "a"}, now=1000.0).expires_at is None


def test_token_json_round_trip_keeps_unknown_fields() -> None:
    token = make_token(id_token="x", nested={"a": [1, 2]})
    assert Token.from_json(token.to_json()) == token
    assert Token.from_dict(token.to_dict()).extra == {"id_token": "x", "nested": {"a": [1, 2]}}


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"refresh_token": "r"}', "access_token"),
        (b'{"access_token": 12}', "access_token"),
        (b"\xff\xfe", "UTF-8"),
    ],
)
def test_corrupt_stored_token_raises_a_typed_error_without_values(data: bytes, why: str) -> None:
    with pytest.raises(CorruptTokenData, match=why) as caught:
        Token.from_json(data)
    assert "12" not in str(caught.value) or why != "access_token"


def test_expires_within_uses_the_given_clock() -> None:
    token = make_token()
    assert token.expires_at is not None
    assert token.expires_within(60, now=token.expires_at - 30)
    assert not token.expires_within(60, now=token.expires_at - 90)
    assert not Token(access_token="a").expires_within(10**9)


def test_fingerprint_tells_tokens_apart_and_hides_them() -> None:
    assert make_token().fingerprint == make_token().fingerprint
    assert make_token().fingerprint != make_token(refresh="other").fingerprint
    assert ACCESS not in make_token().fingerprint


def test_memory_store_satisfies_the_protocol() -> None:
    assert isinstance(MemoryTokenStore(), TokenStore)


async def test_memory_store_load_save_delete_keys() -> None:
    store = MemoryTokenStore()
    assert await store.load("a") is None
    await store.save("b", make_token())
    await store.save("a", make_token("other"))
    assert await store.keys() == ["a", "b"]
    assert await store.load("b") == make_token()
    assert await store.delete("b")
    assert not await store.delete("b")
    assert await store.keys() == ["a"]
    assert "SECRET" not in repr(store)


async def test_compare_and_set_refuses_a_stale_expected_token() -> None:
    store = MemoryTokenStore()
    old, new, newer = make_token("t1"), make_token("t2"), make_token("t3")
    assert await store.compare_and_set("k", None, old)  # absent -> set
    assert not await store.compare_and_set("k", None, new)  # present: "absent" is stale
    assert await store.compare_and_set("k", old, new)
    # A slow refresher still holding `old` cannot overwrite `new`.
    assert not await store.compare_and_set("k", old, newer)
    assert await store.load("k") == new


async def test_memory_lock_is_exclusive_per_key_and_times_out() -> None:
    store = MemoryTokenStore()
    async with store.lock("k"):
        with pytest.raises(LockTimeout, match="'k'"):
            async with store.lock("k", timeout=0.05):
                pass  # pragma: no cover
        async with store.lock("other", timeout=0.05):
            pass
    async with store.lock("k", timeout=0.05):
        pass


async def test_memory_lock_serializes_tasks() -> None:
    store = MemoryTokenStore()
    inside = 0
    peak = 0

    async def worker() -> None:
        nonlocal inside, peak
        async with store.lock("k"):
            inside += 1
            peak = max(peak, inside)
            await anyio.sleep(0.001)
            inside -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(worker)
    assert peak == 1


def test_lock_timeout_pickles() -> None:
    error = LockTimeout("k", 1.0, "memory store")
    assert "'k'" in str(pickle.loads(pickle.dumps(error)))  # noqa: S301 - our own bytes
