"""A crawl queue's Redis keys, adding accounts to it, and what it holds.

A queue named ``Q`` is four Redis keys, all with the hash tag ``{Q}`` (one
cluster slot, so the scripts below may touch them together):

- ``{Q}:stream``: a stream with one entry per account (``account`` field),
  read by the consumer group ``crawlers``;
- ``{Q}:accounts``: the set of accounts ever enqueued (an account is added once);
- ``{Q}:done``: a hash, account -> the finishing worker's record (JSON:
  ``worker``, ``file``, ``finished``, ``failures``, ``run_failures``,
  ``items``, ``stats``),
  written with HSETNX: the first finisher wins, later ones are ignored;
- the consumer group's pending entries list (inside the stream): the entries
  a worker holds, with their idle time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import attrs

__all__ = ["QueueKeys", "QueueStatus", "enqueue", "ensure_group", "file_name", "queue_status"]

GROUP = "crawlers"

# KEYS[1]: the accounts set; KEYS[2]: the stream; ARGV: accounts. One entry per
# account ever: the set and the stream change together or not at all.
_ENQUEUE = """
local added = 0
for _, account in ipairs(ARGV) do
    if redis.call('SADD', KEYS[1], account) == 1 then
        redis.call('XADD', KEYS[2], '*', 'account', account)
        added = added + 1
    end
end
return added
"""


@attrs.frozen
class QueueKeys:
    """The Redis keys of the crawl queue `name` (see the module's docstring)."""

    name: str = attrs.field()

    @name.validator
    def _check(self, _: object, value: str) -> None:
        if not value or any(char in value for char in "{}\n\r"):
            raise ValueError(f"a queue name must be non-empty, without braces: {value!r}")

    @property
    def stream(self) -> str:
        return f"{{{self.name}}}:stream"

    @property
    def accounts(self) -> str:
        return f"{{{self.name}}}:accounts"

    @property
    def done(self) -> str:
        return f"{{{self.name}}}:done"

    @property
    def all(self) -> tuple[str, str, str]:
        """Every key of the queue (to delete it)."""
        return (self.stream, self.accounts, self.done)


@attrs.frozen(kw_only=True)
class QueueStatus:
    """How far a queue is.

    Attributes:
        enqueued: Accounts ever enqueued.
        done: Accounts a worker finished (recorded in ``done``).
        pending: Entries a worker holds and has not acknowledged.
        workers: Workers holding entries.
    """

    enqueued: int
    done: int
    pending: int
    workers: int

    @property
    def drained(self) -> bool:
        """Nothing is held by a worker and every enqueued account is done."""
        return self.pending == 0 and self.done >= self.enqueued


def text(value: Any) -> str:
    """A Redis reply as text, whether the client decodes replies or not."""
    return value.decode() if isinstance(value, bytes) else str(value)


def file_name(name: str) -> str:
    """A file or directory name for an account or worker name (no separator, never hidden)."""
    quoted = quote(name, safe="@+=,-_")
    return "%2E" + quoted[1:] if quoted.startswith(".") else quoted


def milliseconds(seconds: float) -> int:
    """Seconds as the whole milliseconds Redis takes (at least 1)."""
    return max(1, math.ceil(seconds * 1000))


async def ensure_group(redis: Any, keys: QueueKeys) -> None:
    """Create the stream and its consumer group if missing (from the stream's start)."""
    from redis.exceptions import ResponseError

    try:
        await redis.xgroup_create(keys.stream, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def enqueue(redis: Any, *, queue: str, accounts: Sequence[str]) -> int:
    """Add one stream entry per account not enqueued in this queue before.

    Idempotent per queue: an account already enqueued (by this call, an
    earlier one, or another process) is skipped, done or not. Use a new queue
    name for a new crawl of the same accounts.

    Args:
        redis: A redis-py asyncio client (``redis.asyncio.Redis``).
        queue: The queue's name.
        accounts: Account keys (token store keys) to crawl.

    Returns:
        How many accounts were added.
    """
    keys = QueueKeys(queue)
    await ensure_group(redis, keys)
    chosen = list(dict.fromkeys(accounts))
    if not chosen:
        return 0
    script = redis.register_script(_ENQUEUE)
    added = 0
    for start in range(0, len(chosen), 500):  # a script's arguments stay small
        added += int(
            await script(keys=[keys.accounts, keys.stream], args=chosen[start : start + 500])
        )
    return added


async def queue_status(redis: Any, *, queue: str) -> QueueStatus:
    """How many accounts are enqueued, done and held by a worker in `queue`."""
    keys = QueueKeys(queue)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.scard(keys.accounts)
        pipe.hlen(keys.done)
        pipe.exists(keys.stream)
        enqueued, done, exists = await pipe.execute()
    pending = workers = 0
    if exists:
        from redis.exceptions import ResponseError

        try:
            summary = await redis.xpending(keys.stream, GROUP)
        except ResponseError:  # NOGROUP: nobody created it yet
            summary = {"pending": 0, "consumers": []}
        pending = int(summary["pending"])
        workers = len(summary.get("consumers") or [])
    return QueueStatus(enqueued=int(enqueued), done=int(done), pending=pending, workers=workers)


def done_record(
    *,
    worker: str,
    file: str,
    finished: bool,
    failures: list[dict[str, Any]],
    run_failures: list[dict[str, Any]],
    items: dict[str, int],
    stats: dict[str, Any],
) -> str:
    """The JSON a finisher stores in ``done`` for its account."""
    return json.dumps(
        {
            "worker": worker,
            "file": file,
            "finished": finished,
            "failures": failures,
            "run_failures": run_failures,
            "items": items,
            "stats": stats,
        },
        separators=(",", ":"),
    )
