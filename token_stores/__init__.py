"""Async persistence of OAuth2 tokens, safe across tasks and processes.

Generic: knows nothing of any particular API. A store maps an account key (a
string naming one customer's authorization) to a `Token`, and offers the
per-key lock and compare-and-set that a single-flight refresh needs.
"""

from importlib import import_module as _import_module
from typing import TYPE_CHECKING
from typing import Any as _Any

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
from ._memory import MemoryTokenStore
from ._protocol import DEFAULT_LOCK_TIMEOUT, LockHeld, TokenStore
from ._token import Token

if TYPE_CHECKING:
    from ._crypto import Encryption
    from ._file import FileTokenStore
    from ._open import open_store
    from ._redaction import redact_store_spec
    from ._redis import RedisTokenStore

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

# The file and Redis stores (their envelopes, sealing, scripts) are imported
# when first asked for (PEP 562): a process with a memory store, or one that
# only reads `Token`, does not pay for them at start-up.
_LAZY = {
    "Encryption": "._crypto",
    "FileTokenStore": "._file",
    "RedisTokenStore": "._redis",
    "open_store": "._open",
    "redact_store_spec": "._redaction",
}


def __getattr__(name: str) -> _Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_import_module(module_name, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
