"""`page`: CPU per request of fetching one 100-device page, on each HTTP stack.

The same pages (``/sites/{id}/devices``, 100 devices each) are fetched many
times, 16 in flight, at latency 0, seven ways, interleaved ABCDEFG GFEDCBA:

- ``bare``: a bare httpx2 loop, ``response.json()`` on each answer;
- ``bare_aiohttp``: the same loop on httpx-aiohttp's ``AiohttpTransport``;
- ``library``: ``client.devices.of_site(id).page(limit=100)``, the library's
  default stack (its own httpx2 client);
- ``library_aiohttp``: the same with ``transport=AiohttpTransport()``, the
  native path (no httpx2 request or response: the aiohttp session itself);
- ``library_aiohttp_wrapped``: the same transport behind a pass-through
  httpx2 transport, so the client sends through httpx2 objects wrapped
  around each aiohttp request (the path before the native one);
- ``floor``: the least any client of typed models spends on this stack: the
  request handed straight to httpx2's transport (no client, retries, limits,
  deadline or auth flow), the body read, then decoded as the client decodes
  a page (``Codec.native_page``, msgspec from the bytes, else the parsed body
  through ``Codec.structure_page``: internal names);
- ``floor_aiohttp``: the same over a bare aiohttp session, with no httpx2
  objects at all.

The floors say how far below the library a target would have to reach into
the HTTP stack or the decoder: a limit under the floor cannot be met by
any request path in front of that decoder.

Each client sends one untimed round of 16 requests first (connections
opened, the token read); the results are dropped as they come on every side.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from typing import Any, cast

import anyio
import httpx2
import yarl
from aiohttp import ClientSession, DummyCookieJar, TCPConnector
from httpx_aiohttp.httpx2 import AiohttpTransport as BareAiohttpTransport

from wiser_async import AsyncWiserClient, Device, PageFormat
from wiser_async._decode import Codec
from wiser_async._json import loads
from wiser_async.sandbox import PortfolioSpec, SandboxProcess, SandboxUrls
from wiser_async.transports import AiohttpTransport

from ._client import MAX_IN_FLIGHT, open_client
from ._core import BenchmarkError, Context, Result, alternate, register, result, summarize, target
from ._sandbox import cpu_seconds, describe
from ._timeline import TimedTransport

__all__ = ["PAGE", "page"]

PAGE = PortfolioSpec(locations=1, sites_per_location=20, rooms_per_site=4, devices_per_site=100)
"""20 sites of 100 devices: 20 distinct pages, fetched in turn."""
LIMIT = 100
REQUESTS = 2000
QUICK_REQUESTS = 64
LABELS = (
    "bare",
    "bare_aiohttp",
    "library",
    "library_aiohttp",
    "library_aiohttp_wrapped",
    "floor",
    "floor_aiohttp",
)
_TIMEOUT = httpx2.Timeout(60.0, connect=10.0)
_LIMITS = httpx2.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT)
# Figure name -> (label, baseline): how far each floor lies from the bare loop
# and the library from its floor.
FLOOR_RATIOS = {
    "floor_over_bare": ("floor", "bare"),
    "floor_aiohttp_over_bare": ("floor_aiohttp", "bare"),
    "library_over_floor": ("library", "floor"),
    "library_aiohttp_over_floor_aiohttp": ("library_aiohttp", "floor_aiohttp"),
    "library_aiohttp_over_wrapped": ("library_aiohttp", "library_aiohttp_wrapped"),
}


class _Wrapped(httpx2.AsyncBaseTransport):
    """`AiohttpTransport` as any httpx2 transport: the client cannot take its native path."""

    def __init__(self) -> None:
        self.inner = AiohttpTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _fan_out(count: int, fetch: Callable[[int], Awaitable[None]]) -> None:
    """``fetch(0)`` ... ``fetch(count - 1)``, 16 at a time, each worker taking the next."""
    pending: Iterator[int] = iter(range(count))

    async def worker() -> None:
        for i in pending:
            await fetch(i)

    async with anyio.create_task_group() as tg:
        for _ in range(MAX_IN_FLIGHT):
            tg.start_soon(worker)


async def _measure(count: int, fetch: Callable[[int], Awaitable[None]]) -> tuple[float, float]:
    """Wall and CPU seconds of ``count`` fetches after an untimed round of 16."""
    await _fan_out(MAX_IN_FLIGHT, fetch)
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    await _fan_out(count, fetch)
    return time.perf_counter() - wall, time.process_time() - cpu


async def _discover(urls: SandboxUrls, token: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The sites to read, and the URL the library sends for each one's page (recorded)."""
    recorder = TimedTransport(httpx2.AsyncHTTPTransport(limits=_LIMITS))
    async with open_client(urls.api_base_url, urls.token_url, token, transport=recorder) as client:
        sites = [
            site.id
            for location in await client.locations.list()
            for site in await client.sites.list(location.id)
        ]
        recorder.clear()
        for site in sites:
            await client.devices.of_site(site).page(limit=LIMIT)
    return sites, list(recorder.urls)


