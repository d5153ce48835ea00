"""Configuration without code: flags > WISER_* variables > a TOML file > defaults."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import anyio
import httpx2
import pytest
from click.testing import CliRunner, Result

import wiser_async
from tests.asgi_server import serve_asgi
from tests.cli_support import assert_one_line_error
from tests.support import CLIENT_SECRET, issue
from token_stores import (
    Encryption,
    FileTokenStore,
    MemoryTokenStore,
    RedisTokenStore,
    open_store,
)
from wiser_async import read_snapshot
from wiser_async.cli import main
from wiser_async.cli._environment import IGNORED, known_variables, unknown_variable_warnings
from wiser_async.sandbox import Sandbox, SandboxUrls

# Every WISER_* variable of the environment the tests run in is cleared: only
# what a test sets counts.
CLEAN = {name: None for name in os.environ if name.startswith("WISER_")}


def run(*args: str, env: Mapping[str, str | None] | None = None) -> Result:
    environment = {**CLEAN, **(env or {})}
    return CliRunner().invoke(main, list(args), env=environment, catch_exceptions=False)


def shown(result: Result) -> dict[str, tuple[str, str]]:
    """``config show``'s table: setting -> (value, source)."""
    assert result.exit_code == 0, result.output
    rows = {}
    for line in result.stdout.splitlines()[2:]:
        name, value, source = re.split(r"\s{2,}", line.strip(), maxsplit=2)
        rows[name] = (value, source)
    return rows


# -- a deployment whose paths, paging and field names are not the defaults ------------
#
# The sandbox speaks only the default dialect: this proxy speaks another one
# (as a real deployment might) and translates both ways.

PREFIX = "/api/v9"
# The proxy's path -> the sandbox's, by pattern.
ROUTES = [
    (re.compile(r"/places"), "/locations", "location"),
    (re.compile(r"/places/([^/]+)/buildings"), r"/locations/\1/sites", "site"),
    (re.compile(r"/buildings/([^/]+)/spaces"), r"/sites/\1/rooms", "room"),
    (re.compile(r"/buildings/([^/]+)/equipment"), r"/sites/\1/devices", "device"),
    (re.compile(r"/spaces/([^/]+)/equipment"), r"/rooms/\1/devices", "device"),
]
# The sandbox's field name -> the proxy's, per kind of item.
RENAMES = {
    "location": {"name": "label"},
    "site": {"locationId": "placeId"},
    "room": {"siteId": "buildingId"},
    "device": {"siteId": "buildingId", "roomId": "spaceId", "serialNumber": "serial"},
}
CONFIG = """
base_url = "{proxy}/api/v9"
token_url = "{token_url}"
client_id = "sandbox-client"
client_secret_file = "secret.txt"
store = "file:tokens"
concurrency = 3
page_size = 4
devices_by = "room"

[api.paths]
locations = "/places"
location = "/places/{{location_id}}"
location_sites = "/places/{{location_id}}/buildings"
site = "/buildings/{{site_id}}"
site_rooms = "/buildings/{{site_id}}/spaces"
site_devices = "/buildings/{{site_id}}/equipment"
room_devices = "/spaces/{{room_id}}/equipment"
device = "/equipment/{{device_id}}"

[api.pages]
offset_param = "skip"
limit_param = "top"
data_key = "items"
meta_key = "paging"
total_key = "count"
limit_key = "pageSize"

[api.aliases.Location]
name = "label"

[api.aliases.Site]
location_id = "placeId"

[api.aliases.Room]
site_id = "buildingId"

[api.aliases.Device]
site_id = "buildingId"
room_id = "spaceId"
serial_number = "serial"
"""


