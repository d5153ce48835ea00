"""The `Token` value: one OAuth2 grant's tokens and their expiry."""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from ._errors import CorruptTokenData

if TYPE_CHECKING:
    import cattrs

__all__ = ["MAX_EXTRA_DEPTH", "MAX_LIFETIME", "MAX_STORED_BYTES", "Token", "nests_deeper"]

# Token-response fields that `Token` models; anything else is kept in `extra`.
_KNOWN = frozenset(
    {"access_token", "refresh_token", "token_type", "expires_at", "issued_at", "scope"}
)


def _redacted(value: str | None) -> str:
    return "None" if value is None else "'***'"


@attrs.frozen(kw_only=True, repr=False)
class Token:
    """An OAuth2 token set as stored for one account.

    Times are POSIX timestamps in seconds (UTC by definition), as `expires_in`
    is relative seconds on the wire: ``expires_at = issued_at + expires_in``.

    Attributes:
        access_token: The bearer token. Secret: never shown by `repr`.
        refresh_token: The refresh token, if the server issued one. Secret.
        token_type: Usually ``"Bearer"``.
        expires_at: When the access token expires, or None if unknown.
        issued_at: When the token was obtained; with `expires_at` it gives the
            token's lifetime, which bounds the refresh leeway.
        scope: The granted scope string, if the server returned it.
        extra: Any other fields of the token response, kept as received.
    """

    access_token: str
    refresh_token: str | None = None
    token_type: str = "Bearer"  # noqa: S105 - a token type, not a password
    expires_at: float | None = None
    issued_at: float | None = None
    scope: str | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict)

    def __repr__(self) -> str:
        return (
            f"Token(access_token={_redacted(self.access_token)}, "
            f"refresh_token={_redacted(self.refresh_token)}, token_type={self.token_type!r}, "
            f"expires_at={self.expires_at!r}, issued_at={self.issued_at!r}, "
            f"scope={self.scope!r}, extra_keys={sorted(self.extra)!r})"
        )

    @classmethod
    def from_response(
        cls,
        response: Mapping[str, Any],
        *,
        now: float | None = None,
        default_lifetime: float | None = None,
    ) -> Token:
        """Build a token from an RFC 6749 token-endpoint response.

        Lenient where leniency is safe: the server has already issued (and
        perhaps rotated) the tokens, so an odd ``expires_in`` must not lose them.

        Args:
            response: The decoded JSON body (``access_token``, ``expires_in``, ...).
            now: The time the response was received; defaults to `time.time()`.
            default_lifetime: Seconds the access token lives when the response
                gives no usable ``expires_in``: a positive number (or numeric
                string) of at most a year (None: unknown, refreshed on 401).

        Raises:
            ValueError: if ``access_token`` is missing.
        """
        issued = time.time() if now is None else now
        access = response.get("access_token")
        if not isinstance(access, str) or not access:
            raise ValueError("token response has no access_token")
        lifetime = cls.usable_lifetime(response.get("expires_in"))
        expires_at: float | None
        if lifetime is not None:
            expires_at = issued + lifetime
        elif default_lifetime is not None:
            expires_at = issued + default_lifetime
        else:
            expires_at = None
        refresh = response.get("refresh_token")
        scope = response.get("scope")
        known = _KNOWN | {"expires_in"}
        return cls(
            access_token=access,
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            token_type=str(response.get("token_type") or "Bearer"),
            expires_at=expires_at,
            issued_at=issued,
            scope=scope if isinstance(scope, str) else None,
            extra={k: v for k, v in response.items() if k not in known},
        )

    @staticmethod
    def usable_lifetime(expires_in: Any) -> float | None:
        """``expires_in`` as seconds, if it is one a server means; else None.

        A positive number, or a numeric string, of at most a year
        (`MAX_LIFETIME`). Anything else (``"soon"``, ``[3600]``, ``{}``,
        ``1e400``, zero, a negative number, a boolean) is None.
        """
        return _seconds(expires_in)

    @property
    def lifetime(self) -> float | None:
        """Seconds between issue and expiry, if both are known."""
        if self.expires_at is None or self.issued_at is None:
            return None
        return self.expires_at - self.issued_at

    def expires_within(self, seconds: float, *, now: float | None = None) -> bool:
        """True if the access token expires less than `seconds` from `now`.

        A token without `expires_at` never expires by this test; the server's
        401 is then what tells that it has.
        """
        if self.expires_at is None:
            return False
        return self.expires_at - (time.time() if now is None else now) < seconds

    @property
    def fingerprint(self) -> str:
        """A digest identifying this token set, for compare-and-set in stores.

        SHA-256 over the access and refresh tokens, truncated to 128 bits: it
        tells tokens apart without revealing them.
        """
        digest = hashlib.sha256()
        digest.update(self.access_token.encode())
        digest.update(b"\0")
        digest.update((self.refresh_token or "").encode())
        return digest.hexdigest()[:32]

    def to_dict(self) -> dict[str, Any]:
        """The token as a JSON-ready dict; `extra` fields sit beside the known ones."""
        return _converter().unstructure(self)  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Token:
        """Inverse of `to_dict`; unknown fields land in `extra`.

        Raises:
            CorruptTokenData: if `data` is not a valid stored token.
        """
        if nests_deeper({k: v for k, v in data.items() if k not in _KNOWN}):
            raise CorruptTokenData(
                f"not a stored token: an unknown field nests deeper than {MAX_EXTRA_DEPTH} levels"
            )
        from cattrs import BaseValidationError

        converter = _converter()
        try:
            return converter.structure(data, Token)
        except (BaseValidationError, TypeError, ValueError, KeyError) as exc:
            # The message names what was wrong, never a value (values are secrets).
            raise CorruptTokenData(f"not a stored token: {_describe(exc)}") from None

    def to_json(self) -> bytes:
        """Compact JSON bytes of `to_dict`."""
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Token:
        """Inverse of `to_json`.

        Raises:
            CorruptTokenData: if `data` is not JSON or not a token.
        """
        if len(data) > MAX_STORED_BYTES:
            raise CorruptTokenData(
                f"stored token of {len(data)} bytes, more than the {MAX_STORED_BYTES} a token takes"
            )
        try:
            decoded = json.loads(data.decode() if isinstance(data, bytes) else data)
        except UnicodeDecodeError:
            raise CorruptTokenData("stored token is not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            raise CorruptTokenData(f"stored token is not JSON: {exc.msg}") from None
        except RecursionError:
            raise CorruptTokenData("stored token nests arrays or objects too deeply") from None
        if not isinstance(decoded, dict):
            raise CorruptTokenData("stored token is not a JSON object")
        return cls.from_dict(decoded)


# Longer than a year is no lifetime a server means: the default lifetime applies.
MAX_LIFETIME = 366 * 24 * 3600.0
# A stored token is a few hundred bytes (a few kB with a JWT): more is no token.
MAX_STORED_BYTES = 1024 * 1024
# Levels an unknown field of a stored token may nest: kept values are written
# out again, and a deeper one would make that fail far from its cause.
MAX_EXTRA_DEPTH = 32


def nests_deeper(value: Any, limit: int = MAX_EXTRA_DEPTH) -> bool:
    """True if decoded JSON `value` nests more than `limit` levels (iteratively, no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if type(item) is dict else item if type(item) is list else None
        if children is None:
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _seconds(value: Any) -> float | None:
    """Positive seconds (at most a year) from a number or a numeric string, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, int):
        try:
            value = float(value)
        except OverflowError:
            return None
    if isinstance(value, float) and 0 < value <= MAX_LIFETIME:  # NaN and inf fail this
        return value
    return None


