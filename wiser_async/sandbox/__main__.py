"""``python -m wiser_async.sandbox``: serve the sandbox on loopback.

Prints one JSON line with the URLs once listening (``origin``,
``api_base_url``, ``authorize_url``, ``token_url``), then serves until
SIGINT or SIGTERM. The OAuth client secret comes from the environment
variable ``WISER_SANDBOX_CLIENT_SECRET`` (never the command line, where any
user's ``ps`` shows it).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

import attrs

from ._app import Sandbox, SandboxUrls
from ._faults import Faults
from ._portfolio import PortfolioSpec
from ._process import SECRET_VARIABLE
from ._serve import serve

__all__ = ["main"]

_SPEC_OPTIONS = tuple(f.name for f in attrs.fields(PortfolioSpec))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wiser_async.sandbox",
        description="Serve the Wiser Energy Monitoring API emulator over HTTP.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (%(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one")
    for name in _SPEC_OPTIONS:
        default = getattr(attrs.fields(PortfolioSpec), name).default
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=int, help=f"portfolio {name} ({default})"
        )
    parser.add_argument("--latency", type=float, help="seconds slept per API request (0)")
    parser.add_argument("--rate-limit", type=float, help="API requests per second (no limit)")
    sandbox = attrs.fields(Sandbox)
    parser.add_argument(
        "--token-lifetime",
        type=float,
        help=f"access token lifetime, seconds ({sandbox.access_token_lifetime.default})",
    )
    parser.add_argument("--client-id", help=f"OAuth client id ({sandbox.client_id.default})")
    parser.add_argument(
        "--exit-with-stdin",
        action="store_true",
        help="stop when stdin closes, so a supervisor that dies takes the server with it",
    )
    return parser


def _watch_stdin() -> None:
    while sys.stdin.buffer.read(4096):
        pass
    os.kill(os.getpid(), signal.SIGTERM)


def _ready(urls: SandboxUrls) -> None:
    sys.stdout.write(json.dumps(attrs.asdict(urls)) + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> None:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and serve until interrupted."""
    parser = _parser()
    args = parser.parse_args(argv)
    given = {name: value for name, value in vars(args).items() if value is not None}
    # Options left out keep the defaults of PortfolioSpec and Sandbox, written once, there.
    options: dict[str, Any] = {
        option: given[name]
        for name, option in (
            ("client_id", "client_id"),
            ("token_lifetime", "access_token_lifetime"),
        )
        if name in given
    }
    secret = os.environ.get(SECRET_VARIABLE)
    if secret:
        options["client_secret"] = secret
    try:
        sandbox = Sandbox(
            PortfolioSpec(**{name: given[name] for name in _SPEC_OPTIONS if name in given}),
            faults=Faults(latency=given.get("latency", 0.0), rate_limit=args.rate_limit),
            **options,
        )
    except ValueError as exc:
        parser.error(str(exc))
    if args.exit_with_stdin:
        threading.Thread(target=_watch_stdin, name="stdin watch", daemon=True).start()
    serve(sandbox, args.host, args.port, on_ready=_ready)


if __name__ == "__main__":
    main()
