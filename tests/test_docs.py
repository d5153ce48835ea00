"""Every page of the documentation runs as written; the harness that runs them works.

One test per page (README.md and docs/**.md): its python, sh and toml blocks
run in order in one working directory, real-API blocks against the sandbox
served as the real hosts (see tests/docs_support.py for the conventions).
"""

from __future__ import annotations

import importlib.util
import socket
import ssl
import sys
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import pytest

from tests import docs_support
from tests.docs_support import (
    BLOCK_TIMEOUT,
    REAL_API_ACCOUNT,
    REAL_HOSTS,
    BlockFailed,
    ConnectProxy,
    Page,
    PageRun,
    RealApiHarness,
    parse_page,
)

PAGES = docs_support.pages()
REAL_HOST = sorted(REAL_HOSTS)[0]
# Pages run side by side in this many threads (each block a child process).
PAGES_AT_ONCE = 3
# So a page's test may wait for other pages' blocks too: each block is bounded
# by BLOCK_TIMEOUT, and so is the wait.
PAGE_TEST_TIMEOUT = BLOCK_TIMEOUT * sum(len(page.runnable) for page in PAGES) + 60


def _as_param(page: Page) -> object:
    marks = [pytest.mark.timeout(PAGE_TEST_TIMEOUT)]
    if page.needs_redis:
        marks.append(pytest.mark.redis)
    return pytest.param(page, id=page.name, marks=marks)


@pytest.fixture(scope="module")
def real_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealApiHarness]:
    """The sandbox served over HTTPS as the real hosts: one per module."""
    with RealApiHarness.start(tmp_path_factory.mktemp("real-api")) as harness:
        yield harness


@pytest.fixture
def proxy(real_api: RealApiHarness) -> Iterator[ConnectProxy]:
    """A CONNECT proxy of its own to the harness's sandbox."""
    proxy = real_api.open_proxy()
    yield proxy
    proxy.close()


def run_page(page: Page, directory: Path, harness: RealApiHarness | None) -> PageRun:
    """Run ``page``; for a real-API page, check that its blocks went through its proxy."""
    assert not page.problems, "\n".join(page.problems)
    run = PageRun.create(page, directory, harness)
    run.run()
    if run.proxy is not None:
        assert run.proxy.connects, f"{page.name}: no real-API block reached {REAL_HOST}"
        assert run.proxy.refused == [], f"{page.name}: refused by the proxy: {run.proxy.refused}"
    return run


class PageRuns:
    """The selected pages, run side by side from the first page test on.

    Pages with the most blocks start first (the whole takes less time that
    way); each page's test waits for its own page's run.
    """

    def __init__(self, request: pytest.FixtureRequest, directory: Path) -> None:
        selected = [
            page
            for item in request.session.items
            if isinstance(item, pytest.Function)
            and item.originalname == "test_page_runs_as_written"
            and item.module is sys.modules[__name__]
            and isinstance(page := item.callspec.params["page"], Page)
        ]
        self._pool = ThreadPoolExecutor(PAGES_AT_ONCE, thread_name_prefix="docs page")
        self._runs: dict[str, Future[PageRun]] = {}
        harness = None
        for number, page in sorted(enumerate(selected), key=lambda pair: -len(pair[1].runnable)):
            if page.needs_redis and not _available(request, "redis_url"):
                continue  # its test skips (or fails, with WISER_REQUIRE_REDIS=1)
            if page.needs_real_api and harness is None:
                harness = request.getfixturevalue("real_api")
            page_directory = directory / f"page{number:02d}"
            page_directory.mkdir()
            self._runs[page.name] = self._pool.submit(
                run_page, page, page_directory, harness if page.needs_real_api else None
            )

    def result(self, page: Page) -> PageRun:
        return self._runs[page.name].result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _available(request: pytest.FixtureRequest, fixture: str) -> bool:
    try:
        request.getfixturevalue(fixture)
    except (pytest.skip.Exception, pytest.fail.Exception):
        return False
    return True


@pytest.fixture(scope="module")
def page_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PageRuns]:
    runs = PageRuns(request, tmp_path_factory.mktemp("pages"))
    yield runs
    runs.close()


@pytest.mark.parametrize("page", [_as_param(page) for page in PAGES])
def test_page_runs_as_written(
    page: Page, page_runs: PageRuns, request: pytest.FixtureRequest
) -> None:
    if page.needs_redis:
        request.getfixturevalue("redis_url")  # skipped without Redis unless WISER_REQUIRE_REDIS=1
    page_runs.result(page)


