"""Pending-login stores: one-time atomic take, bounds (per browser, per store), expiry, outages."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from tests.support import free_port
from wiser_async.errors import (
    AuthorizationRequired,
    InsecurePermissions,
    NotFound,
    RateLimited,
    StoreUnavailable,
)
from wiser_async.integrations._http_errors import LoginError, http_answer
from wiser_async.integrations._pending import GRACE, LOGINS_PER_BROWSER, PendingLogin, Taken
from wiser_async.integrations._session import cookie_digest, new_browser_id, new_cookie
from wiser_async.integrations.fastapi import (
    FilePendingStore,
    MemoryPendingStore,
    PendingStore,
    RedisPendingStore,
)


def pending(
    state: str | None = None, *, account: str = "acme", ttl: float = 60.0, browser: str = ""
) -> PendingLogin:
    return PendingLogin(
        account=account,
        state=state or secrets.token_urlsafe(32),
        code_verifier="verifier-" + secrets.token_hex(8),
        redirect_uri="http://127.0.0.1/cb",
        browser=browser or new_browser_id(),
        expires_at=time.time() + ttl,
    )


def cookie() -> str:
    return cookie_digest(new_cookie())


def make_store(kind: str, tmp_path: Path, redis_url: str | None, max_pending: int) -> PendingStore:
    if kind == "memory":
        return MemoryPendingStore(max_pending=max_pending)
    if kind == "file":
        return FilePendingStore(tmp_path / "pending", max_pending=max_pending)
    return RedisPendingStore(redis_url, prefix=uuid.uuid4().hex, max_pending=max_pending)


@pytest.fixture(params=["memory", "file", "redis"])
def kind(request: pytest.FixtureRequest) -> str:
    if request.param == "redis":
        request.getfixturevalue("redis_url")
    return str(request.param)


async def opened(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, max_pending: int
) -> AsyncIterator[PendingStore]:
    redis_url = request.getfixturevalue("redis_url") if kind == "redis" else None
    made = make_store(kind, tmp_path, redis_url, max_pending)
    yield made
    await made.aclose()


@pytest.fixture
async def store(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[PendingStore]:
    async for made in opened(kind, tmp_path, request, 10_000):
        yield made


@pytest.fixture
async def small_store(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[PendingStore]:
    """A store of 5 entries at most."""
    async for made in opened(kind, tmp_path, request, 5):
        yield made


@pytest.mark.timeout(20)
async def test_a_login_is_taken_once_and_a_replay_is_named(store: PendingStore) -> None:
    login = pending("s1")
    assert await store.start(login, cookie=cookie(), previous_cookie=None)
    found = await store.find("s1")
    assert isinstance(found, PendingLogin)
    assert found == await store.find("s1")  # finding changes nothing
    taken = await store.take("s1")
    assert isinstance(taken, PendingLogin)
    assert taken.code_verifier == login.code_verifier
    assert taken.browser == login.browser
    assert "verifier" not in repr(taken)
    assert await store.take("s1") is Taken.USED
    assert await store.find("s1") is Taken.USED
    assert await store.take("never-issued") is Taken.UNKNOWN
    assert await store.find("never-issued") is Taken.UNKNOWN
    assert await store.count() == 1  # the used marker, until the login's time is over


@pytest.mark.timeout(20)
async def test_an_expired_login_is_named_expired(store: PendingStore) -> None:
    assert await store.start(pending("old", ttl=-1.0), cookie=cookie(), previous_cookie=None)
    assert await store.find("old") is Taken.EXPIRED
    assert await store.take("old") is Taken.EXPIRED


@pytest.mark.timeout(20)
async def test_concurrent_takes_give_the_login_to_exactly_one(store: PendingStore) -> None:
    assert await store.start(pending("race"), cookie=cookie(), previous_cookie=None)
    results: list[PendingLogin | Taken] = []

    async def take() -> None:
        results.append(await store.take("race"))

    async with anyio.create_task_group() as group:
        for _ in range(10):
            group.start_soon(take)
    assert sum(isinstance(result, PendingLogin) for result in results) == 1
    assert results.count(Taken.USED) == 9


@pytest.mark.timeout(30)
async def test_a_browsers_new_login_of_an_account_replaces_its_older_one(
    store: PendingStore,
) -> None:
    current = cookie()
    browser = new_browser_id()
    assert await store.start(
        pending("first", browser=browser), cookie=current, previous_cookie=None
    )
    for number in range(300):
        following = cookie()
        assert await store.start(pending(f"s{number}"), cookie=following, previous_cookie=current)
        current = following
    assert await store.count() == 1
    assert await store.find("first") is Taken.UNKNOWN
    newest = await store.find("s299")
    assert isinstance(newest, PendingLogin)
    assert newest.browser == browser  # the browser kept its id through every new cookie
    assert await store.browser(current) == browser


@pytest.mark.timeout(20)
async def test_a_browsers_other_logins_follow_its_new_cookie(store: PendingStore) -> None:
    first, second = cookie(), cookie()
    assert await store.start(pending("a", account="acme"), cookie=first, previous_cookie=None)
    assert await store.start(pending("g", account="globex"), cookie=second, previous_cookie=first)
    acme, globex = await store.find("a"), await store.find("g")
    assert isinstance(acme, PendingLogin)
    assert isinstance(globex, PendingLogin)
    assert acme.browser == globex.browser == await store.browser(second)
    assert await store.browser(first) is None  # the old cookie names nothing any more
    assert await store.count() == 2


@pytest.mark.timeout(20)
async def test_a_browser_keeps_at_most_its_newest_logins(store: PendingStore) -> None:
    current = cookie()
    assert await store.start(pending("a0", account="a0"), cookie=current, previous_cookie=None)
    for number in range(1, LOGINS_PER_BROWSER + 4):
        following = cookie()
        login = pending(f"a{number}", account=f"a{number}")
        assert await store.start(login, cookie=following, previous_cookie=current)
        current = following
    assert await store.count() == LOGINS_PER_BROWSER
    assert await store.find("a0") is Taken.UNKNOWN
    assert isinstance(await store.find(f"a{LOGINS_PER_BROWSER + 3}"), PendingLogin)


@pytest.mark.timeout(20)
async def test_a_full_store_refuses_new_browsers_and_stores_nothing(
    small_store: PendingStore,
) -> None:
    cookies = [cookie() for _ in range(5)]
    for number, value in enumerate(cookies):
        assert await small_store.start(pending(f"s{number}"), cookie=value, previous_cookie=None)
    refused = pending("one-too-many")
    refused_cookie = cookie()
    assert not await small_store.start(refused, cookie=refused_cookie, previous_cookie=None)
    assert await small_store.count() == 5
    assert await small_store.find("one-too-many") is Taken.UNKNOWN
    assert await small_store.browser(refused_cookie) is None
    # A browser replacing its own login takes no more room: still accepted.
    assert await small_store.start(pending("again"), cookie=cookie(), previous_cookie=cookies[0])
    assert await small_store.count() == 5
    # Used markers hold their room until their login's time is over.
    assert isinstance(await small_store.take("s1"), PendingLogin)
    assert not await small_store.start(pending("still"), cookie=cookie(), previous_cookie=None)


@pytest.mark.timeout(20)
async def test_used_markers_and_expired_logins_leave_with_their_login(
    store: PendingStore, kind: str
) -> None:
    # Kept for GRACE after expiry: these two have 0.5 s left.
    short = pending("short", ttl=0.5 - GRACE)
    gone = pending("gone", ttl=0.5 - GRACE)
    for login in (short, gone):
        assert await store.start(login, cookie=cookie(), previous_cookie=None)
    assert await store.take("short") is Taken.EXPIRED  # expired, still named as such
    deadline = time.monotonic() + 10
    for state in ("gone", "short"):
        while await store.find(state) is not Taken.UNKNOWN:
            assert time.monotonic() < deadline
            await anyio.sleep(0.05)
    if kind != "file":  # the file store prunes its rows at most every PRUNE_INTERVAL
        assert await store.count() == 0


@pytest.mark.asyncio_only
@pytest.mark.timeout(20)
async def test_a_redis_outage_is_a_store_error_without_the_address() -> None:
    port = free_port()
    store = RedisPendingStore(f"redis://127.0.0.1:{port}/0", prefix="down")
    try:
        with pytest.raises(StoreUnavailable) as raised:
            await store.start(pending(), cookie=cookie(), previous_cookie=None)
        with pytest.raises(StoreUnavailable):
            await store.find("x")
    finally:
        await store.aclose()
    assert str(port) not in str(raised.value)
    assert "127.0.0.1" not in str(raised.value)


@pytest.mark.timeout(20)
async def test_the_file_store_is_private_to_its_user(tmp_path: Path) -> None:
    store = FilePendingStore(tmp_path / "pending")
    try:
        assert await store.start(pending(), cookie=cookie(), previous_cookie=None)
    finally:
        await store.aclose()
    assert (tmp_path / "pending").stat().st_mode & 0o777 == 0o700
    for path in (tmp_path / "pending").iterdir():
        assert path.stat().st_mode & 0o077 == 0, path


def test_max_pending_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_pending"):
        MemoryPendingStore(max_pending=0)
    with pytest.raises(ValueError, match="max_pending"):
        FilePendingStore(tmp_path, max_pending=0)
    with pytest.raises(ValueError, match="max_per_account"):
        MemoryPendingStore(max_per_account=0)


def test_errors_map_to_http_answers() -> None:
    required = http_answer(AuthorizationRequired("acme", "no token"))
    assert required is not None
    assert (required.status, required.title) == (401, "log in again")
    assert required.public is None  # the library's message goes to the log only
    limited = http_answer(
        RateLimited("slow down", retry_after=2.5, status_code=429, method="GET", path="/x")
    )
    assert limited is not None
    assert (limited.status, limited.headers) == (503, {"Retry-After": "3"})
    missing = http_answer(NotFound("no such site", status_code=404, method="GET", path="/x"))
    assert missing is not None
    assert missing.status == 404
    used = http_answer(LoginError("used", "again"))
    assert used is not None
    assert (used.status, used.public) == (409, "again")
    busy = http_answer(LoginError("busy", "later"))
    assert busy is not None
    assert busy.status == 503
    assert "Retry-After" in busy.headers
    assert http_answer(ValueError("x")) is None


@pytest.mark.timeout(20)
async def test_an_account_holds_at_most_its_share_of_the_store(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # A client that drops its cookie is a new browser at every login.
    async for store in opened(kind, tmp_path, request, 100):
        assert store.max_per_account == 32
        results = [
            await store.start(pending(), cookie=cookie(), previous_cookie=None) for _ in range(40)
        ]
        assert results.count(True) == 32
        assert await store.count() == 32
        # Another account is not crowded out.
        assert await store.start(pending(account="globex"), cookie=cookie(), previous_cookie=None)


@pytest.mark.timeout(20)
async def test_concurrent_takes_of_an_expired_login_all_say_expired(store: PendingStore) -> None:
    assert await store.start(pending("late", ttl=-1.0), cookie=cookie(), previous_cookie=None)
    results: list[PendingLogin | Taken] = []

    async def take() -> None:
        results.append(await store.take("late"))

    async with anyio.create_task_group() as group:
        for _ in range(10):
            group.start_soon(take)
    assert results == [Taken.EXPIRED] * 10


@pytest.mark.timeout(20)
async def test_the_memory_store_prunes_whatever_the_wall_clock_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = MemoryPendingStore(max_pending=3)
    for _ in range(3):
        assert await store.start(pending(ttl=0.3 - GRACE), cookie=cookie(), previous_cookie=None)
    stepped_back = time.time() - 3600
    monkeypatch.setattr(time, "time", lambda: stepped_back)
    deadline = time.monotonic() + 10
    while await store.count():
        assert time.monotonic() < deadline
        await anyio.sleep(0.05)
    assert await store.start(pending(), cookie=cookie(), previous_cookie=None)


@pytest.mark.parametrize("where", ["directory", "file", "link"])
async def test_the_file_store_refuses_a_place_others_can_reach(where: str, tmp_path: Path) -> None:
    directory = tmp_path / "pending"
    directory.mkdir(mode=0o700)
    if where == "directory":
        directory.chmod(0o777)
    elif where == "file":
        (directory / "pending.sqlite3").touch(mode=0o666)
        (directory / "pending.sqlite3").chmod(0o666)
    else:
        (directory / "pending.sqlite3").symlink_to(tmp_path / "elsewhere")
    store = FilePendingStore(directory)
    try:
        with pytest.raises((InsecurePermissions, StoreUnavailable)):
            await store.start(pending(), cookie=cookie(), previous_cookie=None)
    finally:
        await store.aclose()
    assert not (tmp_path / "elsewhere").exists()
