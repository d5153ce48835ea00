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
    """Items of one page, where it starts, and the collection's size if the API said."""

    items: Sequence[T]
    offset: int
    limit: int
    total: int | None = None

    @property
    def is_last(self) -> bool:
        """No page follows: the total is reached, or the page is short."""
        if self.total is not None:
            return self.offset + len(self.items) >= self.total or not self.items
        return len(self.items) < self.limit
