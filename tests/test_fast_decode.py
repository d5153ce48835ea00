"""msgspec's decoding path gives byte for byte what the compiled decoder alone gives.

`Codec(native=False)` is the documented switch (tests and benchmarks only)
that turns the msgspec path off; `Codec()` takes it wherever msgspec is
installed. Each case runs through both and compares everything a user can
see: the models' pickles, reprs and wire JSON, `Page` metadata, and for a
refusal the `DecodeError`'s type, message, method and path, and what
`on_item_error` was told. The cases: every collection and entity of the
sandbox's default portfolio (served in-process, parsed by the request path's
own parser), also under the sandbox's hostile faults; every field of every
model given values of every JSON type and edge (numeric ids, integral
floats, huge integers, date-only, naive and odd timestamps, open enum
values, unknown fields, deep nesting); and all of it again with every field
of every model aliased.
"""

from __future__ import annotations

import json
import pickle
import sys
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import httpx2
import pytest

from wiser_async import Address, ApiConfig, Device, Location, Room, Site
from wiser_async._config import PageFormat
from wiser_async._decode import Codec, camel_case
from wiser_async._decode import codec as codec_module
from wiser_async._json import MAX_DEPTH
from wiser_async._transport.parse import parse_json
from wiser_async.errors import DecodeError
from wiser_async.sandbox import Faults, PortfolioSpec, Sandbox

pytest.importorskip("msgspec")

MODELS: tuple[type, ...] = (Address, Location, Site, Room, Device)
KEYS = PageFormat()
Decode = Callable[[Codec, Callable[[DecodeError], None] | None], Any]


def _aliased(cls: type) -> dict[str, str]:
    return {
        field.name: f"{cls.__name__[:3].lower()}_{field.name.upper()}"
        for field in attrs.fields(cls)
        if field.name != "extra"
    }


ALIASES: dict[type, dict[str, str]] = {cls: _aliased(cls) for cls in MODELS}
# Two fields under one wire name: msgspec cannot mirror that, so the fallback decodes.
CLASHING: dict[type, dict[str, str]] = {Device: {"name": "model"}, Address: {"city": "street"}}
PAIRS = {
    "default": (Codec(), Codec(native=False)),
    "aliased": (Codec(ALIASES), Codec(ALIASES, native=False)),
    "clashing": (Codec(CLASHING), Codec(CLASHING, native=False)),
}


def _seen(codec: Codec, value: Any) -> Any:
    """What a user can see of a decoded value, as bytes and text."""
    if isinstance(value, list):
        return [_seen(codec, item) for item in value]
    if attrs.has(type(value)) and type(value) in MODELS:
        # The standard library's writer: it takes integers of any size.
        return (pickle.dumps(value), repr(value), json.dumps(codec.unstructure(value)))
    return (pickle.dumps(value), repr(value))


def outcome(codec: Codec, decode: Decode, *, report: bool) -> Any:
    """Everything seen of one decoding: its result or its error, and the errors reported."""
    reported: list[DecodeError] = []
    try:
        value = decode(codec, reported.append if report else None)
    except DecodeError as exc:
        seen: Any = ("refused", type(exc), str(exc), exc.method, exc.path)
    else:
        items = list(value.items) if hasattr(value, "items") else value
        seen = ("decoded", _seen(codec, items), repr(value))
    return seen, [(type(error), str(error), error.method, error.path) for error in reported]


def same(pair: tuple[Codec, Codec], decode: Decode) -> Any:
    """Both paths alike, with and without `on_item_error`; what the msgspec path gave."""
    fast, fallback = pair
    seen = None
    for report in (False, True):
        seen = outcome(fast, decode, report=report)
        assert seen == outcome(fallback, decode, report=report)
    return seen


def structure(data: Any, cls: type) -> Decode:
    return lambda codec, _: codec.structure(data, cls, method="GET", path="/one")


