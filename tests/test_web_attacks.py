"""An attacker against both example backends, each under 2 workers: every attempt is refused.

Real processes: the sandbox in its own process, ``uvicorn --workers 2``
(FastAPI) or two aiohttp processes on one port, and a redis-server of the
test's own (tokens, pending logins and the rate limit), which the test stops
at the end to see what an outage shows. The app users are alice (acme,
globex, hooli, umbrella) and mallory (initech), as tests/web_support.py
sets them.

Each attempt is refused (401/403), or the real callback still succeeds
after it; no answer to mallory or to an anonymous browser carries a byte of
alice's customers' data (none of their ids); the grants stored before the
attacks are the same after them (fingerprints); and no log line of the
apps holds a callback's code or state.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from tests.support import consent, free_port, start_redis
from tests.web_support import LOGIN_COOKIE, Browser, browsers, fingerprints, serve_app
from token_stores import RedisTokenStore
from wiser_async.integrations.fastapi import RedisPendingStore
from wiser_async.sandbox import SandboxProcess

pytestmark = [pytest.mark.asyncio_only, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def sandbox_process() -> Iterator[SandboxProcess]:
    with SandboxProcess(locations=1, sites_per_location=2, devices_per_site=3) as process:
        yield process


def ids_in(value: Any) -> set[str]:
    """Every id-like string of a JSON value (``id``, ``siteId``, ...)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key.lower().endswith("id") and isinstance(item, str):
                found.add(item)
            found |= ids_in(item)
    elif isinstance(value, list):
        for item in value:
            found |= ids_in(item)
    return found


class Attack:
    """The apps' browsers, alice's customers' ids, and the checks every answer must pass."""

    def __init__(self, alice: Browser, alice_other: Browser, mallory: Browser, anon: Browser):
        self.alice, self.alice_other, self.mallory, self.anon = alice, alice_other, mallory, anon
        self.secret_ids: set[str] = set()
        self.callbacks: list[str] = []

    def refused(self, answer: httpx2.Response, *statuses: int) -> None:
        assert answer.status_code in statuses, (answer.status_code, answer.text[:300])
        self.no_leak(answer)

    def no_leak(self, answer: httpx2.Response) -> None:
        leaked = [value for value in self.secret_ids if value in answer.text]
        assert leaked == [], f"{len(leaked)} of alice's ids served"

    async def connect(self, browser: Browser, account: str, *, other: Browser) -> None:
        """`browser` logs `account` in; the callback lands on `other` (the other worker)."""
        url, _ = await browser.login(account)
        callback = await consent(url)
        self.callbacks.append(callback)
        done = await other.get(callback)
        assert done.status_code == 302, done.text
        assert done.headers["x-worker"] == other.worker != browser.worker


@pytest.mark.parametrize("kind", ["fastapi", "aiohttp"])
async def test_attacks_are_refused_serve_nothing_and_change_no_grant(
    kind: str, sandbox_process: SandboxProcess, tmp_path: Path
) -> None:
    port = free_port()
    redis_server = start_redis(port, tmp_path)
    redis_url = f"redis://127.0.0.1:{port}/0"
    try:
        with serve_app(kind, sandbox_process, redis_url, "attack", log_level="info") as (
            origin,
            prefix,
            logs,
        ):
            callbacks = await _attack(
                kind, origin, prefix, redis_url, redis_server, sandbox_process
            )
    finally:
        redis_server.kill()
        redis_server.wait(10)
    _no_code_or_state_in(logs, kind, callbacks)