class TranslatingProxy:
    """An ASGI app serving the sandbox's API in another dialect."""

    def __init__(self, upstream: SandboxUrls) -> None:
        self.upstream = upstream
        self.requests = 0
        self.http: httpx2.AsyncClient | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            # One connection pool for the proxy's life, on the server's event loop.
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self.http = httpx2.AsyncClient()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if self.http is not None:
                        await self.http.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        status, body = await self.answer(scope)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def answer(self, scope: dict[str, Any]) -> tuple[int, bytes]:
        self.requests += 1
        path = scope["path"].removeprefix(PREFIX)
        route = next((route for route in ROUTES if route[0].fullmatch(path)), None)
        if route is None:
            return 404, b'{"error": {"code": "not_found", "message": "no such route"}}'
        names = {"skip": "offset", "top": "limit"}
        query = [
            (names.get(name, name), value)
            for name, value in parse_qsl(scope["query_string"].decode())
        ]
        headers = dict(scope["headers"])
        pattern, target, kind = route
        assert self.http is not None
        upstream = await self.http.get(
            self.upstream.api_base_url + pattern.sub(target, path) + "?" + urlencode(query),
            headers={"authorization": headers[b"authorization"].decode()},
        )
        if upstream.status_code != 200:
            return upstream.status_code, upstream.content
        page = upstream.json()
        renames = RENAMES[kind]
        items = [
            {renames.get(key, key): value for key, value in item.items()} for item in page["data"]
        ]
        meta = page["meta"]
        paging = {"count": meta["total"], "pageSize": meta["limit"], "skip": meta["offset"]}
        return 200, httpx2.Response(200, json={"items": items, "paging": paging}).content


