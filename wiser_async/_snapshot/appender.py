"""Appending finished units to a JSONL output and their marks to its checkpoint, in batches.

A write runs in a worker thread, so a slow disk never stalls the event
loop; a thread hop costs more than the write itself, so each hop takes
every unit finished since the last one. The output is written (and
flushed) before the checkpoint marks that record it: a crash between the
two leaves lines no mark covers, which a resume cuts off.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self

import anyio

__all__ = ["UnitAppender"]


class UnitAppender:
    """Buffers output lines and checkpoint marks; `flush` writes them, one thread hop."""

    def __init__(self, output: Path, checkpoint: Path) -> None:
        self._paths = output, checkpoint
        self._files: tuple[BinaryIO, BinaryIO] | None = None
        self._data: list[bytes] = []
        self._marks: list[bytes] = []
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
        if data:
            self._data.append(data)
            self.size += len(data)
        self._marks.append(mark)

    @property
    def pending(self) -> bool:
        """Something was added since the last `flush`."""
        return bool(self._marks)

    async def flush(self) -> None:
        """Write and flush what was added: the output first, then the checkpoint."""
        if not self._marks or self._files is None:
            return
        await anyio.to_thread.run_sync(_write, self._files, *self._take())

    def _take(self) -> tuple[bytes, bytes]:
        data, marks = b"".join(self._data), b"".join(self._marks)
        self._data, self._marks = [], []
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
