"""`startup`: what a fresh process pays to import the library and to make its first request.

Each figure is the CPU (`time.process_time()` read at its end, the
interpreter's own start included) of a fresh ``python -c`` process, with
bytecode cached (one untimed run of each script first), the scripts
interleaved ABBA over the rounds:

- ``import httpx2`` against ``import wiser_async`` (and, as figures,
  ``wiser_async.cli``: what ``wiser-async`` and a queue worker import first;
  the library's dependencies alone: httpx2, anyio, attrs, cattrs, orjson and
  msgspec; and an interpreter importing nothing);
- a first request: a bare httpx2 script (``httpx2.AsyncClient()``, one GET of
  a 100-device page with the bearer token, ``response.json()``) against the
  library's (``MemoryTokenStore``, ``WiserOAuth``, ``AsyncWiserClient``,
  ``client.devices.of_site(id).page(limit=100)``), both under
  ``asyncio.run``, against the sandbox in another process. Where trio is
  installed, httpcore2 imports it into every httpx2 process (about 40 ms)
  and the library does not; the bare script with trio hidden
  (``first_request_bare_no_trio``) is a figure, for a machine without trio.

``python -X importtime`` of both imports gives the self-reported import time
and, for the library, the modules that cost most (the last round's).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from functools import partial
from typing import Any, Final

import anyio
import httpx2

from wiser_async.sandbox import PortfolioSpec, SandboxUrls

from ._client import open_client
from ._core import BenchmarkError, Context, Result, alternate, register, result, summarize, target
from ._timeline import TimedTransport

__all__ = ["startup"]

IMPORT_LIMIT: Final = 1.4
FIRST_REQUEST_LIMIT: Final = 1.10
PORTFOLIO: Final = PortfolioSpec(
    locations=1, sites_per_location=1, rooms_per_site=1, devices_per_site=100
)
LIMIT: Final = 100
_TOP: Final = 12

_REPORT = (
    "import json, sys, time\n"
    "print(json.dumps({'cpu_ms': time.process_time() * 1000,"
    " 'dont_write_bytecode': sys.dont_write_bytecode,"
    " 'loaded': sorted(m for m in ('trio', 'trio._core', 'stamina', 'click', 'rich',"
    " 'wiser_async._crawl', 'wiser_async._snapshot', 'wiser_async._distributed')"
    " if m in sys.modules)}))\n"
)

_BARE_FIRST_REQUEST = """\
import asyncio, json, os

import httpx2


async def main():
    token = json.loads(os.environ["STARTUP_TOKEN"])["access_token"]
    async with httpx2.AsyncClient() as http:
        response = await http.get(
            os.environ["STARTUP_URL"], headers={"Authorization": f"Bearer {token}"}
        )
        response.raise_for_status()
        assert len(response.json()["data"]) == 100


asyncio.run(main())
"""

SCRIPTS: Final = {
    "import_httpx2": "import httpx2\n" + _REPORT,
    "import_wiser_async": "import wiser_async\n" + _REPORT,
    # The library's dependencies at import: httpx2, anyio, attrs, cattrs and the
    # speed extra's parsers when installed. What wiser_async adds above it is its own.
    "import_dependencies": "import httpx2, anyio, attrs, cattrs\n"
    "try:\n    import orjson, msgspec\nexcept ImportError:\n    pass\n" + _REPORT,
    "interpreter": _REPORT,
    "import_cli": "import wiser_async.cli\n" + _REPORT,
    "first_request_bare": _BARE_FIRST_REQUEST + _REPORT,
    # The same where trio is not installed: httpcore2 imports trio when it is.
    "first_request_bare_no_trio": "import sys\nsys.modules['trio'] = None\n"
    + _BARE_FIRST_REQUEST
    + _REPORT,
    "first_request_library": """\
import asyncio, json, os

from token_stores import MemoryTokenStore, Token
from wiser_async import ApiConfig, AsyncWiserClient, WiserOAuth


async def main():
    store = MemoryTokenStore()
    await store.save("acct", Token.from_response(json.loads(os.environ["STARTUP_TOKEN"])))
    async with (
        WiserOAuth(
            client_id="sandbox-client",
            client_secret="sandbox-secret",
            store=store,
            token_url=os.environ["STARTUP_TOKEN_URL"],
        ) as oauth,
        AsyncWiserClient(
            oauth, "acct", config=ApiConfig(base_url=os.environ["STARTUP_BASE_URL"])
        ) as client,
    ):
        page = await client.devices.of_site(os.environ["STARTUP_SITE"]).page(limit=100)
        assert len(page.items) == 100


