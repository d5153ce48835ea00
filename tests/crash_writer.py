"""A writer process for the crash-safety test: replaces one account's token forever.

Run in a child forked by a multiprocessing forkserver, and killed with SIGKILL.
"""

from __future__ import annotations

from typing import Any

import anyio

from token_stores import FileTokenStore, Token

# Large tokens make each write take long enough for kills to land inside it.
PADDING = "x" * 100_000


def write_forever(directory: str, generation: int, writing: Any) -> None:
    """Replace the token again and again; `writing` (an Event) is set after the first write."""

    async def loop() -> None:
        store = FileTokenStore(directory)
        serial = 0
        while True:
            serial += 1
            async with store.lock("acct"):
                current = await store.load("acct")
                token = Token(
                    access_token=f"g{generation}-n{serial}",
                    refresh_token="r",
                    expires_at=2e9,
                    extra={"padding": PADDING},
                )
                await store.compare_and_set("acct", current, token)
            writing.set()

    anyio.run(loop)
