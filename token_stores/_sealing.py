"""How a token is written into a store: JSON, or encrypted JSON."""

from __future__ import annotations

from ._crypto import Encryption
from ._errors import CorruptTokenData, DecryptionError
from ._token import Token

__all__ = ["open_token", "seal_token"]


def seal_token(token: Token, encryption: Encryption | None) -> tuple[str, bool]:
    """The stored text of `token`, and whether it is encrypted."""
    data = token.to_json()
    if encryption is None:
        return data.decode(), False
    return encryption.encrypt(data).decode("ascii"), True


def open_token(
    payload: str | bytes, encrypted: bool, encryption: Encryption | None, *, where: str
) -> Token:
    """Inverse of `seal_token`.

    A plain token is read even when `encryption` is set: a store that starts
    encrypting keeps reading what it wrote before, and encrypts it on the
    next write (or at once with ``rotate_encryption()``).

    Raises:
        DecryptionError: encrypted, and no key of `encryption` fits (or none given).
        CorruptTokenData: not a token; names `where`.
    """
    raw = payload.encode() if isinstance(payload, str) else payload
    if encrypted:
        if encryption is None:
            raise DecryptionError(f"{where} is encrypted: open the store with its encryption keys")
        raw = encryption.decrypt(raw, where=where)
    try:
        return Token.from_json(raw)
    except CorruptTokenData as exc:
        raise CorruptTokenData(f"{where}: {exc}") from None
