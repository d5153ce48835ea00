"""Crawl output on disk: resumable JSONL (`export`), JSON (`document`), diffs (`diff`).

`write_jsonl` and `write_json` are `crawl_to_jsonl` and `crawl_to_json` for
the command line: their progress callback is given the whole output's
`CrawlTally` (earlier runs included, and estimated totals) as well.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .checkpoint import checkpoint_path
    from .diff import DeviceChange, SnapshotDiff, diff_snapshots, read_snapshot
    from .document import crawl_to_json, result_to_json, write_json
    from .export import JsonlCrawl, TallyProgress, Validation, crawl_to_jsonl, write_jsonl
    from .tally import CrawlTally

__all__ = [
    "CrawlTally",
    "DeviceChange",
    "JsonlCrawl",
    "SnapshotDiff",
    "TallyProgress",
    "Validation",
    "checkpoint_path",
    "crawl_to_json",
    "crawl_to_jsonl",
    "diff_snapshots",
    "read_snapshot",
    "result_to_json",
    "write_json",
    "write_jsonl",
]

# Each name's module is imported when the name is first asked for (PEP 562):
# importing one piece of this package does not import the others.
_MODULES = {
    "checkpoint_path": ".checkpoint",
    "DeviceChange": ".diff",
    "SnapshotDiff": ".diff",
    "diff_snapshots": ".diff",
    "read_snapshot": ".diff",
    "crawl_to_json": ".document",
    "result_to_json": ".document",
    "write_json": ".document",
    "JsonlCrawl": ".export",
    "TallyProgress": ".export",
    "Validation": ".export",
    "crawl_to_jsonl": ".export",
    "write_jsonl": ".export",
    "CrawlTally": ".tally",
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
