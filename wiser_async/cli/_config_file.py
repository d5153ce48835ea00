"""The TOML configuration file: read, checked key by key, typed.

::

    base_url = "https://api.example.com/wiser/v2"
    token_url = "https://api.example.com/oauth/token"
    client_id = "my-app"
    client_secret_file = "secret.txt"      # relative to this file's directory
    store = "file:tokens"
    concurrency = 8
    http = "aiohttp"                       # httpx2 (default) or aiohttp
    validate = "models"                    # ids (default) or models: JSONL records
    redis_patience = 60                    # seconds a queue worker waits out a Redis restart

    [api.paths]
    site_devices = "/sites/{site_id}/equipment"

    [api.pages]
    data_key = "items"

    [api.aliases.Device]
    rated_current_a = "ratedCurrent"

Secrets are never written in the file: it names files holding them
(``client_secret_file``, ``encryption_keys_file``). Every key is checked: an
unknown key, a value of the wrong type or a path template with unknown
fields is a one-line error naming the key and the file.
"""

from __future__ import annotations

import difflib
import string
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from .. import Address, Device, Location, PageFormat, Paths, Room, Site
from ._errors import CliError

__all__ = ["ALIASED_MODELS", "CHOICES", "ConfigFile", "read_config_file"]

AUTH_METHODS: Final = ("client_secret_post", "client_secret_basic", "none")
DEVICES_BY: Final = ("site", "room")
HTTP_STACKS: Final = ("httpx2", "aiohttp")
VALIDATIONS: Final = ("ids", "models")
ALIASED_MODELS: Final[dict[str, type]] = {
    cls.__name__: cls for cls in (Location, Address, Site, Room, Device)
}

# Top-level keys and the type each takes.
_STRINGS = (
    "base_url",
    "authorize_url",
    "token_url",
    "redirect_uri",
    "client_id",
    "store",
    "auth_method",
    "devices_by",
    "http",
    "validate",
)
_PATHS = ("client_secret_file", "encryption_keys_file")
_INTEGERS = ("concurrency", "page_size")
_NUMBERS = ("rate", "redis_patience")
_LISTS = ("scope",)
TOP_LEVEL_KEYS: Final = (*_STRINGS, *_PATHS, *_INTEGERS, *_NUMBERS, *_LISTS, "api")
_INLINE_SECRETS = {
    "client_secret": ("client_secret_file", "WISER_CLIENT_SECRET"),
    "encryption_keys": ("encryption_keys_file", "WISER_TOKEN_KEYS"),
}
CHOICES: Final = {
    "auth_method": AUTH_METHODS,
    "devices_by": DEVICES_BY,
    "http": HTTP_STACKS,
    "validate": VALIDATIONS,
}
"""The settings that take one of a few values, and those values (file and flags alike)."""
_PAGE_INTEGERS = ("page_size", "max_page_size", "max_items_without_total")


@attrs.frozen(kw_only=True)
class ConfigFile:
    """What a configuration file sets.

    Attributes:
        path: The file.
        values: Top-level settings by key, typed (paths made absolute).
        paths: ``[api.paths]`` applied to the defaults.
        pages: ``[api.pages]`` applied to the defaults.
        aliases: ``[api.aliases.<Model>]``: field name -> wire name, per model class.
        api_keys: Every ``api.*`` key the file sets, dotted, with its value.
    """

    path: Path
    values: Mapping[str, Any]
    paths: Paths
    pages: PageFormat
    aliases: Mapping[type, Mapping[str, str]]
    api_keys: Mapping[str, Any]


