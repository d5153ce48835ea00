"""A crawl's progress on a terminal: it fits the width, its total and ETA mean something.

The estimate (`CrawlTally`) is tested on its own first, then what the
writers give their progress callbacks, then the lines drawn; last, the
command runs as a real process with its stderr on a pseudo-terminal of 80
and 120 columns, against a sandbox whose latency makes the crawl last a
few seconds, and the test reads what it draws.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from tests.support import issue, make_client, make_oauth
from token_stores import MemoryTokenStore
from wiser_async import Failure, Walk, crawl_to_json, crawl_to_jsonl
from wiser_async._crawl import Batch, FailureEvent, Unit, UnitDone
from wiser_async._snapshot import CrawlTally, write_jsonl
from wiser_async.cli._progress import Frame, render_lines
from wiser_async.sandbox import Sandbox, SandboxUrls

ROOT = Path(__file__).parent.parent
# A few seconds of crawl at any load: 94 requests of 0.1 s each, four at a time.
# A page of 10 holds a location's sites (its unit is done at once) but not a
# site's devices (two pages each).
PORTFOLIO = (
    "--latency",
    "0.1",
    "--locations",
    "3",
    "--sites-per-location",
    "10",
    "--devices-per-site",
    "20",
    "--page-size",
    "10",
    "--concurrency",
    "4",
)
DEVICES = 3 * 10 * 20
PATIENCE = 60.0
# The first line of a frame with a bar: the bar, the share, done/~total, the ETA if any.
BAR_LINE = re.compile(
    r"^(?P<bar>[━╸╺]+) +(?P<share>\d+)% (?P<done>[\d,]+)/~(?P<total>[\d,]+) devices"
    r"(?:  ETA (?P<eta>\d+:\d\d:\d\d))?$"
)
NO_ESTIMATE = "crawling: no estimate of the total yet"
_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


# -- the estimate -----------------------------------------------------------------------


def batch(kind: str, unit: Unit, count: int) -> Batch:
    items: list[Any] = [object()] * count  # a tally counts items, it never reads them
    return Batch(kind, unit[1], unit, items, None, None, None)  # type: ignore[arg-type]


def read_unit(tally: CrawlTally, unit: Unit, **items: int) -> None:
    for kind, count in items.items():
        tally.observe(batch(kind, unit, count))
    tally.observe(UnitDone(unit))


def test_no_level_is_estimated_before_a_unit_of_the_level_above_is_done_or_begun() -> None:
    tally = CrawlTally(accounts=2)
    assert tally.estimate() == dict.fromkeys(("location", "site", "room", "device"))
    read_unit(tally, ("account", "a", ""), location=3)
    # Locations: the other account holds as many as the first; sites: nothing known yet.
    assert tally.estimate() == {"location": 6, "site": None, "room": None, "device": None}


def test_totals_are_extrapolated_level_by_level_from_the_units_done() -> None:
    tally = CrawlTally(accounts=1)
    read_unit(tally, ("account", "a", ""), location=4)
    read_unit(tally, ("location", "a", "L1"), site=10)
    read_unit(tally, ("site", "a", "S1"), room=3, device=60)
    read_unit(tally, ("site", "a", "S2"), room=1, device=20)
    # 4 locations of 10 sites; 40 sites of 2 rooms and 40 devices on average.
    assert tally.estimate() == {"location": 4, "site": 40, "room": 80, "device": 1600}
    assert tally.found == {"location": 4, "site": 10, "room": 4, "device": 80}


def test_a_collection_begun_counts_at_the_size_its_first_page_announced() -> None:
    tally = CrawlTally(accounts=1)
    read_unit(tally, ("account", "a", ""), location=2)
    tally.observe(batch("site", ("location", "a", "L1"), 5))  # the first page of 50
    assert tally.estimate()["site"] == 10  # what was read, with no totals to go by
    tally.settle({"location": 2, "site": 50})  # the walk's page totals, its buffer empty
    assert tally.estimate()["site"] == 100
    read_unit(tally, ("location", "a", "L2"), site=40)
    assert tally.estimate()["site"] == 80  # a unit done says more than an announcement


def test_a_total_is_never_below_what_was_found() -> None:
    tally = CrawlTally(accounts=1)
    read_unit(tally, ("account", "a", ""), location=2)
    read_unit(tally, ("location", "a", "L1"), site=1)
    tally.observe(batch("site", ("location", "a", "L2"), 30))
    assert tally.estimate()["site"] == 31


def test_an_account_lost_before_its_locations_were_listed_is_not_waited_for() -> None:
    tally = CrawlTally(accounts=2)
    read_unit(tally, ("account", "a", ""), location=3)
    lost = Failure(account="b", resource="*", kind="authorization", status=400, message="gone")
    tally.observe(FailureEvent(("account", "b", ""), lost))
    assert tally.estimate()["location"] == 3


def test_units_of_earlier_runs_count_as_found_and_estimate_at_once() -> None:
    tally = CrawlTally(accounts=1)
    tally.add_earlier(("account", "a", ""), {"location": 2})
    tally.add_earlier(("location", "a", "L1"), {"site": 4})
    tally.add_earlier(("site", "a", "S1"), {"room": 2, "device": 7})
    assert tally.earlier == {"location": 2, "site": 4, "room": 2, "device": 7}
    assert tally.found == tally.earlier
    assert tally.estimate() == {"location": 2, "site": 8, "room": 16, "device": 56}


# -- what the writers call -------------------------------------------------------------
# The session sandbox: 3 locations of 4 sites, each of 3 rooms and 12 devices. At
# pages of 5, the pages with items: 1 of locations, 3 of sites, 12 of rooms, 36 of devices.
PAGES_WITH_ITEMS = 1 + 3 + 12 + 36


@pytest.mark.parametrize("to", ["jsonl", "json"])
async def test_the_library_calls_on_progress_with_the_walk_after_each_page_only(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path, to: str
) -> None:
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct")
    seen: list[int] = []

    def on_progress(walk: Walk) -> None:
        seen.append(walk.stats.requests)

    async with make_oauth(urls, store) as oauth, make_client(oauth, urls) as client:
        crawl = crawl_to_jsonl if to == "jsonl" else crawl_to_json
        await crawl(client, tmp_path / f"out.{to}", page_size=5, on_progress=on_progress)
    assert len(seen) == PAGES_WITH_ITEMS
    assert min(seen) >= 1  # never when the walk begins, before any page


async def test_a_resumed_write_counts_the_earlier_units_before_it_reads_anything(
    sandbox: Sandbox, urls: SandboxUrls, tmp_path: Path
) -> None:
    store = MemoryTokenStore()
    await issue(sandbox, store, "acct")
    output = tmp_path / "out.jsonl"
    output.write_bytes(b"")
    params = {"accounts": ["acct"], "devices_by": "site", "page_size": 5}
    earlier = [
        {"unit": ["account", "acct", ""], "items": {"location": 3}},
        {"unit": ["location", "acct", "elsewhere"], "items": {"site": 4}},
        {"unit": ["site", "acct", "elsewhere"], "items": {"room": 3, "device": 12}},
    ]
    begun: list[tuple[int, dict[str, int], dict[str, int | None]]] = []

    def on_progress(walk: Walk, tally: CrawlTally) -> None:
        if not begun:
            begun.append((walk.stats.requests, dict(tally.found), tally.estimate()))

    async with make_oauth(urls, store) as oauth, make_client(oauth, urls) as client:
        crawl = {"crawl": {"format": 2, **params, "source": client.config.base_url}}
        lines = [crawl, *({**unit, "offset": 0, "failures": []} for unit in earlier)]
        checkpoint = output.with_name(output.name + ".checkpoint")
        checkpoint.write_text("".join(json.dumps(line) + "\n" for line in lines))
        await write_jsonl(
            client,
            output,
            resume=True,
            accounts=["acct"],
            devices_by="site",
            page_size=5,
            timeout=None,
            on_progress=on_progress,
            source=None,
            validate="ids",
        )
    requests, found, estimate = begun[0]
    assert requests == 0
    assert found == {"location": 3, "site": 4, "room": 3, "device": 12}
    # 3 locations of 4 sites, each of 3 rooms and 12 devices, as the earlier units say.
    assert estimate == {"location": 3, "site": 12, "room": 36, "device": 144}


# -- the lines drawn ----------------------------------------------------------------------

BIG = Frame(
    found={"location": 1_500, "site": 60_000, "room": 180_000, "device": 3_600_000},
    resumed=True,
    kind="device",
    total=9_000_000,
    eta=3_725.2,
    requests=2_412_000,
    rate=812.4,
    retries=12_000,
    throttled=1_000,
    failures=12,
)


@pytest.mark.parametrize("width", [40, 80, 120, 250])
def test_every_line_fits_the_width_and_the_bar_fills_what_is_left(width: int) -> None:
    bar, lines = render_lines(BIG, width)
    assert all(len(line) <= width for line in lines), lines
    if bar is not None:
        assert bar + 1 + len(lines[0]) == width
    assert (bar is not None) == (width >= 80)
    if width >= 80:
        assert lines[0] == " 40% 3,600,000/~9,000,000 devices  ETA 1:02:06"


def test_without_an_estimate_there_is_no_bar_no_share_and_no_eta() -> None:
    bar, lines = render_lines(attrs.evolve(BIG, kind=None, total=None, eta=None), 80)
    assert bar is None
    assert lines[0] == NO_ESTIMATE


def test_an_estimate_reached_before_the_end_is_not_shown_as_done() -> None:
    _, lines = render_lines(attrs.evolve(BIG, total=3_600_000, eta=None), 120)
    assert lines[0] == " 99% 3,600,000/~3,600,000 devices"


def test_an_eta_under_a_second_reads_one_second_not_zero() -> None:
    _, lines = render_lines(attrs.evolve(BIG, eta=0.2), 120)
    assert lines[0].endswith("ETA 0:00:01")


# -- on a pseudo-terminal -------------------------------------------------------------------


@attrs.frozen
class Drawn:
    """What a command drew on its terminal, line by line, and how it ended."""

    returncode: int
    lines: list[str]
    stdout: str

    def first_lines(self) -> list[str]:
        """The first line of each frame drawn (the bar's or the no-estimate line)."""
        return [line for line in self.lines if line == NO_ESTIMATE or BAR_LINE.match(line)]


def crawl_command(output: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "wiser_async",
        "crawl",
        "--sandbox",
        *PORTFOLIO,
        "-o",
        str(output),
        *extra,
    ]


def lines_of(seen: bytes | bytearray) -> list[str]:
    """What a terminal was sent, escape sequences out, a line per cursor return."""
    text = _ESCAPE.sub("", seen.decode(errors="ignore"))
    return [line for line in re.split(r"[\r\n]", text) if line.strip()]


def draw(
    command: list[str], columns: int, until: Callable[[list[str]], bool] | None = None
) -> Drawn:
    """Run `command` with stderr on a `columns`-wide pseudo-terminal until it exits.

    With `until`, the command is killed once what it drew satisfies it.
    """
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    environment = {
        name: value
        for name, value in os.environ.items()
        # The terminal's own size and colours, not the test runner's.
        if name not in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "TERM")
    }
    environment |= {"TERM": "xterm-256color", "PYTHONIOENCODING": "utf-8"}
    seen = bytearray()
    try:
        with subprocess.Popen(
            command,
            cwd=ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,  # rich measures stdin first: it must not be the runner's
            stdout=subprocess.PIPE,
            stderr=follower,
        ) as process:
            os.close(follower)
            follower = -1
            deadline = time.monotonic() + PATIENCE
            while time.monotonic() < deadline:
                ready, _, _ = select.select([leader], [], [], 0.2)
                if ready:
                    try:
                        chunk = os.read(leader, 65536)
                    except OSError:  # the terminal's other end closed: the command is done
                        break
                    if not chunk:
                        break
                    seen += chunk
                    if until is not None and until(lines_of(seen)):
                        process.kill()
                        break
            else:
                process.kill()
                pytest.fail(f"the crawl did not end within {PATIENCE} s")
            stdout, _ = process.communicate(timeout=PATIENCE)
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)
    return Drawn(process.returncode, lines_of(seen), stdout.decode())


