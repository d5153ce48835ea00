"""Account keys: any text a store can write down."""

from __future__ import annotations

__all__ = ["encoded_key"]


def encoded_key(key: str) -> bytes:
    """`key` as UTF-8.

    Raises:
        TypeError: `key` is not a string.
        ValueError: `key` holds text UTF-8 cannot encode (a lone surrogate, as
            left by decoding bytes with ``surrogateescape``).
    """
    if not isinstance(key, str):
        raise TypeError(f"an account key is a string, not {type(key).__name__}")
    try:
        return key.encode()
    except UnicodeEncodeError:
        raise ValueError(
            "an account key must be valid Unicode text (it holds a lone surrogate)"
        ) from None
