"""Typed settings from four places: flag > environment > configuration file > default.

Every setting has an option (``--base-url``), an environment variable
(``WISER_BASE_URL``) and a key in the configuration file (``base_url``). A
command declares the settings it uses with `with_settings`; it receives one
`Settings` object, each value with the `Source` it came from.

Secrets (the client secret, the store's encryption keys) never come from the
command line or the configuration file itself: from an environment variable,
or from a file named by an option, a variable or the configuration file.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal, TypeVar
from urllib.parse import urlsplit

import attrs
import click
from click.core import ParameterSource

from token_stores import redact_store_spec

from .. import DEFAULT_AUTHORIZE_URL, DEFAULT_BASE_URL, DEFAULT_TOKEN_URL, ApiConfig
from ._config_file import CHOICES, ConfigFile, read_config_file
from ._errors import CliError

__all__ = [
    "CRAWL_SETTINGS",
    "DEFAULT_REDIRECT_URI",
    "SECRETS",
    "SETTING_NAMES",
    "Settings",
    "Source",
    "describe",
    "with_settings",
]

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_REDIRECT_URI = "http://127.0.0.1:8765/callback"
CONFIG_VARIABLE = "WISER_CONFIG"


@attrs.frozen
class Source:
    """Where a setting's value came from.

    Attributes:
        kind: ``flag``, ``env``, ``file`` or ``default``.
        where: The option, the variable, or the file (with the key) it came from.
    """

    kind: Literal["flag", "env", "file", "default"]
    where: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.where}".rstrip()


_DEFAULT = Source("default")


@attrs.frozen(kw_only=True)
class Settings:
    """The settings of one command, typed, each with its source.

    Attributes:
        base_url: The API root.
        authorize_url: The OAuth authorization endpoint.
        token_url: The OAuth token endpoint.
        redirect_uri: The loopback callback ``login`` listens on.
        client_id: The OAuth client id.
        client_secret: The OAuth client secret (never shown).
        auth_method: How the client authenticates at the token endpoint.
        scope: Scopes ``login`` asks for.
        store: The token store's spec (``memory``, ``file:DIR``, ``redis://...``).
        encryption_keys: Fernet keys of the store, newest first (never shown).
        concurrency: Requests in flight at most.
        rate: Requests per second at most (None: no limit).
        page_size: Items per page in a crawl (None: the API's largest page).
        devices_by: Read devices by ``site`` or by ``room``.
        http: What sends the requests: ``httpx2`` (its own transport) or
            ``aiohttp`` (`AiohttpTransport`, the ``aiohttp`` extra).
        validate: What a JSONL crawl checks of each item: ``ids`` (written as
            received) or ``models`` (decoded into models and written from them).
        redis_patience: Seconds a queue worker waits out an outage of its
            Redis (a restart) before it stops (0: it stops at once).
        api: Paths, paging and field names (``[api.*]`` of the file), and `base_url`.
        config_file: The configuration file read, if any.
        sources: Where each setting came from, by name (``api.*`` keys dotted).
    """

    base_url: str = DEFAULT_BASE_URL
    authorize_url: str = DEFAULT_AUTHORIZE_URL
    token_url: str = DEFAULT_TOKEN_URL
    redirect_uri: str = DEFAULT_REDIRECT_URI
    client_id: str | None = None
    client_secret: str | None = attrs.field(default=None, repr=False)
    auth_method: str = "client_secret_post"
    scope: tuple[str, ...] = ()
    store: str | None = None
    encryption_keys: tuple[str, ...] = attrs.field(default=(), repr=False)
    concurrency: int = 16
    rate: float | None = None
    page_size: int | None = None
    devices_by: Literal["site", "room"] = "site"
    http: Literal["httpx2", "aiohttp"] = "httpx2"
    validate: Literal["ids", "models"] = "ids"
    redis_patience: float = 30.0
    api: ApiConfig = attrs.field(factory=ApiConfig)
    config_file: Path | None = None
    sources: Mapping[str, Source] = attrs.field(factory=dict)

    def require_client(self) -> tuple[str, str | None]:
        """The client id and secret (None for ``--auth-method none``).

        Raises:
            CliError: the id is missing, or the secret its method needs.
        """
        if not self.client_id:
            raise CliError(
                "--client-id is required (or WISER_CLIENT_ID, or client_id in the "
                "configuration file)"
            )
        if self.auth_method == "none":
            return self.client_id, None
        if not self.client_secret:
            raise CliError(
                f"no client secret for --auth-method {self.auth_method}: set "
                "WISER_CLIENT_SECRET, or name a file holding it with --client-secret-file "
                "(or client_secret_file in the configuration file)"
            )
        return self.client_id, self.client_secret

    def client_named(self) -> str:
        """The client's credentials as messages name them: options and sources, never the secret."""
        return (
            f"--client-id{self.origin('client_id')} and the client secret "
            f"(from {self.source('client_secret')})"
        )

    def source(self, name: str) -> Source:
        """Where setting `name` came from."""
        return self.sources.get(name, _DEFAULT)

    def origin(self, name: str) -> str:
        """`` (from ...)`` for a value not given as a flag, to follow a message about it."""
        source = self.source(name)
        if source.kind == "env":
            return f" (from {source.where})"
        if source.kind == "file":
            return f" (from {name} in {self.config_file})"
        return ""


@attrs.frozen(kw_only=True)
class _Setting:
    name: str
    flag: str
    envvar: str
    help: str
    # The name of the click parameter (secrets: the option naming their file).
    param: str
    # Secrets: the variable holding the value itself.
    value_envvar: str | None = None

    @property
    def secret(self) -> bool:
        return self.value_envvar is not None


def _settings_table() -> dict[str, _Setting]:
    rows = [
        ("base_url", "--base-url", "The API root URL."),
        ("authorize_url", "--authorize-url", "The OAuth authorization endpoint."),
        ("token_url", "--token-url", "The OAuth token endpoint."),
        ("redirect_uri", "--redirect-uri", "The registered loopback callback login listens on."),
        ("client_id", "--client-id", "The OAuth client id."),
        ("client_secret", "--client-secret-file", "File holding the OAuth client secret."),
        ("auth_method", "--auth-method", "How the client authenticates at the token endpoint."),
        ("scope", "--scope", "Scope to ask for (repeat; space-separated in the variable)."),
        ("store", "--store", "Token store: memory, file:DIRECTORY or redis://HOST[:PORT][/DB]."),
        ("encryption_keys", "--encryption-keys-file", "File of the store's Fernet keys."),
        ("concurrency", "--concurrency", "Requests in flight at most."),
        ("rate", "--rate", "Requests per second at most."),
        ("page_size", "--page-size", "Items per page (at most api.pages.max_page_size)."),
        ("devices_by", "--devices-by", "Read devices by site or by room."),
        ("http", "--http", "HTTP stack: httpx2, or aiohttp (asyncio; the aiohttp extra)."),
        (
            "validate",
            "--validate",
            "JSONL records: ids (items as received, ids checked) or models (decoded).",
        ),
        (
            "redis_patience",
            "--redis-patience",
            "Seconds a queue worker waits for its Redis to come back (a restart) before it stops.",
        ),
    ]
    table: dict[str, _Setting] = {}
    for name, flag, help_text in rows:
        option = flag.removeprefix("--").replace("-", "_")
        secret = name in ("client_secret", "encryption_keys")
        envvar = "WISER_TOKEN_STORE" if name == "store" else f"WISER_{option.upper()}"
        value_envvar = {
            "client_secret": "WISER_CLIENT_SECRET",
            "encryption_keys": "WISER_TOKEN_KEYS",
        }
        table[name] = _Setting(
            name=name,
            flag=flag,
            envvar=envvar,
            help=help_text,
            param=option if secret else name,
            value_envvar=value_envvar.get(name),
        )
    return table


_SETTINGS: Final = _settings_table()
SETTING_NAMES: Final = tuple(_SETTINGS)
SECRETS: Final = tuple(name for name, setting in _SETTINGS.items() if setting.secret)


# Shown in --help for settings whose default is no value.
_NO_DEFAULT_SHOWN = {
    "client_secret": "none",
    "encryption_keys": "none",
    "rate": "no limit",
    "page_size": "the API's largest page",
}


def _click_option(setting: _Setting) -> Callable[[F], F]:
    name = setting.name
    # A secret's option names a file; it has no default.
    default = None if setting.secret else attrs.fields_dict(Settings)[name].default
    # The default is shown in --help only: a value the command line left
    # unset comes from the file first, and then from this default.
    shown: str | bool = _NO_DEFAULT_SHOWN.get(name, default not in (None, ()))
    options: dict[str, Any] = {
        "envvar": setting.envvar,
        "show_envvar": True,
        "default": default,
        "help": setting.help,
        "show_default": shown,
    }
    if setting.secret:
        options["type"] = click.Path(dir_okay=False, path_type=Path)
        options["help"] = f"{setting.help[:-1]} (or the value itself in {setting.value_envvar})."
    elif name in ("concurrency", "page_size"):
        options["type"] = int
    elif name in ("rate", "redis_patience"):
        options["type"] = float
    elif name in CHOICES:
        options["type"] = click.Choice(CHOICES[name])
    elif name == "scope":
        options.update(multiple=True, default=())
    return click.option(setting.flag, setting.param, **options)


_config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=CONFIG_VARIABLE,
    show_envvar=True,
    help="TOML configuration file (settings below it in precedence: flag > env > file).",
)


