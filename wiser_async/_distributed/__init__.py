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

from importlib import import_module
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    module_name = _MODULES.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = import_module(module_name, __name__)
    # Every name of that module at once: importing it bound its own name here
    # (``merge`` the module), which the function of that name must replace.
    names = globals()
    for public, home in _MODULES.items():
        if home == module_name:
            names[public] = getattr(module, public)
    return names[name]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
