"""`decode`: time per item of the library's typed decoding, model by model, and JSON parsing.

Items are taken from pages the sandbox serves (100 locations, 100 sites of a
location, 100 rooms of a site, 500 devices of a site; each location's
address on its own), parsed once. Each model is decoded four ways,
interleaved ABCD DCBA:

- ``library``: `AsyncWiserClient.from_wire` (the public decoder of one
  item: the library's compiled fast path, and on failure its explained one);
- ``fast``: the compiled function alone (``Codec.shared().fast(cls)``, an
  internal name: there is no public accessor), to show what the public
  wrapper adds;
- ``cattrs``: a plain `cattrs.Converter` told the wire names, with an
  ISO 8601 hook for timestamps and one for the open enums (a value outside
  the enum kept as a string), unknown fields dropped: less than the library
  does (it keeps them in ``extra`` and checks every field's type);
- ``floor``: the attrs class built from already-typed keyword arguments:
  what any decoder ends with, with nothing to convert.

The page path, per model, two ways interleaved: ``native`` (`Codec()`'s
``structure_page``: msgspec first, where installed, and the compiled
function for what it cannot take exactly) and ``fallback`` (`Codec(native=
False)`: the compiled function alone, which is what ``structure_page`` ran
before msgspec); each over the model's items as one page, CPU per item.

A 100-device page body as the sandbox sent it, five ways interleaved:
``bytes`` (``native_page``: msgspec reads the body's bytes, as the request
path does where msgspec is installed), ``native`` and ``fallback``
(`orjson.loads` then ``structure_page``, as the request path does for a body
msgspec cannot read), ``parse`` (`orjson.loads` alone: the floor of any decoder
of parsed JSON) and ``msgspec_structs`` (the body straight into msgspec
Structs, no model, no check of unknown fields: the floor of decoding from
bytes).

`json.loads` and `orjson.loads` of one 500-device page body, as the sandbox
sent it, are timed the same way. CPU time of this process throughout
(`time.process_time`).
"""

from __future__ import annotations

import enum
import gc
import json
import statistics
import time
import typing
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any

import anyio
import attrs
import cattrs
import httpx2
from cattrs.gen import make_dict_structure_fn, override

from wiser_async import Address, ApiConfig, AsyncWiserClient, Device, Location, Room, Site
from wiser_async._decode import Codec
from wiser_async._json import loads
from wiser_async.sandbox import PortfolioSpec, SandboxProcess

from ._client import open_client
from ._core import BenchmarkError, Context, Result, alternate, register, result, summarize, target

try:
    import orjson
except ImportError:  # pragma: no cover - the speed extra is installed in the venv
    orjson = None  # type: ignore[assignment]
try:
    import msgspec
except ImportError:  # pragma: no cover - the speed extra is installed in the venv
    msgspec = None  # type: ignore[assignment]

__all__ = ["DECODE", "decode"]

DECODE = PortfolioSpec(
    locations=100, sites_per_location=100, rooms_per_site=100, devices_per_site=500
)
"""Nothing is generated until read: only the four pages below are."""
MODELS: tuple[type, ...] = (Location, Address, Site, Room, Device)
LABELS = ("library", "fast", "cattrs", "floor")
PAGE_PATHS = ("native", "fallback")
PAGE_LABELS = ("bytes", "native", "fallback", "parse", "msgspec_structs")
PAGE_DEVICES = 100
PAGE_DECODES = 200
QUICK_PAGE_DECODES = 5
# Items decoded per measurement (the model's items over and over).
ITEMS = 20_000
QUICK_ITEMS = 500
PARSES = 20
QUICK_PARSES = 2


def _fetch(
    process: SandboxProcess, token: dict[str, Any]
) -> tuple[dict[type, list[Any]], bytes, bytes]:
    """Each model's items as the sandbox serves them, a 500-device and a 100-device page's body."""
    paths = ApiConfig().paths
    data_key = ApiConfig().pages.data_key
    with httpx2.Client(
        base_url=process.urls.api_base_url,
        headers={"Authorization": f"Bearer {token['access_token']}"},
        timeout=60.0,
    ) as http:

        def get(path: str, limit: int) -> httpx2.Response:
            response = http.get(path, params={"offset": 0, "limit": limit})
            if response.status_code != 200:
                raise BenchmarkError(f"{response.status_code} from {path}")
            return response

        locations = get(paths.locations, 100).json()[data_key]
        location_id = locations[0]["id"]
        sites = get(paths.location_sites.format(location_id=location_id), 100).json()[data_key]
        site_id = sites[0]["id"]
        rooms = get(paths.site_rooms.format(site_id=site_id), 100).json()[data_key]
        body = get(paths.site_devices.format(site_id=site_id), 500).content
        small = get(paths.site_devices.format(site_id=site_id), PAGE_DEVICES).content
    devices = json.loads(body)[data_key]
    addresses = [location["address"] for location in locations if location.get("address")]
    items = {Location: locations, Address: addresses, Site: sites, Room: rooms, Device: devices}
    for cls, values in items.items():
        if not values:
            raise BenchmarkError(f"the sandbox served no {cls.__name__}")
    return items, body, small


