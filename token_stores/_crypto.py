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

    Each token is sealed with the account key it belongs to, which is
    checked when it is read: a ciphertext copied to another account is
    refused (`ForeignToken`). A stored token that nothing binds to its
    account is refused too (`UnboundToken`): one in plain text, which anyone
    who can write to the store could have put there, and one encrypted by an
    earlier version, before the account was sealed inside. The two options
    read them for a migration, each with a WARNING naming the account: open
    the store with the one you need, run ``rotate_encryption()`` once (it
    rewrites every token sealed with its account), then drop the option.

    Args:
        keys: URL-safe base64 Fernet keys, newest first (`generate_key` makes one).
        accept_plaintext: Read tokens stored in plain text (written before
            encryption was turned on).
        accept_unbound: Read tokens encrypted without their account (written
            by an earlier version of the store).

    .. versionchanged:: 0.1.0
       Tokens are sealed with their account; ``accept_plaintext`` and
       ``accept_unbound`` added.
    """

    def __init__(
        self,
        keys: Sequence[str | bytes],
        *,
        accept_plaintext: bool = False,
        accept_unbound: bool = False,
    ) -> None:
        try:
            from cryptography.fernet import Fernet, MultiFernet
        except ModuleNotFoundError as exc:
            raise ModuleNotFoundError(
                "Encryption needs cryptography, which is not installed: "
                "pip install 'wiser-async[encryption]'",
                name=exc.name,
            ) from exc
        if isinstance(keys, str | bytes) or not keys:
            raise ValueError("give a non-empty list of keys, newest first")
        try:
            self._fernet: MultiFernet = MultiFernet([Fernet(key) for key in keys])
        except (ValueError, TypeError):
            # cryptography's message is generic; never echo the key itself.
            raise ValueError("an encryption key is not a valid Fernet key") from None
        self._count = len(keys)
        self.accept_plaintext = accept_plaintext
        self.accept_unbound = accept_unbound

    def __repr__(self) -> str:
        options = "".join(
            f", {name}=True"
            for name, given in (
                ("accept_plaintext", self.accept_plaintext),
                ("accept_unbound", self.accept_unbound),
            )
            if given
        )
        return f"Encryption(keys={self._count}{options})"

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
