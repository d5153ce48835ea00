"""An emulator of the Wiser Energy Monitoring API and its OAuth2 server, for tests.

The sandbox plays the API of ``API-CONTRACT.md`` with a deterministic synthetic
portfolio of any size (nothing is generated until read), the OAuth2
authorization code flow with PKCE and refresh-token rotation, fault injection
(latency, 5xx, 429 with ``Retry-After``, rate limits, dropped connections,
forbidden, missing and malformed resources; hostile answers: deep nesting,
oversized pages, huge totals, trickled bodies, year-long ``Retry-After``,
redirects and ids no URL path may hold) and counters.

Use it in-process (no socket, asyncio or trio)::

    sandbox = Sandbox(PortfolioSpec(locations=2))
    transport = sandbox.transport()          # give it to an httpx2.AsyncClient
    urls = sandbox.urls()                    # api_base_url, authorize_url, token_url

over loopback HTTP (needs ``wiser-async[sandbox]``)::

    with sandbox.serve_in_thread() as urls:
        ...

or in a child process, driven through its admin routes::

    with SandboxProcess(devices_per_site=100) as process:
        process.set_faults(error_rate=0.1)

It imports nothing else from ``wiser_async``: it plays the server, and sharing
the client's models would hide the client's bugs.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from ._app import Sandbox, SandboxUrls
from ._faults import Faults
from ._portfolio import Portfolio, PortfolioSpec
from ._process import SandboxProcess
from ._serve import serve
from ._stats import SandboxStats

__all__ = [
    "Faults",
    "Portfolio",
    "PortfolioSpec",
    "Sandbox",
    "SandboxProcess",
    "SandboxStats",
    "SandboxUrls",
    "serve",
]