def test_a_deployment_with_other_paths_and_names_is_crawled_from_a_file_alone(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = TranslatingProxy(urls)
    anyio.run(issue, sandbox, FileTokenStore(tmp_path / "tokens"), "acme")
    (tmp_path / "secret.txt").write_text(CLIENT_SECRET + "\n")
    output = tmp_path / "out.jsonl"
    with serve_asgi(proxy, lifespan=True) as origin:
        config = tmp_path / "wiser.toml"
        config.write_text(CONFIG.format(proxy=origin, token_url=urls.token_url))
        # From another directory: the file's paths are relative to the file.
        monkeypatch.chdir(tmp_path.parent)
        result = run("crawl", "--config", str(config), "-o", str(output))
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("Complete: nothing is missing.\n")
    assert proxy.requests > 0
    assert sandbox.stats.requests == proxy.requests

    records = [record for record in read_snapshot(output) if record["type"] == "device"]
    portfolio = sandbox.portfolio_for()
    truth = {device["id"]: device for device in portfolio.devices()}
    assert sorted(record["data"]["id"] for record in records) == sorted(truth)
    for record in records:
        device = truth[record["data"]["id"]]
        # Placed in its room: the alias of room_id was read...
        assert record["roomId"] == device["roomId"]
        assert record["siteId"] == device["siteId"]
        # ...and written back in the deployment's own names.
        assert record["data"]["spaceId"] == device["roomId"]
        assert record["data"]["serial"] == device["serialNumber"]
        assert "roomId" not in record["data"]
        assert "serialNumber" not in record["data"]
    labels = [r["data"]["label"] for r in read_snapshot(output) if r["type"] == "location"]
    assert labels == [location["name"] for location in portfolio.locations()]


def test_config_show_takes_a_flag_over_the_environment_over_the_file_over_the_default(
    tmp_path: Path,
) -> None:
    config = tmp_path / "wiser.toml"
    config.write_text(
        'concurrency = 4\nrate = 3\npage_size = 50\nbase_url = "https://f.example/v1"\n'
    )
    result = run(
        "config", "show", "--config", str(config), "--concurrency", "9",
        env={"WISER_CONCURRENCY": "7", "WISER_RATE": "5"},
    )  # fmt: skip
    rows = shown(result)
    assert rows["concurrency"] == ("9", "flag --concurrency")
    assert rows["rate"] == ("5.0", "env WISER_RATE")
    assert rows["page_size"] == ("50", f"file {config}")
    assert rows["base_url"] == ("https://f.example/v1", f"file {config}")
    assert rows["devices_by"] == ("site", "default")
    assert rows["http"] == ("httpx2", "default")
    assert rows["validate"] == ("ids", "default")
    assert rows["api.paths.locations"] == ("/locations", "default")
    assert result.stdout.startswith(f"configuration file: {config}\n")
    # WISER_CONFIG names the file as --config does.
    rows = shown(run("config", "show", env={"WISER_CONFIG": str(config)}))
    assert rows["concurrency"] == ("4", f"file {config}")


def test_every_setting_has_its_variable(tmp_path: Path) -> None:
    (tmp_path / "keys").write_text(Encryption.generate_key())
    variables = {
        "WISER_BASE_URL": "https://b.example/v1",
        "WISER_AUTHORIZE_URL": "https://a.example/authorize",
        "WISER_TOKEN_URL": "https://t.example/token",
        "WISER_REDIRECT_URI": "http://127.0.0.1:9999/cb",
        "WISER_CLIENT_ID": "my-app",
        "WISER_CLIENT_SECRET": "s3cr3t-value",
        "WISER_AUTH_METHOD": "client_secret_basic",
        "WISER_SCOPE": "read write",
        "WISER_TOKEN_STORE": "redis://:pa55word@r.example:6380/2?prefix=p",
        "WISER_ENCRYPTION_KEYS_FILE": str(tmp_path / "keys"),
        "WISER_CONCURRENCY": "5",
        "WISER_RATE": "2.5",
        "WISER_PAGE_SIZE": "20",
        "WISER_DEVICES_BY": "room",
        "WISER_HTTP": "aiohttp",
        "WISER_VALIDATE": "models",
        "WISER_REDIS_PATIENCE": "45",
    }
    result = run("config", "show", env=variables)
    rows = shown(result)
    for name, (value, source) in rows.items():
        if not name.startswith("api."):
            assert source.startswith("env WISER_"), (name, source)
            assert value != "(none)", name
    assert rows["scope"][0] == "read write"
    assert rows["store"][0] == "redis://***@r.example:6380/2?prefix=p"
    assert rows["client_secret"] == ("***", "env WISER_CLIENT_SECRET")
    assert rows["encryption_keys"][0] == "***"
    for secret in ("s3cr3t-value", "pa55word", (tmp_path / "keys").read_text()):
        assert secret not in result.output


def test_a_wiser_variable_nothing_reads_is_warned_about_by_name_never_by_value() -> None:
    result = run(
        "config",
        "show",
        env={
            "WISER_CONCURENCY": "7",
            "WISER_STORE": "redis://:hunter2-pw@r.example",
            "WISER_UNRELATED_THING": "s3cr3t-value",
            "WISER_REQUIRE_REDIS": "1",  # the test suite's switch: not the command line's
            "WISER_CLIENT_SECRET": "another-s3cr3t",
        },
    )
    assert result.stderr.splitlines() == [
        "warning: WISER_CONCURENCY is not a wiser-async setting; it is ignored "
        "(did you mean WISER_CONCURRENCY?)",
        "warning: WISER_STORE is not a wiser-async setting; it is ignored "
        "(did you mean WISER_TOKEN_STORE?)",
        "warning: WISER_UNRELATED_THING is not a wiser-async setting; it is ignored",
    ]
    assert shown(result)["concurrency"] == ("16", "default")  # ignored, as the warning says
    for secret in ("hunter2-pw", "s3cr3t-value", "another-s3cr3t"):
        assert secret not in result.output


def test_every_wiser_variable_the_code_names_is_known_or_deliberately_ignored() -> None:
    known = known_variables(main)
    # The options' variables come from the commands themselves: a sample of each command's.
    for name in ("WISER_CONFIG", "WISER_OUTPUT", "WISER_QUEUE_REDIS", "WISER_LOGIN_HINT",
                 "WISER_LATENCY", "WISER_IGNORE", "WISER_PORT", "WISER_TOKEN_STORE"):  # fmt: skip
        assert name in known
    package = Path(wiser_async.__file__).parent
    named = {
        name
        for path in package.rglob("*.py")
        if path.name != "_environment.py"  # its docstring shows a misspelt one
        for name in re.findall(r"WISER_[A-Z][A-Z_]*[A-Z]", path.read_text())
    }
    assert len(named) > 20
    assert unknown_variable_warnings(dict.fromkeys(named | IGNORED, "x"), known) == []


def test_secrets_come_from_files_named_in_the_config_and_are_never_shown(
    tmp_path: Path,
) -> None:
    key = Encryption.generate_key()
    (tmp_path / "secret.txt").write_text("file-secret-1234\n")
    (tmp_path / "keys.txt").write_text(f"{key}\n")
    config = tmp_path / "wiser.toml"
    config.write_text('client_secret_file = "secret.txt"\nencryption_keys_file = "keys.txt"\n')
    result = run("config", "show", "--config", str(config))
    rows = shown(result)
    assert rows["client_secret"][0] == "***"
    assert rows["client_secret"][1] == (
        f"file {tmp_path / 'secret.txt'} (client_secret_file in {config})"
    )
    assert rows["encryption_keys"][0] == "***"
    assert "file-secret-1234" not in result.output
    assert key not in result.output
    # The environment beats the file, and is named as the source.
    rows = shown(run("config", "show", "--config", str(config), env={"WISER_CLIENT_SECRET": "e"}))
    assert rows["client_secret"] == ("***", "env WISER_CLIENT_SECRET")


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("concurency = 3\n", ["unknown key 'concurency'", "did you mean 'concurrency'"]),
        ("[api.paths]\nsites = '/x'\n", ["unknown key 'api.paths.sites'"]),
        ("[api.aliases.Gadget]\nx = 'y'\n", ["unknown key 'api.aliases.Gadget'"]),
        ("[api.aliases.Device]\ncolour = 'c'\n", ["unknown key 'api.aliases.Device.colour'"]),
        ('client_secret = "hunter2"\n', ["client_secret cannot be written", "client_secret_file"]),
        ('encryption_keys = "k"\n', ["encryption_keys cannot be written"]),
        ('concurrency = "4"\n', ["concurrency must be an integer"]),
        ('devices_by = "floor"\n', ["devices_by must be one of site, room"]),
        ('http = "curl"\n', ["http must be one of httpx2, aiohttp, not 'curl'"]),
        ('validate = "all"\n', ["validate must be one of ids, models, not 'all'"]),
        ("[api.paths]\nsite_rooms = '/sites/{id}/rooms'\n", ["api.paths.site_rooms", "{site_id}"]),
        ("[api.pages]\npage_size = 900\n", ["api.pages", "page_size"]),
        ("concurrency = \n", ["is not valid TOML"]),
    ],
)
def test_a_bad_config_file_is_one_line_naming_the_key_and_the_file(
    tmp_path: Path, text: str, fragments: list[str]
) -> None:
    config = tmp_path / "wiser.toml"
    config.write_text(text)
    line = assert_one_line_error(run("config", "show", "--config", str(config)), *fragments)
    assert str(config) in line
    assert "hunter2" not in line


