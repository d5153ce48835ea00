"""A page body read by msgspec straight from its bytes decodes as the parsed body does.

The request path hands a page's body to `Codec.native_page` first and, where
that gives None, parses it (`parse_json`) for `Codec.structure_page`. Here
that composition, on the msgspec codec (each body read twice: the first
read teaches `learned.PageReader` the unknown names it meets, the second
may read the page in one call), is compared with the compiled
decoder alone on the parsed body (`Codec(native=False)`), for bytes that
msgspec and the request path's parser read differently if anything does:
invalid UTF-8 and out-of-range numbers where msgspec only skips (unknown
envelope keys, unknown item fields, the metadata), duplicate keys, lone
surrogates, whitespace, integers past 64 bits, nesting deeper than either
parser goes, every odd item of `test_fast_decode`, and the sandbox's whole
default portfolio under its hostile faults, as served.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from wiser_async import Device, Location, Page, Room, Site
from wiser_async._decode import Codec
from wiser_async._decode.learned import MAX_LEARNED, MAX_NAME, PageReader
from wiser_async._transport.parse import parse_json
from wiser_async.errors import DecodeError
from wiser_async.sandbox import Faults, PortfolioSpec, Sandbox

from .test_fast_decode import (
    ALIASES,
    CLASHING,
    FAULTS,
    KEYS,
    SAMPLES,
    _bodies,
    _renamed,
    _variants,
    outcome,
)

pytest.importorskip("msgspec")

PAIRS = {
    "default": (Codec(), Codec(native=False)),
    "aliased": (Codec(ALIASES), Codec(ALIASES, native=False)),
    "clashing": (Codec(CLASHING), Codec(CLASHING, native=False)),
}


def from_bytes(content: bytes, cls: type, limit: int, *, native: bool) -> Any:
    """What the request path makes of a page body: msgspec first where `native`."""

    def decode(codec: Codec, report: Callable[[DecodeError], None] | None) -> Any:
        if native:
            page: Page[Any] | None = codec.native_page(
                content, cls, offset=0, limit=limit, keys=KEYS, method="GET", path="/p"
            )
            if page is not None:
                return page
        return codec.structure_page(
            parse_json(content, "GET", "/p"),
            cls,
            offset=0,
            limit=limit,
            keys=KEYS,
            method="GET",
            path="/p",
            on_item_error=report,
        )

    return decode


def same_bytes(content: bytes, cls: type, limit: int = 500, pair: str = "default") -> Any:
    """The msgspec codec on the bytes, and the compiled decoder on the parsed body, alike."""
    fast, fallback = PAIRS[pair]
    seen = None
    for report in (False, True):
        expected = outcome(fallback, from_bytes(content, cls, limit, native=False), report=report)
        # Twice: the first read teaches the page reader the unknown names it
        # meets, the second may then read the page in one call.
        for _ in range(2):
            seen = outcome(fast, from_bytes(content, cls, limit, native=True), report=report)
            assert seen == expected, content[:200]
    return seen


def took_native(content: bytes, cls: type = Device, limit: int = 500) -> bool:
    codec = PAIRS["default"][0]
    try:
        page: Page[Any] | None = codec.native_page(
            content, cls, offset=0, limit=limit, keys=KEYS, method="GET", path="/"
        )
    except DecodeError:  # the items read, the metadata refused: as the parsed body's is
        return True
    return page is not None


GOOD = json.dumps(SAMPLES[Device]).encode()
UNKNOWN = json.dumps({**SAMPLES[Device], "vendor": {"x": [1, 2.5, "é"]}}).encode()


def envelope(*items: bytes, meta: bytes | None = b'{"total":3}', extra: bytes = b"") -> bytes:
    body = b'{"data":[' + b",".join(items) + b"]"
    if meta is not None:
        body += b',"meta":' + meta
    return body + extra + b"}"


def test_a_clean_page_and_one_with_unknown_fields_are_read_from_bytes() -> None:
    # Not a case of falling back: msgspec reads these bodies itself.
    assert took_native(envelope(GOOD, GOOD))
    assert took_native(envelope(GOOD, UNKNOWN, GOOD))
    assert took_native(envelope(GOOD, meta=None))
    seen = same_bytes(envelope(GOOD, UNKNOWN, GOOD), Device)
    assert seen[0][0] == "decoded"


# Bytes the two parsers could read differently, each in every place of a page.
ODD_BYTES: list[bytes] = [
    b'"\xff"',  # invalid UTF-8
    b'"\xc3("',
    b'"\xed\xa0\x80"',  # a surrogate, UTF-8-encoded
    b'"\xf4\x90\x80\x80"',  # past U+10FFFF
    b'"\xc0\x80"',  # overlong
    b'"\\ud800"',  # a lone surrogate, escaped
    b'"\\ud83d\\ude00"',
    b'"caf\xc3\xa9 \\u00e9 \\/"',
    b"1e400",
    b"-1e400",
    b"1.7976931348623157e309",
    b"-0",
    b"-0.0",
    b"1.0E2",
    b"18446744073709551615",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"123456789012345678901234567890",
    b"[" * 40 + b"]" * 40,
    b"[" * 1030 + b"]" * 1030,
    b"NaN",
    b"01",
    b'"a\tb"',
    b"[1,]",
]


@pytest.mark.parametrize("odd", ODD_BYTES, ids=lambda odd: repr(odd[:24]))
def test_odd_bytes_anywhere_in_a_page_decode_and_fail_alike(odd: bytes) -> None:
    good = GOOD[:-1]
    bodies = [
        envelope(good + b',"vendor":' + odd + b"}"),  # an unknown item field
        envelope(GOOD, good + b',"vendor":' + odd + b"}", GOOD),
        envelope(GOOD, meta=b'{"total":1,"x":' + odd + b"}"),  # inside the metadata
        envelope(GOOD, meta=odd),  # the metadata itself
        envelope(GOOD, extra=b',"links":' + odd),  # an unknown envelope key
        envelope(GOOD, odd),  # an item
        b'{"data":' + odd + b"}",
    ]
    for field in ("id", "name", "ratedCurrentA", "phases", "lastSeenAt", "category"):
        item = json.loads(GOOD)
        del item[field]
        bodies.append(
            envelope(json.dumps(item)[:-1].encode() + f',"{field}":'.encode() + odd + b"}")
        )
    for body in bodies:
        same_bytes(body, Device)


def test_duplicate_keys_whitespace_and_other_envelopes_decode_alike() -> None:
    bodies = [
        b'{"data":[],"data":[' + GOOD + b"]}",
        b'{"data":[' + GOOD + b'],"data":[]}',
        b'{"meta":{"total":9},"data":[' + GOOD + b'],"meta":{"total":1}}',
        b'{"data":[' + GOOD[:-1] + b',"id":"second"}]}',
        b'{"data":[' + GOOD[:-1] + b',"vendor":1,"vendor":2}]}',
        b'{"data":[' + GOOD[:-1] + b',"id":7}]}',
        b' \n\t{ "data" : [ ' + json.dumps(SAMPLES[Device], indent=2).encode() + b" ] }\r\n",
        b'\xef\xbb\xbf{"data":[]}',
        b'{"data":[]} x',
        b'{"data":[' + GOOD + b"]",
        b'{"data":[1]}',
        b'{"data":[null]}',
        b'{"data":{}}',
        b'{"data":[' + GOOD + b'],"meta":null}',
        b'{"data":[' + GOOD + b'],"meta":{"total":2,"limit":1}}',
        b'{"data":[' + GOOD + b'],"meta":{"total":-1}}',
        b'{"data":[' + GOOD + b'],"meta":[]}',
        b"[]",
        b"null",
        b"",
    ]
    for body in bodies:
        same_bytes(body, Device)
    # More items than asked: refused before any is decoded, as the parsed body is.
    same_bytes(envelope(GOOD, GOOD, GOOD), Device, limit=2)


@pytest.mark.parametrize("pair", PAIRS.keys())
@pytest.mark.parametrize("cls", [Location, Site, Room, Device], ids=lambda cls: cls.__name__)
def test_odd_items_from_bytes_decode_and_fail_alike(cls: type, pair: str) -> None:
    aliases = {"default": {}, "aliased": ALIASES, "clashing": CLASHING}[pair]
    variants = [_renamed(data, cls, aliases) for data in _variants(cls)]
    writers: list[Callable[[Any], bytes]] = [
        lambda value: json.dumps(value).encode(),  # escapes non-ASCII
        lambda value: json.dumps(value, ensure_ascii=False, indent=1).encode(),
    ]
    good = variants[0]
    for write in writers:
        for data in variants:
            same_bytes(write({"data": [good, data, good], "meta": {"total": 3}}), cls, pair=pair)
        same_bytes(write({"data": variants}), cls, limit=len(variants), pair=pair)


@pytest.mark.parametrize("faults", FAULTS.values(), ids=FAULTS.keys())
async def test_the_portfolio_as_served_decodes_alike_from_bytes(faults: dict[str, Any]) -> None:
    sandbox = Sandbox(PortfolioSpec(), faults=Faults(**faults))
    bodies = await _bodies(sandbox)
    native = 0
    for _, cls, limit, body in bodies:
        if limit:
            # As served: the sandbox's writer, compact.
            content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
            same_bytes(content, cls, limit)
            native += took_native(content, cls, limit)
    if not faults:
        assert native == sum(1 for _, _, limit, _ in bodies if limit)


def reader(codec: Codec, cls: type = Device) -> PageReader:
    got = codec.page_reader(cls, KEYS)
    assert got is not None
    return got


def with_unknown(item: dict[str, Any], **fields: Any) -> bytes:
    return json.dumps({**item, **fields}).encode()


def test_unknown_names_met_once_are_declared_and_pages_then_read_in_one_call() -> None:
    codec, fallback = Codec(), Codec(native=False)
    sample = SAMPLES[Device]
    first = envelope(GOOD, with_unknown(sample, vendor={"a": [1]}), GOOD)
    assert reader(codec).declared == ()
    assert reader(codec).read(first) is None  # "vendor" not declared yet: item by item
    assert took_native(first)  # the per-item way, which meets "vendor"
    codec.native_page(first, Device, offset=0, limit=9, keys=KEYS, method="GET", path="/")
    second = envelope(
        with_unknown(sample, vendor=None), GOOD, with_unknown(sample, vendor="x" * 80)
    )
    read = reader(codec).read(second)
    assert reader(codec).declared == ("vendor",)
    assert read is not None  # in one call
    items, _ = read
    parsed = fallback.structure_page(
        json.loads(second), Device, offset=0, limit=9, keys=KEYS, method="GET", path="/"
    ).items
    assert [repr(item) for item in items] == [repr(item) for item in parsed]
    assert [item.extra for item in items] == [{"vendor": None}, {}, {"vendor": "x" * 80}]


def test_an_item_with_two_declared_names_keeps_their_order_item_by_item() -> None:
    codec = Codec()
    sample = SAMPLES[Device]
    teach = envelope(with_unknown(sample, zeta=1), with_unknown(sample, alpha=2))
    codec.native_page(teach, Device, offset=0, limit=9, keys=KEYS, method="GET", path="/")
    both = envelope(with_unknown(sample, zeta=1, alpha=2), with_unknown(sample, alpha=3, zeta=4))
    assert reader(codec).read(both) is None
    page = codec.native_page(both, Device, offset=0, limit=9, keys=KEYS, method="GET", path="/")
    assert page is not None
    assert [list(item.extra) for item in page.items] == [["zeta", "alpha"], ["alpha", "zeta"]]
    same_bytes(both, Device)


def test_a_server_inventing_names_cannot_grow_what_is_declared_or_kept() -> None:
    codec = Codec()
    sample = SAMPLES[Device]
    for batch in range(10):
        names = {f"n{batch}_{index}": index for index in range(20)}
        body = envelope(*(with_unknown(sample, **{name: 1}) for name in names))
        page = codec.native_page(
            body, Device, offset=0, limit=99, keys=KEYS, method="GET", path="/"
        )
        assert page is not None
        assert [item.extra for item in page.items] == [{name: 1} for name in names]
        reader(codec).read(body)
    assert len(reader(codec).declared) == MAX_LEARNED
    long_name = "x" * (MAX_NAME + 1)
    fresh = Codec()
    body = envelope(with_unknown(sample, **{long_name: 1}))
    fresh.native_page(body, Device, offset=0, limit=9, keys=KEYS, method="GET", path="/")
    reader(fresh).read(body)
    assert reader(fresh).declared == ()
    same_bytes(body, Device)
