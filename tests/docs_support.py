"""The documentation's code blocks, how each one runs, and the real-API harness.

A *page* is README.md or a Markdown file under docs/ (reference pages that
hold only ``:::`` directives and no code block are not pages). Its fenced
code blocks run as a reader following it top to bottom would: in order, in
one fresh working directory.

- ``python``: saved outside the working directory (or, with a ``title``,
  under that name inside it) and run as ``python BLOCK.py`` with the page's
  directory importable; it must print something.
- ``sh``: run by ``bash -euo pipefail``.
- ``toml``: saved under its ``title`` (``wiser.toml`` by default) and
  checked by ``wiser-async config show --config FILE``.
- ``text`` and ``json`` are shown only; any other language is a mistake.

Every block gets the venv's ``bin`` first on ``PATH``, no ``WISER_*``, proxy
or CA variable of the caller, no standard input, 60 seconds, and a
``BROWSER`` that plays the customer's browser (`BROWSER_SCRIPT`): it follows
an authorization URL to its redirect, so ``wiser-async login`` completes.
What a block leaves running in the background ends with the page. Pages run
side by side (tests/test_docs.py), so a block listens on no fixed port but
login's redirect URI, which login blocks take turns on.

The HTML comment on the line directly above a fence marks it:
``<!-- fragment: WHY -->`` (not run; the reason is required) or
``<!-- real-api -->`` (run against the real default URLs, which
`RealApiHarness` serves: the sandbox over HTTPS with certificates for the
real hosts, signed by a CA made for the run, behind a loopback CONNECT
proxy that refuses every other host; the block gets ``HTTPS_PROXY``,
``SSL_CERT_FILE``, ``WISER_CLIENT_ID`` and ``WISER_CLIENT_SECRET``, and the
page's directory a file token store ``./tokens`` holding a grant for
account ``acme``).

``python -m tests.docs_support`` prints each page's blocks by language and
its fragments, with their reasons.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import secrets
import selectors
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import attrs

from token_stores import FileTokenStore, Token
from wiser_async import DEFAULT_AUTHORIZE_URL, DEFAULT_BASE_URL, DEFAULT_TOKEN_URL

if TYPE_CHECKING:
    from wiser_async.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"

RUNNABLE = ("python", "sh", "toml")
SHOWN = ("text", "json")
DEFAULT_TOML = "wiser.toml"
BLOCK_TIMEOUT = 60.0
# The account whose grant a real-API page finds in ./tokens.
REAL_API_ACCOUNT = "acme"
# The hosts of the library's default URLs: the only ones the proxy tunnels to.
REAL_HOSTS = frozenset(
    urlsplit(url).hostname or ""
    for url in (DEFAULT_BASE_URL, DEFAULT_TOKEN_URL, DEFAULT_AUTHORIZE_URL)
)
# A page whose runnable blocks name a Redis URL needs a Redis server.
_REDIS = re.compile(r"rediss?://")
_LOGIN = re.compile(r"\bwiser-async\s+(?:-\S+\s+)*login\b")
# Pages run side by side; their login blocks take turns (login's redirect URI is one port).
LOGIN_TURN = threading.Lock()

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`\n]*)$")
_TITLE = re.compile(r"""\btitle=(?:"(?P<double>[^"]*)"|'(?P<single>[^']*)')""")
_COMMENT = re.compile(r"^<!--(?P<body>.*)-->$")
_FRAGMENT = re.compile(r"^\s*fragment\s*(?::(?P<why>.*))?$", re.DOTALL)
_REAL_API = re.compile(r"^\s*real-api\s*$")
# Variables of the caller a block must not inherit: its settings come from the page.
_PROXY_VARIABLES = frozenset({"http_proxy", "https_proxy", "all_proxy", "no_proxy"})
_DROPPED_VARIABLES = frozenset(
    {"SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PYTHONPATH"}
)
_DROPPED_PREFIXES = ("WISER_", "PYTEST_", "BROWSER")
# What a failure message shows of a block's output.
_TAIL_LINES = 40


