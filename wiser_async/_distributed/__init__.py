"""Distributed crawls: workers on many machines crawl one set of accounts, on Redis Streams.

::

    await enqueue(redis, queue="monday", accounts=["acme", "globex"])
    await run_worker(client, redis, queue="monday", output_dir=Path("out"))  # in each worker
    merged = await merge(redis, queue="monday", output_dirs=Path("out"), out_path=Path("all.jsonl"))

The unit of work is one account (a huge account is not split). Each worker
writes its own resumable JSONL per account; `merge` joins the files of the
workers that finished each account into one output that holds every item
once. A Redis restart shorter than the workers' ``patience`` is waited out
(`outage`). redis-py is asyncio-only, so this is too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names

if TYPE_CHECKING:
    from .merge import MergedCrawl, merge
    from .outage import QueueUnavailable, describe_redis_error
    from .queue import QueueKeys, enqueue, queue_status
    from .worker import WorkerRun, run_worker

__all__ = [
    "MergedCrawl",
    "QueueKeys",
    "QueueUnavailable",
    "WorkerRun",
    "describe_redis_error",
    "enqueue",
    "merge",
    "queue_status",
    "run_worker",
]

# Each name's module is imported when the name is first asked for (PEP 562):
# importing one piece of this package does not import the others (the
# command line's error messages need `outage` only).
_MODULES = {
    "MergedCrawl": ".merge",
    "merge": ".merge",
    "QueueUnavailable": ".outage",
    "describe_redis_error": ".outage",
    "QueueKeys": ".queue",
    "enqueue": ".queue",
    "queue_status": ".queue",
    "WorkerRun": ".worker",
    "run_worker": ".worker",
}


__getattr__, __dir__ = lazy_names(__name__, _MODULES, __all__)
