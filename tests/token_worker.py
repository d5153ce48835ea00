"""A worker process of the multi-process token tests.

``python -m tests.token_worker MODE --store SPEC --api URL --token-url URL``

- ``until-revoked``: calls the API every 20 ms; prints ``ready`` after the
  first success, then, once a call raises `AuthorizationRequired`, one JSON
  line ``{"noticed_at": <epoch seconds>}`` and exits.
- ``refresh``: refreshes the token once (whatever its expiry) and prints one
  JSON line with the new token's fingerprint.

Store specs: ``file:DIR`` or a Redis URL (``--prefix``, ``--lease``). The
client secret comes from ``WISER_TEST_CLIENT_SECRET`` (never argv), by default
the sandbox's.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import anyio

from token_stores import FileTokenStore, RedisTokenStore, TokenStore
from wiser_async import ApiConfig, AsyncWiserClient, RetryPolicy, WiserOAuth
from wiser_async.errors import AuthorizationRequired


def open_store(args: argparse.Namespace) -> TokenStore:
    if args.store.startswith("file:"):
        return FileTokenStore(args.store.removeprefix("file:"))
    return RedisTokenStore(args.store, prefix=args.prefix, lease=args.lease)


async def run(args: argparse.Namespace) -> None:
    store = open_store(args)
    async with (
        WiserOAuth(
            client_id=args.client_id,
            client_secret=os.environ.get("WISER_TEST_CLIENT_SECRET", "sandbox-secret"),
            store=store,
            token_url=args.token_url,
            revocation_check_interval=args.interval,
        ) as oauth,
        AsyncWiserClient(
            oauth,
            "acct",
            config=ApiConfig(base_url=args.api),
            retry=RetryPolicy(attempts=2, wait_initial=0.01),
        ) as client,
    ):
        if args.mode == "refresh":
            token = await oauth.refresh("acct")
            print(json.dumps({"fingerprint": token.fingerprint}), flush=True)  # noqa: T201
        else:
            await client.locations.page(limit=1)
            print("ready", flush=True)  # noqa: T201
            with anyio.fail_after(30):
                while True:
                    try:
                        await client.locations.page(limit=1)
                    except AuthorizationRequired:
                        break
                    await anyio.sleep(0.02)
            print(json.dumps({"noticed_at": time.time()}), flush=True)  # noqa: T201
    await store.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["until-revoked", "refresh"])
    parser.add_argument("--store", required=True)
    parser.add_argument("--prefix", default="workers")
    parser.add_argument("--lease", type=float, default=10.0)
    parser.add_argument("--api", required=True)
    parser.add_argument("--token-url", required=True)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--client-id", default="sandbox-client")
    anyio.run(run, parser.parse_args())


if __name__ == "__main__":
    main()