def test_a_config_file_that_is_not_there_or_a_value_out_of_range_is_one_line(
    tmp_path: Path,
) -> None:
    assert_one_line_error(run("config", "show", "--config", str(tmp_path / "no.toml")), "--config")
    config = tmp_path / "wiser.toml"
    config.write_text("concurrency = 0\n")
    line = assert_one_line_error(run("config", "show", "--config", str(config)))
    assert line == f"error: --concurrency must be at least 1, not 0 (from concurrency in {config})"


# -- token_stores.open_store --------------------------------------------------------


def test_open_store_reads_each_spelling(tmp_path: Path, redis_url: str) -> None:
    async def check() -> None:
        memory = open_store("memory")
        assert isinstance(memory, MemoryTokenStore)
        home = open_store(f"file:{tmp_path}/t", encryption=Encryption([Encryption.generate_key()]))
        assert isinstance(home, FileTokenStore)
        assert home.encryption is not None
        redis = open_store(f"{redis_url}?prefix=cli-spec")
        assert isinstance(redis, RedisTokenStore)
        assert redis.prefix == "cli-spec"
        assert isinstance(open_store(redis_url), RedisTokenStore)
        for store in (memory, home, redis):
            await store.keys()
            await store.aclose()

    anyio.run(check)


def test_open_store_expands_the_home_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    store = open_store("file:~/tokens")
    assert isinstance(store, FileTokenStore)
    assert store.directory == tmp_path / "tokens"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "expected memory, file:DIRECTORY"),
        ("Memory", "expected memory, file:DIRECTORY"),
        ("s3://user:secret@bucket", "not 's3://***@bucket'"),
        ("file:", "needs a directory"),
        ("file://tmp/x", "not a URL"),
        ("redis://", "names no host"),
        ("redis://:secret@h:notaport/0", "not a valid URL"),
        ("redis://h/zero", "database is a number"),
        ("redis://h/0?prefix=a&prefix=b", "prefix is given 2 times"),
        ("redis://h/0?prefix=", "prefix is empty"),
        ("unix://", "names no socket"),
    ],
)
def test_open_store_refuses_a_malformed_spec_without_showing_a_password(
    spec: str, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        open_store(spec)
    assert "secret" not in str(caught.value)


def test_a_malformed_store_is_one_line_naming_the_option(tmp_path: Path) -> None:
    line = assert_one_line_error(
        run("tokens", "list", "--store", "redis://:secret@host:port/0"),
        "--store",
        "not a valid URL",
    )
    assert "secret" not in line
    assert_one_line_error(
        run("tokens", "list", env={"WISER_TOKEN_STORE": "file:"}), "--store", "WISER_TOKEN_STORE"
    )