def _wire_name(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _plain_converter() -> cattrs.Converter:
    """A cattrs converter as one would write it for these models, without the library."""
    converter = cattrs.Converter()
    converter.register_structure_hook(datetime, lambda value, _: datetime.fromisoformat(value))

    def open_enum(enum_cls: type[enum.Enum]) -> Callable[[Any, Any], Any]:
        def structure(value: Any, _: Any) -> Any:
            if value is None:
                return None
            try:
                return enum_cls(value)
            except ValueError:
                return value

        return structure

    for cls in MODELS:
        attrs.resolve_types(cls)
        for field in attrs.fields(cls):
            for member in typing.get_args(field.type):
                if isinstance(member, type) and issubclass(member, enum.Enum):
                    converter.register_structure_hook(field.type, open_enum(member))
    for cls in MODELS:
        names: dict[str, Any] = {
            field.name: override(omit=True)
            if field.name == "extra"
            else override(rename=_wire_name(field.name))
            for field in attrs.fields(cls)
        }
        converter.register_structure_hook(cls, make_dict_structure_fn(cls, converter, **names))
    return converter


def _decoders(
    client: AsyncWiserClient,
    codec: Codec,
    converter: cattrs.Converter,
    cls: type[Any],
    values: list[Any],
    keywords: list[dict[str, Any]],
) -> dict[str, tuple[Callable[[Any], Any], Sequence[Any]]]:
    """Each label's decoder of one item of ``cls``, and what it decodes.

    Each is one Python function around its call, so every label pays the same call.
    """
    fast = codec.fast(cls)

    def library(item: Any) -> Any:
        return client.from_wire(item, cls)

    def compiled(item: Any) -> Any:
        return fast(item, cls)

    def plain(item: Any) -> Any:
        return converter.structure(item, cls)

    def floor(kwargs: dict[str, Any]) -> Any:
        return cls(**kwargs)

    return {
        "library": (library, values),
        "fast": (compiled, values),
        "cattrs": (plain, values),
        "floor": (floor, keywords),
    }


def _per_item_us(decode: Callable[[Any], Any], items: Sequence[Any], count: int) -> float:
    """CPU microseconds per item of ``decode`` over ``count`` items (``items`` over and over)."""
    rounds = max(1, count // len(items))
    gc.collect()
    started = time.process_time()
    for _ in range(rounds):
        for item in items:
            decode(item)
    return 1e6 * (time.process_time() - started) / (rounds * len(items))


async def _measure(
    process: SandboxProcess,
    token: dict[str, Any],
    items: dict[type, list[Any]],
    repeat: int,
    count: int,
) -> dict[type, dict[str, list[float]]]:
    converter = _plain_converter()
    # Internal: the compiled function the public decoder runs first (no public accessor).
    codec = Codec.shared()
    samples: dict[type, dict[str, list[float]]] = {cls: {k: [] for k in LABELS} for cls in MODELS}
    async with open_client(process.urls.api_base_url, process.urls.token_url, token) as client:
        for cls in MODELS:
            values = items[cls]
            typed: list[Any] = [client.from_wire(item, cls) for item in values]
            # Same fields from both decoders: else the comparison means nothing.
            plain: list[Any] = [converter.structure(item, cls) for item in values]
            for mine, theirs in zip(typed, plain, strict=True):
                if attrs.evolve(mine, extra={}) != theirs:
                    raise BenchmarkError(f"the plain converter decodes {cls.__name__} otherwise")
            keywords = [{f.name: getattr(t, f.name) for f in attrs.fields(cls)} for t in typed]
            decoders = _decoders(client, codec, converter, cls, values, keywords)
            for _, label in alternate(repeat, *LABELS):
                decoder, inputs = decoders[label]
                samples[cls][label].append(_per_item_us(decoder, inputs, count))
    return samples


def _parse_ms(parse: Callable[[bytes], Any], body: bytes, count: int) -> float:
    gc.collect()
    started = time.process_time()
    for _ in range(count):
        parse(body)
    return 1000 * (time.process_time() - started) / count


KEYS = ApiConfig().pages


def _structure_page(codec: Codec, body: Any, cls: type, limit: int) -> Any:
    return codec.structure_page(
        body, cls, offset=0, limit=limit, keys=KEYS, method="GET", path="/bench"
    )


def _page_paths(
    items: dict[type, list[Any]], repeat: int, count: int
) -> dict[type, dict[str, list[float]]]:
    """CPU us per item of each model's items decoded as one page, msgspec first vs fallback."""
    codecs = {"native": Codec.shared(), "fallback": Codec(native=False)}
    samples: dict[type, dict[str, list[float]]] = {}
    for cls in MODELS:
        values = items[cls]
        body = {KEYS.data_key: values}
        decoded = {
            label: _structure_page(codecs[label], body, cls, len(values)) for label in codecs
        }
        if repr(decoded["native"]) != repr(decoded["fallback"]):
            raise BenchmarkError(f"the two paths decode {cls.__name__} otherwise")
        samples[cls] = {label: [] for label in PAGE_PATHS}
        rounds = max(1, count // len(values))
        for _, label in alternate(repeat, *PAGE_PATHS):
            codec = codecs[label]
            gc.collect()
            started = time.process_time()
            for _ in range(rounds):
                _structure_page(codec, body, cls, len(values))
            elapsed = time.process_time() - started
            samples[cls][label].append(1e6 * elapsed / (rounds * len(values)))
    return samples


def _struct_decoder() -> Callable[[bytes], Any] | None:
    """The body into msgspec Structs mirroring a device, unknown fields ignored; None without it."""
    if msgspec is None:
        return None  # type: ignore[unreachable]
    kinds: dict[str, Any] = {"rated_current_a": float | None, "phases": int | None}
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = [("id", str)]
    fields += [
        (field.name, kinds.get(field.name, str | None), None)
        for field in attrs.fields(Device)
        if field.name not in ("id", "extra")
    ]
    device = msgspec.defstruct("DeviceStruct", fields, rename="camel", kw_only=True)
    envelope = msgspec.defstruct(
        "Envelope",
        [(KEYS.data_key, list[device]), (KEYS.meta_key, dict[str, Any], {})],  # type: ignore[valid-type]
    )
    decoder: Callable[[bytes], Any] = msgspec.json.Decoder(envelope).decode
    return decoder


def _device_page(body: bytes, repeat: int, decodes: int) -> dict[str, list[float]]:
    """CPU us per decode of one 100-device page body, four ways (see the module's docstring)."""
    native, fallback = Codec.shared(), Codec(native=False)
    ways: dict[str, Callable[[], Any]] = {
        "bytes": lambda: native.native_page(
            body, Device, offset=0, limit=PAGE_DEVICES, keys=KEYS, method="GET", path="/"
        ),
        "native": lambda: _structure_page(native, loads(body), Device, PAGE_DEVICES),
        "fallback": lambda: _structure_page(fallback, loads(body), Device, PAGE_DEVICES),
        "parse": lambda: loads(body),
    }
    structs = _struct_decoder()
    if structs is not None:
        ways["msgspec_structs"] = lambda: structs(body)
    if not repr(ways["bytes"]()) == repr(ways["native"]()) == repr(ways["fallback"]()):
        raise BenchmarkError("the two paths decode the 100-device page otherwise")
    samples: dict[str, list[float]] = {label: [] for label in ways}
    for _, label in alternate(repeat, *ways):
        run = ways[label]
        gc.collect()
        started = time.process_time()
        for _ in range(decodes):
            run()
        samples[label].append(1e6 * (time.process_time() - started) / decodes)
    return samples


@register(
    "decode",
    repeat=5,
    description="CPU per item of the library's decoder (from_wire) per model vs a plain cattrs"
    " converter and attrs construction; structure_page with msgspec first vs the compiled"
    " decoder alone, per model and on a 100-device page; json vs orjson of a 500-device page",
)
def decode(ctx: Context) -> Result:
    """The cost of typed decoding, model by model, against what decoding must cost at least."""
    process = ctx.sandbox(DECODE, latency=0.0)
    token = process.issue_token("default")
    items, body, small = _fetch(process, token)
    count = QUICK_ITEMS if ctx.quick else ITEMS
    samples = anyio.run(
        partial(_measure, process, token, items, ctx.repeat, count), backend="asyncio"
    )
    paths = _page_paths(items, ctx.repeat, count)
    page = _device_page(small, ctx.repeat, QUICK_PAGE_DECODES if ctx.quick else PAGE_DECODES)
    parses = QUICK_PARSES if ctx.quick else PARSES
    parsers: dict[str, Callable[[bytes], Any]] = {"json": json.loads}
    if orjson is not None:
        parsers["orjson"] = orjson.loads
    parsed: dict[str, list[float]] = {name: [] for name in parsers}
    for _, name in alternate(ctx.repeat, *parsers):
        parsed[name].append(_parse_ms(parsers[name], body, parses))
    how = f"medians of {ctx.repeat}" if ctx.repeat > 1 else "1 run each"
    figures: dict[str, Any] = {
        "items": {cls.__name__: len(items[cls]) for cls in MODELS},
        "items_per_measurement": count,
    }
    targets = []
    lines: list[str] = []
    page_lines: list[str] = []
    for cls in MODELS:
        name = cls.__name__
        median = {label: statistics.median(values) for label, values in samples[cls].items()}
        figures[name] = {
            "us_per_item": {label: summarize(values) for label, values in samples[cls].items()},
            "library_over_cattrs": median["library"] / median["cattrs"],
            "library_over_floor": median["library"] / median["floor"],
            "fast_over_cattrs": median["fast"] / median["cattrs"],
            "library_over_fast": median["library"] / median["fast"],
        }
        targets.append(
            target(
                f"{name}: from_wire vs a plain cattrs converter ({how})",
                median["library"],
                median["cattrs"],
                limit=1.0,
                unit="us",
            )
        )
        lines.append(
            f"{name} {median['library']:.2f} (fast {median['fast']:.2f},"
            f" cattrs {median['cattrs']:.2f}, floor {median['floor']:.2f})"
        )
        on_page = {label: statistics.median(values) for label, values in paths[cls].items()}
        figures[name]["page_path_us_per_item"] = {
            label: summarize(values) for label, values in paths[cls].items()
        }
        figures[name]["native_over_fallback"] = on_page["native"] / on_page["fallback"]
        page_lines.append(
            f"{name} {on_page['native']:.2f} vs {on_page['fallback']:.2f}"
            f" ({on_page['native'] / on_page['fallback']:.2f}x)"
        )
    json_ms = statistics.median(parsed["json"])
    figures["page_parse"] = {
        "body_bytes": len(body),
        "devices": len(items[Device]),
        "json_ms": summarize(parsed["json"]),
        "orjson_ms": summarize(parsed["orjson"]) if "orjson" in parsed else "not installed",
        "orjson_over_json": statistics.median(parsed["orjson"]) / json_ms
        if "orjson" in parsed
        else None,
    }
    orjson_note = (
        f"orjson {statistics.median(parsed['orjson']):.2f} ms"
        if "orjson" in parsed
        else "orjson not installed"
    )
    page_us = {label: statistics.median(values) for label, values in page.items()}
    figures["device_page"] = {
        "devices": PAGE_DEVICES,
        "body_bytes": len(small),
        "us_per_page": {label: summarize(values) for label, values in page.items()},
        "native_over_fallback": page_us["native"] / page_us["fallback"],
        "bytes_over_fallback": page_us["bytes"] / page_us["fallback"],
        "parse_over_fallback": page_us["parse"] / page_us["fallback"],
    }
    if "msgspec_structs" in page_us:
        figures["device_page"]["msgspec_structs_over_fallback"] = (
            page_us["msgspec_structs"] / page_us["fallback"]
        )
    page_note = ", ".join(f"{label} {value:.0f}" for label, value in page_us.items())
    return result(
        "decode",
        figures=figures,
        targets=targets,
        notes=[
            "CPU us per item, library (AsyncWiserClient.from_wire) and the others: "
            + "; ".join(lines)
            + f"; runs interleaved {' '.join(LABELS)} and back",
            "the plain cattrs converter keeps no unknown field and converts rather than"
            " checks (str(1) is '1'); floor: the attrs class from already-typed fields",
            "structure_page CPU us per item, msgspec first vs the compiled decoder alone: "
            + "; ".join(page_lines),
            f"a {PAGE_DEVICES}-device page of {len(small) / 1000:.0f} kB, CPU us per page: "
            f"{page_note} (bytes: native_page, msgspec from the body's bytes; native/fallback:"
            " orjson.loads + structure_page; parse: orjson.loads"
            " alone; msgspec_structs: the body into Structs, no models)",
            f"a {len(items[Device])}-device page of {len(body) / 1000:.0f} kB:"
            f" json.loads {json_ms:.2f} ms, {orjson_note} (CPU per parse, {how})",
        ],
    )