@attrs.frozen
class Block:
    """One fenced code block of a page."""

    page: str
    line: int
    language: str
    code: str
    title: str | None = None
    # The reason of a ``<!-- fragment: WHY -->`` marker ("" when it gives none).
    fragment: str | None = None
    real_api: bool = False

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.language in RUNNABLE and self.fragment is None

    @property
    def logs_in(self) -> bool:
        """Whether it runs ``wiser-async login``, which listens on one fixed port."""
        return self.language == "sh" and any(
            _LOGIN.search(line.partition("#")[0]) for line in self.code.splitlines()
        )


@attrs.frozen
class Page:
    """A page's code blocks, in order, and what breaks the conventions in it."""

    path: Path
    name: str
    blocks: tuple[Block, ...]
    problems: tuple[str, ...]

    @property
    def runnable(self) -> tuple[Block, ...]:
        return tuple(block for block in self.blocks if block.runs)

    @property
    def fragments(self) -> tuple[Block, ...]:
        return tuple(block for block in self.blocks if block.fragment is not None)

    @property
    def needs_redis(self) -> bool:
        return any(_REDIS.search(block.code) for block in self.runnable)

    @property
    def needs_real_api(self) -> bool:
        return any(block.real_api for block in self.runnable)


def _marker(line: str) -> tuple[str | None, bool, str | None]:
    """(fragment reason, real-api, problem) of the line above a fence."""
    comment = _COMMENT.match(line.strip())
    if comment is None:
        return None, False, None
    body = comment["body"]
    if _REAL_API.match(body):
        return None, True, None
    fragment = _FRAGMENT.match(body)
    if fragment is not None:
        return (fragment["why"] or "").strip(), False, None
    return None, False, f"an unknown marker {line.strip()!r} above a fence"


def parse_page(text: str, name: str, path: Path | None = None) -> Page:
    """The code blocks of a Markdown page, and every breach of the conventions in it."""
    lines = text.splitlines()
    blocks: list[Block] = []
    problems: list[str] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        start = index
        indent, fence = opening["indent"], opening["fence"]
        info = opening["info"].strip()
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        index += 1
        body: list[str] = []
        while index < len(lines) and not closing.match(lines[index]):
            line = lines[index]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            index += 1
        if index == len(lines):
            problems.append(f"{name}:{start + 1}: a fence never closed")
            break
        index += 1
        language = info.split(maxsplit=1)[0].lstrip(".{").lower() if info else ""
        title_match = _TITLE.search(info)
        title = (title_match["double"] or title_match["single"]) if title_match else None
        fragment, real_api, problem = _marker(lines[start - 1]) if start else (None, False, None)
        where = f"{name}:{start + 1}"
        if problem:
            problems.append(f"{where}: {problem}")
        if language not in RUNNABLE + SHOWN:
            problems.append(
                f"{where}: fence language {language or '(none)'!r}: write one of "
                f"{', '.join(RUNNABLE)} (they run) or {', '.join(SHOWN)} (shown only)"
            )
        if fragment == "":
            problems.append(f"{where}: a fragment without its reason (<!-- fragment: WHY -->)")
        if (fragment is not None or real_api) and language not in RUNNABLE:
            problems.append(f"{where}: a {language} block is never run: it needs no marker")
        if title is not None and language in ("python", "toml"):
            target = Path(title)
            if target.is_absolute() or ".." in target.parts:
                problems.append(f"{where}: title {title!r} is not a path inside the working dir")
        blocks.append(
            Block(
                page=name,
                line=start + 1,
                language=language,
                code="\n".join(body) + "\n",
                title=title,
                fragment=fragment,
                real_api=real_api,
            )
        )
    return Page(path or Path(name), name, tuple(blocks), tuple(problems))


def read_page(path: Path) -> Page:
    return parse_page(path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix(), path)


def _only_directives(page: Page) -> bool:
    return page.path.parent.name == "reference" and not page.blocks


