"""Second construction of `WiserOAuth` and of `AsyncWiserClient`: median milliseconds.

``python benchmarks/construction.py`` prints one JSON line. The first
construction pays imports and the process's shared SSL context; later ones
should cost well under 5 ms each (issue 11).
"""

from __future__ import annotations

import json
import statistics
import time

import anyio

from wiser_async import AsyncWiserClient, WiserOAuth


async def main(rounds: int = 20) -> dict[str, float]:
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
    return {
        "first_oauth_ms": round(oauth_ms[0], 2),
        "first_client_ms": round(client_ms[0], 2),
        "oauth_median_ms": round(statistics.median(oauth_ms[1:]), 2),
        "client_median_ms": round(statistics.median(client_ms[1:]), 2),
    }


if __name__ == "__main__":
    print(json.dumps(anyio.run(main)))
