"""The token file's format: a JSON envelope naming its account, around a token or its ciphertext.

- Format 1: ``{"format": 1, "key": ACCOUNT, "token": {...}}``, or
  ``"encrypted"`` with a ciphertext of the token alone (written before tokens
  were sealed with their account).
- Format 2: ``{"format": 2, "key": ACCOUNT, "encrypted": ...}``, the token
  sealed with its account (`seal_token`). A version that reads only format 1
  says "written by a newer version: upgrade" (and leaves it), where it would
  otherwise call the file corrupt and tell the operator to delete it.

Which sealing an encrypted token has is read from the authenticated
ciphertext, never from the envelope, which anyone who can write may edit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._crypto import Encryption
from ._errors import CorruptTokenData, UnsupportedTokenFormat
from ._sealing import admit_plaintext, open_token, seal_token
from ._token import MAX_STORED_BYTES, Token

__all__ = ["MAX_FILE_BYTES", "envelope_of", "open_envelope", "read_envelope"]

_PLAIN = 1
_SEALED = 2
_NEWEST = _SEALED
# A token (encrypted, base64, in its envelope) and room to spare.
MAX_FILE_BYTES = 2 * MAX_STORED_BYTES


def envelope_of(key: str, token: Token, encryption: Encryption | None) -> bytes:
    """The content of the token file of `key`."""
    payload, encrypted = seal_token(token, encryption, key=key)
    envelope: dict[str, Any] = {"format": _SEALED if encrypted else _PLAIN, "key": key}
    envelope["encrypted" if encrypted else "token"] = payload if encrypted else json.loads(payload)
    return json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode()


def read_envelope(data: bytes, path: Path) -> dict[str, Any]:
    """The envelope in `data` (read from `path`, at most `MAX_FILE_BYTES` and one more).

    Raises:
        CorruptTokenData: not a token file of this store; names `path`.
        UnsupportedTokenFormat: a token file of a newer version of the store.
    """
    if len(data) > MAX_FILE_BYTES:
        raise CorruptTokenData(
            f"{path} holds more than {MAX_FILE_BYTES} bytes: no token file; delete it to "
            "store a new token"
        )
    try:
        envelope = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise CorruptTokenData(
            f"{path} is not a token file (not JSON); delete it to store a new token"
        ) from None
    if isinstance(envelope, dict) and isinstance(envelope.get("key"), str):
        # An envelope of this store (an object naming its account) of a
        # later format: likely a good token, which an older writer must
        # not destroy; what follows "format" is unknown, so not checked.
        version = envelope.get("format")
        if isinstance(version, int) and not isinstance(version, bool) and version > _NEWEST:
            raise UnsupportedTokenFormat(
                f"{path} was written by a newer version of this store (format {version}; "
                f"this one reads formats up to {_NEWEST}): upgrade to read it; the file is "
                "left untouched"
            )
    if (
        not isinstance(envelope, dict)
        or envelope.get("format") not in (_PLAIN, _SEALED)
        or not isinstance(envelope.get("key"), str)
        or not (
            isinstance(envelope.get("encrypted"), str)
            or ("token" in envelope and envelope["format"] == _PLAIN)
        )
    ):
        raise CorruptTokenData(
            f"{path} is not a token file of this store (formats {_PLAIN} to {_NEWEST}); "
            "delete it to store a new token"
        )
    return envelope


def open_envelope(
    envelope: dict[str, Any], encryption: Encryption | None, *, key: str, path: Path
) -> Token:
    """The token of `key` in `envelope` (read from `path`; its ``key`` already checked).

    Raises:
        The errors of `open_token`.
    """
    if "encrypted" in envelope:
        return open_token(envelope["encrypted"], True, encryption, key=key, where=str(path))
    admit_plaintext(encryption, key=key, where=str(path))
    token = envelope["token"]
    if not isinstance(token, dict):
        raise CorruptTokenData(f"{path}: the token is not a JSON object")
    try:
        return Token.from_dict(token)
    except CorruptTokenData as exc:
        raise CorruptTokenData(f"{path}: {exc}") from None