CRAWL_SETTINGS: Final = (
    "base_url",
    "token_url",
    "client_id",
    "client_secret",
    "auth_method",
    "store",
    "encryption_keys",
    "concurrency",
    "rate",
    "page_size",
    "devices_by",
    "http",
    "validate",
)
"""The settings of a command that crawls (`crawl`, `queue worker`)."""


def with_settings(*names: str) -> Callable[[F], F]:
    """Add the options of settings `names` (and ``--config``) to a command.

    The command is called with a `Settings` as its first argument instead of
    those options.
    """
    for name in names:
        if name not in _SETTINGS:
            raise ValueError(f"no setting {name!r}")
    params = {_SETTINGS[name].param for name in names} | {"config_file"}

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def command(**kwargs: Any) -> Any:
            for param in params:
                kwargs.pop(param, None)
            settings = load_settings(click.get_current_context(), names)
            return function(settings, **kwargs)

        wrapped: Any = command
        for option in reversed([_config_option, *(_click_option(_SETTINGS[n]) for n in names)]):
            wrapped = option(wrapped)
        return wrapped  # type: ignore[no-any-return]

    return decorate


def load_settings(ctx: click.Context, names: Sequence[str]) -> Settings:
    """The settings `names` from the command line, the environment, the file and the defaults.

    Raises:
        CliError: the file is unusable, a secret cannot be read, or a value
            is out of range (the message names the option and where the value came from).
    """
    path: Path | None = ctx.params.get("config_file")
    file = read_config_file(path.expanduser()) if path is not None else None
    values: dict[str, Any] = {}
    sources: dict[str, Source] = {}
    for name in names:
        setting = _SETTINGS[name]
        found = _secret(ctx, setting, file) if setting.secret else _value(ctx, setting, file)
        if found is not None:
            values[name], sources[name] = found
    if file is not None:
        values["api"] = ApiConfig(paths=file.paths, pages=file.pages, aliases=file.aliases)
        sources.update(dict.fromkeys(file.api_keys, Source("file", str(file.path))))
    settings = Settings(**values, config_file=file.path if file else None, sources=sources)
    _check(settings, names)
    return attrs.evolve(settings, api=attrs.evolve(settings.api, base_url=settings.base_url))


