"""The public surface: exactly the intended names, importable as the design says."""

from __future__ import annotations

import logging

import httpx2
import pytest

import token_stores
import wiser_async
from tests.support import issue, make_client, make_oauth, secrets_of
from token_stores import MemoryTokenStore
from wiser_async.sandbox import Sandbox, SandboxUrls


def test_wiser_async_exports_exactly_the_intended_names() -> None:
    assert set(wiser_async.__all__) == {
        "DEFAULT_AUTHORIZE_URL",
        "DEFAULT_BASE_URL",
        "DEFAULT_TOKEN_URL",
        "UNSET",
        "Address",
        "ApiConfig",
        "AsyncWiserClient",
        "AuthorizationRequest",
        "Batch",
        "ClientEvent",
        "ClientStats",
        "CrawlResult",
        "CrawlStats",
        "DeviceChange",
        "Event",
        "Events",
        "Failure",
        "FailureEvent",
        "FailureRecorded",
        "JsonlCrawl",
        "Listing",
        "RateLimiter",
        "RedisRateLimiter",
        "LocationTree",
        "Node",
        "RoomTree",
        "SiteTree",
        "SnapshotDiff",
        "Requester",
        "RequestDone",
        "RequestRetried",
        "Throttled",
        "TokenRefreshed",
        "UnitDone",
        "Unset",
        "Validation",
        "Walk",
        "crawl_to_json",
        "crawl_to_jsonl",
        "diff_snapshots",
        "export_snapshot",
        "AccountOutcome",
        "ExportResult",
        "TableCounts",
        "UnreconciledPart",
        "read_snapshot",
        "Device",
        "DeviceCategory",
        "DeviceStatus",
        "DeviceUsage",
        "Location",
        "Page",
        "PageFormat",
        "Paths",
        "RetryPolicy",
        "Room",
        "RoomType",
        "Site",
        "SiteType",
        "WiserOAuth",
        "MergedCrawl",
        "WorkerRun",
        "enqueue",
        "merge",
        "run_worker",
    }
    for name in wiser_async.__all__:
        assert getattr(wiser_async, name) is not None


@pytest.mark.parametrize("module", [wiser_async, token_stores], ids=lambda module: module.__name__)
def test_all_is_sorted_so_additions_are_reviewed_in_place(module: object) -> None:
    names = list(module.__all__)  # type: ignore[attr-defined]
    # isort's order (ruff's RUF022): CONSTANTS, then Classes, then functions.
    assert names == sorted(
        names, key=lambda name: (not name.isupper(), not name[0].isupper(), name)
    )
    assert len(names) == len(set(names))


def test_public_names_read_as_the_packages_own() -> None:
    # A traceback or repr shows wiser_async.Walk, not a private module's path.
    for name in wiser_async.__all__:
        value = getattr(wiser_async, name)
        if isinstance(value, type) or callable(value):
            assert value.__module__ == "wiser_async", name


def test_token_stores_exports_exactly_the_intended_names() -> None:
    assert set(token_stores.__all__) == {
        "DEFAULT_LOCK_TIMEOUT",
        "CorruptTokenData",
        "DecryptionError",
        "Encryption",
        "FileTokenStore",
        "ForeignToken",
        "InsecurePermissions",
        "LockHeld",
        "LockTimeout",
        "MemoryTokenStore",
        "RedisTokenStore",
        "StoreUnavailable",
        "Token",
        "TokenStore",
        "TokenStoreError",
        "UnboundToken",
        "UnsupportedTokenFormat",
        "open_store",
        "redact_store_spec",
    }


def test_design_names_import() -> None:
    from token_stores import (  # noqa: F401
        FileTokenStore,
        MemoryTokenStore,
        RedisTokenStore,
        Token,
        TokenStore,
    )
    from wiser_async import (  # noqa: F401
        AsyncWiserClient,
        Device,
        Location,
        Room,
        Site,
        WiserOAuth,
    )
    from wiser_async.errors import (  # noqa: F401
        ApiError,
        AuthorizationRequired,
        RateLimited,
        WiserError,
    )
    from wiser_async.sandbox import Sandbox as SandboxClass  # noqa: F401


def test_token_stores_never_imports_wiser_async() -> None:
    import ast
    from pathlib import Path

    for path in Path(token_stores.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                names += [alias.name for alias in getattr(node, "names", [])]
                assert not any(name.startswith("wiser_async") for name in names), path


def test_httpx_alias_hook_is_never_installed() -> None:
    import sys

    from httpx2._alias import _AliasFinder

    assert not any(isinstance(finder, _AliasFinder) for finder in sys.meta_path)
    assert "httpx" not in sys.modules or sys.modules["httpx"] is not httpx2


async def test_debug_logs_of_a_whole_session_contain_no_secret(
    sandbox: Sandbox, urls: SandboxUrls, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store = MemoryTokenStore()
    first = await issue(sandbox, store, "acct", expired=True)
    async with make_oauth(urls, store) as oauth, make_client(oauth, urls) as client:
        await client.locations.list()
        sandbox.revoke_access_tokens()
        await client.locations.list()
        latest = await store.load("acct")
        assert latest is not None
        request = oauth.authorization_request()
    text = caplog.text
    assert "HTTP Request" in text or caplog.records  # logging was on
    for secret in [*secrets_of(first, latest), request.code_verifier]:
        assert secret not in text


def test_the_version_is_the_installed_distributions() -> None:
    from importlib.metadata import version

    assert wiser_async.__version__ == version("wiser-async")