def pages() -> list[Page]:
    """README.md and every docs page (reference pages of ``:::`` directives only left out)."""
    found = [read_page(README)] if README.is_file() else []
    for path in sorted(DOCS.rglob("*.md")):
        page = read_page(path)
        if not _only_directives(page):
            found.append(page)
    return found


def counts(found: list[Page]) -> tuple[Counter[str], list[Block]]:
    """Runnable blocks by language, and the fragments (with their reasons)."""
    by_language: Counter[str] = Counter(block.language for page in found for block in page.runnable)
    return by_language, [block for page in found for block in page.fragments]


# -- running blocks ---------------------------------------------------------------------


def clean_environment() -> dict[str, str]:
    """The caller's environment without its Wiser settings, proxies or CAs; the venv first."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_DROPPED_PREFIXES)
        and name.lower() not in _PROXY_VARIABLES
        and name not in _DROPPED_VARIABLES
    }
    venv_bin = str(Path(sys.executable).parent)
    environment["PATH"] = os.pathsep.join([venv_bin, environment.get("PATH", os.defpath)])
    environment["PYTHONUNBUFFERED"] = "1"
    return environment


BROWSER_SCRIPT = '''\
"""Plays the customer's browser: follows an authorization URL to its redirect, once."""

import sys

import httpx2

# The environment's proxy and CA apply (a real-API page's HTTPS_PROXY and SSL_CERT_FILE).
with httpx2.Client(timeout=30) as browser:
    answer = browser.get(sys.argv[-1])
    location = answer.headers.get("location")
    if answer.status_code not in (302, 303) or not location:
        sys.exit(f"the authorization server answered {answer.status_code}, not a redirect")
    browser.get(location)