def number(text: str) -> int:
    return int(text.replace(",", ""))


@pytest.mark.parametrize("columns", [80, 120])
def test_a_crawl_draws_a_bar_and_an_eta_within_the_width_once_it_can_estimate(
    tmp_path: Path, columns: int
) -> None:
    drawn = draw(crawl_command(tmp_path / "out.jsonl"), columns)
    assert drawn.returncode == 0, drawn.stdout
    assert "Complete: nothing is missing." in drawn.stdout
    too_wide = [line for line in drawn.lines if len(line) > columns]
    assert too_wide == []
    firsts = drawn.first_lines()
    # Nothing is estimated before anything is read: no bar, no share, no ETA.
    assert firsts[0] == NO_ESTIMATE
    bars = [match for line in firsts if (match := BAR_LINE.match(line))]
    assert bars, drawn.lines
    before = drawn.lines[: drawn.lines.index(bars[0].group(0))]
    assert not any("ETA" in line for line in before)
    for match in bars:
        assert len(match.group(0)) == columns  # the bar fills the line
        assert number(match.group("done")) <= number(match.group("total"))
        assert abs(number(match.group("total")) - DEVICES) <= DEVICES // 10
        assert match.group("eta") != "0:00:00"
    # Past 60 % (1.4 s of requests at the least) the rate has been measured for the
    # second it needs: an ETA is shown, until the estimate is reached.
    later = [match for match in bars if 60 <= int(match.group("share")) <= 95]
    assert later, [match.group(0) for match in bars]
    assert all(match.group("eta") for match in later), [match.group(0) for match in later]
    assert any("found: 3 locations, 30 sites" in line for line in drawn.lines)
    assert any(line.startswith("this run: ") and "requests (" in line for line in drawn.lines)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def units_done(checkpoint: Path) -> list[dict[str, object]]:
    """The unit records of a checkpoint (a torn last line left out)."""
    try:
        text = checkpoint.read_text()
    except FileNotFoundError:
        return []
    records = [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]
    return [record for record in records if "unit" in record]