def _value(
    ctx: click.Context, setting: _Setting, file: ConfigFile | None
) -> tuple[Any, Source] | None:
    source = ctx.get_parameter_source(setting.param)
    value = ctx.params.get(setting.param)
    if source == ParameterSource.COMMANDLINE:
        return value, Source("flag", setting.flag)
    if source == ParameterSource.ENVIRONMENT:
        return value, Source("env", setting.envvar)
    if file is not None and setting.name in file.values:
        return file.values[setting.name], Source("file", str(file.path))
    return None


def _secret(
    ctx: click.Context, setting: _Setting, file: ConfigFile | None
) -> tuple[Any, Source] | None:
    file_key = setting.param  # client_secret_file, encryption_keys_file
    assert setting.value_envvar is not None  # noqa: S101 - a secret's table row has one
    source = ctx.get_parameter_source(setting.param)
    named: Path | None = ctx.params.get(setting.param)
    if source == ParameterSource.COMMANDLINE and named is not None:
        return _read_secret(setting, named, setting.flag), Source("flag", f"{setting.flag} {named}")
    value = os.environ.get(setting.value_envvar)
    if source == ParameterSource.ENVIRONMENT and named is not None:
        if value:
            raise CliError(f"set {setting.value_envvar} or {setting.envvar}, not both")
        where = f"{setting.envvar}={named}"
        return _read_secret(setting, named, setting.envvar), Source("env", where)
    if value:
        return _parse_secret(setting, value), Source("env", setting.value_envvar)
    if file is not None and file_key in file.values:
        named = Path(file.values[file_key])
        where = f"{file_key} in {file.path}"
        return _read_secret(setting, named, where), Source("file", f"{named} ({where})")
    return None


