"""`FileTokenStore`: one file per account in a directory, crash-safe, locked across processes."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import stat
import tempfile
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

import anyio

from ._crypto import Encryption
from ._envelope import MAX_FILE_BYTES, envelope_of, open_envelope, read_envelope
from ._errors import (
    ForeignToken,
    InsecurePermissions,
    LockTimeout,
    StoreUnavailable,
)
from ._keys import encoded_key
from ._protocol import DEFAULT_LOCK_TIMEOUT, LockHeld
from ._token import Token

__all__ = ["FileTokenStore"]

T = TypeVar("T")

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX; only FileTokenStore needs it
    fcntl = None  # type: ignore[assignment]

_SAFE_KEY = re.compile(r"[A-Za-z0-9._-]{1,100}")
# What tempfile.mkstemp puts after the prefix: 8 of these characters.
_TEMPORARY_SUFFIX = "[a-z0-9_]{8}"
# Internal writes hold their lock for a few milliseconds; poll it briefly.
_WRITE_LOCK_TIMEOUT = 30.0


def _file_stem(key: str) -> str:
    # Readable names for plain keys; a digest for anything a file name cannot hold.
    encoded = encoded_key(key)
    if _SAFE_KEY.fullmatch(key) and not key.startswith("."):
        return f"k-{key}"
    return "h-" + hashlib.sha256(encoded).hexdigest()


def _foreign(path: Path) -> ForeignToken:
    # Copied or renamed from another account's file: not this account's grant.
    # The key it names is not shown: the file's content is not trusted.
    return ForeignToken(
        f"{path} holds the token of another account key; delete it to store a new token"
    )


class FileTokenStore:
    """Tokens in a directory, one JSON file per account.

    - **Crash-safe:** a write goes to a temporary file that is fsync'ed and
      renamed over the old one, then the directory is fsync'ed: a reader, or
      a process that dies at any point, sees the old token or the new one,
      never a torn file.
    - **Private:** the directory is created 0700 and files 0600; a token file
      that the group or others can read is refused (or warned about).
    - **Locked across processes:** `lock` and every write take ``flock``
      locks on files beside the token's, polled without blocking the event
      loop; the kernel releases them when a process dies, so a crash leaves
      no lock behind. A symbolic link planted at a lock file is refused
      (`StoreUnavailable`), never followed. POSIX only (``fcntl``).
    - **Corrupt files are never replaced** silently: reading or writing over
      one raises `CorruptTokenData` naming it; `delete` removes it. A file
      that holds another account's token (copied or renamed there) raises
      `ForeignToken` (a `CorruptTokenData`). A file written by a newer
      version of the store raises `UnsupportedTokenFormat` and is neither
      read nor replaced.
    - **Encrypted at rest** when given an `Encryption`: each token sealed
      with its account, a plain token refused (`UnboundToken`) unless the
      `Encryption` accepts one for a migration.

    Args:
        directory: Where the files live; created if missing.
        encryption: Encrypts tokens at rest; ``None`` stores JSON.
        on_insecure_file: ``"refuse"`` (raise `InsecurePermissions`) or
            ``"warn"`` when a token file, or the directory, is open to group
            or others.

    Raises:
        NotImplementedError: the platform has no ``fcntl`` (Windows). Not a
            `TokenStoreError`: those say an operation on a working store
            failed and may succeed later, while this store can never work
            here. The package still imports; the other stores work.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        encryption: Encryption | None = None,
        on_insecure_file: Literal["refuse", "warn"] = "refuse",
    ) -> None:
        if fcntl is None:  # pragma: no cover - not POSIX (tested in a subprocess)
            raise NotImplementedError(
                "FileTokenStore needs POSIX file locks (fcntl), which this platform lacks; "
                "use RedisTokenStore or MemoryTokenStore"
            )
        if on_insecure_file not in ("refuse", "warn"):
            raise ValueError("on_insecure_file must be 'refuse' or 'warn'")
        self.directory = Path(directory)
        self.encryption = encryption
        self.on_insecure_file = on_insecure_file
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = self.directory.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            # Others could list the account keys, or replace files they cannot read.
            self._insecure(
                f"{self.directory} is open to group or others (mode {stat.filemode(mode)}): "
                "chmod 700 it"
            )

    def __repr__(self) -> str:
        return f"FileTokenStore({str(self.directory)!r}, encryption={self.encryption!r})"

    def _insecure(self, message: str) -> None:
        if self.on_insecure_file == "refuse":
            raise InsecurePermissions(message)
        warnings.warn(message, stacklevel=4)

    # -- paths and locks ----------------------------------------------------------

    def path_of(self, key: str) -> Path:
        """The file holding the token of `key`."""
        return self.directory / f"{_file_stem(key)}.json"

    @asynccontextmanager
    async def _flock(self, path: Path, key: str, timeout: float) -> AsyncIterator[None]:
        try:
            # No symlink followed: one planted there must not make us create or
            # lock a file elsewhere. No terminal planted there becomes ours either.
            flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NOCTTY
            fd = os.open(path, flags, 0o600)
        except OSError as exc:
            # O_NOFOLLOW fails with ELOOP on Linux and macOS, EMLINK on FreeBSD.
            symlink = exc.errno in (errno.ELOOP, errno.EMLINK)
            reason = "it is a symbolic link, not followed" if symlink else exc.strerror
            raise StoreUnavailable(f"cannot open lock file {path}: {reason}") from None
        try:
            deadline = anyio.current_time() + timeout
            delay = 0.001
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if anyio.current_time() >= deadline:
                        raise LockTimeout(key, timeout, f"file store {self.directory}") from None
                    await anyio.sleep(delay)
                    delay = min(delay * 2, 0.02)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    @asynccontextmanager
    async def lock(
        self, key: str, *, timeout: float = DEFAULT_LOCK_TIMEOUT
    ) -> AsyncIterator[LockHeld]:
        """An exclusive lock on `key` across processes (``flock`` on ``<file>.lock``).

        The kernel holds it for as long as the holder's process lives, so it is
        never taken over from a holder that is only paused.
        """
        async with self._flock(self._sibling(key, ".lock"), key, timeout):
            yield LockHeld()

    def _sibling(self, key: str, suffix: str) -> Path:
        return self.directory / f"{_file_stem(key)}{suffix}"

    async def _write_locked(self, key: str, action: Callable[[], T]) -> T:
        """Run `action` in a thread under the account's write lock.

        Writes have their own lock, not `lock`'s: a refresher holds `lock`
        while it calls `compare_and_set`.
        """
        async with self._flock(self._sibling(key, ".wlock"), key, _WRITE_LOCK_TIMEOUT):
            return await anyio.to_thread.run_sync(action)

    # -- reading and writing files (in worker threads) -------------------------------

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreUnavailable(f"cannot read {path}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                self._insecure(
                    f"{path} is readable by group or others (mode {stat.filemode(mode)}): "
                    "chmod 600 it"
                )
            # Bounded: a file of gigabytes is read no further than a token could be.
            data = file.read(MAX_FILE_BYTES + 1)
        return read_envelope(data, path)

    def _load(self, key: str) -> Token | None:
        path = self.path_of(key)
        envelope = self._read(path)
        if envelope is None:
            return None
        if envelope["key"] != key:
            raise _foreign(path)
        return open_envelope(envelope, self.encryption, key=key, path=path)

    def _account_of(self, envelope: dict[str, Any], path: Path) -> str:
        # The file must be where its key puts it: a copy at another account's
        # name would list that key twice, and the other account not at all.
        account: str = envelope["key"]
        try:
            home = self.path_of(account)
        except ValueError:  # a JSON "\udcff" escape decodes to a lone surrogate
            home = None
        if home != path:
            raise _foreign(path)
        return account

    def _write(self, key: str, token: Token) -> None:
        path = self.path_of(key)
        data = envelope_of(key, token, self.encryption)
        self._remove_stale_temporaries(path)
        # mkstemp creates the file 0600 in the same directory, so the rename is atomic.
        fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=f".{path.name}.tmp-")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            Path(temporary).replace(path)
        except BaseException:
            with contextlib.suppress(OSError):
                Path(temporary).unlink()
            raise
        self._sync_directory()

    def _remove_stale_temporaries(self, path: Path) -> None:
        # Left by a writer killed before its rename; safe to remove under the
        # write lock. Matched exactly: ".k-a.json.tmp-*" also matches an
        # in-flight temporary of account "a.json.tmp-x" (".k-a.json.tmp-x.json.tmp-...").
        exact = re.compile(re.escape(f".{path.name}.tmp-") + _TEMPORARY_SUFFIX)
        for stale in self.directory.glob(f".{path.name}.tmp-*"):
            if exact.fullmatch(stale.name):
                with contextlib.suppress(OSError):
                    stale.unlink()

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        except OSError as exc:  # some file systems cannot fsync a directory
            if exc.errno not in (errno.EINVAL, errno.EBADF):
                raise
        finally:
            os.close(fd)

    async def _io(self, action: Callable[[], T]) -> T:
        try:
            return await anyio.to_thread.run_sync(action)
        except OSError as exc:
            raise StoreUnavailable(f"file store {self.directory}: {exc.strerror}") from None

    # -- the protocol ------------------------------------------------------------

    async def change_marker(self, key: str) -> tuple[int, int, int] | None:
        """The token file's identity and modification time (one ``stat``), None if absent.

        Every write renames a new file into place, so a write or a delete
        changes it.
        """
        try:
            info = self.path_of(key).stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreUnavailable(f"cannot stat {self.path_of(key)}: {exc.strerror}") from None
        return (info.st_ino, info.st_mtime_ns, info.st_size)

    async def aclose(self) -> None:
        """Nothing to release: files are opened per operation."""

    async def load(self, key: str) -> Token | None:
        """The token of `key`, or None.

        Raises:
            CorruptTokenData: the file is not a token (named in the message).
            ForeignToken: the file holds another account's token, by its
                envelope or by the account sealed inside.
            UnsupportedTokenFormat: the file was written by a newer version.
            DecryptionError: encrypted with a key this store was not given.
            UnboundToken: the store encrypts, and the token is in plain text
                or encrypted without its account (see `Encryption`).
            InsecurePermissions: the file is readable by others (unless warned only).
            ValueError: `key` is not valid Unicode text (a lone surrogate).
        """
        return await self._io(lambda: self._load(key))

    async def save(self, key: str, token: Token) -> None:
        """Store `token` for `key` (refusing to replace a corrupt or newer-format file)."""

        def save() -> None:
            self._load(key)  # raises on a corrupt file: it is not replaced unseen
            self._write(key, token)

        await self._locked_io(key, save)

    async def compare_and_set(self, key: str, expected: Token | None, token: Token) -> bool:
        """Store `token` if the stored token is still `expected` (by fingerprint)."""

        def compare_and_set() -> bool:
            current = self._load(key)
            current_print = None if current is None else current.fingerprint
            expected_print = None if expected is None else expected.fingerprint
            if current_print != expected_print:
                return False
            self._write(key, token)
            return True

        return await self._locked_io(key, compare_and_set)

    async def delete(self, key: str) -> bool:
        """Remove the token file of `key`, corrupt or not."""

        def delete() -> bool:
            try:
                self.path_of(key).unlink()
            except FileNotFoundError:
                return False
            self._sync_directory()
            return True

        return await self._locked_io(key, delete)

    async def keys(self) -> list[str]:
        """Every account key with a token file, sorted.

        Raises:
            CorruptTokenData: a token file is unreadable, or is not at its
                account's name (named in the message).
            UnsupportedTokenFormat: a token file was written by a newer version.
        """

        def keys() -> list[str]:
            found = []
            for path in self.directory.glob("[kh]-*.json"):
                envelope = self._read(path)
                if envelope is not None:
                    found.append(self._account_of(envelope, path))
            return sorted(found)

        return await self._io(keys)

    async def rotate_encryption(self) -> int:
        """Re-encrypt every token with the newest key, sealed with its account.

        Plain tokens, and tokens encrypted without their account, are
        rewritten only if the `Encryption` accepts them; otherwise the first
        one stops the rotation with `UnboundToken`.

        Returns:
            How many tokens were rewritten.
        """
        if self.encryption is None:
            raise ValueError("this store has no encryption keys to rotate to")
        rewritten = 0
        for key in await self.keys():

            def rotate(key: str = key) -> bool:
                token = self._load(key)
                if token is None:
                    return False
                self._write(key, token)
                return True

            rewritten += await self._locked_io(key, rotate)
        return rewritten

    async def _locked_io(self, key: str, action: Callable[[], T]) -> T:
        try:
            return await self._write_locked(key, action)
        except OSError as exc:
            raise StoreUnavailable(f"file store {self.directory}: {exc.strerror}") from None
