"""Appending finished units to a JSONL output and their marks to its checkpoint, in batches.

A write runs in a worker thread, so a slow disk never stalls the event
loop; a thread hop costs more than the write itself, so each hop takes
every unit finished since the last one, and finished units wait up to
`MAX_DELAY` (or `MAX_PENDING` bytes) for company. A crash loses at most
those: a resume reads them again. The output is written (and
flushed) before the checkpoint marks that record it: a crash between the
two leaves lines no mark covers, which a resume cuts off.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self

import anyio

from .._crawl import Event, Walk

__all__ = ["MAX_DELAY", "MAX_PENDING", "UnitAppender"]

MAX_DELAY = 0.05
"""Seconds a finished unit may wait to be written."""
MAX_PENDING = 256 * 1024
"""Bytes of finished units written at once, without waiting for more."""


class UnitAppender:
    """Buffers output lines and checkpoint marks; `flush` writes them, one thread hop."""

    def __init__(self, output: Path, checkpoint: Path) -> None:
        self._paths = output, checkpoint
        self._files: tuple[BinaryIO, BinaryIO] | None = None
        self._data: list[bytes] = []
        self._marks: list[bytes] = []
        self._pending_bytes = 0
        self._since = 0.0
        self.size = 0
        """The output's size once everything added so far is written."""

    async def __aenter__(self) -> Self:
        self._files = await anyio.to_thread.run_sync(self._open)
        return self

    def _open(self) -> tuple[BinaryIO, BinaryIO]:
        output, checkpoint = self._paths
        out = output.open("ab")
        try:
            marks = checkpoint.open("ab")
        except BaseException:
            out.close()
            raise
        self.size = out.tell()
        return out, marks

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._files is None:
            return
        try:
            if exc_type is None:
                await self.flush()
            elif self._marks:
                # Cancelled or failing: no thread hop can run now, yet the units
                # added are whole and read; written here, a resume skips them.
                _write(self._files, *self._take())
        finally:
            # Closed here, not in a thread: a cancelled task cannot wait for one,
            # and closing a flushed file writes nothing.
            files, self._files = self._files, None
            _close(files)

    def add(self, data: bytes, mark: bytes) -> None:
        """Queue a unit's lines and then its mark (written by the next `flush`)."""
        if not self._marks:
            self._since = anyio.current_time()
        if data:
            self._data.append(data)
            self.size += len(data)
            self._pending_bytes += len(data)
        self._marks.append(mark)

    async def next_event(self, walk: Walk) -> Event:
        """Wait for the walk's next message, writing finished units when they are due.

        Raises:
            StopAsyncIteration: the walk is over.
        """
        if self._marks:
            left = self._since + MAX_DELAY - anyio.current_time()
            if left <= 0 or self._pending_bytes >= MAX_PENDING:
                await self.flush()
            else:
                with anyio.move_on_after(left):
                    return await walk.next_event()
                await self.flush()
        return await walk.next_event()

    async def flush(self) -> None:
        """Write and flush what was added: the output first, then the checkpoint."""
        if not self._marks or self._files is None:
            return
        await anyio.to_thread.run_sync(_write, self._files, *self._take())

    def _take(self) -> tuple[bytes, bytes]:
        data, marks = b"".join(self._data), b"".join(self._marks)
        self._data, self._marks, self._pending_bytes = [], [], 0
        return data, marks


def _write(files: tuple[BinaryIO, BinaryIO], data: bytes, marks: bytes) -> None:
    out, checkpoint = files
    if data:
        out.write(data)
        out.flush()
    checkpoint.write(marks)
    checkpoint.flush()


def _close(files: tuple[BinaryIO, BinaryIO]) -> None:
    for file in files:
        file.close()