def test_every_fragment_says_why_it_does_not_run() -> None:
    unexplained = [block.where for page in PAGES for block in page.fragments if not block.fragment]
    assert unexplained == [], f"fragments without a reason: {unexplained}"


def test_runnable_blocks_and_fragments_are_counted(capsys: pytest.CaptureFixture[str]) -> None:
    by_language, fragments = docs_support.counts(PAGES)
    with capsys.disabled():
        print(  # noqa: T201
            f"\ndocs: {len(PAGES)} pages, runnable blocks "
            + ", ".join(
                f"{language} {by_language[language]}" for language in ("python", "sh", "toml")
            )
            + f"; {len(fragments)} fragments: "
            + "; ".join(f"{block.where} ({block.fragment})" for block in fragments)
        )
    runnable = sum(by_language.values())
    assert {"python", "sh"} <= set(by_language), "the docs show python and sh that run"
    # Fragments stay few: at most one for every three blocks that run.
    assert len(fragments) * 3 <= runnable, f"{len(fragments)} fragments for {runnable} runnable"


# -- the page parser ------------------------------------------------------------------


def test_tabbed_blocks_are_dedented_and_markers_read_from_the_line_above() -> None:
    page = parse_page(
        '=== "Real API"\n\n'
        "    <!-- real-api -->\n"
        "    ```python\n"
        "    if True:\n"
        "        print('indented once')\n"
        "    ```\n\n"
        '=== "Sandbox"\n\n'
        "    <!-- fragment: needs a browser -->\n\n"
        "    ```sh\n"
        "    wiser-async login\n"
        "    ```\n"
        '```toml title="conf/w.toml"\n'
        "[api]\n"
        "```\n",
        "sample.md",
    )
    assert page.problems == ()
    python, sh, toml = page.blocks
    assert (python.code, python.real_api, python.line) == (
        "if True:\n    print('indented once')\n",
        True,
        4,
    )
    # A blank line between the comment and the fence: not a marker.
    assert (sh.fragment, sh.code) == (None, "wiser-async login\n")
    assert (toml.title, toml.code) == ("conf/w.toml", "[api]\n")


@pytest.mark.parametrize(
    ("markdown", "problem"),
    [
        ("```py\nprint(1)\n```\n", "fence language 'py'"),
        ("```\nls\n```\n", "fence language '(none)'"),
        ("<!-- fragment -->\n```python\nx\n```\n", "a fragment without its reason"),
        ("<!-- fragment:  -->\n```sh\nx\n```\n", "a fragment without its reason"),
        ("<!-- real api -->\n```sh\nx\n```\n", "an unknown marker"),
        ("<!-- real-api -->\n```text\nx\n```\n", "is never run: it needs no marker"),
        ('```toml title="../w.toml"\n[a]\n```\n', "not a path inside the working dir"),
        ("```python\nprint(1)\n", "a fence never closed"),
    ],
)
def test_a_block_against_the_conventions_is_a_problem(markdown: str, problem: str) -> None:
    problems = parse_page(markdown, "sample.md").problems
    assert len(problems) == 1
    assert problem in problems[0]
    assert problems[0].startswith("sample.md:")


def test_reference_pages_of_directives_only_are_not_pages() -> None:
    names = {page.name for page in PAGES}
    assert "README.md" in names
    assert "docs/reference/client.md" not in names


# -- running blocks -------------------------------------------------------------------


def test_a_failing_block_is_reported_with_its_place_and_output(tmp_path: Path) -> None:
    page = parse_page("Text.\n\n```sh\necho shown-before-failing\nexit 3\n```\n", "sample.md")
    with pytest.raises(BlockFailed, match=r"sample\.md:3 \(sh\) exited with 3") as failed:
        run_page(page, tmp_path, None)
    assert "shown-before-failing" in str(failed.value)


def test_a_python_block_that_prints_nothing_fails(tmp_path: Path) -> None:
    page = parse_page("```python\nx = 1\n```\n", "sample.md")
    with pytest.raises(BlockFailed, match="printed nothing"):
        run_page(page, tmp_path, None)


