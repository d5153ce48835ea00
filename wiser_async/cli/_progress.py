"""A crawl's progress on a terminal's stderr (rich), and nothing when stderr is not one.

Two lines: the items found per level with the request rate, retries, 429s and
failures; under it, once the API's page totals say how many items to expect,
a bar with an ETA for the deepest level that has a total (devices, mostly).
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.progress import Progress, Task, TaskID

    from .. import Walk

__all__ = ["CrawlProgress"]

_LEVELS = (("location", "locations"), ("site", "sites"), ("room", "rooms"), ("device", "devices"))


class CrawlProgress:
    """Shows a walk's progress; give `update` as the crawl's ``on_progress``.

    Args:
        enabled: Show it (default: when stderr is a terminal).
    """

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._progress: Progress | None = None
        self._status: TaskID | None = None
        self._bar: TaskID | None = None
        self._bar_kind: str | None = None

    def __enter__(self) -> CrawlProgress:
        if self.enabled:
            self._progress = _make_progress()
            self._status = self._progress.add_task("crawling: starting", total=None)
            self._bar = self._progress.add_task("", total=None, visible=False)
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def update(self, walk: Walk) -> None:
        """Show what `walk` has done so far."""
        progress = self._progress
        if progress is None or self._status is None or self._bar is None:
            return
        stats = walk.stats
        counts = {"location": stats.locations, "site": stats.sites}
        counts |= {"room": stats.rooms, "device": stats.devices}
        rate = stats.requests / stats.duration if stats.duration > 0 else 0.0
        found = ", ".join(f"{counts[kind]} {plural}" for kind, plural in _LEVELS)
        progress.update(
            self._status,
            description=(
                f"crawling: {found}; {stats.requests} requests ({rate:.0f}/s), "
                f"{stats.retries} retries, {stats.throttled} answered 429, "
                f"{len(walk.failures)} failures"
            ),
        )
        expected: dict[str, int] = {str(kind): count for kind, count in walk.expected.items()}
        deepest = next(
            ((kind, plural) for kind, plural in reversed(_LEVELS) if expected.get(kind)), None
        )
        if deepest is not None:
            kind, plural = deepest
            total = max(expected[kind], counts[kind])
            progress.update(
                self._bar, description=plural, completed=counts[kind], total=total, visible=True
            )


def _make_progress() -> Progress:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class OnlyWithTotal(ProgressColumn):
        """A column shown for the bar's row only (the status row has no total)."""

        def __init__(self, column: ProgressColumn) -> None:
            super().__init__()
            self.column = column

        def render(self, task: Task) -> Any:
            return Text("") if task.total is None else self.column.render(task)

    return Progress(
        TextColumn("{task.description}"),
        OnlyWithTotal(BarColumn()),
        OnlyWithTotal(MofNCompleteColumn()),
        OnlyWithTotal(TimeRemainingColumn()),
        console=Console(stderr=True),
        transient=True,
        refresh_per_second=4,
        redirect_stdout=False,
        redirect_stderr=False,
    )