def _read_secret(setting: _Setting, path: Path, named_by: str) -> Any:
    try:
        text = path.expanduser().read_text()
    except OSError as exc:
        raise CliError(f"cannot read {path} ({named_by}): {exc.strerror or exc}") from None
    if not text.strip():
        raise CliError(f"{path} ({named_by}) is empty")
    return _parse_secret(setting, text)


def _parse_secret(setting: _Setting, text: str) -> Any:
    if setting.name == "encryption_keys":
        return tuple(text.split())
    return text.strip()


def _check(settings: Settings, names: Sequence[str]) -> None:
    """Refuse values out of range, naming the option and where the value came from."""

    def fail(name: str, message: str) -> CliError:
        return CliError(f"{_SETTINGS[name].flag} {message}{settings.origin(name)}")

    for name in ("base_url", "authorize_url", "token_url", "redirect_uri"):
        if name in names:
            url = getattr(settings, name)
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise fail(name, f"must be an http:// or https:// URL, not {url!r}")
    if "concurrency" in names and settings.concurrency < 1:
        raise fail("concurrency", f"must be at least 1, not {settings.concurrency}")
    if "rate" in names and settings.rate is not None and not settings.rate > 0:
        raise fail("rate", f"must be positive (requests per second), not {settings.rate:g}")
    patience = settings.redis_patience
    if "redis_patience" in names and not 0 <= patience < math.inf:
        raise fail("redis_patience", f"must be zero or more seconds, not {patience:g}")
    largest = settings.api.pages.max_page_size
    size = settings.page_size
    if "page_size" in names and size is not None and not 1 <= size <= largest:
        raise fail(
            "page_size", f"must be between 1 and {largest} (api.pages.max_page_size), not {size}"
        )


def describe(settings: Settings, name: str) -> str:
    """A setting's value as ``config show`` prints it (secrets as ``***``)."""
    value = getattr(settings, name)
    if name in SECRETS:
        return "***" if value else "(none)"
    if value is None:
        return "(none)"
    if isinstance(value, tuple):
        return " ".join(value) if value else "(none)"
    if name == "store":
        return redact_store_spec(value)
    return str(value)
