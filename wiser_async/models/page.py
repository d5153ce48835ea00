"""Page: one slice of a collection, as the API returns it.

Upstream envelope: ``{"data": [...], "meta": {"offset", "limit", "total"}}``;
the key names are configurable through `PageFormat`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

import attrs

__all__ = ["Page"]

T = TypeVar("T")


@attrs.frozen(kw_only=True)
class Page(Generic[T]):
    """Items of one page, where it starts, and the collection's size if the API said.

    Attributes:
        items: The decoded items.
        offset: Index of the first item in the collection.
        limit: The page size the server applied.
        total: The collection's size, when the API gives it.
        skipped: Items of the page left out because they could not be
            decoded (only when the caller asked to skip rather than fail).
    """

    items: Sequence[T]
    offset: int
    limit: int
    total: int | None = None
    skipped: int = 0

    @property
    def size(self) -> int:
        """Items the server sent in this page, skipped ones included."""
        return len(self.items) + self.skipped

    @property
    def is_last(self) -> bool:
        """No page follows: the total is reached, or the page is short."""
        if self.total is not None:
            return self.offset + self.size >= self.total or not self.size
        return self.size < self.limit
