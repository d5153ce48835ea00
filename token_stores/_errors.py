"""Errors raised by token stores.

::

    TokenStoreError
    ├── LockTimeout          the per-account lock was not acquired in time
    ├── StoreUnavailable     the backing service or file system failed (I/O, Redis down)
    ├── CorruptTokenData     stored bytes do not decode to a token; never silently replaced
    │   └── ForeignToken     the stored token names another account (copied or moved there)
    ├── DecryptionError      stored bytes were encrypted with another key, or tampered with
    │   └── UnboundToken     an encrypted store holds a token nothing binds to its account
    ├── InsecurePermissions  a token file is readable by group or others
    └── UnsupportedTokenFormat  stored by a newer version of the store; left untouched
"""

from __future__ import annotations


class TokenStoreError(Exception):
    """Base class of every error a token store raises.

    Messages name the store and the account key, never a token value.
    """


class LockTimeout(TokenStoreError):
    """The lock of an account could not be acquired within the timeout."""

    def __init__(self, key: str, timeout: float, where: str) -> None:
        super().__init__(f"lock of account {key!r} in {where} not acquired within {timeout:g} s")
        self.key = key
        self.timeout = timeout
        self.where = where

    def __reduce__(self) -> tuple[type[LockTimeout], tuple[str, float, str]]:
        return (LockTimeout, (self.key, self.timeout, self.where))


class StoreUnavailable(TokenStoreError):
    """The store's backend failed; the operation may succeed when it is back."""


class CorruptTokenData(TokenStoreError):
    """Stored data exists but is not a valid token; it is left as it is for inspection."""


class ForeignToken(CorruptTokenData):
    """The token stored for an account names another account: refused.

    Raised when a file's envelope, a Redis hash's ``key`` field or the
    account sealed inside an encrypted token is not the account asked for:
    the token was copied or moved there (by mistake, or by someone who can
    write to the store and wants one customer's grant used for another).
    The account it names is not shown: the data is not trusted.

    .. versionadded:: 0.1.0
    """


class DecryptionError(TokenStoreError):
    """Stored data could not be decrypted with the configured keys (wrong key or tampering)."""


class UnboundToken(DecryptionError):
    """An encrypted store holds a token that nothing binds to its account: refused.

    Either a token in plain text (anyone who can write to the store could
    have put it there), or one encrypted by an earlier version of the store,
    before the account was sealed inside (it could have been copied from
    another account). To migrate such data on purpose, open the store with
    ``Encryption(keys, accept_plaintext=True)`` or ``accept_unbound=True``
    and run ``rotate_encryption()`` once.

    .. versionadded:: 0.1.0
    """


class InsecurePermissions(TokenStoreError):
    """A token file can be read by users other than its owner."""


class UnsupportedTokenFormat(TokenStoreError):
    """Stored data was written by a newer version of the store: upgrade to read it.

    It is valid data, not corrupt: it is neither read nor overwritten.
    """
