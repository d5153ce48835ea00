"""A worker process of the refresh-storm test: many coroutines calling the API.

``python -m tests.storm_worker --store file:DIR|redis://... --api URL --token-url URL
--coroutines 50 --duration 20 --start-at EPOCH`` prints one JSON line of counts.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from collections import Counter

import anyio

from token_stores import FileTokenStore, RedisTokenStore, TokenStore
from wiser_async import ApiConfig, AsyncWiserClient, RetryPolicy, WiserOAuth


def open_store(spec: str, prefix: str) -> TokenStore:
    if spec.startswith("file:"):
        return FileTokenStore(spec.removeprefix("file:"))
    return RedisTokenStore(spec, prefix=prefix)


async def storm(args: argparse.Namespace) -> dict[str, object]:
    store = open_store(args.store, args.prefix)
    ok = 0
    failures: Counter[str] = Counter()
    async with (
        WiserOAuth(
            client_id="sandbox-client",
            client_secret="sandbox-secret",
            redirect_uri="http://127.0.0.1:8765/callback",
            store=store,
            token_url=args.token_url,
        ) as oauth,
        AsyncWiserClient(
            oauth,
            "acct",
            config=ApiConfig(base_url=args.api),
            max_in_flight=args.coroutines,
            retry=RetryPolicy(attempts=3, wait_initial=0.05, wait_max=0.2),
        ) as client,
    ):
        refreshed_at: list[float] = []

        class RefreshTimes(logging.Handler):
            # The library logs each refresh it makes at INFO.
            def emit(self, record: logging.LogRecord) -> None:
                if record.getMessage().startswith("refreshed the token"):
                    refreshed_at.append(time.time() - args.start_at)

        oauth_logger = logging.getLogger("wiser_async.oauth")
        oauth_logger.setLevel(logging.INFO)
        oauth_logger.addHandler(RefreshTimes())
        await anyio.sleep(max(0.0, args.start_at - time.time()))
        # Absolute, so that a worker slow to start does not stretch the storm.
        deadline = args.start_at + args.duration

        async def call_repeatedly() -> None:
            nonlocal ok
            await anyio.sleep(random.uniform(0, 0.2))
            while time.time() < deadline:
                try:
                    await client.locations.page(limit=1)
                    ok += 1
                except Exception as exc:  # noqa: BLE001 - counted and reported by name
                    failures[f"{type(exc).__name__}: {exc}"] += 1
                await anyio.sleep(random.uniform(0.1, 0.3))

        async with anyio.create_task_group() as tg:
            for _ in range(args.coroutines):
                tg.start_soon(call_repeatedly)
        refreshes = oauth.token_requests.get("refresh_token", 0)
    await store.aclose()
    return {
        "ok": ok,
        "failures": dict(failures),
        "refreshes": refreshes,
        "refreshed_at": [round(moment, 3) for moment in refreshed_at],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--prefix", default="storm")
    parser.add_argument("--api", required=True)
    parser.add_argument("--token-url", required=True)
    parser.add_argument("--coroutines", type=int, default=50)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--start-at", type=float, default=0.0)
    args = parser.parse_args()
    print(json.dumps(anyio.run(storm, args)), flush=True)  # noqa: T201 - the report


if __name__ == "__main__":
    main()
