"""Crawl output on disk: resumable JSONL (`export`), JSON (`document`), diffs (`diff`).

`write_jsonl` and `write_json` are `crawl_to_jsonl` and `crawl_to_json` for
the command line: their progress callback is given the whole output's
`CrawlTally` (earlier runs included, and estimated totals) as well.
"""

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