async def _library(
    urls: SandboxUrls, token: dict[str, Any], sites: list[str], count: int, *, stack: str
) -> tuple[float, float]:
    transports: dict[str, Callable[[], httpx2.AsyncBaseTransport]] = {
        "aiohttp": AiohttpTransport,
        "aiohttp_wrapped": _Wrapped,
    }
    options: dict[str, Any] = {"transport": transports[stack]()} if stack in transports else {}
    async with open_client(urls.api_base_url, urls.token_url, token, **options) as client:
        wrong: list[int] = []

        async def fetch(i: int) -> None:
            got = await _page_of(client, sites[i % len(sites)])
            if got != LIMIT:
                wrong.append(got)

        measured = await _measure(count, fetch)
    if wrong:
        raise BenchmarkError(f"{len(wrong)} pages held other than {LIMIT} devices: {wrong[0]}")
    return measured


async def _page_of(client: AsyncWiserClient, site: str) -> int:
    """One page of a site's devices, through the public API: how many it held."""
    page = await client.devices.of_site(site).page(limit=LIMIT)
    return len(page.items)


async def _bare(
    targets: list[str], access_token: str, count: int, *, aiohttp: bool
) -> tuple[float, float]:
    transport = BareAiohttpTransport(limits=_LIMITS) if aiohttp else None
    failed: list[str] = []
    async with httpx2.AsyncClient(
        limits=_LIMITS,
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=_TIMEOUT,
        transport=transport,
    ) as http:

        async def fetch(i: int) -> None:
            response = await http.get(targets[i % len(targets)])
            if response.status_code != 200:
                failed.append(f"{response.status_code} {response.url}")
                return
            response.json()

        measured = await _measure(count, fetch)
    if failed:
        raise BenchmarkError(f"the bare loop got {len(failed)} non-200 answers, first: {failed[0]}")
    return measured


async def _floor(
    targets: list[str], access_token: str, count: int, *, aiohttp: bool
) -> tuple[float, float]:
    """The pages read straight off the transport, parsed and decoded by the library's own parts."""
    codec, keys = Codec.shared(), PageFormat()
    headers = {"Authorization": f"Bearer {access_token}"}
    wrong: list[str] = []

    def decode(status: int, body: bytes) -> None:
        if status != 200:
            wrong.append(f"status {status}")
            return
        # As the client decodes a page: msgspec from the bytes, else parsed and decoded.
        page = codec.native_page(
            body, Device, offset=0, limit=LIMIT, keys=keys, method="GET", path="/"
        ) or codec.structure_page(
            loads(body), Device, offset=0, limit=LIMIT, keys=keys, method="GET", path="/"
        )
        if len(page.items) != LIMIT:
            wrong.append(f"{len(page.items)} devices")

    if aiohttp:
        async with ClientSession(
            connector=TCPConnector(limit=0),
            headers=headers,
            cookie_jar=DummyCookieJar(),
            auto_decompress=False,
        ) as session:
            urls = [yarl.URL(url, encoded=True) for url in targets]

            async def fetch_aiohttp(i: int) -> None:
                async with session.get(urls[i % len(urls)], allow_redirects=False) as response:
                    decode(response.status, await response.read())

            measured = await _measure(count, fetch_aiohttp)
    else:
        extensions = {"timeout": _TIMEOUT.as_dict()}
        request_headers = httpx2.Headers(headers)
        async with httpx2.AsyncHTTPTransport(limits=_LIMITS) as transport:

            async def fetch(i: int) -> None:
                request = httpx2.Request(
                    "GET", targets[i % len(targets)], headers=request_headers, extensions=extensions
                )
                response = await transport.handle_async_request(request)
                try:
                    # The bytes as they came: the sandbox compresses nothing.
                    stream = cast(httpx2.AsyncByteStream, response.stream)
                    body = b"".join([chunk async for chunk in stream])
                finally:
                    await response.aclose()
                decode(response.status_code, body)

            measured = await _measure(count, fetch)
    if wrong:
        raise BenchmarkError(f"{len(wrong)} floor pages were wrong, first: {wrong[0]}")
    return measured


def _run(
    label: str,
    process: SandboxProcess,
    token: dict[str, Any],
    sites: list[str],
    targets: list[str],
    count: int,
) -> tuple[float, float, float | None]:
    """Wall seconds, CPU seconds of this process and of the sandbox, for one labelled run."""
    aiohttp = label.endswith("aiohttp")
    workload: Callable[[], Awaitable[tuple[float, float]]]
    if label.startswith("library"):
        stack = label.removeprefix("library").removeprefix("_")
        workload = partial(_library, process.urls, token, sites, count, stack=stack)
    elif label.startswith("floor"):
        workload = partial(_floor, targets, token["access_token"], count, aiohttp=aiohttp)
    else:
        workload = partial(_bare, targets, token["access_token"], count, aiohttp=aiohttp)
    process.reset_stats()
    before = cpu_seconds(process.pid)
    wall, cpu = anyio.run(workload, backend="asyncio")
    after = cpu_seconds(process.pid)
    sent = process.stats().requests
    if sent != count + MAX_IN_FLIGHT:
        raise BenchmarkError(
            f"the sandbox saw {sent} requests of the {label} run, {count + MAX_IN_FLIGHT} sent"
        )
    return wall, cpu, None if before is None or after is None else after - before


