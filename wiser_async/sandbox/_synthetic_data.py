"""The tables and hash the synthetic portfolio draws its values from.

Names, places, device models and fixed epochs: every value of an entity is one
of these, picked by bits of :func:`mix`, so the same ids always give the same data.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = [
    "CATEGORIES",
    "CITIES",
    "CREATED_SPAN",
    "DEVICE_WORDS",
    "EPOCH_CREATED",
    "EPOCH_SEEN",
    "LOCATION_NOUNS",
    "LOCATION_WORDS",
    "MASK",
    "OFFSETS",
    "RATED_CURRENTS",
    "ROOM_CATEGORIES",
    "ROOM_NAMES",
    "ROOM_TYPES",
    "SITE_NOUNS",
    "SITE_TYPES",
    "STATUSES",
    "STREETS",
    "USAGES",
    "mix",
    "timestamp",
]

MASK = (1 << 64) - 1

# (city, country, IANA timezone, postal code format taking an int)
CITIES: tuple[tuple[str, str, str, Callable[[int], str]], ...] = (
    ("Grenoble", "FR", "Europe/Paris", lambda n: f"38{n % 1000:03d}"),
    ("Lyon", "FR", "Europe/Paris", lambda n: f"69{n % 1000:03d}"),
    ("Rueil-Malmaison", "FR", "Europe/Paris", lambda n: f"92{n % 1000:03d}"),
    ("Berlin", "DE", "Europe/Berlin", lambda n: f"10{n % 1000:03d}"),
    ("München", "DE", "Europe/Berlin", lambda n: f"80{n % 1000:03d}"),
    ("Madrid", "ES", "Europe/Madrid", lambda n: f"28{n % 1000:03d}"),
    ("Málaga", "ES", "Europe/Madrid", lambda n: f"29{n % 1000:03d}"),
    ("London", "GB", "Europe/London", lambda n: f"SE{n % 20 + 1} {n % 9 + 1}AB"),
    ("Amsterdam", "NL", "Europe/Amsterdam", lambda n: f"10{n % 100:02d} AB"),
    ("Oslo", "NO", "Europe/Oslo", lambda n: f"0{n % 1000:03d}"),
    ("Boston", "US", "America/New_York", lambda n: f"02{n % 1000:03d}"),
    ("Austin", "US", "America/Chicago", lambda n: f"78{n % 1000:03d}"),
    ("Sydney", "AU", "Australia/Sydney", lambda n: f"2{n % 1000:03d}"),
    ("Tokyo", "JP", "Asia/Tokyo", lambda n: f"1{n % 100:02d}-{n % 10000:04d}"),
    ("Bengaluru", "IN", "Asia/Kolkata", lambda n: f"560{n % 1000:03d}"),
)
STREETS = (
    "Rue Joseph Monier",
    "Avenue des Alpes",
    "Hauptstraße",
    "Calle Mayor",
    "High Street",
    "Keizersgracht",
    "Main Street",
    "Karl Johans gate",
    "Sakura-dori",
    "Park Lane",
)
LOCATION_WORDS = ("North", "South", "East", "West", "Riverside", "Hilltop", "Harbour", "Central")
LOCATION_NOUNS = ("Campus", "Estate", "Portfolio", "Offices", "Residences", "Works", "Park")
SITE_NOUNS = ("Building", "House", "Warehouse", "Plant", "Store", "Block", "Annex")
SITE_TYPES = ("residential", "commercial", "industrial")
ROOM_TYPES = ("kitchen", "living", "bedroom", "bathroom", "office", "technical")
ROOM_NAMES = {
    "kitchen": "Kitchen",
    "living": "Living room",
    "bedroom": "Bedroom",
    "bathroom": "Bathroom",
    "office": "Office",
    "technical": "Technical room",
    "garage": "Garage",
}
# category -> (name noun, ((model, commercial reference, phases), ...))
CATEGORIES: dict[str, tuple[str, tuple[tuple[str, str, int], ...]]] = {
    "gateway": ("gateway", (("Wiser Energy Gateway", "EER31800", 1),)),
    "meter": (
        "meter",
        (("PowerTag E M63 3P+N", "A9MEM1540", 3), ("PowerTag E M63 1P+N", "A9MEM1520", 1)),
    ),
    "energy-sensor": (
        "sensor",
        (
            ("PowerTag M63 1P+N", "A9MEM1520", 1),
            ("PowerTag M63 3P+N", "A9MEM1540", 3),
            ("PowerTag F160 3P+N", "A9MEM1570", 3),
        ),
    ),
    "smart-plug": ("plug", (("Wiser Smart Plug", "CCT711119", 1),)),
    "thermostat": ("thermostat", (("Wiser Room Thermostat", "CCTFR6400", 1),)),
    "heat-pump": ("heat pump", (("Aquarea HP-9", "HP9-ZB-EXT", 3),)),
}
ROOM_CATEGORIES = ("energy-sensor", "energy-sensor", "smart-plug", "thermostat", "meter")
DEVICE_WORDS = ("Boiler", "Oven", "Heater", "Charger", "Lights", "Sockets", "Pump", "Fridge")
USAGES = ("heating", "cooling", "ev-charging", "water-heating", "lighting", "plugs")
STATUSES = ("online", "online", "online", "online", "offline", "unknown")
RATED_CURRENTS: tuple[float, ...] = (10, 16, 20, 25, 32, 40, 63, 2.5)
OFFSETS = ((3600, "+01:00"), (7200, "+02:00"), (-18000, "-05:00"), (19800, "+05:30"))

# Every timestamp is derived from these, never from the clock, so data is reproducible.
EPOCH_CREATED = 1_546_300_800  # 2019-01-01T00:00:00Z
CREATED_SPAN = 4 * 365 * 86_400
EPOCH_SEEN = 1_748_736_000  # 2025-06-01T00:00:00Z


def mix(h: int, x: int) -> int:
    """Fold ``x`` into the hash ``h`` (splitmix64 finaliser): cheap and well spread."""
    h = ((h ^ x) * 0x9E3779B97F4A7C15) & MASK
    h ^= h >> 31
    h = (h * 0xBF58476D1CE4E5B9) & MASK
    return h ^ (h >> 29)


def timestamp(epoch: int, h: int) -> str:
    """RFC 3339: mostly UTC with ``Z``, one in four with an offset, some with milliseconds."""
    style = h & 7
    if style < 2:
        seconds, suffix = OFFSETS[(h >> 3) & 3]
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch + seconds)) + suffix
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))
    if style == 2:
        return f"{text}.{(h >> 5) % 1000:03d}Z"
    return text + "Z"
