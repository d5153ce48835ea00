"""`Encryption`: authenticated encryption of stored tokens, with key rotation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._errors import DecryptionError

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

__all__ = ["Encryption"]


class Encryption:
    """Encrypts tokens at rest with Fernet (AES-128-CBC and HMAC-SHA256), from `cryptography`.

    The first key encrypts; every key decrypts, so keys can be rotated: put
    the new key first, keep the old ones until ``rotate_encryption()`` on the
    store has re-encrypted everything, then drop them. Needs the
    ``encryption`` extra (``pip install 'wiser-async[encryption]'``).

    Args:
        keys: URL-safe base64 Fernet keys, newest first (`generate_key` makes one).
    """

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        try:
            from cryptography.fernet import Fernet, MultiFernet
        except ImportError as exc:  # pragma: no cover - the extra is installed in tests
            raise ImportError(
                "encryption needs the cryptography package: pip install 'wiser-async[encryption]'"
            ) from exc
        if isinstance(keys, str | bytes) or not keys:
            raise ValueError("give a non-empty list of keys, newest first")
        try:
            self._fernet: MultiFernet = MultiFernet([Fernet(key) for key in keys])
        except (ValueError, TypeError):
            # cryptography's message is generic; never echo the key itself.
            raise ValueError("an encryption key is not a valid Fernet key") from None
        self._count = len(keys)

    def __repr__(self) -> str:
        return f"Encryption(keys={self._count})"

    @staticmethod
    def generate_key() -> str:
        """A new random key, as text to keep in a secret store or an environment variable."""
        from cryptography.fernet import Fernet

        return Fernet.generate_key().decode()

    def encrypt(self, plaintext: bytes) -> bytes:
        """Encrypt with the newest key."""
        return self._fernet.encrypt(plaintext)

    def decrypt(self, ciphertext: bytes, *, where: str) -> bytes:
        """Decrypt with any of the keys.

        Raises:
            DecryptionError: no key fits, or the data was altered; names `where`.
        """
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(ciphertext)
        except InvalidToken:
            raise DecryptionError(
                f"{where} was encrypted with a key this store was not given, or was altered"
            ) from None
