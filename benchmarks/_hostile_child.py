"""The client process of `hostile`: one call or crawl against a hostile sandbox.

::

    python -m benchmarks._hostile_child MODE --api-base-url URL --token-url URL [options]

reads the token response on stdin (never on the command line, where ``ps``
shows it) and prints JSON lines on stdout, the report last:

``setup``
    Imports the same modules and sets up the same client, then stops: the
    memory baseline.
``crawl``
    ``client.crawl(timeout=--crawl-timeout)``: its duration, requests, and its
    failures (how many of each kind, those whose message names ``--total``,
    the first few messages).
``call``
    ``client.locations.page()`` with ``--timeout`` and ``--attempts`` (or
    ``--retry-timeout``; neither: the default `RetryPolicy`) until it raises:
    the time it took and the error.
``jsonl``
    ``crawl_to_jsonl(client, --output, resume=--resume)``, with
    ``--max-in-flight`` requests at once. First prints ``{"started": ...}`` once
    the client is set up, just before the crawl begins, so that a parent
    killing it after some seconds counts them from the crawl's start.

Every report carries ``peak_rss_kb`` and ``ru_maxrss_kb`` (see
`benchmarks._rss_child.peak_rss_kb`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from wiser_async import RetryPolicy, crawl_to_jsonl
from wiser_async.errors import WiserError

from ._client import open_client
from ._rss_child import peak_rss_kb, ru_maxrss_kb

__all__ = ["main"]

_MESSAGES = 3


def _print(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def _policy(args: argparse.Namespace) -> RetryPolicy:
    fields: dict[str, Any] = {}
    if args.attempts is not None:
        fields["attempts"] = args.attempts
    if args.retry_timeout is not None:
        fields["timeout"] = args.retry_timeout
    return RetryPolicy(**fields)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"retry": _policy(args)}
    if args.timeout is not None:
        options["timeout"] = args.timeout
    if args.max_in_flight is not None:
        options["max_in_flight"] = args.max_in_flight
    return options


async def _run(args: argparse.Namespace, token: dict[str, Any]) -> dict[str, Any]:
    async with open_client(args.api_base_url, args.token_url, token, **_options(args)) as client:
        retry = _policy(args)
        policy = {"attempts": retry.attempts, "timeout": retry.timeout}
        if args.mode == "setup":
            return {"mode": "setup"}
        if args.mode == "crawl":
            started = time.perf_counter()
            crawled = await client.crawl(timeout=args.crawl_timeout)
            duration = time.perf_counter() - started
            failures = crawled.failures
            total = str(args.total) if args.total is not None else None
            return {
                "mode": "crawl",
                "duration_s": duration,
                "requests": crawled.stats.requests,
                "devices": crawled.stats.devices,
                "failures": len(failures),
                "failure_kinds": dict(Counter(failure.kind for failure in failures)),
                "naming_total": sum(
                    1 for failure in failures if total is not None and total in failure.message
                ),
                "messages": sorted({failure.message for failure in failures})[:_MESSAGES],
            }
        if args.mode == "call":
            started = time.perf_counter()
            try:
                await client.locations.page()
            except WiserError as exc:
                duration = time.perf_counter() - started
                error: str | None = type(exc).__name__
                message: str | None = str(exc)
            else:
                duration = time.perf_counter() - started
                error = message = None
            return {
                "mode": "call",
                "duration_s": duration,
                "error": error,
                "message": message,
                # An attempt begun with no time left sends no request.
                "attempts": 1 + client.stats.retries,
                "requests_sent": client.stats.requests,
                "retry": policy,
            }
        _print({"started": time.time()})
        started = time.perf_counter()
        written = await crawl_to_jsonl(client, Path(args.output), resume=args.resume)
        return {
            "mode": "jsonl",
            "duration_s": time.perf_counter() - started,
            "requests": written.run.requests,
            "finished": written.finished,
            "complete": written.complete,
            "items": written.items,
            "failures": len(written.failures),
            "messages": sorted({failure.message for failure in written.failures})[:_MESSAGES],
        }


def main(argv: Sequence[str] | None = None) -> None:
    """Run one measurement and print its JSON line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks._hostile_child")
    parser.add_argument("mode", choices=["setup", "crawl", "call", "jsonl"])
    parser.add_argument("--api-base-url", required=True)
    parser.add_argument("--token-url", required=True)
    parser.add_argument("--crawl-timeout", type=float, help="crawl: the crawl's timeout, seconds")
    parser.add_argument("--total", type=int, help="crawl: the implausible total to look for")
    parser.add_argument("--timeout", type=float, help="the client's timeout, seconds")
    parser.add_argument("--attempts", type=int, help="RetryPolicy(attempts=...)")
    parser.add_argument("--retry-timeout", type=float, help="RetryPolicy(timeout=...)")
    parser.add_argument("--max-in-flight", type=int, help="the client's max_in_flight")
    parser.add_argument("--output", help="jsonl: the JSONL output")
    parser.add_argument("--resume", action="store_true", help="jsonl: resume the output")
    args = parser.parse_args(argv)
    if args.mode == "jsonl" and args.output is None:
        parser.error("jsonl needs --output")
    token = json.loads(sys.stdin.read())
    report = anyio.run(partial(_run, args, token), backend="asyncio")
    report["peak_rss_kb"] = peak_rss_kb()
    report["ru_maxrss_kb"] = ru_maxrss_kb()
    _print(report)


if __name__ == "__main__":
    main()