async def _attack(
    kind: str,
    origin: str,
    prefix: str,
    redis_url: str,
    redis_server: Any,
    sandbox_process: SandboxProcess,
) -> list[str]:
    """Play every attack; the callback URLs seen (their codes and states must not be logged)."""
    pinned = await browsers(origin, kind, 2)
    (alice, mallory), (alice_other, mallory_other) = pinned.values()
    anon = Browser(mallory_other.client, mallory_other.worker, kind)
    attack = Attack(alice, alice_other, mallory, anon)
    store = RedisTokenStore(redis_url, prefix=prefix)
    pending = RedisPendingStore(redis_url, prefix=prefix)
    try:
        await alice.sign_in("alice")
        alice_other.user, alice_other.cookies = alice.user, alice.cookies
        await mallory.sign_in("mallory")
        mallory_other.user, mallory_other.cookies = mallory.user, mallory.cookies
        for account in ("acme", "globex"):
            await attack.connect(alice, account, other=alice_other)
        await attack.connect(mallory, "initech", other=mallory_other)
        for account in ("acme", "globex"):
            answer = await alice.get(f"/customers/{account}/devices")
            assert answer.status_code == 200, answer.text
            attack.secret_ids |= ids_in(answer.json())
        assert len(attack.secret_ids) >= 12
        before = await fingerprints(store)
        assert set(before) == {"acme", "globex", "initech"}
        waiting = await pending.count()

        # Anonymous reads, and an anonymous login.
        for path in ("/customers/acme/devices", "/portfolio"):
            attack.refused(await anon.get(path), 401)
        attack.refused(await anon.get("/wiser/login/acme"), 401, 403)
        nobody = Browser(mallory_other.client, mallory_other.worker, kind)
        nobody.user = ("nobody", "")  # an unknown user with an empty password
        attack.refused(await nobody.get("/portfolio"), 401)
        # Mallory reads alice's customer, starts a login of it, reads the portfolio.
        attack.refused(await mallory.get("/customers/acme/devices"), 403)
        attack.refused(await mallory.get("/customers/globex/devices"), 403)
        login = await mallory.get("/wiser/login/acme")
        attack.refused(login, 403)
        assert "set-cookie" not in login.headers
        portfolio = await mallory.get("/portfolio")
        assert portfolio.status_code == 200
        assert set(portfolio.json()["accounts"]) == {"initech"}
        attack.no_leak(portfolio)
        # A capture link: alice is sent to log in under mallory's key, or a new one.
        for key in ("initech", "mallory-trap"):
            attack.refused(await alice.get(f"/wiser/login/{key}"), 403)
        assert await pending.count() == waiting

        # A cookieless callback, and mallory's, before alice's own.
        url, _ = await alice.login("umbrella")
        callback = await consent(url)
        attack.callbacks.append(callback)
        attack.refused(await anon.get(callback, cookies={}), 401, 403)
        attack.refused(await mallory.get(callback), 403)
        done = await alice_other.get(callback)
        assert done.status_code == 302, done.text

        # A planted cookie: mallory's own login cookie, put in alice's browser.
        _, planted = await mallory.login("initech")
        alice.cookies[LOGIN_COOKIE] = planted
        url, issued = await alice.login("hooli")
        assert issued != planted  # never adopted
        callback = await consent(url)
        attack.callbacks.append(callback)
        attack.refused(await mallory.get(callback, cookies={LOGIN_COOKIE: planted}), 403)
        attack.refused(await mallory.get(callback), 403)
        done = await alice_other.get(callback)
        assert done.status_code == 302, done.text

        after = await fingerprints(store)
        assert {key: after[key] for key in before} == before
        assert set(after) == {*before, "umbrella", "hooli"}

        # A site without consent, and one gone: listed as missing, the rest served.
        devices = (await alice.get("/customers/acme/devices")).json()["devices"]
        forbidden, gone = sorted({device["siteId"] for device in devices})
        sandbox_process.set_faults(forbidden=[forbidden], missing=[gone])
        try:
            answer = await alice.get("/customers/acme/devices")
        finally:
            sandbox_process.set_faults(forbidden=[], missing=[])
        assert answer.status_code == 200, answer.text
        assert answer.json()["missing"] == [
            {"site": forbidden, "reason": "forbidden"},
            {"site": gone, "reason": "not_found"},
        ]
        assert answer.json()["complete"] is False

        # The store's outage: a 503 that names no server.
        redis_server.kill()
        redis_server.wait(10)
        for path in ("/customers/acme/devices", "/wiser/login/globex"):
            answer = await alice.get(path)
            assert answer.status_code == 503, answer.text
            assert str(_port(redis_url)) not in answer.text
            assert "Redis" not in answer.text
            assert re.search(r"[0-9a-f]{16}", answer.text)  # the request id
        return attack.callbacks
    finally:
        for closing in (alice, mallory, alice_other, mallory_other):
            await closing.aclose()
        await store.aclose()
        await pending.aclose()


def _port(redis_url: str) -> int:
    return int(redis_url.rsplit(":", 1)[1].split("/")[0])


def _no_code_or_state_in(logs: list[str], kind: str, callbacks: list[str]) -> None:
    """No log line holds a callback's code or state; the callbacks were logged (masked)."""
    text = "\n".join(logs)
    assert "/wiser/callback?code=***&state=***" in text, f"{kind}: no callback in the access log"
    values = [
        value
        for callback in callbacks
        for name, found in parse_qs(urlsplit(callback).query).items()
        if name in ("code", "state")
        for value in found
    ]
    assert len(values) == 2 * len(callbacks)
    leaked = [value for value in values if value in text]
    assert leaked == [], f"{kind}: {len(leaked)} codes or states in the logs"
    assert re.findall(r"(?:code|state)=(?!\*\*\*)[A-Za-z0-9_\-]{6,}", text) == []
