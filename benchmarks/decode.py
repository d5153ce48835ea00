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
from wiser_async.sandbox import PortfolioSpec, SandboxProcess

from ._client import open_client
from ._core import BenchmarkError, Context, Result, alternate, register, result, summarize, target

try:
    import orjson
except ImportError:  # pragma: no cover - the speed extra is installed in the venv
    orjson = None  # type: ignore[assignment]

__all__ = ["DECODE", "decode"]

DECODE = PortfolioSpec(
    locations=100, sites_per_location=100, rooms_per_site=100, devices_per_site=500
)
"""Nothing is generated until read: only the four pages below are."""
MODELS: tuple[type, ...] = (Location, Address, Site, Room, Device)
LABELS = ("library", "fast", "cattrs", "floor")
# Items decoded per measurement (the model's items over and over).
ITEMS = 20_000
QUICK_ITEMS = 500
PARSES = 20
QUICK_PARSES = 2


def _fetch(process: SandboxProcess, token: dict[str, Any]) -> tuple[dict[type, list[Any]], bytes]:
    """Each model's items as the sandbox serves them, and one 500-device page's body."""
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
    devices = json.loads(body)[data_key]
    addresses = [location["address"] for location in locations if location.get("address")]
    items = {Location: locations, Address: addresses, Site: sites, Room: rooms, Device: devices}
    for cls, values in items.items():
        if not values:
            raise BenchmarkError(f"the sandbox served no {cls.__name__}")
    return items, body


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


@register(
    "decode",
    repeat=5,
    description="CPU per item of the library's decoder (from_wire) per model vs a plain cattrs"
    " converter and attrs construction; json vs orjson of a 500-device page",
)
def decode(ctx: Context) -> Result:
    """The cost of typed decoding, model by model, against what decoding must cost at least."""
    process = ctx.sandbox(DECODE, latency=0.0)
    token = process.issue_token("default")
    items, body = _fetch(process, token)
    count = QUICK_ITEMS if ctx.quick else ITEMS
    samples = anyio.run(
        partial(_measure, process, token, items, ctx.repeat, count), backend="asyncio"
    )
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
    lines = []
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
            f"a {len(items[Device])}-device page of {len(body) / 1000:.0f} kB:"
            f" json.loads {json_ms:.2f} ms, {orjson_note} (CPU per parse, {how})",
        ],
    )
