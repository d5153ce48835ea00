"""A worker process of the shared-pause tests: calls the API through a shared RedisRateLimiter.

``python -m tests.rate_worker MODE --api URL --redis URL --key KEY [--path-id ID]
[--duration S] [--rate R] [--requests N] [--pause S]``, with the token's JSON
in the environment variable ``WISER_TEST_TOKEN`` (never in argv).
``steady`` calls `locations.list()` for `--duration` seconds and prints the
wall-clock time of each answer; ``throttled`` gets the location `--path-id`
once (the sandbox answers 429 with a Retry-After) and prints when the 429
arrived. ``wave`` gets the location ``{--path-id}-warmup``, says it is
ready, waits for a line on stdin, then gets the locations ``{--path-id}-0``
... ``-{N-1}`` at once; with `--pause`, it pauses the shared limiter for
that long as soon as the first of them is answered. It prints when each
request was sent (from the client's events) and when the pause call began
and returned. One JSON line on stdout at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import anyio

from token_stores import MemoryTokenStore, Token
from wiser_async import (
    ApiConfig,
    AsyncWiserClient,
    ClientEvent,
    RedisRateLimiter,
    RequestDone,
    RetryPolicy,
    WiserOAuth,
)
from wiser_async.errors import RateLimited


async def work(args: argparse.Namespace) -> dict[str, object]:
    store = MemoryTokenStore()
    await store.save("acct", Token.from_json(os.environ["WISER_TEST_TOKEN"]))
    sent: dict[str, float] = {}

    def note(event: ClientEvent) -> None:
        if isinstance(event, RequestDone):
            sent[event.path] = event.started_at

    async with (
        RedisRateLimiter(args.redis, key=args.key, rate=args.rate) as limiter,
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
            on_event=note,
        ) as client,
    ):
        if args.mode == "wave":
            return await wave(args, client, limiter, sent)
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


async def wave(
    args: argparse.Namespace,
    client: AsyncWiserClient,
    limiter: RedisRateLimiter,
    sent: dict[str, float],
) -> dict[str, object]:
    """`--requests` gets at once; with `--pause`, a shared pause after the first answer."""
    paused: list[float] = []
    answered = anyio.Event()

    async def get(number: int) -> None:
        await client.locations.get(f"{args.path_id}-{number}")
        answered.set()

    async def pause() -> None:
        await answered.wait()
        paused.append(time.time())
        await limiter.pause(args.pause)
        paused.append(time.time())

    # Connections to the API and Redis made, and the code paths run, before the clock starts.
    await client.locations.get(f"{args.path_id}-warmup")
    sent.clear()
    print(json.dumps({"ready": True}), flush=True)  # noqa: T201 - the report to the test
    await anyio.to_thread.run_sync(sys.stdin.readline)
    async with anyio.create_task_group() as group:
        if args.pause:
            group.start_soon(pause)
        for number in range(args.requests):
            group.start_soon(get, number)
    return {"sent": sent, "paused": paused}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.rate_worker")
    parser.add_argument("mode", choices=["steady", "throttled", "wave"])
    parser.add_argument("--api", required=True)
    parser.add_argument("--token-url", required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--path-id", default="")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--requests", type=int, default=4)
    parser.add_argument("--pause", type=float, default=0.0)
    args = parser.parse_args()
    print(json.dumps(anyio.run(work, args)), flush=True)  # noqa: T201 - the report to the test
    sys.exit(0)


if __name__ == "__main__":
    main()
