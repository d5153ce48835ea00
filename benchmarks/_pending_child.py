"""The child process of `pending`: logins from distinct browsers into a `MemoryPendingStore`.

::

    python -m benchmarks._pending_child run|setup --logins N --max-pending CAP

``run`` starts `N` logins, each from a browser never seen (no previous
cookie), built as `benchmarks.pending.make_login` builds them, into a
memory store capped at `CAP`, in one asyncio event loop; ``setup`` makes
the same imports, builds the same store and runs the same event loop, but
starts no login: the memory baseline. Prints one JSON line: ``peak_rss_kb``
(``VmHWM``: see `benchmarks._rss_child.peak_rss_kb`), ``ru_maxrss_kb``, and
the store's count, the logins accepted and refused, and the duration.
Nothing secret is printed.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

import anyio

from wiser_async.integrations._pending import MemoryPendingStore
from wiser_async.integrations._session import cookie_digest, new_cookie

from ._rss_child import peak_rss_kb, ru_maxrss_kb
from .pending import make_login

__all__ = ["main"]


async def _run(mode: str, logins: int, cap: int) -> dict[str, Any]:
    store = MemoryPendingStore(max_pending=cap)
    accepted = refused = 0
    started = time.perf_counter()
    if mode == "run":
        for number in range(logins):
            login = make_login(f"account-{number % 1000}")
            cookie = cookie_digest(new_cookie())
            if await store.start(login, cookie=cookie, previous_cookie=None):
                accepted += 1
            else:
                refused += 1
    duration = time.perf_counter() - started
    count = await store.count()  # the store stays alive until its peak is read
    report = {
        "mode": mode,
        "count": count,
        "accepted": accepted,
        "refused": refused,
        "duration_s": duration,
        "peak_rss_kb": peak_rss_kb(),
    }
    await store.aclose()
    return report


def main(argv: Sequence[str] | None = None) -> None:
    """Run one measurement and print its JSON line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks._pending_child")
    parser.add_argument("mode", choices=["run", "setup"])
    parser.add_argument("--logins", type=int, required=True)
    parser.add_argument("--max-pending", type=int, required=True)
    args = parser.parse_args(argv)
    report = anyio.run(partial(_run, args.mode, args.logins, args.max_pending), backend="asyncio")
    report["ru_maxrss_kb"] = ru_maxrss_kb()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
