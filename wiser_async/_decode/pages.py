"""Page envelopes: their items checked against the limit asked, their metadata read,
and the undecodable items of a page reported (and skipped) or raised."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._config import PageFormat
from ..errors import DecodeError

__all__ = ["MAX_ITEM_ERRORS", "ItemErrors", "page_data", "page_meta"]

# Undecodable items of one page reported one by one; the rest in one line.
MAX_ITEM_ERRORS = 10


def page_data(body: Any, keys: PageFormat, limit: int, method: str, path: str) -> list[Any]:
    """The items of a page envelope, checked to be a list of at most `limit` entries."""
    if type(body) is not dict:
        raise DecodeError("expected a JSON object (a page)", method=method, path=path)
    data = body.get(keys.data_key)
    if type(data) is not list:
        raise DecodeError(f"expected a list at $.{keys.data_key}", method=method, path=path)
    if len(data) > limit:
        # Checked before anything is decoded: a page is bounded by what was asked.
        raise DecodeError(
            f"the page holds {len(data)} items at $.{keys.data_key}, more than the "
            f"{limit} asked for",
            method=method,
            path=path,
        )
    return data


def page_meta(
    body: dict[str, Any], keys: PageFormat, limit: int, method: str, path: str
) -> tuple[int, int | None]:
    """The limit the server applied and the collection's total, from a page's metadata."""
    meta = body.get(keys.meta_key)
    total: int | None = None
    if type(meta) is dict:
        # The limit the server applied: a page that fills it is not the last.
        served_limit = meta.get(keys.limit_key)
        if type(served_limit) is int and 0 < served_limit < limit:
            limit = served_limit
        raw_total = meta.get(keys.total_key)
        if raw_total is not None:
            if type(raw_total) is not int or raw_total < 0:
                raise DecodeError(
                    f"expected a non-negative integer at $.{keys.meta_key}.{keys.total_key}",
                    method=method,
                    path=path,
                )
            total = raw_total
    elif meta is not None:
        raise DecodeError(f"expected an object at $.{keys.meta_key}", method=method, path=path)
    return limit, total


class ItemErrors:
    """Where a page's undecodable items go: raised (no handler), or reported and skipped."""

    def __init__(
        self, handler: Callable[[DecodeError], None] | None, method: str, path: str
    ) -> None:
        self._handler = handler
        self._method = method
        self._path = path
        self.skipped = 0

    def __call__(self, error: DecodeError) -> None:
        if self._handler is None:
            raise error from None
        self.skipped += 1
        if self.skipped <= MAX_ITEM_ERRORS:
            self._handler(error)

    def finish(self) -> int:
        """Report the items past `MAX_ITEM_ERRORS` in one error; how many were skipped."""
        if self._handler is not None and self.skipped > MAX_ITEM_ERRORS:
            self._handler(
                DecodeError(
                    f"{self.skipped - MAX_ITEM_ERRORS} more items of the page could not be "
                    f"decoded (the first {MAX_ITEM_ERRORS} are reported one by one)",
                    method=self._method,
                    path=self._path,
                )
            )
        return self.skipped
