"""Pending-login stores: one-time atomic take, TTL, replay and foreign state told apart."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from wiser_async.errors import AuthorizationRequired, NotFound, RateLimited
from wiser_async.integrations._http_errors import LoginError, http_answer
from wiser_async.integrations._pending import (
    FilePendingStore,
    MemoryPendingStore,
    PendingLogin,
    PendingStore,
    RedisPendingStore,
    Taken,
)


def pending(state: str, *, ttl: float = 60.0) -> PendingLogin:
    return PendingLogin(
        account="acme",
        state=state,
        code_verifier="verifier-" + state,
        redirect_uri="http://127.0.0.1/cb",
        session_digest="d",
        expires_at=time.time() + ttl,
    )


@pytest.fixture(params=["memory", "file", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[PendingStore]:
    made: PendingStore
    if request.param == "memory":
        made = MemoryPendingStore()
    elif request.param == "file":
        made = FilePendingStore(tmp_path / "pending")
    else:
        made = RedisPendingStore(request.getfixturevalue("redis_url"), prefix=uuid.uuid4().hex)
    yield made
    await made.aclose()


@pytest.mark.timeout(20)
async def test_a_login_is_taken_once_and_a_replay_is_named(store: PendingStore) -> None:
    await store.put(pending("s1"))
    taken = await store.take("s1")
    assert isinstance(taken, PendingLogin)
    assert taken.code_verifier == "verifier-s1"
    assert "verifier" not in repr(taken)
    assert await store.take("s1") is Taken.USED
    assert await store.take("never-issued") is Taken.UNKNOWN
    assert await store.take("never-issued") is Taken.UNKNOWN


@pytest.mark.timeout(20)
async def test_an_expired_login_is_named_expired(store: PendingStore) -> None:
    await store.put(pending("old", ttl=-1.0))
    assert await store.take("old") is Taken.EXPIRED


@pytest.mark.timeout(20)
async def test_concurrent_takes_give_the_login_to_exactly_one(store: PendingStore) -> None:
    await store.put(pending("race"))
    results: list[PendingLogin | Taken] = []

    async def take() -> None:
        results.append(await store.take("race"))

    async with anyio.create_task_group() as group:
        for _ in range(10):
            group.start_soon(take)
    assert sum(isinstance(result, PendingLogin) for result in results) == 1
    assert results.count(Taken.USED) == 9


def test_errors_map_to_http_answers() -> None:
    required = http_answer(AuthorizationRequired("acme", "no token"))
    assert required is not None
    assert (required.status, required.title) == (401, "log in again")
    limited = http_answer(
        RateLimited("slow down", retry_after=2.5, status_code=429, method="GET", path="/x")
    )
    assert limited is not None
    assert (limited.status, limited.headers) == (503, {"Retry-After": "3"})
    missing = http_answer(NotFound("no such site", status_code=404, method="GET", path="/x"))
    assert missing is not None
    assert missing.status == 404
    assert http_answer(LoginError("used", "again")) is not None
    assert http_answer(ValueError("x")) is None