'''


def write_browser(directory: Path) -> Path:
    """An executable `BROWSER_SCRIPT` (``BROWSER`` names a program, without arguments)."""
    path = directory / "browser"
    path.write_text(f"#!{sys.executable}\n{BROWSER_SCRIPT}")
    path.chmod(0o700)
    return path


@attrs.frozen
class Outcome:
    """What one block did."""

    block: Block
    returncode: int
    stdout: str
    stderr: str
    seconds: float


class BlockFailed(AssertionError):
    """A block did not do what the page says it does."""


def _tail(text: str) -> str:
    lines = text.rstrip().splitlines()
    shown = lines[-_TAIL_LINES:]
    skipped = f"[{len(lines) - len(shown)} lines above]\n" if len(lines) > len(shown) else ""
    return skipped + "\n".join(shown)


def _secret_files(config: Mapping[str, Any], directory: Path) -> Iterator[Path]:
    """The files a configuration names for its secrets (``client_secret_file``...)."""
    for key, value in config.items():
        if key.endswith("_file") and ("secret" in key or "key" in key) and isinstance(value, str):
            yield directory / value


@attrs.define
class PageRun:
    """Runs a page's blocks in order in one working directory (see the module's docstring).

    Every block runs in a process group of its own; they all end with the page
    (`close`), so a server one block starts in the background serves the next.
    """

    page: Page
    work: Path
    scripts: Path
    environment: dict[str, str]
    real_api: RealApiHarness | None = None
    # The page's own proxy to the harness's sandbox: what it tunnelled was this page's.
    proxy: ConnectProxy | None = None
    outcomes: list[Outcome] = attrs.Factory(list)
    _groups: list[int] = attrs.Factory(list)

    @classmethod
    def create(cls, page: Page, directory: Path, real_api: RealApiHarness | None) -> PageRun:
        work, scripts = directory / "work", directory / "blocks"
        work.mkdir()
        scripts.mkdir()
        environment = clean_environment()
        environment["BROWSER"] = str(write_browser(scripts))
        return cls(page, work, scripts, environment, real_api)

    def run(self) -> list[Outcome]:
        """Every runnable block of the page, in order; `BlockFailed` at the first failure."""
        try:
            if self.real_api is not None and self.page.needs_real_api:
                self.proxy = self.real_api.open_proxy()
                self.real_api.store_grant(self.work / "tokens", REAL_API_ACCOUNT)
            for number, block in enumerate(self.page.runnable, 1):
                with LOGIN_TURN if block.logs_in else contextlib.nullcontext():
                    self.outcomes.append(self.run_block(number, block))
        finally:
            self.close()
        return self.outcomes

    def _command(self, number: int, block: Block) -> list[str]:
        if block.language == "python":
            if block.title:
                script = self.work / block.title
                script.parent.mkdir(parents=True, exist_ok=True)
                script.write_text(block.code)
                return [sys.executable, block.title]
            script = self.scripts / f"block{number:02d}.py"
            script.write_text(block.code)
            return [sys.executable, str(script)]
        if block.language == "sh":
            script = self.scripts / f"block{number:02d}.sh"
            script.write_text(block.code)
            return ["bash", "-euo", "pipefail", str(script)]
        name = block.title or DEFAULT_TOML
        config = self.work / name
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(block.code)
        return [
            str(Path(sys.executable).parent / "wiser-async"),
            "config",
            "show",
            "--config",
            name,
        ]

    def run_block(self, number: int, block: Block) -> Outcome:
        environment = dict(self.environment)
        if block.language == "python":
            # As `python BLOCK.py` in the page's directory: its modules import.
            environment["PYTHONPATH"] = str(self.work)
        if block.real_api:
            if self.real_api is None or self.proxy is None:
                raise BlockFailed(f"{block.where}: a real-API block, run without the harness")
            environment.update(self.real_api.environment(self.proxy))
        command = self._command(number, block)
        out_path = self.scripts / f"block{number:02d}.out"
        err_path = self.scripts / f"block{number:02d}.err"
        started = time.monotonic()
        with out_path.open("wb") as out, err_path.open("wb") as err:
            # Output goes to files: a server left in the background keeps no pipe open.
            process = subprocess.Popen(
                command,
                cwd=self.work,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
            self._groups.append(process.pid)
            try:
                returncode = process.wait(BLOCK_TIMEOUT)
            except subprocess.TimeoutExpired:
                _kill_group(process.pid)
                process.wait()
                returncode = -1
        outcome = Outcome(
            block,
            returncode,
            out_path.read_text(errors="replace"),
            err_path.read_text(errors="replace"),
            time.monotonic() - started,
        )
        self._check(outcome)
        return outcome

    def _check(self, outcome: Outcome) -> None:
        block = outcome.block
        label = f"{block.where} ({block.language}{', real API' if block.real_api else ''})"
        shown = f"\n--- stdout\n{_tail(outcome.stdout)}\n--- stderr\n{_tail(outcome.stderr)}"
        if outcome.returncode == -1:
            raise BlockFailed(f"{label} did not end within {BLOCK_TIMEOUT:g} s{shown}")
        if outcome.returncode != 0:
            raise BlockFailed(f"{label} exited with {outcome.returncode}{shown}")
        if block.language == "python" and not outcome.stdout.strip():
            raise BlockFailed(f"{label} printed nothing: an example shows what it does{shown}")
        leaked = [
            secret
            for secret in self._secrets(block)
            if secret in outcome.stdout or secret in outcome.stderr
        ]
        if leaked:
            raise BlockFailed(f"{label} showed {len(leaked)} secret(s) in its output")

    def _secrets(self, block: Block) -> list[str]:
        """What the block's output must not show: the harness's secrets, a config's secret files."""
        found = list(self.real_api.secrets()) if self.real_api is not None else []
        if block.language == "toml":
            config = self.work / (block.title or DEFAULT_TOML)
            with contextlib.suppress(tomllib.TOMLDecodeError):
                for path in _secret_files(tomllib.loads(block.code), config.parent):
                    with contextlib.suppress(OSError, UnicodeDecodeError):
                        found.extend(
                            line.strip()
                            for line in path.read_text().splitlines()
                            if len(line.strip()) >= 8
                        )
        return found

    def close(self) -> None:
        """End every process a block left running, and the page's proxy."""
        for group in self._groups:
            _kill_group(group)
        self._groups.clear()
        if self.proxy is not None:
            self.proxy.close()


def _kill_group(group: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signal.SIGKILL)


# -- the real-API harness ---------------------------------------------------------------


def make_certificates(directory: Path, hosts: frozenset[str]) -> tuple[Path, Path, Path]:
    """A CA made for this run, and a server certificate for ``hosts`` it signed.

    Returns:
        The CA's certificate, the server's certificate and the server's key (PEM files).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    lifetime = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wiser-async docs test CA")])
    usage = dict.fromkeys(
        (
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(lifetime[0])
        .not_valid_after(lifetime[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, **usage),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = sorted(hosts)
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(lifetime[0])
        .not_valid_after(lifetime[1])
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, **usage),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = (directory / n for n in ("ca.pem", "server.pem", "key.pem"))
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return ca_file, cert_file, key_file


@contextlib.contextmanager
def serve_tls(sandbox: Sandbox, cert_file: Path, key_file: Path) -> Iterator[int]:
    """Serve ``sandbox`` over HTTPS on a loopback port (uvicorn, in a thread); yield the port."""
    import uvicorn

    started = threading.Event()

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            try:
                await super().startup(sockets)
            finally:
                started.set()

    server = Server(
        uvicorn.Config(
            sandbox.app,
            ssl_certfile=str(cert_file),
            ssl_keyfile=str(key_file),
            interface="asgi3",
            lifespan="on",
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
    )
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="docs TLS sandbox", daemon=True
        )
        thread.start()
        if not started.wait(20) or not server.started:
            server.should_exit = True
            thread.join(10)
            raise RuntimeError("the TLS sandbox did not start")
        try:
            yield sock.getsockname()[1]
        finally:
            server.should_exit = True
            thread.join(10)


class _ProxyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    proxy: ConnectProxy


class _ProxyHandler(socketserver.BaseRequestHandler):
    server: _ProxyServer

    def handle(self) -> None:
        self.server.proxy.serve(self.request)


class ConnectProxy:
    """A loopback HTTP proxy that tunnels ``CONNECT host:443`` to one local port.

    Only the hosts it is given, on port 443, are tunnelled, whichever the
    address they would resolve to; any other host or port gets a 403 and
    any other method a 405, each recorded in `refused`. Each tunnel is
    recorded in `connects` as ``host:port``.
    """

    def __init__(self, hosts: frozenset[str], upstream_port: int) -> None:
        self.hosts = hosts
        self.upstream_port = upstream_port
        self.connects: list[str] = []
        self.refused: list[str] = []
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._server = _ProxyServer(("127.0.0.1", 0), _ProxyHandler)
        self._server.proxy = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="docs CONNECT proxy",
            daemon=True,
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
        with self._lock:
            still_open = list(self._open)
        for sock in still_open:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _refuse(self, client: socket.socket, status: str, what: str) -> None:
        with self._lock:
            self.refused.append(what)
        client.sendall(
            f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )

    def serve(self, client: socket.socket) -> None:
        client.settimeout(10)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk or len(head) > 16384:
                return
            head += chunk
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        method, _, rest = request_line.partition(" ")
        target = rest.partition(" ")[0]
        if method != "CONNECT":
            self._refuse(client, "405 Method Not Allowed", request_line)
            return
        host, _, port = target.rpartition(":")
        if host.lower() not in self.hosts or port != "443":
            self._refuse(client, "403 Forbidden", target)
            return
        with socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10) as upstream:
            with self._lock:
                self.connects.append(target)
                self._open.update((client, upstream))
            try:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                early = head.split(b"\r\n\r\n", 1)[1]
                if early:
                    upstream.sendall(early)
                self._pump(client, upstream)
            finally:
                with self._lock:
                    self._open.difference_update((client, upstream))

    @staticmethod
    def _pump(client: socket.socket, upstream: socket.socket) -> None:
        client.settimeout(None)
        upstream.settimeout(None)
        other = {client: upstream, upstream: client}
        with selectors.DefaultSelector() as selector:
            selector.register(client, selectors.EVENT_READ)
            selector.register(upstream, selectors.EVENT_READ)
            while True:
                ready = selector.select(timeout=120)
                if not ready:
                    return
                for key, _ in ready:
                    sock: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        data = sock.recv(65536)
                        if not data:
                            return
                        other[sock].sendall(data)
                    except OSError:
                        return


@attrs.define
class RealApiHarness:
    """The real default URLs served by a sandbox, for real-API blocks (see the module's doc)."""

    sandbox: Sandbox
    # The sandbox's HTTPS port on 127.0.0.1, where every proxy tunnels.
    tls_port: int
    ca_file: Path
    client_id: str
    client_secret: str = attrs.field(repr=False)
    _issued: list[str] = attrs.Factory(list)

    @classmethod
    @contextlib.contextmanager
    def start(cls, directory: Path) -> Iterator[RealApiHarness]:
        from wiser_async.sandbox import PortfolioSpec, Sandbox

        client_id = f"docs-client-{secrets.token_hex(4)}"
        client_secret = secrets.token_urlsafe(24)
        # Small: a real-API page's crawl reads it all in a moment.
        spec = PortfolioSpec(
            locations=2, sites_per_location=2, rooms_per_site=2, devices_per_site=6
        )
        sandbox = Sandbox(spec, client_id=client_id, client_secret=client_secret)
        ca_file, cert_file, key_file = make_certificates(directory, REAL_HOSTS)
        with serve_tls(sandbox, cert_file, key_file) as port:
            yield cls(sandbox, port, ca_file, client_id, client_secret)

    def open_proxy(self) -> ConnectProxy:
        """A new CONNECT proxy to the sandbox (close it): one per page, so its log is the page's."""
        return ConnectProxy(REAL_HOSTS, self.tls_port)

    def environment(self, proxy: ConnectProxy) -> dict[str, str]:
        """What a real-API block's process gets (``proxy``, the CA, the client's credentials)."""
        return {
            "HTTPS_PROXY": proxy.url,
            "SSL_CERT_FILE": str(self.ca_file),
            "WISER_CLIENT_ID": self.client_id,
            "WISER_CLIENT_SECRET": self.client_secret,
        }

    def store_grant(self, directory: Path, account: str) -> Token:
        """Save a sandbox grant for ``account`` in a file token store at ``directory``.

        What ``wiser-async login -a ACCOUNT --store file:DIRECTORY`` leaves.
        """
        token = Token.from_response(self.sandbox.issue_token(account))
        self._issued.extend(filter(None, (token.access_token, token.refresh_token)))

        async def save() -> None:
            store = FileTokenStore(directory)
            try:
                await store.save(account, token)
            finally:
                await store.aclose()

        anyio.run(save)
        return token

    def secrets(self) -> list[str]:
        """The client secret and every token this harness issued: never in a block's output."""
        return [self.client_secret, *self._issued]


def main() -> None:
    """Print each page's runnable blocks by language and its fragments, then the totals."""
    found = pages()
    for page in found:
        languages = Counter(block.language for block in page.runnable)
        summary = ", ".join(f"{n} {language}" for language, n in sorted(languages.items()))
        real = sum(block.real_api for block in page.runnable)
        print(  # noqa: T201
            f"{page.name}: {summary or 'no runnable block'}"
            + (f" ({real} real API)" if real else "")
            + (f"; {len(page.fragments)} fragment(s)" if page.fragments else "")
        )
        for block in page.fragments:
            print(f"  fragment {block.where}: {block.fragment}")  # noqa: T201
    by_language, fragments = counts(found)
    total = sum(by_language.values())
    summary = ", ".join(f"{n} {language}" for language, n in sorted(by_language.items()))
    print(f"{len(found)} pages: {total} runnable blocks ({summary}); {len(fragments)} fragments")  # noqa: T201


if __name__ == "__main__":
    main()
