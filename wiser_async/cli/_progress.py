"""A crawl's progress on a terminal's stderr (rich), and nothing when stderr is not one.

Three lines, each cut to the terminal's width (never wrapped); at 80 columns::

    ━━━━━━━━━━━━━━╺━━━━━━━━━━━━━━━━━━━━━━━━  36% 26,400/~72,000 devices  ETA 0:00:08
    found: 30 locations, 800 sites, 1,323 rooms, 26,400 devices
    this run: 923 requests (215/s), 0 retries, 0 answered 429, 0 failures

The bar and the counts speak of the whole output, earlier runs of a
resumed crawl included (then the second line reads ``found (all runs):``).
The bar's total is the `CrawlTally`'s estimate (``~``: from the units done
so far, earlier runs' included); before one can be made, the first line
says so and there is no bar. The ETA is the items left over the rate this
run reads them at, shown once that rate has been measured for a second,
and never once nothing is left to estimate.
"""

from __future__ import annotations

import math
import sys
import time
from collections import deque
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Final

import attrs

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderableType
    from rich.live import Live

    from .. import Walk
    from .._snapshot import CrawlTally

__all__ = ["CrawlProgress", "Frame", "frame_of", "render_lines"]

_PLURALS: Final = {"location": "locations", "site": "sites", "room": "rooms", "device": "devices"}
# Deepest first: the bar follows the deepest level with items (devices, mostly).
_DEEPEST_FIRST: Final = ("device", "room", "site", "location")
# Seconds between frames built from a crawl's callbacks (one per page: thousands a second).
_FRAME_EVERY: Final = 0.1
# The rate behind the ETA: items read over this window, once it spans the minimum.
_RATE_WINDOW: Final = 20.0
_RATE_MINIMUM: Final = 1.0
_BAR_MINIMUM: Final = 10


@attrs.frozen(kw_only=True)
class Frame:
    """What one drawing of the progress shows.

    Attributes:
        found: Items of the whole output so far, by kind.
        resumed: Earlier runs wrote part of the output.
        kind: The level the bar counts (None: no estimate yet).
        total: The estimated total of that level.
        eta: Seconds left, once they can be estimated.
        requests, rate, retries, throttled, failures: This run's figures.
    """

    found: dict[str, int] = attrs.field(factory=lambda: dict.fromkeys(_PLURALS, 0))
    resumed: bool = False
    kind: str | None = None
    total: int | None = None
    eta: float | None = None
    requests: int = 0
    rate: float = 0.0
    retries: int = 0
    throttled: int = 0
    failures: int = 0


