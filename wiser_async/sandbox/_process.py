"""The sandbox in a child process, driven through its admin routes."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
from types import TracebackType
from typing import IO, Any

import attrs
import httpx2

from ._app import SandboxUrls
from ._stats import SandboxStats

__all__ = ["SandboxProcess"]

_STOP_TIMEOUT = 5.0
# The child reads its client secret here: argv is visible to every user's ps.
SECRET_VARIABLE = "WISER_SANDBOX_CLIENT_SECRET"  # noqa: S105 - a variable's name
# Options that are no flag: the secret travels in the environment, never in argv.
_NOT_FLAGS = frozenset({"startup_timeout", "client_secret"})


def _read_first_line(stream: IO[str], lines: queue.Queue[str]) -> None:
    lines.put(stream.readline())


def _jsonable(value: Any) -> Any:
    return sorted(value) if isinstance(value, set | frozenset) else value


@attrs.define(kw_only=True)
class SandboxProcess:
    """``python -m wiser_async.sandbox`` in a child process, as a context manager.

    Options left as ``None`` keep the command's defaults (those of
    :class:`PortfolioSpec` and :class:`Sandbox`). On exit the child gets
    SIGTERM, then is killed if it has not stopped within 5 seconds; it also
    stops by itself if this process dies (it watches its stdin).

    Example::

        with SandboxProcess(devices_per_site=100) as sandbox:
            token = sandbox.issue_token()
            ...  # point a client at sandbox.urls

    Raises:
        RuntimeError: On entry, if the child exits or prints no ready line
            within ``startup_timeout`` seconds (its stderr is in the message).

    .. versionadded:: 0.1.0
    """

    host: str = "127.0.0.1"
    port: int = 0
    seed: int | None = None
    locations: int | None = None
    sites_per_location: int | None = None
    rooms_per_site: int | None = None
    devices_per_site: int | None = None
    unassigned_devices_per_site: int | None = None
    latency: float | None = None
    rate_limit: float | None = None
    token_lifetime: float | None = None
    client_id: str | None = None
    client_secret: str | None = attrs.field(default=None, repr=False)
    startup_timeout: float = 20.0
    _process: subprocess.Popen[str] | None = attrs.field(init=False, default=None)
    _urls: SandboxUrls | None = attrs.field(init=False, default=None)
    _admin: httpx2.Client | None = attrs.field(init=False, default=None)
    _stderr: IO[bytes] | None = attrs.field(init=False, default=None)

    def argv(self) -> list[str]:
        """The command line that starts the child (the client secret goes in `environment`)."""
        args = [sys.executable, "-m", "wiser_async.sandbox", "--exit-with-stdin"]
        for field in attrs.fields(type(self)):
            value = getattr(self, field.name)
            if field.init and field.name not in _NOT_FLAGS and value is not None:
                args += [f"--{field.name.replace('_', '-')}", str(value)]
        return args

    def environment(self) -> dict[str, str]:
        """The child's environment: this process's, with the client secret if one is set."""
        environment = dict(os.environ)
        environment.pop(SECRET_VARIABLE, None)
        if self.client_secret is not None:
            environment[SECRET_VARIABLE] = self.client_secret
        return environment

    @property
    def urls(self) -> SandboxUrls:
        """The child's URLs (only inside the ``with`` block)."""
        if self._urls is None:
            raise RuntimeError("the sandbox process is not running")
        return self._urls

    @property
    def pid(self) -> int:
        """The child's process id (only inside the ``with`` block)."""
        if self._process is None:
            raise RuntimeError("the sandbox process is not running")
        return self._process.pid

    def __enter__(self) -> SandboxProcess:
        if self._process is not None:
            raise RuntimeError("the sandbox process is already running")
        # A file, not a pipe: nobody reads stderr while the child runs, and a full pipe blocks it.
        self._stderr = tempfile.TemporaryFile()  # closed in _stop
        self._process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            self.argv(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=self.environment(),
        )
        try:
            self._urls = self._wait_ready(self._process)
            self._admin = httpx2.Client(base_url=self._urls.origin + "/_sandbox", timeout=10.0)
        except BaseException:
            self._stop()
            raise
        return self

    def _wait_ready(self, process: subprocess.Popen[str]) -> SandboxUrls:
        assert process.stdout is not None  # noqa: S101 (stdout=PIPE above)
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(
            target=_read_first_line, args=(process.stdout, lines), daemon=True
        )
        reader.start()
        try:
            line = lines.get(timeout=self.startup_timeout)
        except queue.Empty:
            raise RuntimeError(
                f"the sandbox process printed no ready line in {self.startup_timeout} s"
                f"{self._stderr_tail()}"
            ) from None
        if not line:
            process.wait(_STOP_TIMEOUT)
            raise RuntimeError(
                f"the sandbox process exited with {process.returncode}{self._stderr_tail()}"
            )
        return SandboxUrls(**json.loads(line))

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        tail = self._stderr.read()[-2000:].decode("utf-8", "replace").strip()
        return f"; stderr:\n{tail}" if tail else ""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        process, self._process, self._urls = self._process, None, None
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        stderr, self._stderr = self._stderr, None
        if process is None:
            return
        try:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(_STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        finally:
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()
            if stderr is not None:
                stderr.close()

    # -- admin ----------------------------------------------------------------

    def _call(self, method: str, action: str, body: dict[str, Any] | None = None) -> Any:
        if self._admin is None:
            raise RuntimeError("the sandbox process is not running")
        response = self._admin.request(method, action, json=body)
        if response.status_code >= 400:
            raise RuntimeError(f"sandbox admin {method} {action}: {response.text}")
        return response.json() if response.content else None

    def stats(self) -> SandboxStats:
        """A snapshot of the child's counters."""
        return SandboxStats.from_json(self._call("GET", "stats"))

    def reset_stats(self) -> None:
        """Zero the child's counters."""
        self._call("POST", "reset-stats")

    def set_faults(self, **fields: Any) -> dict[str, Any]:
        """Change the child's :class:`Faults` fields; returns them all, as JSON.

        Raises:
            RuntimeError: A field is unknown or a value is invalid.
        """
        result: dict[str, Any] = self._call(
            "PATCH", "faults", {name: _jsonable(value) for name, value in fields.items()}
        )
        return result

    def issue_token(
        self, customer: str = "default", *, lifetime: float | None = None
    ) -> dict[str, Any]:
        """Mint a grant in the child, as :meth:`Sandbox.issue_token`."""
        result: dict[str, Any] = self._call(
            "POST", "tokens", {"customer": customer, "lifetime": lifetime}
        )
        return result

    def revoke_access_tokens(self, customer: str | None = None) -> int:
        """Invalidate the child's live access tokens, as :meth:`Sandbox.revoke_access_tokens`."""
        result: int = self._call("POST", "revoke-access-tokens", {"customer": customer})["revoked"]
        return result
