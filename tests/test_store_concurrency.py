"""The Redis store under many tasks of one process: one subscription, read by one task at a time."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import anyio
import anyio.abc
import pytest

from token_stores import RedisTokenStore, Token

pytestmark = pytest.mark.asyncio_only  # redis-py is asyncio-only


@asynccontextmanager
async def slow_proxy(redis_url: str, delay: float) -> AsyncIterator[str]:
    """A TCP proxy to Redis holding each answer `delay` seconds (a slow link, a busy server)."""
    target = urlsplit(redis_url)

    async def pipe(
        source: anyio.abc.ByteStream, sink: anyio.abc.ByteStream, *, hold: float
    ) -> None:
        try:
            async for chunk in source:
                await anyio.sleep(hold)
                await sink.send(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        finally:
            await sink.aclose()

    async def serve(client: anyio.abc.SocketStream) -> None:
        up = await anyio.connect_tcp(target.hostname or "", target.port or 6379)
        async with client, up, anyio.create_task_group() as group:
            group.start_soon(lambda: pipe(client, up, hold=0.0))
            group.start_soon(lambda: pipe(up, client, hold=delay))

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 - anyio, not Django
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, serve)
        yield f"redis://127.0.0.1:{port}{target.path or '/0'}"
        group.cancel_scope.cancel()


async def test_change_markers_asked_by_many_tasks_while_the_subscription_is_made(
    redis_url: str,
) -> None:
    async with slow_proxy(redis_url, delay=0.15) as slow_url:
        store = RedisTokenStore(slow_url, prefix=f"test-{uuid.uuid4().hex}")
        try:
            markers: dict[str, tuple[int, int]] = {}

            async def ask(account: str, after: float) -> None:
                await anyio.sleep(after)
                markers[account] = await store.change_marker(account)

            # The first subscribes (slowly); the others ask while it does, past the
            # interval after which a task would read the subscription itself.
            async with anyio.create_task_group() as group:
                for index in range(8):
                    group.start_soon(ask, f"acct-{index}", 0.03 * index)
            assert len(markers) == 8
            # Once subscribed, a change made elsewhere is seen.
            before = await store.change_marker("acct-0")
            await store.save("acct-0", Token(access_token="a", refresh_token="r"))
            for _ in range(200):  # the message arrives within a few drains
                if await store.change_marker("acct-0") != before:
                    break
                await anyio.sleep(0.06)
            else:
                pytest.fail("the change was never seen")
            await store.delete("acct-0")
        finally:
            await store.aclose()