def page(body: Any, cls: type, limit: int = 500) -> Decode:
    def decode(codec: Codec, report: Callable[[DecodeError], None] | None) -> Any:
        return codec.structure_page(
            body,
            cls,
            offset=0,
            limit=limit,
            keys=KEYS,
            method="GET",
            path="/page",
            on_item_error=report,
        )

    return decode


def raw_page(body: Any, cls: type, limit: int = 500) -> Decode:
    def decode(codec: Codec, report: Callable[[DecodeError], None] | None) -> Any:
        got = codec.raw_page(
            body,
            cls,
            offset=0,
            limit=limit,
            keys=KEYS,
            method="GET",
            path="/page",
            on_item_error=report,
        )
        return [attrs.astuple(item) for item in got.items], got.limit, got.total, got.skipped

    return decode


def test_the_msgspec_path_is_taken_for_every_model_it_can_mirror() -> None:
    for name, (fast, fallback) in PAIRS.items():
        expected = {Site, Room} if name == "clashing" else set(MODELS)
        assert fast.native_models == expected, name
        assert not fallback.native_models


def test_without_msgspec_the_compiled_decoder_alone_decodes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "msgspec", None)  # import msgspec: ImportError
    codec = Codec()
    assert not codec.native_models
    assert page({"data": [SAMPLES[Device]]}, Device)(codec, None).items[0].id == "dev-1"


def test_clean_items_and_unknown_fields_do_not_reach_the_compiled_decoder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(data: Any, cls: type) -> Any:
        raise AssertionError("the compiled decoder was called")

    monkeypatch.setattr(codec_module, "compile_structure", lambda *_: refuse)
    codec = Codec()
    clean, unknown = {"id": "d", "ratedCurrentA": 16}, {"id": "e", "vendor": {"x": [1]}}
    items = page({"data": [clean, unknown]}, Device)(codec, None).items
    assert items[0].rated_current_a == 16.0
    assert type(items[0].rated_current_a) is float
    assert items[1].extra == {"vendor": {"x": [1]}}
    # One by one too, as a page with a bad item is decoded.
    with pytest.raises(DecodeError):
        page({"data": [clean, unknown, {"id": 1}]}, Device)(codec, None)


# -- the sandbox's default portfolio, every collection and entity ------------------------------

FAULTS: dict[str, dict[str, Any]] = {
    "none": {},
    "odd_ids": {"odd_ids": ["*"]},
    "deep_nesting_kept": {"deep_nesting": ["*"], "nesting_depth": MAX_DEPTH - 1},
    "deep_nesting_refused": {"deep_nesting": ["*"], "nesting_depth": MAX_DEPTH + 1},
    "oversized_pages": {"oversized_pages": ["*"], "oversized_items": 3},
    "huge_totals": {"huge_totals": ["*"], "huge_total": 2**70},
    "omit_total": {"omit_total": True},
    "endless_pages": {"endless_pages": ["*"]},
    "same_page_forever": {"same_page_forever": ["*"]},
}