def _eta(seconds: float) -> str:
    whole = max(1, math.ceil(seconds))  # never 0:00:00 while something is left
    hours, rest = divmod(whole, 3600)
    return f"ETA {hours}:{rest // 60:02d}:{rest % 60:02d}"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def render_lines(frame: Frame, width: int) -> tuple[int | None, list[str]]:
    """The lines of `frame` at `width` columns, the first without its bar.

    Returns:
        The bar's width (None: no bar; it goes before the first line's
        text, a space between), and the lines, none longer than `width`.
    """
    kind, total = frame.kind, frame.total
    bar: int | None = None
    if kind is None or total is None:
        first = "crawling: no estimate of the total yet"
    else:
        done = frame.found[kind]
        # An estimate reached is not the end: the display goes when the crawl ends.
        share = min(99, 100 * done // total)
        first = f"{share:3d}% {done:,}/~{total:,} {_PLURALS[kind]}"
        if frame.eta is not None:
            first += f"  {_eta(frame.eta)}"
        room = width - len(first) - 1
        if room >= _BAR_MINIMUM:
            bar = room
    found = ", ".join(f"{frame.found[name]:,} {plural}" for name, plural in _PLURALS.items())
    label = "found (all runs)" if frame.resumed else "found"
    lines = [
        first,
        f"{label}: {found}",
        f"this run: {frame.requests:,} requests ({frame.rate:,.0f}/s), {frame.retries:,} "
        f"retries, {frame.throttled:,} answered 429, {frame.failures:,} failures",
    ]
    return bar, [_cut(line, width) for line in lines]


class _Rate:
    """Items read per second over the last `_RATE_WINDOW` seconds of this run."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, dict[str, int]]] = deque()

    def add(self, now: float, found: dict[str, int]) -> None:
        self._samples.append((now, dict(found)))
        while len(self._samples) > 2 and now - self._samples[1][0] >= _RATE_WINDOW:
            self._samples.popleft()

    def of(self, kind: str) -> float | None:
        """The rate of `kind`, or None before it has been measured long enough."""
        if len(self._samples) < 2:
            return None
        (first, before), (last, after) = self._samples[0], self._samples[-1]
        if last - first < _RATE_MINIMUM or after[kind] <= before[kind]:
            return None
        return (after[kind] - before[kind]) / (last - first)


def _bar_kind(estimate: dict[str, int | None]) -> str | None:
    """The deepest level with items, once it is known which that is (None before)."""
    for kind in _DEEPEST_FIRST:
        total = estimate[kind]
        if total is None:
            return None  # a deeper level may hold items: a shallower bar would mislead
        if total:
            return kind
    return None


def frame_of(walk: Walk, tally: CrawlTally, rate: _Rate) -> Frame:
    """The frame for where `walk` and `tally` are now."""
    stats = walk.stats
    found = dict(tally.found)
    estimate = tally.estimate()
    kind = _bar_kind(estimate)
    total = estimate[kind] if kind is not None else None
    eta = None
    if kind is not None and total is not None and total > found[kind]:
        speed = rate.of(kind)
        if speed is not None:
            eta = (total - found[kind]) / speed
    return Frame(
        found=found,
        resumed=any(tally.earlier.values()),
        kind=kind,
        total=total,
        eta=eta,
        requests=stats.requests,
        rate=stats.requests / stats.duration if stats.duration > 0 else 0.0,
        retries=stats.retries,
        throttled=stats.throttled,
        failures=len(walk.failures),
    )


class _View:
    """The renderable the live display redraws: the latest frame, at the console's width."""

    def __init__(self) -> None:
        self.frame = Frame()

    def __rich_console__(
        self, console: Console, options: ConsoleOptions
    ) -> Iterator[RenderableType]:
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        frame = self.frame  # one read: the crawl swaps in a new frame, never changes one
        bar, lines = render_lines(frame, options.max_width)
        first, *rest = (Text(line, no_wrap=True, overflow="ellipsis") for line in lines)
        if bar is None or frame.kind is None or frame.total is None:
            yield first
        else:
            row = Table.grid(padding=(0, 1))
            row.add_column(width=bar, no_wrap=True)
            row.add_column(no_wrap=True)
            done = frame.found[frame.kind]
            row.add_row(ProgressBar(total=frame.total, completed=done, width=bar), first)
            yield row
        yield from rest


class CrawlProgress:
    """Shows a crawl's progress; give `update` as ``on_progress`` of `write_jsonl` or `write_json`.

    Args:
        enabled: Show it (default: when stderr is a terminal).
    """

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._live: Live | None = None
        self._view = _View()
        self._rate = _Rate()
        self._last = -math.inf

    def __enter__(self) -> CrawlProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def update(self, walk: Walk, tally: CrawlTally) -> None:
        """Show what the crawl has done so far (at most ten frames a second are built).

        The display starts at the first call (the walk beginning), so its
        first frame already counts what earlier runs wrote.
        """
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < _FRAME_EVERY:
            return
        self._last = now
        # This run's items: the rate the ETA needs is this run's, not the output's.
        self._rate.add(now, {kind: tally.found[kind] - tally.earlier[kind] for kind in _PLURALS})
        self._view.frame = frame_of(walk, tally, self._rate)
        if self._live is None:
            self._live = _start_live(self._view)


def _start_live(view: _View) -> Live:
    from rich.console import Console
    from rich.live import Live

    live = Live(
        view,
        console=Console(stderr=True),
        transient=True,
        refresh_per_second=4,
        redirect_stdout=False,
        redirect_stderr=False,
    )
    live.start(refresh=True)  # the first frame now, not a refresh period later
    return live
