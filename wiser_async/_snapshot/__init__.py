"""Crawl output on disk: resumable JSONL (`export`), JSON (`document`), diffs (`diff`).

`write_jsonl` and `write_json` are `crawl_to_jsonl` and `crawl_to_json` for
the command line: their progress callback is given the whole output's
`CrawlTally` (earlier runs included, and estimated totals) as well.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_names

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


__getattr__, __dir__ = lazy_names(__name__, _MODULES, __all__)