def test_blocks_share_a_directory_and_get_a_clean_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WISER_ACCOUNT", "from-the-caller")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    page = parse_page(
        '```python title="helper.py"\nGREETING = "hello"\n'
        'if __name__ == "__main__":\n    print("saved")\n```\n'
        "```python\nimport helper\n\nprint(helper.GREETING)\n```\n"
        "```sh\n"
        'test -z "${WISER_ACCOUNT:-}" && test -z "${HTTPS_PROXY:-}" && test ! -t 0\n'
        f'test "$(command -v wiser-async)" = "{Path(sys.executable).parent}/wiser-async"\n'
        "ls helper.py\n"
        "```\n",
        "sample.md",
    )
    outcomes = run_page(page, tmp_path, None).outcomes
    assert [outcome.stdout for outcome in outcomes] == ["saved\n", "hello\n", "helper.py\n"]


def test_a_server_left_running_ends_with_the_page_and_a_slow_block_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(docs_support, "BLOCK_TIMEOUT", 1.0)
    page = parse_page("```sh\nsleep 300 &\necho $! > pid\n```\n```sh\nsleep 30\n```\n", "sample.md")
    with pytest.raises(BlockFailed, match=r"sample\.md:5 \(sh\) did not end within 1 s"):
        run_page(page, tmp_path, None)
    pid = int((tmp_path / "work" / "pid").read_text())
    assert _ends_soon(pid), "the block's background process outlived the page"


def _ends_soon(pid: int) -> bool:
    """Whether ``pid`` is gone (or a zombie left to its new parent) within 5 seconds."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.01)
    return False


def test_a_toml_block_is_checked_by_config_show_under_its_title(tmp_path: Path) -> None:
    page = parse_page(
        'A file:\n\n```toml title="conf/wiser.toml"\nbase_url = "https://example.test/v1"\n```\n'
        "```sh\ntest -f conf/wiser.toml\n```\n"
        "```toml\nnot_a_setting = 1\n```\n",
        "sample.md",
    )
    with pytest.raises(BlockFailed, match=r"sample\.md:9 \(toml\) exited with 2") as failed:
        run_page(page, tmp_path, None)
    assert "not_a_setting" in str(failed.value)


# -- the real-API harness -------------------------------------------------------------


def _proxy_answer(proxy: ConnectProxy, request: bytes) -> tuple[bytes, socket.socket]:
    host, port = proxy.url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(request)
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            break
        answer += chunk
    return answer.split(b"\r\n", 1)[0], sock


@pytest.mark.parametrize(
    ("request_line", "status"),
    [
        (b"CONNECT example.com:443 HTTP/1.1", b"HTTP/1.1 403 Forbidden"),
        (b"CONNECT 127.0.0.1:443 HTTP/1.1", b"HTTP/1.1 403 Forbidden"),
        (f"CONNECT {REAL_HOST}:80 HTTP/1.1".encode(), b"HTTP/1.1 403 Forbidden"),
        (f"GET http://{REAL_HOST}/ HTTP/1.1".encode(), b"HTTP/1.1 405 Method Not Allowed"),
    ],
)
def test_the_proxy_refuses_any_other_host_port_or_method(
    proxy: ConnectProxy, request_line: bytes, status: bytes
) -> None:
    answer, sock = _proxy_answer(proxy, request_line + b"\r\nHost: x\r\n\r\n")
    sock.close()
    assert answer == status
    assert len(proxy.refused) == 1
    assert proxy.connects == []


def test_the_proxy_tunnels_a_real_host_to_the_sandbox_with_a_certificate_for_it(
    real_api: RealApiHarness, proxy: ConnectProxy
) -> None:
    answer, sock = _proxy_answer(
        proxy, f"CONNECT {REAL_HOST}:443 HTTP/1.1\r\nHost: {REAL_HOST}:443\r\n\r\n".encode()
    )
    assert answer == b"HTTP/1.1 200 Connection established"
    context = ssl.create_default_context(cafile=str(real_api.ca_file))
    with context.wrap_socket(sock, server_hostname=REAL_HOST) as tls:
        tls.sendall(
            f"GET /wiser/energy-monitoring/v1/locations HTTP/1.1\r\nHost: {REAL_HOST}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        status = tls.recv(4096).split(b"\r\n", 1)[0]
    assert status == b"HTTP/1.1 401 Unauthorized"  # the sandbox's API, asking for a token
    assert proxy.connects == [f"{REAL_HOST}:443"]


SAMPLE_REAL_API_PAGE = """\
# A real-API sample (the docs test's own)

