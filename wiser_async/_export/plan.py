"""What an export reconciles: the collections a crawl read to the end, and the parts it did not.

A row is marked removed only when the crawl read the collection it belongs
to completely: an account's locations, a location's sites, a site's rooms,
a site's devices. A failure record names a collection the crawl could not
read whole (a 403, a decode failure of one item, paging that would not
end), a whole-account failure (``*``) every collection of that account; an
unfinished output's unread parts are the units its checkpoint does not
record. Those parts are left as they were, and the export names them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

import attrs

__all__ = ["AccountOutcome", "ExportResult", "TableCounts", "UnreconciledPart", "unread_parts"]

PART_KINDS: Final = ("account", "locations", "sites", "rooms", "devices")
_PARENT_NAME: Final = {"locations": "", "sites": "location", "rooms": "site", "devices": "site"}


@attrs.frozen
class UnreconciledPart:
    """A part of a portfolio an export left as it was: its crawl did not read it whole.

    Attributes:
        account: The account key.
        collection: ``account`` (all of it), ``locations``, ``sites``,
            ``rooms`` or ``devices``.
        parent_id: The location (sites) or site (rooms, devices) whose
            collection it is; ``""`` for an account's.
        reason: The failure's kind (``forbidden``, ``authorization``...), or
            ``unfinished`` for a part an unfinished crawl has not read yet.
    """

    account: str
    collection: str
    parent_id: str
    reason: str

    def __str__(self) -> str:
        if self.collection == "account":
            what = "every part"
        elif self.collection == "locations":
            what = "its locations"
        else:
            what = f"the {self.collection} of {_PARENT_NAME[self.collection]} {self.parent_id}"
        return f"{self.account}: {what} ({self.reason})"


@attrs.frozen
class TableCounts:
    """What an export did to one table.

    Attributes:
        seen: Rows in this crawl.
        added: Rows new to the table (``first_seen`` is this crawl).
        changed: Rows whose data differed from the table's (``changed_at``).
        removed: Rows marked removed (``removed_at``): gone from a collection read whole.
        restored: Rows marked removed before and found again (``removed_at`` cleared).
    """

    seen: int = 0
    added: int = 0
    changed: int = 0
    removed: int = 0
    restored: int = 0


@attrs.define
class AccountOutcome:
    """One account of an export: its items by kind, failure records, and whether it is whole.

    Attributes:
        items: Items of this crawl by kind (``location``, ``site``, ``room``, ``device``).
        failures: Failure records of the output for this account.
        complete: Every part of the account was read, so every part reconciled.
    """

    items: dict[str, int] = attrs.Factory(dict)
    failures: int = 0
    complete: bool = True


@attrs.frozen(kw_only=True)
class ExportResult:
    """What `export_snapshot` did.

    Attributes:
        export_id: The row of this export in the ``exports`` table.
        source: The crawl output exported.
        database: The database, as a URL without its password.
        crawled_at: When the crawl ran (UTC, as the tables hold it).
        schema_version: The database's schema version.
        counts: Table (``locations``, ``sites``, ``rooms``, ``devices``) -> `TableCounts`.
        accounts: Account -> `AccountOutcome`.
        unreconciled: The parts left as they were, because the crawl did not read them whole.
    """

    export_id: int
    source: str
    database: str
    crawled_at: str
    schema_version: int
    counts: dict[str, TableCounts]
    accounts: dict[str, AccountOutcome]
    unreconciled: list[UnreconciledPart]

    @property
    def complete(self) -> bool:
        """True when every part of the crawl was read, so every table reconciled."""
        return not self.unreconciled


def unread_parts(failure: dict[str, Any], devices_by: str | None) -> Iterator[UnreconciledPart]:
    """The parts a failure record leaves unreconciled (the whole account when it does not say)."""
    account = str(failure.get("account", ""))
    reason = str(failure.get("kind") or "error")
    collection = failure.get("collection")
    location = failure.get("location_id")
    site = failure.get("site_id")
    parent = failure.get("parent_id")
    if collection == "room_devices":
        parent = site  # a room's devices are reconciled with its site's
    elif collection == "site_devices":
        parent = site or parent
    if failure.get("resource") == "*" or collection is None:
        yield UnreconciledPart(account, "account", "", reason)
    elif collection == "locations":
        yield UnreconciledPart(account, "locations", "", reason)
    elif collection == "sites" and isinstance(parent or location, str):
        yield UnreconciledPart(account, "sites", str(parent or location), reason)
    elif collection == "rooms" and isinstance(parent or site, str):
        yield UnreconciledPart(account, "rooms", str(parent or site), reason)
        if devices_by != "site":
            # Listed room by room, a site's devices are as whole as its rooms.
            yield UnreconciledPart(account, "devices", str(parent or site), reason)
    elif collection in ("site_devices", "room_devices") and isinstance(parent, str):
        yield UnreconciledPart(account, "devices", parent, reason)
    else:  # a part this export cannot place: nothing of the account is reconciled
        yield UnreconciledPart(account, "account", "", reason)