async def _bodies(sandbox: Sandbox) -> list[tuple[str, type, int, Any]]:
    """(what, model, limit, parsed body) of every page (at sizes 5 and 50) and entity."""
    token = sandbox.issue_token("default")["access_token"]
    paths = ApiConfig().paths
    portfolio = sandbox.portfolio_for()
    got: list[tuple[str, type, int, Any]] = []
    async with httpx2.AsyncClient(
        transport=sandbox.transport(),
        base_url=sandbox.urls().api_base_url,
        headers={"Authorization": f"Bearer {token}"},
    ) as http:

        async def get(path: str, cls: type, limit: int | None = None) -> None:
            target = path if limit is None else f"{path}?offset=0&limit={limit}"
            response = await http.get(target)
            assert response.status_code == 200, (target, response.status_code)
            got.append((target, cls, limit or 0, parse_json(response.content, "GET", target)))

        collections: list[tuple[str, type]] = [(paths.locations, Location)]
        entities: list[tuple[str, type]] = []
        for location in portfolio.locations():
            collections.append((paths.location_sites.format(location_id=location["id"]), Site))
            entities.append((paths.location.format(location_id=location["id"]), Location))
            for site in portfolio.sites(location["id"]):
                collections.append((paths.site_rooms.format(site_id=site["id"]), Room))
                collections.append((paths.site_devices.format(site_id=site["id"]), Device))
                entities.append((paths.site.format(site_id=site["id"]), Site))
                for room in portfolio.rooms(site["id"]):
                    collections.append((paths.room_devices.format(room_id=room["id"]), Device))
                for device in portfolio.site_devices(site["id"]):
                    entities.append((paths.device.format(device_id=device["id"]), Device))
        for path, cls in collections:
            for limit in (5, 50):
                await get(path, cls, limit)
        for path, cls in entities:
            await get(path, cls)
    return got


@pytest.mark.parametrize("faults", FAULTS.values(), ids=FAULTS.keys())
async def test_the_default_portfolio_decodes_alike_on_both_paths(faults: dict[str, Any]) -> None:
    sandbox = Sandbox(PortfolioSpec(), faults=Faults(**faults))
    bodies = await _bodies(sandbox)
    assert len(bodies) > 100
    decoded = 0
    for _, cls, limit, body in bodies:
        if limit:
            seen, _ = same(PAIRS["default"], page(body, cls, limit))
            same(PAIRS["default"], raw_page(body, cls, limit))
        else:
            seen, _ = same(PAIRS["default"], structure(body, cls))
        decoded += seen[0] == "decoded"
    assert decoded  # not every answer refused alike


ENVELOPES: list[Any] = [
    None,
    [],
    "data",
    {},
    {"data": None},
    {"data": {}},
    {"data": [{"id": "d"}] * 4},  # more than the limit of 3
    {"data": [], "meta": []},
    {"data": [], "meta": {"total": -1}},
    {"data": [], "meta": {"total": 2.0}},
    {"data": [], "meta": {"total": 7, "limit": 2}},
    {"data": [{"id": "d"}], "meta": {"total": None, "limit": 0}},
]


@pytest.mark.parametrize("body", ENVELOPES, ids=repr)
def test_envelopes_decode_and_fail_alike_on_both_paths(body: Any) -> None:
    for pair in PAIRS.values():
        same(pair, page(body, Device, limit=3))
        same(pair, raw_page(body, Device, limit=3))


