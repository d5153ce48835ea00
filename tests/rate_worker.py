"""A worker process of the shared-pause test: calls the API through a shared RedisRateLimiter.

``python -m tests.rate_worker MODE --api URL --redis URL --key KEY [--path-id ID]
[--duration S]``, with the token's JSON in the environment variable
``WISER_TEST_TOKEN`` (never in argv). ``steady`` calls `locations.list()`
for `--duration` seconds and prints the wall-clock time of each answer;
``throttled`` gets the location `--path-id` once (the sandbox answers 429
with a Retry-After) and prints when the 429 arrived. One JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import anyio

from token_stores import MemoryTokenStore, Token
from wiser_async import ApiConfig, AsyncWiserClient, RedisRateLimiter, RetryPolicy, WiserOAuth
from wiser_async.errors import RateLimited


async def work(args: argparse.Namespace) -> dict[str, object]:
    store = MemoryTokenStore()
    await store.save("acct", Token.from_json(os.environ["WISER_TEST_TOKEN"]))
    async with (
        RedisRateLimiter(args.redis, key=args.key, rate=200) as limiter,
        WiserOAuth(
            client_id="sandbox-client",
            client_secret="sandbox-secret",
            store=store,
            token_url=args.token_url,
        ) as oauth,
        AsyncWiserClient(
            oauth,
            "acct",
            config=ApiConfig(base_url=args.api),
            rate_limit=limiter,
            retry=RetryPolicy(attempts=1),
        ) as client,
    ):
        if args.mode == "throttled":
            try:
                await client.locations.get(args.path_id)
            except RateLimited as exc:
                return {"throttled_at": time.time(), "retry_after": exc.retry_after}
            return {"throttled_at": None}
        answers: list[float] = []
        print(json.dumps({"ready": True}), flush=True)  # noqa: T201 - the report to the test
        ends = time.monotonic() + args.duration
        while time.monotonic() < ends:
            await client.locations.list()
            answers.append(time.time())
        return {"answers": answers}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.rate_worker")
    parser.add_argument("mode", choices=["steady", "throttled"])
    parser.add_argument("--api", required=True)
    parser.add_argument("--token-url", required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--path-id", default="")
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    print(json.dumps(anyio.run(work, args)), flush=True)  # noqa: T201 - the report to the test
    sys.exit(0)


if __name__ == "__main__":
    main()