@register(
    "page",
    repeat=5,
    description="CPU per request of a 100-device page, 16 in flight, latency 0: the library"
    " on httpx2 and on aiohttp vs bare httpx2 loops on each",
)
def page(ctx: Context) -> Result:
    """The client's cost of one typed page against plain httpx2 + ``response.json()``."""
    process = ctx.sandbox(PAGE, latency=0.0)
    token = process.issue_token("default")
    sites, targets = anyio.run(partial(_discover, process.urls, token), backend="asyncio")
    if len(targets) != len(sites) or not sites:
        raise BenchmarkError(f"{len(targets)} page URLs recorded for {len(sites)} sites")
    count = QUICK_REQUESTS if ctx.quick else REQUESTS
    cpu: dict[str, list[float]] = {label: [] for label in LABELS}
    wall: dict[str, list[float]] = {label: [] for label in LABELS}
    server: dict[str, list[float]] = {label: [] for label in LABELS}
    for repetition, label in alternate(ctx.repeat, *LABELS):
        seconds, used, sandbox = _run(label, process, token, sites, targets, count)
        cpu[label].append(1e6 * used / count)
        wall[label].append(seconds)
        if sandbox is not None:
            server[label].append(1e6 * sandbox / (count + MAX_IN_FLIGHT))
        ctx.log(
            f"  {label} {repetition + 1}/{ctx.repeat}: {cpu[label][-1]:.0f} us/request CPU,"
            f" {seconds:.2f} s wall"
        )
    median = {label: statistics.median(values) for label, values in cpu.items()}
    bare = median["bare"]

    def pairwise(label: str, baseline: str = "bare") -> dict[str, Any]:
        return summarize([a / b for a, b in zip(cpu[label], cpu[baseline], strict=True)])

    floors = {key: median[label] / median[base] for key, (label, base) in FLOOR_RATIOS.items()}
    how = f"medians of {ctx.repeat}" if ctx.repeat > 1 else "1 run each"
    return result(
        "page",
        figures={
            "portfolio": {"sites": len(sites), "devices_per_page": LIMIT},
            "requests_per_run": count,
            "max_in_flight": MAX_IN_FLIGHT,
            "us_per_request": {label: summarize(values) for label, values in cpu.items()},
            "library_over_bare": median["library"] / bare,
            "library_aiohttp_over_bare": median["library_aiohttp"] / bare,
            "bare_aiohttp_over_bare": median["bare_aiohttp"] / bare,
            "library_aiohttp_over_bare_aiohttp": median["library_aiohttp"] / median["bare_aiohttp"],
            "library_aiohttp_wrapped_over_bare": median["library_aiohttp_wrapped"] / bare,
            **floors,
            "pairwise_ratio": {
                "library_over_bare": pairwise("library"),
                "library_aiohttp_over_bare": pairwise("library_aiohttp"),
                "library_aiohttp_over_bare_aiohttp": pairwise("library_aiohttp", "bare_aiohttp"),
                "library_aiohttp_wrapped_over_bare": pairwise("library_aiohttp_wrapped"),
                **{key: pairwise(*labels) for key, labels in FLOOR_RATIOS.items()},
            },
            "wall_s": {label: summarize(values) for label, values in wall.items()},
            "sandbox_cpu_us_per_request": {
                label: summarize(values) if values else None for label, values in server.items()
            },
        },
        targets=[
            target(
                f"library page CPU/request vs bare httpx2 ({how})",
                median["library"],
                bare,
                limit=1.05,
                unit="us",
            ),
            target(
                f"library on aiohttp vs bare httpx2 ({how})",
                median["library_aiohttp"],
                bare,
                limit=0.6,
                unit="us",
            ),
        ],
        notes=[
            f"{describe(PAGE)}; {count:,} requests per run of one {LIMIT}-device page each"
            f" (the {len(sites)} sites in turn), after an untimed round of {MAX_IN_FLIGHT};"
            f" CPU us/request: "
            + ", ".join(f"{label} {median[label]:.0f}" for label in LABELS)
            + f"; library on aiohttp is {median['library_aiohttp'] / median['bare_aiohttp']:.2f}"
            " x the bare aiohttp loop",
            f"floors (transport, parser and decoder only) over bare httpx2: httpx2"
            f" {floors['floor_over_bare']:.3f}, aiohttp {floors['floor_aiohttp_over_bare']:.3f};"
            f" library over its floor: httpx2 {floors['library_over_floor']:.3f},"
            f" aiohttp {floors['library_aiohttp_over_floor_aiohttp']:.3f}; the native aiohttp"
            f" path over the httpx2-wrapped one: {floors['library_aiohttp_over_wrapped']:.3f}",
            "CPU of this process only (time.process_time); runs interleaved ABCDEFG GFEDCBA;"
            " results dropped as they come on every side",
        ],
    )
