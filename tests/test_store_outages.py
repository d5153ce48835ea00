"""Grants survive store outages, paused lock holders and revocations across real processes.

Real processes, a Redis of the test's own (killed with SIGKILL and restarted),
a real small file system that fills up, and the sandbox over loopback HTTP.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

from tests.support import make_client, make_oauth
from token_stores import FileTokenStore, RedisTokenStore, Token, TokenStore
from wiser_async.sandbox import Sandbox, SandboxProcess, SandboxUrls

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def sandbox_process() -> Iterator[SandboxProcess]:
    with SandboxProcess(locations=1, sites_per_location=1) as process:
        yield process


def worker(process: SandboxProcess, mode: str, store: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.token_worker",
            mode,
            "--store",
            store,
            "--api",
            process.urls.api_base_url,
            "--token-url",
            process.urls.token_url,
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def store_spec(kind: str, tmp_path: Path, redis_url: str | None) -> tuple[str, list[str]]:
    if kind == "file":
        return f"file:{tmp_path / 'tokens'}", []
    assert redis_url is not None
    return redis_url, ["--prefix", f"revoke-{uuid.uuid4().hex}"]


def open_spec(spec: str, extra: list[str]) -> TokenStore:
    if spec.startswith("file:"):
        return FileTokenStore(spec.removeprefix("file:"))
    return RedisTokenStore(spec, prefix=extra[1])


@pytest.mark.parametrize("kind", ["file", "redis"])
@pytest.mark.timeout(90)
def test_tokens_delete_in_one_process_stops_another_within_a_second(
    sandbox_process: SandboxProcess, tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    redis_url = request.getfixturevalue("redis_url") if kind == "redis" else None
    spec, extra = store_spec(kind, tmp_path, redis_url)
    token = Token.from_response(sandbox_process.issue_token("default"))

    async def seed() -> None:
        store = open_spec(spec, extra)
        await store.save("acct", token)
        await store.aclose()

    anyio.run(seed)
    import redis

    raw = redis.Redis.from_url(redis_url or "redis://127.0.0.1:6379/0")
    if kind == "file":
        exists: Callable[[], bool] = (
            FileTokenStore(spec.removeprefix("file:")).path_of("acct").exists
        )
    else:
        exists = lambda: bool(raw.keys(f"{extra[1]}:*:token"))  # noqa: E731
    gone_at: list[float] = []

    def watch() -> None:
        # The moment the token leaves the store, seen from outside both processes.
        while exists():
            time.sleep(0.002)
        gone_at.append(time.time())

    using = worker(sandbox_process, "until-revoked", spec, *extra)
    watcher = threading.Thread(target=watch, daemon=True)
    try:
        assert using.stdout is not None
        assert using.stdout.readline().strip() == "ready", using.stderr
        watcher.start()
        command = [sys.executable, "-m", "wiser_async", "tokens", "delete", "acct", "--yes"]
        command += ["--store", spec if kind == "file" else f"{spec}?prefix={extra[1]}"]
        deleted = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
        assert deleted.returncode == 0, deleted.stderr
        out, err = using.communicate(timeout=30)
        assert using.returncode == 0, err[-2000:]
        watcher.join(5)
    finally:
        using.kill()
        using.wait(5)
        raw.close()
    noticed = json.loads(out.strip().splitlines()[-1])["noticed_at"] - gone_at[0]
    print(f"revocation ({kind} store): noticed {noticed:.3f} s after the delete")  # noqa: T201
    assert noticed < 1.0


@contextlib.contextmanager
def small_file_system(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:  # pragma: no cover - the CI machine runs as root
        pytest.skip(f"cannot mount a small file system here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


async def test_a_full_disk_during_a_save_keeps_the_new_token_and_saves_it_when_there_is_room(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path
) -> None:
    with small_file_system(tmp_path / "small", "64k") as directory:
        store = FileTokenStore(directory / "tokens")
        stale = Token.from_response(sandbox.issue_token())
        stale = Token(
            access_token=stale.access_token,
            refresh_token=stale.refresh_token,
            expires_at=time.time() - 1,
            issued_at=time.time() - 3601,
        )
        await store.save("acct", stale)
        filler = directory / "filler"
        with contextlib.suppress(OSError), filler.open("wb", buffering=0) as file:
            while True:  # until the disk is full
                file.write(b"\0" * 4096)
        async with make_oauth(urls, store) as oauth, make_client(oauth, urls) as client:
            new = await oauth.token("acct")
            assert new.fingerprint != stale.fingerprint
            assert oauth.unsaved_accounts == ["acct"]
            assert await client.locations.list()
            filler.unlink()

            async def saved() -> bool:
                await client.locations.list()
                return not oauth.unsaved_accounts

            with anyio.fail_after(20):
                while not await saved():  # noqa: ASYNC110 - each try is an API call
                    await anyio.sleep(0.1)
        stored = await FileTokenStore(directory / "tokens").load("acct")
        assert stored is not None
        assert stored.fingerprint == new.fingerprint
    assert sandbox.stats.token_errors == {}
