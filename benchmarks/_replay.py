"""A lean HTTP server replaying recorded API answers after a fixed latency, in a child process.

The makespan of a crawl at 100 ms latency measures how well a client keeps
its request slots busy. Served by the sandbox, every answer also carries the
sandbox's own cost (routing, synthetic data, uvicorn): about 4 ms a request,
which a bare httpx2 loop pays too, so no client can get within 5 % of the
bound. This server answers each recorded ``GET`` target with its recorded
body after exactly ``latency`` seconds (a timer, no work in between), on
plain asyncio streams with keep-alive, and counts requests and the peak in
flight. It shares no code with the sandbox or the library.

Run as ``python -m benchmarks._replay ANSWERS LATENCY``: it prints its port
on stdout, then serves until stdin closes. ``ANSWERS`` is a pickle of
``{target: body}`` (target: path and query, as sent).
"""

from __future__ import annotations

import asyncio
import json
import pickle
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx2

from wiser_async.sandbox import SandboxUrls

__all__ = ["ReplayServer", "ReplayStats", "record_answers"]

_NOT_FOUND = b'{"error":"not_recorded"}'


class _Counters:
    def __init__(self) -> None:
        self.requests = 0
        self.in_flight = 0
        self.peak_in_flight = 0

    def reset(self) -> None:
        self.requests = 0
        self.peak_in_flight = self.in_flight


def _response(status: bytes, body: bytes) -> bytes:
    head = (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    return head + body


async def _serve(answers: dict[str, bytes], latency: float) -> None:
    counters = _Counters()
    loop = asyncio.get_running_loop()
    responses = {target: _response(b"200 OK", body) for target, body in answers.items()}
    missing = _response(b"404 Not Found", _NOT_FOUND)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ", 2)[1].decode()
                if target == "/__stats":
                    stats = {"requests": counters.requests, "peak": counters.peak_in_flight}
                    writer.write(_response(b"200 OK", json.dumps(stats).encode()))
                    continue
                if target == "/__reset":
                    counters.reset()
                    writer.write(_response(b"200 OK", b"{}"))
                    continue
                counters.requests += 1
                counters.in_flight += 1
                counters.peak_in_flight = max(counters.peak_in_flight, counters.in_flight)
                # The path part: the API base URL's prefix is not recorded.
                answer = responses.get(target, missing)
                done = loop.create_future()
                loop.call_later(latency, done.set_result, None)
                await done
                counters.in_flight -= 1
                writer.write(answer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = await asyncio.start_server(handle, sock=sock, backlog=256)
    print(sock.getsockname()[1], flush=True)
    stdin_closed = loop.create_future()
    threading.Thread(
        target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stdin_closed.set_result, None)),
        daemon=True,
    ).start()
    async with server:
        await stdin_closed


def record_answers(targets: Iterable[str], access_token: str) -> dict[str, bytes]:
    """The body the API answers for each URL, by its path and query (what `ReplayServer` takes)."""
    answers: dict[str, bytes] = {}
    with httpx2.Client(headers={"Authorization": f"Bearer {access_token}"}) as http:
        for url in targets:
            response = http.get(url)
            response.raise_for_status()
            answers[response.url.raw_path.decode()] = response.content
    return answers


@dataclass(frozen=True)
class ReplayStats:
    """The replay server's counters, named as the sandbox's (`SandboxStats`)."""

    requests: int
    peak_in_flight: int
    throttled: int = 0


class ReplayServer:
    """The replay server in a child process, standing in for a `SandboxProcess` in a run.

    Args:
        answers: Bodies by path and query (`record_answers`).
        latency: Seconds before each answer.
        directory: Where the answers are handed to the child.
        urls: The sandbox's URLs the answers were recorded from: the API's
            base path is kept, the token endpoint stays the sandbox's.
    """

    def __init__(
        self, answers: dict[str, bytes], latency: float, directory: Path, urls: SandboxUrls
    ) -> None:
        self._file = directory / "answers.pickle"
        self._file.write_bytes(pickle.dumps(answers))
        self._latency = latency
        self._process: subprocess.Popen[bytes] | None = None
        self._sandbox_urls = urls
        self.origin = ""

    @property
    def urls(self) -> SandboxUrls:
        """The sandbox's URLs with the API moved to this server."""
        sandbox = self._sandbox_urls
        path = sandbox.api_base_url.removeprefix(sandbox.origin)
        return SandboxUrls(
            origin=self.origin,
            api_base_url=self.origin + path,
            authorize_url=sandbox.authorize_url,
            token_url=sandbox.token_url,
        )

    def moved(self, url: str) -> str:
        """A URL of the sandbox's API, on this server."""
        return self.origin + url.removeprefix(self._sandbox_urls.origin)

    def _get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.origin + path, timeout=10) as answer:  # noqa: S310 - loopback
            body: bytes = answer.read()
        return body

    def stats(self) -> ReplayStats:
        """Requests answered (the counters' own endpoints aside) and the peak in flight."""
        counted = json.loads(self._get("/__stats"))
        return ReplayStats(requests=counted["requests"], peak_in_flight=counted["peak"])

    def reset_stats(self) -> None:
        """Zero the counters."""
        self._get("/__reset")

    def __enter__(self) -> Self:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._replay", str(self._file), str(self._latency)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self._process.stdout is not None
        port = int(self._process.stdout.readline())
        self.origin = f"http://127.0.0.1:{port}"
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._process is not None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    @property
    def pid(self) -> int:
        """The server process's id (for its CPU time)."""
        assert self._process is not None
        return self._process.pid


def main() -> None:
    # The benchmark's own file, written by `ReplayServer` a moment before.
    answers = pickle.loads(Path(sys.argv[1]).read_bytes())  # noqa: S301
    asyncio.run(_serve(answers, float(sys.argv[2])))


if __name__ == "__main__":
    main()