def read_config_file(path: Path) -> ConfigFile:
    """Read and check a configuration file.

    Raises:
        CliError: the file is missing or unreadable, not TOML, or holds an
            unknown key or a value of the wrong type (the message names both).
    """
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except FileNotFoundError:
        raise CliError(f"--config {path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise CliError(f"{path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise CliError(f"--config {path}: {exc.strerror or exc}") from None
    return _Reader(path).read(document)


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.base = path.absolute().parent

    def error(self, message: str) -> CliError:
        return CliError(f"{self.path}: {message}")

    def unknown(self, key: str, known: tuple[str, ...] | list[str], prefix: str = "") -> CliError:
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {prefix + close[0]!r}?)" if close else ""
        return self.error(f"unknown key {prefix + key!r}{hint}")

    def read(self, document: dict[str, Any]) -> ConfigFile:
        values: dict[str, Any] = {}
        for key, value in document.items():
            if key in _INLINE_SECRETS:
                file_key, variable = _INLINE_SECRETS[key]
                raise self.error(
                    f"{key} cannot be written in the configuration file: put it in a file "
                    f"of its own (chmod 600) and name that with {file_key}, or set {variable}"
                )
            if key not in TOP_LEVEL_KEYS:
                raise self.unknown(key, list(TOP_LEVEL_KEYS))
            if key != "api":
                values[key] = self.top_level(key, value)
        api = document.get("api", {})
        if not isinstance(api, dict):
            raise self.error("api must be a table ([api.paths], [api.pages], [api.aliases.*])")
        for key in api:
            if key not in ("paths", "pages", "aliases"):
                raise self.unknown(key, ["paths", "pages", "aliases"], "api.")
        api_keys: dict[str, Any] = {}
        paths = self.paths(self.table(api, "paths"), api_keys)
        pages = self.pages(self.table(api, "pages"), api_keys)
        aliases = self.aliases(self.table(api, "aliases"), api_keys)
        return ConfigFile(
            path=self.path,
            values=values,
            paths=paths,
            pages=pages,
            aliases=aliases,
            api_keys=api_keys,
        )

    def table(self, parent: dict[str, Any], key: str) -> dict[str, Any]:
        value = parent.get(key, {})
        if not isinstance(value, dict):
            raise self.error(f"api.{key} must be a table ([api.{key}])")
        return value

    def top_level(self, key: str, value: Any) -> Any:
        if key in _STRINGS or key in _PATHS:
            if not isinstance(value, str) or not value:
                raise self.error(f"{key} must be a non-empty string")
            if key in CHOICES and value not in CHOICES[key]:
                raise self.error(f"{key} must be one of {', '.join(CHOICES[key])}, not {value!r}")
            if key in _PATHS:
                return str(self.resolve(value))
            if key == "store" and value.startswith("file:") and not value.startswith("file://"):
                return f"file:{self.resolve(value.removeprefix('file:'))}"
            return value
        if key in _INTEGERS:
            if not isinstance(value, int) or isinstance(value, bool):
                raise self.error(f"{key} must be an integer, not {_kind(value)}")
            return value
        if key in _NUMBERS:
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise self.error(f"{key} must be a number, not {_kind(value)}")
            return float(value)
        # scope: a list of strings
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.error(f"{key} must be a list of strings")
        return tuple(value)

    def resolve(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base / path

    def paths(self, table: dict[str, Any], api_keys: dict[str, Any]) -> Paths:
        defaults = Paths()
        names = [field.name for field in attrs.fields(Paths)]
        for key, value in table.items():
            dotted = f"api.paths.{key}"
            if key not in names:
                raise self.unknown(key, names, "api.paths.")
            if not isinstance(value, str) or not value.startswith("/"):
                raise self.error(f"{dotted} must be a path template starting with /")
            allowed = _fields_of(getattr(defaults, key))
            try:
                used = _fields_of(value)
            except ValueError as exc:
                raise self.error(f"{dotted} is not a valid template ({exc})") from None
            if used != allowed:
                spelled = ", ".join(f"{{{name}}}" for name in sorted(allowed)) or "no field"
                raise self.error(f"{dotted} is {value!r}: it must use {spelled}, and no other")
            api_keys[dotted] = value
        return Paths(**table)

    def pages(self, table: dict[str, Any], api_keys: dict[str, Any]) -> PageFormat:
        names = [field.name for field in attrs.fields(PageFormat)]
        for key, value in table.items():
            dotted = f"api.pages.{key}"
            if key not in names:
                raise self.unknown(key, names, "api.pages.")
            if key in _PAGE_INTEGERS:
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise self.error(f"{dotted} must be a positive integer")
            elif not isinstance(value, str) or not value:
                raise self.error(f"{dotted} must be a non-empty string")
            api_keys[dotted] = value
        try:
            return PageFormat(**table)
        except ValueError as exc:
            raise self.error(f"api.pages: {exc}") from None

    def aliases(
        self, table: dict[str, Any], api_keys: dict[str, Any]
    ) -> dict[type, dict[str, str]]:
        aliases: dict[type, dict[str, str]] = {}
        for model, renames in table.items():
            if model not in ALIASED_MODELS:
                raise self.unknown(model, list(ALIASED_MODELS), "api.aliases.")
            cls = ALIASED_MODELS[model]
            if not isinstance(renames, dict):
                raise self.error(f"api.aliases.{model} must be a table of field = wire name")
            fields = [field.name for field in attrs.fields(cls) if field.name != "extra"]
            for field, wire in renames.items():
                dotted = f"api.aliases.{model}.{field}"
                if field not in fields:
                    raise self.unknown(field, fields, f"api.aliases.{model}.")
                if not isinstance(wire, str) or not wire:
                    raise self.error(f"{dotted} must be a non-empty string (the wire name)")
                api_keys[dotted] = wire
            aliases[cls] = dict(renames)
        return aliases


def _fields_of(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def _kind(value: Any) -> str:
    names = {bool: "a boolean", str: "a string", float: "a float", list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__)