# -- every field of every model, odd values -------------------------------------------------


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    42,
    -1,
    2**63,
    2**64,
    2**70,
    10**400,
    1.5,
    2.0,
    -0.0,
    1e308,
    "",
    "x",
    "42",
    [],
    [1],
    {},
    {"a": 1},
    {"street": "s"},
    "2026-01-01",
    "2026-01-01T00:00:00",
    "2026-01-01T00:00:00Z",
    "2026-01-01T00:00:00.1234567Z",
    "2026-01-01T00:00:00.123+05:30",
    "2026-01-01t00:00:00z",
    "2026-01-01 00:00:00+01:00",
    "20260101T000000Z",
    "2026-01-01T24:00:00Z",
    "2026-01-01T23:59:60Z",
    "2026-W01-1",
    "yesterday",
    "heat-pump",
    "online",
    "ONLINE",
    "kitchen",
    "residential",
    "heating",
]
UNKNOWN_FIELDS: list[dict[str, Any]] = [
    {"vendorExtension": {"protocol": "zigbee", "channel": 15}},
    {"zeta": 1, "alpha": [2], "mid": None},
    {"site_id": "snake"},
    {"nested": _nested(MAX_DEPTH - 1)},
    {"nested": _nested(MAX_DEPTH)},
    {"nested": _nested(MAX_DEPTH + 1)},
]
SAMPLES: dict[type, dict[str, Any]] = {
    Address: {"street": "1 Rue", "city": "Lyon", "postalCode": "69001", "country": "FR"},
    Location: {
        "id": "loc-1",
        "name": "Home",
        "address": {"street": "1 Rue", "city": "Lyon", "postalCode": "69001", "country": "FR"},
        "timezone": "Europe/Paris",
        "createdAt": "2021-02-05T01:35:22.451Z",
        "updatedAt": "2021-02-05T01:35:22+01:00",
    },
    Site: {
        "id": "site-1",
        "locationId": "loc-1",
        "name": "A",
        "type": "residential",
        "timezone": "Europe/Paris",
        "createdAt": "2021-02-05T01:35:22Z",
        "updatedAt": "2021-02-05T01:35:22.451-05:00",
    },
    Room: {"id": "room-1", "siteId": "site-1", "name": "Kitchen", "type": "kitchen", "floor": 0},
    Device: {
        "id": "dev-1",
        "siteId": "site-1",
        "roomId": "room-1",
        "name": "Plug",
        "category": "smart-plug",
        "model": "M",
        "commercialReference": "REF",
        "serialNumber": "SN",
        "firmwareVersion": "1.2.3",
        "status": "online",
        "lastSeenAt": "2025-06-01T00:00:00Z",
        "ratedCurrentA": 16,
        "phases": 1,
        "usage": "plugs",
    },
}


def _variants(cls: type) -> Iterator[Any]:
    """The sample of `cls`, then each field odd, missing, and unknown fields added."""
    sample = SAMPLES[cls]
    yield sample
    for key in sample:
        for value in ODD_VALUES:
            yield {**sample, key: value}
        yield {name: value for name, value in sample.items() if name != key}
    for extra in UNKNOWN_FIELDS:
        yield {**sample, **extra}
        yield {**extra, **sample}
    if cls is Location:
        for value in ODD_VALUES:
            yield {**sample, "address": {**SAMPLES[Address], "postalCode": value}}
        for extra in UNKNOWN_FIELDS:
            yield {**sample, "address": {**SAMPLES[Address], **extra}}
    yield from ([], "x", 1, None, [sample])


def _renamed(data: Any, cls: type, aliases: dict[type, dict[str, str]]) -> Any:
    """`data` in the wire names `aliases` give (unknown keys and non-objects as they are)."""
    if type(data) is not dict:
        return data
    wire = {
        camel_case(field.name): aliases.get(cls, {}).get(field.name)
        for field in attrs.fields(cls)
        if field.name != "extra"
    }
    out = {}
    for key, value in data.items():
        if cls is Location and key == "address":
            value = _renamed(value, Address, aliases)
        out[wire.get(key) or key] = value
    return out


@pytest.mark.parametrize("pair", PAIRS.keys())
@pytest.mark.parametrize("cls", MODELS, ids=lambda cls: cls.__name__)
def test_odd_items_decode_and_fail_alike_on_both_paths(cls: type, pair: str) -> None:
    codecs = PAIRS[pair]
    aliases = {"default": {}, "aliased": ALIASES, "clashing": CLASHING}[pair]
    variants = [_renamed(data, cls, aliases) for data in _variants(cls)]
    outcomes = {"decoded": 0, "refused": 0}
    for data in variants:
        seen, _ = same(codecs, structure(data, cls))
        outcomes[seen[0]] += 1
        good = variants[0]
        same(codecs, page({"data": [good, data, good], "meta": {"total": 3}}, cls))
    assert outcomes["decoded"] > 20
    assert outcomes["refused"] > 20
    # A page of every variant: more than MAX_ITEM_ERRORS refused, the rest summed up.
    same(codecs, page({"data": variants}, cls, limit=len(variants)))
    if cls is not Address:  # no collection of addresses
        same(codecs, raw_page({"data": variants}, cls, limit=len(variants)))
