"""How a token is written into a store: JSON, or encrypted JSON sealed with its account.

An encrypted token is the ciphertext of ``{"format": 2, "key": ACCOUNT,
"token": {...}}``: the account is inside what the key authenticates, so a
ciphertext copied to another account is told apart (`ForeignToken`). Format 1,
written before, is the token alone: nothing in it says whose it is, so it is
read only when `Encryption.accept_unbound` says so (a migration), as is a
plain token in an encrypted store (`Encryption.accept_plaintext`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from ._crypto import Encryption
from ._errors import (
    CorruptTokenData,
    DecryptionError,
    ForeignToken,
    UnboundToken,
    UnsupportedTokenFormat,
)
from ._token import MAX_STORED_BYTES, Token

__all__ = ["admit_plaintext", "open_token", "seal_token"]

logger = logging.getLogger(__name__)

_SEALED = 2
# Room for the envelope around the token: {"format":2,"key":...,"token":...}.
_SEALED_OVERHEAD = 64


def seal_token(token: Token, encryption: Encryption | None, *, key: str) -> tuple[str, bool]:
    """The stored text of `key`'s `token`, and whether it is encrypted."""
    if encryption is None:
        return token.to_json().decode(), False
    sealed = {"format": _SEALED, "key": key, "token": token.to_dict()}
    data = json.dumps(sealed, separators=(",", ":"), sort_keys=True).encode()
    return encryption.encrypt(data).decode("ascii"), True


def admit_plaintext(encryption: Encryption | None, *, key: str, where: str) -> None:
    """Let a token stored in plain text be read, or refuse it.

    Raises:
        UnboundToken: `encryption` is set and does not accept plain tokens.
    """
    if encryption is None:
        return
    if not encryption.accept_plaintext:
        raise UnboundToken(
            f"{where} holds a token in plain text, but this store encrypts: refused, as anyone "
            "who can write to the store could have put it there. If it was stored before "
            "encryption was turned on, open the store with Encryption(..., "
            "accept_plaintext=True) and run rotate_encryption() once"
        )
    logger.warning(
        "read the token of account %r in plain text from %s (accept_plaintext): it is "
        "encrypted at its next save, or at once by rotate_encryption()",
        key,
        where,
    )


def open_token(
    payload: str | bytes,
    encrypted: bool,
    encryption: Encryption | None,
    *,
    key: str,
    where: str,
) -> Token:
    """Inverse of `seal_token`: the token of `key`, as stored.

    Raises:
        DecryptionError: encrypted, and no key of `encryption` fits (or none given).
        UnboundToken: `encryption` is set and the token is in plain text, or
            was encrypted without its account, and `encryption` does not
            accept that.
        ForeignToken: the token was sealed for another account.
        UnsupportedTokenFormat: sealed by a newer version of the store.
        CorruptTokenData: not a token; names `where`.
    """
    raw = payload.encode() if isinstance(payload, str) else payload
    if not encrypted:
        admit_plaintext(encryption, key=key, where=where)
        return _token(lambda: Token.from_json(raw), where)
    if encryption is None:
        raise DecryptionError(f"{where} is encrypted: open the store with its encryption keys")
    opened = encryption.decrypt(raw, where=where)
    if len(opened) > MAX_STORED_BYTES + _SEALED_OVERHEAD + 6 * len(key):
        # As Token.from_json: no token is this large (6: the longest JSON escape of a character).
        raise CorruptTokenData(f"{where}: the decrypted token is larger than a token can be")
    try:
        sealed = json.loads(opened)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise CorruptTokenData(f"{where}: the decrypted token is not JSON") from None
    if isinstance(sealed, dict) and "access_token" in sealed:
        # Format 1, the token alone: the sealed format never has this field on top.
        return _unbound(sealed, encryption, key=key, where=where)
    return _token(lambda: _unsealed(sealed, key=key, where=where), where)


def _unbound(token: dict[str, Any], encryption: Encryption, *, key: str, where: str) -> Token:
    if not encryption.accept_unbound:
        raise UnboundToken(
            f"{where} was encrypted by an earlier version of this store, without its account, "
            "so nothing shows it is this account's token (it could be a copy of another's): "
            "refused. To migrate, open the store with Encryption(..., accept_unbound=True) and "
            "run rotate_encryption() once"
        )
    logger.warning(
        "read the token of account %r encrypted without its account from %s "
        "(accept_unbound): it is sealed with its account at its next save, or at once by "
        "rotate_encryption()",
        key,
        where,
    )
    return _token(lambda: Token.from_dict(token), where)


def _unsealed(sealed: Any, *, key: str, where: str) -> Token:
    version = sealed.get("format") if isinstance(sealed, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version > _SEALED:
        raise UnsupportedTokenFormat(
            f"{where} was encrypted by a newer version of this store (format {version}; this "
            f"one reads format {_SEALED}): upgrade to read it; it is left untouched"
        )
    if (
        version != _SEALED
        or not isinstance(sealed.get("key"), str)
        or not isinstance(sealed.get("token"), dict)
    ):
        raise CorruptTokenData("not a sealed token of this store")
    if sealed["key"] != key:
        # Written by this store with this key, for another account: a copy.
        # Which account is not said: a store's messages name only the one asked for.
        raise ForeignToken(
            f"{where} holds a token encrypted for another account key (copied there?): "
            "refused; delete it to store a new token"
        )
    return Token.from_dict(sealed["token"])


def _token(read: Callable[[], Token], where: str) -> Token:
    """`read()`, a `CorruptTokenData` it raises naming `where`."""
    try:
        return read()
    except ForeignToken:
        raise  # names `where` already
    except CorruptTokenData as exc:
        raise CorruptTokenData(f"{where}: {exc}") from None
