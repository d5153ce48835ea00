"""Decoding API JSON into typed models (`wiser_async._decode`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest

from wiser_async import (
    Address,
    ApiConfig,
    Device,
    DeviceCategory,
    DeviceStatus,
    Location,
    PageFormat,
    Room,
    RoomType,
    Site,
    SiteType,
)
from wiser_async._decode import Codec, camel_case
from wiser_async.errors import DecodeError

T = TypeVar("T")

KEYS = PageFormat()
DEVICE: dict[str, Any] = {
    "id": "dev-1",
    "siteId": "site-1",
    "roomId": None,
    "name": "Main meter",
    "category": "meter",
    "model": "PowerTag",
    "commercialReference": "A9MEM1520",
    "serialNumber": "SN-1",
    "firmwareVersion": "1.2.3",
    "status": "online",
    "lastSeenAt": "2026-11-26T08:00:00Z",
    "ratedCurrentA": 63,
    "phases": 3,
    "usage": "main",
}


def decode(data: Any, cls: type[Any], codec: Codec | None = None) -> Any:
    return (codec or Codec()).structure(data, cls, method="GET", path="/p")


def test_camel_case_is_the_default_wire_spelling() -> None:
    assert camel_case("rated_current_a") == "ratedCurrentA"
    assert camel_case("id") == "id"


def test_device_decodes_snake_case_with_enums_and_aware_datetimes() -> None:
    device = decode(DEVICE, Device)
    assert device.site_id == "site-1"
    assert device.room_id is None
    assert device.category is DeviceCategory.METER
    assert device.status is DeviceStatus.ONLINE
    assert device.last_seen_at == datetime(2026, 11, 26, 8, tzinfo=UTC)
    assert device.rated_current_a == 63.0
    assert isinstance(device.rated_current_a, float)
    assert device.extra == {}


def test_unknown_fields_are_kept_and_written_back() -> None:
    codec = Codec()
    data = {**DEVICE, "vendorExtension": {"protocol": "zigbee"}, "firmwareChannel": "beta"}
    device = decode(data, Device, codec)
    assert device.extra == {"vendorExtension": {"protocol": "zigbee"}, "firmwareChannel": "beta"}
    assert codec.unstructure(device) == data


def test_unknown_fields_keep_the_order_they_came_in_on_both_decoding_paths() -> None:
    codec = Codec()
    unknown = {f"vendorField{n}": n for n in (5, 1, 4, 2, 6, 3, 0)}
    # Unknown fields before, among and after the known ones.
    data = {"id": "dev-1", **dict(list(unknown.items())[:3]), **DEVICE, **unknown}
    fast = decode(data, Device, codec)
    assert list(fast.extra) == list(unknown)
    assert list(codec.explained(data, Device).extra) == list(unknown)


def test_unknown_enum_values_stay_strings() -> None:
    device = decode({**DEVICE, "category": "heat-pump", "usage": "pool"}, Device)
    assert device.category == "heat-pump"
    assert not isinstance(device.category, DeviceCategory)
    assert device.usage == "pool"
    room = decode({"id": "r", "type": "garage"}, Room)
    assert room.type == "garage"
    assert decode({"id": "r", "type": "kitchen"}, Room).type is RoomType.KITCHEN
    assert decode({"id": "s", "type": "agricultural"}, Site).type == "agricultural"
    assert decode({"id": "s", "type": "industrial"}, Site).type is SiteType.INDUSTRIAL


def test_timestamps_keep_their_offset_and_naive_ones_are_utc() -> None:
    site = decode(
        {"id": "s", "createdAt": "2026-01-01T10:00:00+01:00", "updatedAt": "2026-01-01T10:00:00"},
        Site,
    )
    assert site.created_at.utcoffset() == timedelta(hours=1)
    assert site.created_at == datetime(2026, 1, 1, 9, tzinfo=UTC)
    assert site.updated_at.tzinfo is UTC


def test_location_with_nested_address() -> None:
    location = decode(
        {
            "id": "l",
            "address": {"street": "1 Rue", "postalCode": "75001", "country": "FR", "floor": 2},
            "timezone": "Europe/Paris",
        },
        Location,
    )
    assert location.address.postal_code == "75001"
    assert location.address.extra == {"floor": 2}


def test_only_id_is_required() -> None:
    assert decode({"id": 42}, Device).id == "42"  # numeric ids are unambiguous


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"name": "no id"}, "$.id"),
        ({**DEVICE, "phases": "three"}, "$.phases"),
        ({**DEVICE, "lastSeenAt": "yesterday"}, "$.lastSeenAt"),
        ({**DEVICE, "ratedCurrentA": True}, "$.ratedCurrentA"),
        ({**DEVICE, "category": 7}, "$.category"),
        ({**DEVICE, "name": {"a": 1}}, "$.name"),
        (["not", "an", "object"], "$"),
    ],
)
def test_wrong_shapes_raise_decode_error_naming_the_json_path(data: Any, where: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(data, Device)
    assert where in str(caught.value)
    assert str(caught.value).startswith("GET /p: ")


def test_page_decodes_items_and_total() -> None:
    page = Codec().structure_page(
        {"data": [DEVICE], "meta": {"offset": 0, "limit": 100, "total": 1}},
        Device,
        offset=0,
        limit=100,
        keys=KEYS,
        method="GET",
        path="/p",
    )
    assert page.total == 1
    assert page.is_last
    assert page.items[0].id == "dev-1"


def test_page_without_total_is_last_when_short() -> None:
    codec = Codec()
    full = codec.structure_page(
        {"data": [DEVICE] * 2}, Device, offset=0, limit=2, keys=KEYS, method="GET", path="/p"
    )
    short = codec.structure_page(
        {"data": [DEVICE]}, Device, offset=2, limit=2, keys=KEYS, method="GET", path="/p"
    )
    assert full.total is None
    assert not full.is_last
    assert short.is_last


def test_bad_item_in_a_page_is_named_by_index() -> None:
    with pytest.raises(DecodeError, match=r"\$\.data\[1\]\.phases"):
        Codec().structure_page(
            {"data": [DEVICE, {**DEVICE, "phases": []}]},
            Device,
            offset=0,
            limit=10,
            keys=KEYS,
            method="GET",
            path="/p",
        )


@pytest.mark.parametrize(
    "body", [[], {"items": []}, {"data": {}}, {"data": [], "meta": {"total": "many"}}]
)
def test_malformed_page_envelopes_raise_decode_error(body: Any) -> None:
    with pytest.raises(DecodeError):
        Codec().structure_page(body, Device, offset=0, limit=10, keys=KEYS, method="GET", path="/p")


def test_aliases_rename_fields_and_envelope_keys_are_configurable() -> None:
    codec = Codec({Device: {"rated_current_a": "ratedCurrent"}})
    keys = PageFormat(data_key="items", meta_key="paging", total_key="count")
    page = codec.structure_page(
        {"items": [{"id": "d", "ratedCurrent": 10}], "paging": {"count": 1}},
        Device,
        offset=0,
        limit=10,
        keys=keys,
        method="GET",
        path="/p",
    )
    assert page.items[0].rated_current_a == 10.0
    assert page.total == 1
    assert codec.unstructure(page.items[0])["ratedCurrent"] == 10.0


def test_an_alias_of_one_model_does_not_rename_another_models_field_in_errors() -> None:
    codec = Codec({Device: {"name": "label"}, Address: {"postal_code": "zip"}})
    with pytest.raises(DecodeError) as caught:
        codec.structure({"id": "l", "name": [5]}, Location, method="GET", path="/locations")
    assert "$.name" in str(caught.value)
    assert "label" not in str(caught.value)
    with pytest.raises(DecodeError) as caught:
        codec.structure({"id": "d", "label": [5]}, Device, method="GET", path="/devices")
    assert "$.label" in str(caught.value)
    # A nested model's field is named by that model's alias.
    with pytest.raises(DecodeError) as caught:
        codec.structure(
            {"id": "l", "address": {"zip": [5]}}, Location, method="GET", path="/locations"
        )
    assert "$.address.zip" in str(caught.value)


def test_the_same_aliases_share_one_codec_and_other_aliases_get_their_own() -> None:
    aliases: dict[type, dict[str, str]] = {Device: {"name": "label"}}
    assert Codec.shared(aliases) is Codec.shared({Device: {"name": "label"}})
    assert Codec.shared(aliases) is not Codec.shared({Device: {"name": "title"}})
    assert Codec.shared() is Codec.shared({})


def test_generated_decoding_code_is_shown_in_tracebacks() -> None:
    import traceback

    try:
        Codec().fast(Device)({"id": "d", "name": object()}, Device)
    except TypeError as exc:
        frames = traceback.extract_tb(exc.__traceback__)
    generated = [frame for frame in frames if frame.filename.startswith("<wiser_async decode")]
    assert generated, frames
    assert generated[0].line  # the source line is found through linecache


def test_a_fast_decoder_refusing_what_cattrs_accepts_is_reported_as_a_bug() -> None:
    def refuse(data: Any, cls: type) -> Any:
        raise KeyError("id")

    class Broken(Codec):
        def fast(self, cls: type[T]) -> Callable[[Any, type], T]:
            return refuse

    codec = Broken()
    with pytest.raises(DecodeError, match="a bug in wiser_async") as caught:
        codec.structure({"id": "d"}, Device, method="GET", path="/devices")
    assert "KeyError" in str(caught.value)


def test_aliases_for_a_class_that_is_not_a_model_are_refused() -> None:
    with pytest.raises(ValueError, match="not models"):
        Codec({dict: {"a": "b"}})


def test_api_config_rejects_a_page_size_above_the_maximum() -> None:
    with pytest.raises(ValueError, match="page_size"):
        ApiConfig(pages=PageFormat(page_size=501))


def test_wire_round_trip_of_offset_timestamps() -> None:
    codec = Codec()
    tz = timezone(timedelta(hours=2))
    site = Site(id="s", created_at=datetime(2026, 1, 1, tzinfo=tz))
    assert codec.unstructure(site)["createdAt"] == "2026-01-01T00:00:00+02:00"


def agree(codec: Codec, cls: type[Any], data: Any) -> None:
    """The fast path and the cattrs converter accept and refuse the same data alike."""
    try:
        fast = codec.fast(cls)(data, cls)
    except Exception:  # noqa: BLE001 - compared below
        fast = None
    try:
        slow = codec.explained(data, cls)
    except Exception:  # noqa: BLE001 - compared below
        slow = None
    assert fast == slow, data


def test_fast_decoding_agrees_with_the_cattrs_converter() -> None:
    from wiser_async.sandbox import PortfolioSpec, Sandbox

    codec = Codec()
    portfolio = Sandbox(PortfolioSpec(locations=2, devices_per_site=20)).portfolio_for()
    for location in portfolio.locations():
        agree(codec, Location, location)
        for site in portfolio.sites(location["id"]):
            agree(codec, Site, site)
            for room in portfolio.rooms(site["id"]):
                agree(codec, Room, room)
            for device in portfolio.site_devices(site["id"]):
                agree(codec, Device, device)
    odd_values: list[Any] = [None, True, 0, 1.5, 2.0, "", "x", [], {}, "2026-01-01T00:00:00"]
    for field in DEVICE:
        for value in odd_values:
            agree(codec, Device, {**DEVICE, field: value})
        agree(codec, Device, {key: DEVICE[key] for key in DEVICE if key != field})
    for value in odd_values:
        agree(codec, Location, {"id": "l", "address": value})
        agree(codec, Location, {"id": "l", "address": {"postalCode": value, "x": 1}})


MODEL_CLASSES = [Address, Location, Site, Room, Device]


@pytest.mark.parametrize("target", MODEL_CLASSES, ids=lambda cls: cls.__name__)
def test_no_models_alias_appears_in_another_models_errors(target: type[Any]) -> None:
    import attrs

    def aliased(cls: type[Any]) -> dict[str, str]:
        return {
            field.name: f"{cls.__name__.lower()}Alias{index}"
            for index, field in enumerate(attrs.fields(cls))
            if field.name != "extra"
        }

    aliases: dict[type, dict[str, str]] = {cls: aliased(cls) for cls in MODEL_CLASSES}
    codec = Codec(aliases)
    # Every field of the target, under its alias, holds a value no field accepts.
    bad: dict[str, Any] = {wire: [[]] for wire in aliases[target].values()}
    with pytest.raises(DecodeError) as caught:
        codec.structure(bad, target, method="GET", path="/x")
    message = str(caught.value)
    # A Location's address is an Address: its aliases are the Location's to show.
    nested = {Location: Address}.get(target)
    others = [cls for cls in MODEL_CLASSES if cls not in (target, nested)]
    for other in others:
        for wire in aliases[other].values():
            assert f".{wire}" not in message, (other.__name__, message)
    for wire in aliases[target].values():
        assert f"$.{wire}" in message, (wire, message)
