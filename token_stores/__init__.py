"""Async persistence of OAuth2 tokens, safe across tasks and processes.

Generic: knows nothing of any particular API. A store maps an account key (a
string naming one customer's authorization) to a `Token`, and offers the
per-key lock and compare-and-set that a single-flight refresh needs.
"""

from ._crypto import Encryption
from ._errors import (
    CorruptTokenData,
    DecryptionError,
    ForeignToken,
    InsecurePermissions,
    LockTimeout,
    StoreUnavailable,
    TokenStoreError,
    UnboundToken,
    UnsupportedTokenFormat,
)
from ._file import FileTokenStore
from ._memory import MemoryTokenStore
from ._open import open_store
from ._protocol import DEFAULT_LOCK_TIMEOUT, LockHeld, TokenStore
from ._redaction import redact_store_spec
from ._redis import RedisTokenStore
from ._token import Token

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "CorruptTokenData",
    "DecryptionError",
    "Encryption",
    "FileTokenStore",
    "ForeignToken",
    "InsecurePermissions",
    "LockHeld",
    "LockTimeout",
    "MemoryTokenStore",
    "RedisTokenStore",
    "StoreUnavailable",
    "Token",
    "TokenStore",
    "TokenStoreError",
    "UnboundToken",
    "UnsupportedTokenFormat",
    "open_store",
    "redact_store_spec",
]
