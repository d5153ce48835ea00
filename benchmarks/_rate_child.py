"""A worker of the `shared_rate` benchmark: one process's crawl, sharing a store and a limit.

``python -m benchmarks._rate_child --api URL --token-url URL --redis URL
--prefix P --key K --rate R --shared|--local --duration S --start-at EPOCH``
crawls the account of a shared `RedisTokenStore` until `--duration` after
the common start, paced by a `RedisRateLimiter` on `--key` (``--shared``) or
by its own `rate_limit=R` (``--local``), and prints one JSON line: its
requests, 429s and retries.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import anyio

from token_stores import RedisTokenStore
from wiser_async import ApiConfig, AsyncWiserClient, RedisRateLimiter, RetryPolicy, WiserOAuth

from ._client import ACCOUNT, CLIENT_ID, CLIENT_SECRET, MAX_IN_FLIGHT


async def _crawl(args: argparse.Namespace) -> dict[str, Any]:
    store = RedisTokenStore(args.redis, prefix=args.prefix)
    limiter = RedisRateLimiter(args.redis, key=args.key, rate=args.rate) if args.shared else None
    async with (
        WiserOAuth(
            client_id=CLIENT_ID, client_secret=CLIENT_SECRET, store=store, token_url=args.token_url
        ) as oauth,
        AsyncWiserClient(
            oauth,
            ACCOUNT,
            config=ApiConfig(base_url=args.api),
            max_in_flight=MAX_IN_FLIGHT,
            rate_limit=limiter if limiter is not None else args.rate,
            retry=RetryPolicy(attempts=5),
        ) as client,
    ):
        await oauth.token(ACCOUNT)  # the token is read before the clock starts
        await anyio.sleep(max(0.0, args.start_at - time.time()))
        await client.crawl(timeout=max(0.1, args.start_at + args.duration - time.time()))
        stats = client.stats
        report = {
            "requests": stats.requests,
            "throttled": stats.throttled,
            "retries": stats.retries,
        }
    if limiter is not None:
        await limiter.aclose()
    await store.aclose()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._rate_child")
    parser.add_argument("--api", required=True)
    parser.add_argument("--token-url", required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--rate", type=float, required=True)
    pacing = parser.add_mutually_exclusive_group(required=True)
    pacing.add_argument("--shared", action="store_true")
    pacing.add_argument("--local", action="store_true")
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--start-at", type=float, required=True)
    print(json.dumps(anyio.run(_crawl, parser.parse_args())), flush=True)


if __name__ == "__main__":
    main()