<!-- real-api -->
```sh
wiser-async tokens list --store file:tokens
wiser-async login -a globex --store file:tokens --timeout 30
```

<!-- real-api -->
```python
import os

import anyio

from token_stores import FileTokenStore
from wiser_async import AsyncWiserClient, WiserOAuth


async def main() -> None:
    oauth = WiserOAuth(
        client_id=os.environ["WISER_CLIENT_ID"],
        client_secret=os.environ["WISER_CLIENT_SECRET"],
        store=FileTokenStore("tokens"),
    )
    async with oauth, AsyncWiserClient(oauth, "acme") as client:
        for account in ("acme", "globex"):
            locations = await client.for_account(account).locations.list()
            print(account, "has", len(locations), "locations")


anyio.run(main)
```

<!-- real-api -->
```sh
wiser-async crawl -a acme --store file:tokens -o portfolio.jsonl
```
"""


def test_a_real_api_page_runs_through_the_proxy_against_the_sandbox(
    real_api: RealApiHarness, tmp_path: Path
) -> None:
    page = parse_page(SAMPLE_REAL_API_PAGE, "sample.md")
    stats = real_api.sandbox.stats
    run = run_page(page, tmp_path, real_api)
    tokens, listing, crawl = run.outcomes
    # ./tokens held the harness's grant for acme; login added globex through the browser stand-in.
    assert REAL_API_ACCOUNT in tokens.stdout
    assert "Token stored for 'globex'" in tokens.stdout
    assert listing.stdout == "acme has 2 locations\nglobex has 2 locations\n"
    assert "2 locations, 4 sites" in crawl.stdout + crawl.stderr
    # Every process reached the real host through the proxy: login (its client
    # check, the browser, the code exchange), the Python client, the crawl.
    assert run.proxy is not None
    assert len(run.proxy.connects) >= 4
    assert set(run.proxy.connects) == {f"{REAL_HOST}:443"}
    after = real_api.sandbox.stats
    grants = after.token_requests.get("authorization_code", 0)
    assert grants == stats.token_requests.get("authorization_code", 0) + 1
    assert after.requests > stats.requests


def test_a_block_that_shows_a_secret_fails_without_showing_it(
    real_api: RealApiHarness, tmp_path: Path
) -> None:
    page = parse_page(
        "<!-- real-api -->\n```python\nimport os\n\n"
        'print(os.environ["WISER_CLIENT_SECRET"])\n```\n',
        "sample.md",
    )
    with pytest.raises(
        BlockFailed, match=r"sample\.md:2 \(python, real API\) showed 1 secret"
    ) as failed:
        run_page(page, tmp_path, real_api)
    assert real_api.client_secret not in str(failed.value)


# -- the site's reference check (.ci/check_docs.py) -----------------------------------


def _check_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "check_docs", docs_support.ROOT / ".ci" / "check_docs.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _inventory(directory: Path, names: list[str]) -> None:
    lines = "".join(f"{name} py:class 1 reference/#$ -\n" for name in names)
    directory.mkdir(exist_ok=True)
    (directory / "objects.inv").write_bytes(
        b"# Sphinx inventory version 2\n# Project: wiser-async\n# Version: 0.0.0\n"
        b"# The remainder of this file is compressed using zlib.\n" + zlib.compress(lines.encode())
    )


def test_the_reference_check_names_each_public_name_without_an_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check_docs = _check_docs()
    expected = [name for module in check_docs.MODULES for name in check_docs.public_names(module)]
    assert {"wiser_async.AsyncWiserClient", "token_stores.FileTokenStore"} <= set(expected)
    assert "wiser_async.sandbox.Sandbox" in expected
    assert "wiser_async.errors.WiserError" in expected
    _inventory(tmp_path / "complete", expected)
    assert check_docs.main(["check_docs.py", str(tmp_path / "complete")]) == 0
    assert f"all {len(expected)} public names have an entry" in capsys.readouterr().out
    missing = ["wiser_async.WiserOAuth", "token_stores.Token"]
    _inventory(tmp_path / "partial", [name for name in expected if name not in missing])
    assert check_docs.main(["check_docs.py", str(tmp_path / "partial")]) == 1
    report = capsys.readouterr().err
    assert f"2 of {len(expected)} public names have no API reference entry" in report
    assert all(f"\n  {name}" in report for name in missing)
    assert check_docs.main(["check_docs.py", str(tmp_path / "no-site")]) == 2