def test_a_resumed_crawl_starts_its_bar_at_what_the_output_holds(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    checkpoint = output.with_name(output.name + ".checkpoint")

    def kinds_done() -> set[object]:
        return {record["unit"][0] for record in units_done(checkpoint)}  # type: ignore[index]

    with subprocess.Popen(
        crawl_command(output), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as crawler:
        # Killed once a unit of each level is recorded: the estimate can start from them.
        wait_for(lambda: kinds_done() == {"account", "location", "site"}, "units of each level")
        crawler.send_signal(signal.SIGKILL)
        crawler.wait(PATIENCE)
    earlier = sum(record["items"].get("device", 0) for record in units_done(checkpoint))  # type: ignore[attr-defined]
    assert 0 < earlier < DEVICES
    # Its first frame is all this test needs (the crawl goes on, as its other tests show).
    drawn = draw(
        crawl_command(output, "--resume"),
        80,
        until=lambda lines: any(line.startswith("this run: ") for line in lines),
    )
    assert all(len(line) <= 80 for line in drawn.lines)
    # The first frame: the output's progress, the earlier run's devices counted, a bar at once.
    first = BAR_LINE.match(drawn.first_lines()[0])
    assert first is not None, drawn.lines[:3]
    assert number(first.group("done")) == earlier
    assert abs(number(first.group("total")) - DEVICES) <= DEVICES // 10
    assert first.group("eta") is None  # this run's rate is not measured yet
    found = next(line for line in drawn.lines if line.startswith("found"))
    assert found.startswith("found (all runs): 3 locations, ")
    assert found.endswith(f" {earlier:,} devices")