asyncio.run(main())
"""
    + _REPORT,
}


def _environment(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE",)}
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    return env | extra


def _run(script: str, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise BenchmarkError(f"a start-up script failed: {done.stderr.strip()[-500:]}")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def importtime(module: str, env: dict[str, str]) -> tuple[float, list[tuple[str, float]]]:
    """``python -X importtime -c 'import MODULE'``: its cumulative ms and its costliest modules."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise BenchmarkError(f"importing {module} failed: {done.stderr.strip()[-500:]}")
    total = 0.0
    modules: list[tuple[str, float]] = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _self, cumulative, name = line.removeprefix("import time:").split("|")
        if not cumulative.strip().isdigit():
            continue  # the header
        ms = int(cumulative) / 1000
        if name.strip() == module and not name.startswith("  "):
            total = ms
        modules.append((name.strip(), ms))
    if not total:
        raise BenchmarkError(f"no importtime line for {module}")
    return total, sorted(modules, key=lambda item: -item[1])[1 : _TOP + 1]


async def _discover(urls: SandboxUrls, token: dict[str, Any]) -> tuple[str, str]:
    """The site to read and the URL the library sends for its page (recorded)."""
    recorder = TimedTransport(httpx2.AsyncHTTPTransport())
    async with open_client(urls.api_base_url, urls.token_url, token, transport=recorder) as client:
        [location] = await client.locations.list()
        [site] = await client.sites.list(location.id)
        recorder.clear()
        await client.devices.of_site(site.id).page(limit=LIMIT)
    [url] = recorder.urls
    return site.id, url


@register(
    "startup",
    repeat=5,
    description="CPU of a fresh process: import wiser_async vs import httpx2, and to a first "
    "request vs a bare httpx2 script's (bytecode cached)",
)
def startup(ctx: Context) -> Result:
    """A worker or a one-call script starts nearly as fast as a bare httpx2 script."""
    process = ctx.sandbox(PORTFOLIO, latency=0.0)
    token = process.issue_token("default")
    site, url = anyio.run(partial(_discover, process.urls, token), backend="asyncio")
    env = _environment(
        {
            "STARTUP_TOKEN": json.dumps(token),
            "STARTUP_URL": url,
            "STARTUP_SITE": site,
            "STARTUP_TOKEN_URL": process.urls.token_url,
            "STARTUP_BASE_URL": process.urls.api_base_url,
        }
    )
    reports: dict[str, dict[str, Any]] = {}
    if not ctx.quick:  # untimed: bytecode written, files cached
        for name, script in SCRIPTS.items():
            reports[name] = _run(script, env)
    cpu: dict[str, list[float]] = {name: [] for name in SCRIPTS}
    for _, name in alternate(ctx.repeat, *SCRIPTS):
        reports[name] = _run(SCRIPTS[name], env)
        cpu[name].append(reports[name]["cpu_ms"])
    import_ms: dict[str, list[float]] = {"httpx2": [], "wiser_async": []}
    top: list[tuple[str, float]] = []
    for _, module in alternate(ctx.repeat, *import_ms):
        total, costliest = importtime(module, env)
        import_ms[module].append(total)
        if module == "wiser_async":
            top = costliest
    median = {name: statistics.median(values) for name, values in cpu.items()}
    return result(
        "startup",
        figures={
            **{f"{name}_cpu_ms": summarize(values) for name, values in cpu.items()},
            "import_over_httpx2": median["import_wiser_async"] / median["import_httpx2"],
            "dependencies_over_httpx2": median["import_dependencies"] / median["import_httpx2"],
            "first_request_over_bare": median["first_request_library"]
            / median["first_request_bare"],
            "first_request_over_bare_no_trio": median["first_request_library"]
            / median["first_request_bare_no_trio"],
            "importtime_httpx2_ms": summarize(import_ms["httpx2"]),
            "importtime_wiser_async_ms": summarize(import_ms["wiser_async"]),
            "importtime_wiser_async_costliest_ms": dict(top),
            "loaded_after": {name: report["loaded"] for name, report in reports.items()},
            "dont_write_bytecode": any(r["dont_write_bytecode"] for r in reports.values()),
        },
        targets=[
            target(
                "import wiser_async vs import httpx2 (CPU)",
                median["import_wiser_async"],
                median["import_httpx2"],
                limit=IMPORT_LIMIT,
                unit="ms",
            ),
            target(
                "first request vs a bare httpx2 script's (CPU)",
                median["first_request_library"],
                median["first_request_bare"],
                limit=FIRST_REQUEST_LIMIT,
                unit="ms",
            ),
        ],
        notes=[
            "CPU of the whole fresh process (the interpreter's start included), medians of "
            f"{ctx.repeat} interleaved rounds; the import's costliest modules are "
            "-X importtime's cumulative figures (its own overhead included)"
        ],
    )
