"""The client process of `stream_rss`: a JSONL crawl, or only its setup, then its peak RSS.

::

    python -m benchmarks._rss_child crawl|setup --api-base-url URL --token-url URL --output FILE
        [--transport httpx2|aiohttp]

reads the token response on stdin (never on the command line, where ``ps``
shows it) and prints one JSON line: ``peak_rss_kb`` (see `peak_rss_kb`),
``ru_maxrss_kb``, ``loaded`` (which of the HTTP stacks' modules the
process holds), and for a crawl its duration, devices, requests and
failures. ``setup`` imports the same modules and sets up the same client
but crawls nothing: the memory baseline. ``--transport aiohttp`` sends
through `wiser_async.transports.AiohttpTransport` (imported only then, so
the httpx2 child holds no aiohttp).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from wiser_async import crawl_to_jsonl

from ._client import open_client

__all__ = ["main", "peak_rss_kb", "ru_maxrss_kb"]

# The modules of each HTTP stack (and trio, which httpcore2 may pull in).
STACK_MODULES = ("aiohttp", "httpcore2", "h11", "httpx_aiohttp", "trio")


def ru_maxrss_kb() -> int:
    """``getrusage(RUSAGE_SELF).ru_maxrss`` in KiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def peak_rss_kb() -> int:
    """This process's own peak resident set size, in KiB.

    On Linux ``ru_maxrss`` is not this process's own: exec keeps the high-water
    mark of the process image it replaces, and subprocess spawns with vfork,
    so a child of a 140 MB parent reports at least 140 MB however little it
    uses. ``VmHWM`` belongs to this process image alone. Elsewhere,
    ``ru_maxrss`` is all there is.
    """
    try:
        with Path("/proc/self/status").open() as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return ru_maxrss_kb()


async def _run(args: argparse.Namespace, token: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.transport == "aiohttp":
        from wiser_async.transports import AiohttpTransport

        options["transport"] = AiohttpTransport()
    async with open_client(args.api_base_url, args.token_url, token, **options) as client:
        if args.mode == "setup":
            return {"mode": "setup"}
        started = time.perf_counter()
        crawled = await crawl_to_jsonl(client, Path(args.output))
        failures, stats = crawled.failures, crawled.run
        duration = time.perf_counter() - started
    return {
        "mode": "crawl",
        "duration_s": duration,
        "devices": stats.devices,
        "requests": stats.requests,
        "failures": len(failures),
        "first_failure": failures[0].to_dict() if failures else None,
    }


def _ran(name: str) -> bool:
    """Whether module `name` was imported and run (not only registered, as trio may be)."""
    module = sys.modules.get(name)
    # The library registers trio without running it until it is used (see _token_endpoint).
    return module is not None and type(module).__name__ != "_DeferredModule"


def main(argv: Sequence[str] | None = None) -> None:
    """Run one measurement and print its JSON line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks._rss_child")
    parser.add_argument("mode", choices=["crawl", "setup"])
    parser.add_argument("--api-base-url", required=True)
    parser.add_argument("--token-url", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--transport", choices=["httpx2", "aiohttp"], default="httpx2")
    args = parser.parse_args(argv)
    token = json.loads(sys.stdin.read())
    report = anyio.run(partial(_run, args, token), backend="asyncio")
    report["peak_rss_kb"] = peak_rss_kb()
    report["ru_maxrss_kb"] = ru_maxrss_kb()
    report["loaded"] = [name for name in STACK_MODULES if _ran(name)]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
