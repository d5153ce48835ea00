"""`construction`: what building a `WiserOAuth` and an `AsyncWiserClient` costs after the first.

A web backend builds one of each per process; one built per request would
pay this on every request. The first construction pays imports, the
process's shared SSL context and the shared codec, so it is reported apart
(what a fresh process pays to its first request is the `startup` benchmark's); later ones must cost
well under 5 ms each. In-process: the process's monotonic clock around each
constructor, medians of the rounds.
"""

from __future__ import annotations

import time

import anyio

from wiser_async import AsyncWiserClient, WiserOAuth

from ._core import Context, Result, register, result, summarize, target

__all__ = ["construction"]

BOUND_MS = 5.0


async def _rounds(rounds: int) -> tuple[list[float], list[float]]:
    oauth_ms: list[float] = []
    client_ms: list[float] = []
    for _ in range(rounds + 1):
        started = time.perf_counter()
        oauth = WiserOAuth(client_id="c", client_secret="s")
        built = time.perf_counter()
        client = AsyncWiserClient(oauth, "acme")
        done = time.perf_counter()
        oauth_ms.append((built - started) * 1000)
        client_ms.append((done - built) * 1000)
        await client.aclose()
        await oauth.aclose()
    return oauth_ms, client_ms


@register(
    "construction",
    repeat=1,
    description="WiserOAuth() and AsyncWiserClient() after the first in the process: median ms "
    f"vs {BOUND_MS:g} ms",
)
def construction(ctx: Context) -> Result:
    """A second construction is cheap: nothing per instance that a process can share."""
    oauth_ms, client_ms = anyio.run(_rounds, 5 if ctx.quick else 50)
    oauth, client = summarize(oauth_ms[1:]), summarize(client_ms[1:])
    return result(
        "construction",
        figures={
            "first_oauth_ms": oauth_ms[0],
            "first_client_ms": client_ms[0],
            "oauth_ms": oauth,
            "client_ms": client,
        },
        targets=[
            target("second WiserOAuth()", oauth["median"], BOUND_MS, limit=1.0, unit="ms"),
            target("second AsyncWiserClient()", client["median"], BOUND_MS, limit=1.0, unit="ms"),
        ],
        notes=[
            f"the first construction: WiserOAuth {oauth_ms[0]:.1f} ms, client "
            f"{client_ms[0]:.1f} ms (imports, the process's SSL context and the shared codec)"
        ],
    )
