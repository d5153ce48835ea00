"""Start-up: what a fresh process imports, proved from its ``sys.modules`` (never by timing).

Each test runs a fresh interpreter: in this process the suite has imported
everything already. The speed itself is the `startup` benchmark's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from wiser_async.sandbox import Sandbox, SandboxUrls

# Imported on first use only: a worker or a one-call script never needs some of them;
# the rest (the token endpoint and keeper, the request path, its decoders and events)
# are imported by the first `WiserOAuth` or `AsyncWiserClient`, not by the import.
LAZY = (
    "authlib",
    "cattrs",
    "click",
    "orjson",
    "rich",
    "token_stores._envelope",
    "token_stores._file",
    "token_stores._open",
    "token_stores._redis",
    "token_stores._sealing",
    "trio",
    "wiser_async._account_state",
    "wiser_async._auth",
    "wiser_async._authorization",
    "wiser_async._crawl",
    "wiser_async._decode",
    "wiser_async._distributed",
    "wiser_async._grants",
    "wiser_async._json",
    "wiser_async._observe",
    "wiser_async._redact",
    "wiser_async._redis_rate",
    "wiser_async._snapshot",
    "wiser_async._status",
    "wiser_async._token_endpoint",
    "wiser_async._token_keeper",
    "wiser_async._transport.parse",
    "wiser_async._transport.requester",
    "wiser_async.cli",
    "wiser_async.integrations",
    "wiser_async.sandbox",
)

_REPORT = """
import json, sys
print(json.dumps({
    "modules": sorted(sys.modules),
    "trio_ran": "trio._core" in sys.modules,
    "dont_write_bytecode": sys.dont_write_bytecode,
    **globals().get("extra", {}),
}))
"""


def run_fresh(script: str, **env: str) -> dict[str, Any]:
    """Run `script` in a fresh interpreter and return what `_REPORT` printed."""
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run(
        [sys.executable, "-c", script + _REPORT],
        env=environ | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return report


def loaded(report: dict[str, Any], name: str) -> bool:
    return any(m == name or m.startswith(name + ".") for m in report["modules"])


def test_importing_the_package_imports_no_crawl_queue_snapshot_cli_or_trio() -> None:
    report = run_fresh("import wiser_async")
    assert [name for name in LAZY if loaded(report, name)] == []
    assert not report["dont_write_bytecode"]


def test_importing_the_package_imports_no_stamina() -> None:
    # stamina (and tenacity) are imported when a first attempt has failed.
    assert not loaded(run_fresh("import wiser_async"), "stamina")


def test_token_stores_imports_a_file_or_redis_store_module_when_first_asked() -> None:
    report = run_fresh(
        """
import sys
import token_stores
before = sorted(m for m in sys.modules if m.startswith("token_stores."))
listed = sorted(set(token_stores.__all__) - set(dir(token_stores)))
from token_stores import Encryption, FileTokenStore, RedisTokenStore, Token, open_store
extra = {
    "before": before,
    "listed": listed,
    "homes": [
        Encryption.__module__,
        FileTokenStore.__module__,
        RedisTokenStore.__module__,
        Token.__module__,
    ],
    "same": open_store is token_stores.open_store,
    "unknown": not hasattr(token_stores, "NoSuchStore"),
}
"""
    )
    assert report["before"] == [
        "token_stores._errors",
        "token_stores._memory",
        "token_stores._protocol",
        "token_stores._token",
    ]
    assert report["listed"] == []
    assert report["homes"] == [
        "token_stores._crypto",
        "token_stores._file",
        "token_stores._redis",
        "token_stores._token",
    ]
    assert report["same"]
    assert report["unknown"]


def test_every_public_name_is_importable_and_shown_as_the_package_own() -> None:
    report = run_fresh(
        """
import wiser_async
listed = set(dir(wiser_async)) >= set(wiser_async.__all__)
shown = {}
for name in wiser_async.__all__:
    exec(f"from wiser_async import {name} as value")
    if isinstance(value, type) or callable(value):
        shown[name] = value.__module__
extra = {"listed": listed, "shown": shown}
"""
    )
    assert report["listed"]
    assert report["shown"]
    assert {
        name: module for name, module in report["shown"].items() if module != "wiser_async"
    } == {}


def test_first_lazy_name_shows_every_name_of_its_module_as_the_package_own() -> None:
    # Walk's module is loaded by asking for one name; its siblings are published too,
    # and their attrs annotations resolved in their own module first.
    report = run_fresh(
        """
import attrs
import wiser_async
from wiser_async import Walk
from wiser_async._crawl import CrawlResult, Failure
extra = {
    "modules": [CrawlResult.__module__, Failure.__module__, Walk.__module__],
    "resolved": not any(isinstance(f.type, str) for f in attrs.fields(CrawlResult)),
}
"""
    )
    assert report["modules"] == ["wiser_async"] * 3
    assert report["resolved"]


def test_the_command_line_imports_only_what_its_command_needs() -> None:
    report = run_fresh("import wiser_async.cli")
    assert loaded(report, "click")
    heavy = ("rich", "trio", "wiser_async._crawl", "wiser_async._snapshot", "wiser_async.sandbox")
    assert [name for name in heavy if loaded(report, name)] == []
    assert not loaded(report, "wiser_async.cli.crawl")


def test_first_request_on_asyncio_leaves_trio_unrun_and_trio_still_works_after(
    sandbox: Sandbox, urls: SandboxUrls
) -> None:
    token = json.dumps(sandbox.issue_token("acct"))
    report = run_fresh(
        """
import asyncio, json, os, sys

import anyio

from token_stores import MemoryTokenStore, Token
from wiser_async import ApiConfig, AsyncWiserClient, WiserOAuth


async def first_request():
    store = MemoryTokenStore()
    await store.save("acct", Token.from_response(json.loads(os.environ["TEST_TOKEN"])))
    async with (
        WiserOAuth(
            client_id="sandbox-client",
            client_secret="sandbox-secret",
            store=store,
            token_url=os.environ["TEST_TOKEN_URL"],
        ) as oauth,
        AsyncWiserClient(
            oauth, "acct", config=ApiConfig(base_url=os.environ["TEST_BASE_URL"])
        ) as client,
    ):
        return len((await client.locations.page()).items)


on_asyncio = asyncio.run(first_request())
trio_after_asyncio = "trio._core" in sys.modules
on_trio = anyio.run(first_request, backend="trio")
extra = {
    "on_asyncio": on_asyncio,
    "trio_after_asyncio": trio_after_asyncio,
    "on_trio": on_trio,
}
""",
        TEST_TOKEN=token,
        TEST_TOKEN_URL=urls.token_url,
        TEST_BASE_URL=urls.api_base_url,
    )
    assert report["on_asyncio"] > 0
    assert not report["trio_after_asyncio"]
    # A page decoded, a token used: the cattrs converters (which explain a bad item,
    # and read and write stored tokens) were not needed, so never built.
    assert not loaded(report, "cattrs")
    # Deferred, not refused: the same process then runs the client on trio.
    assert report["on_trio"] == report["on_asyncio"]
    assert report["trio_ran"]


def test_a_deferred_trio_submodule_import_runs_the_package_first() -> None:
    report = run_fresh(
        """
from wiser_async._token_endpoint import default_ssl_context
default_ssl_context()
import sys
deferred = "trio" in sys.modules and "trio._core" not in sys.modules
import trio.lowlevel
extra = {"deferred": deferred, "has_run": hasattr(sys.modules["trio"], "run")}
"""
    )
    assert report["deferred"]
    assert report["has_run"]
