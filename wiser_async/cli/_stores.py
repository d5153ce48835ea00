"""The token store a command uses, from its settings."""

from __future__ import annotations

from token_stores import Encryption, TokenStore, TokenStoreError, open_store, redact_store_spec

from ._errors import CliError
from ._settings import Settings

__all__ = ["encryption_of", "open_token_store"]


def encryption_of(settings: Settings) -> Encryption | None:
    """The store's encryption at rest, from the keys in the settings (None without keys)."""
    if not settings.encryption_keys:
        return None
    try:
        return Encryption(list(settings.encryption_keys))
    except ValueError as exc:
        raise CliError(f"encryption keys{settings.origin('encryption_keys')}: {exc}") from None
    except ImportError as exc:
        raise CliError(str(exc)) from None


def open_token_store(settings: Settings, *, memory_refused: str | None = None) -> TokenStore:
    """Open the store ``--store`` names; the caller closes it (``aclose``).

    Args:
        settings: The command's settings.
        memory_refused: Why this command refuses ``memory`` (None: it takes it).

    Raises:
        CliError: no store given, ``memory`` refused, a malformed spec, or a
            store that cannot be opened (one line naming ``--store``).
    """
    spec = settings.store
    if spec is None:
        raise CliError(
            "no token store given: --store memory, file:DIRECTORY or redis://HOST[:PORT][/DB] "
            "(or WISER_TOKEN_STORE, or store in the configuration file)"
        )
    origin = settings.origin("store")
    if spec == "memory" and memory_refused is not None:
        raise CliError(f"--store memory{origin}: {memory_refused}")
    encryption = encryption_of(settings)
    try:
        return open_store(spec, encryption=encryption)
    except ValueError as exc:
        raise CliError(f"--store{origin}: {exc}") from None
    except ImportError as exc:
        raise CliError(f"--store{origin}: {exc}") from None
    except TokenStoreError as exc:
        raise CliError(f"--store {redact_store_spec(spec)}{origin}: {exc}") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CliError(f"--store {redact_store_spec(spec)}{origin}: {reason}") from None