def _describe(exc: BaseException) -> str:
    from cattrs import BaseValidationError, transform_error

    if isinstance(exc, BaseValidationError):
        return "; ".join(transform_error(exc))
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}"
    return type(exc).__name__


def _structure_str(value: Any, _: type) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _structure_float(value: Any, _: type) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("expected a number")
    return float(value)


@functools.cache
def _converter() -> cattrs.Converter:
    # Built when a token is first written out or read back (a stored token):
    # cattrs costs a process's start-up several ms, and a token taken from a
    # token response (`from_response`) never needs it.
    import cattrs
    from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

    converter = cattrs.Converter()
    converter.register_structure_hook(str, _structure_str)
    converter.register_structure_hook(float, _structure_float)
    base_structure = make_dict_structure_fn(Token, converter, extra=override(omit=True))
    base_unstructure = make_dict_unstructure_fn(Token, converter, extra=override(omit=True))

    def structure(data: Any, cls: type) -> Token:
        if not isinstance(data, Mapping):
            raise TypeError("expected an object")
        token = base_structure(data, cls)
        extra = {k: v for k, v in data.items() if k not in _KNOWN}
        return attrs.evolve(token, extra=extra) if extra else token

    def unstructure(token: Token) -> dict[str, Any]:
        # Known fields win over an `extra` key of the same name.
        return {**token.extra, **base_unstructure(token)}

    converter.register_structure_hook(Token, structure)
    converter.register_unstructure_hook(Token, unstructure)
    return converter
