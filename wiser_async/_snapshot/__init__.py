"""Crawl output on disk: JSON and resumable JSONL (`export`), and snapshot diffs (`diff`)."""

from .diff import DeviceChange, SnapshotDiff, diff_snapshots, read_snapshot
from .export import (
    JsonlCrawl,
    Validation,
    checkpoint_path,
    crawl_to_json,
    crawl_to_jsonl,
    result_to_json,
)

__all__ = [
    "DeviceChange",
    "JsonlCrawl",
    "SnapshotDiff",
    "Validation",
    "checkpoint_path",
    "crawl_to_json",
    "crawl_to_jsonl",
    "diff_snapshots",
    "read_snapshot",
    "result_to_json",
]
