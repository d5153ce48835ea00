"""Per-account token keeping: fresh tokens, one refresh at a time, and none ever lost."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Hashable, Sequence

import anyio
import attrs

from token_stores import Token, TokenStore, TokenStoreError

from ._account_state import SAVE_RETRY_FIRST, UNKNOWN, Account, Unsaved, refresh_time
from ._grants import Superseded, finishing, grant, load_quietly
from ._observe import note_token_refreshed
from ._redact import Secrets
from ._token_endpoint import TokenEndpoint
from .errors import AuthorizationRequired, TokenEndpointError, store_error

__all__ = ["TokenKeeper"]

logger = logging.getLogger("wiser_async.oauth")

# Saving a new token: quick tries while the caller waits, then on later calls
# with a growing pause, for as long as the process lives.
_QUICK_SAVE_WAITS = (0.1, 0.3)
_SAVE_RETRY_MAX = 30.0
# How long the taker of an expired lock waits for its previous holder's save
# before it sends the refresh token itself.
_TAKEOVER_WAIT = 10.0
# When the store is down and a refresh is due, a token that has not expired
# yet is used on, looking at the store again after this long.
_STORE_DOWN_RECHECK = 1.0


class _Refused(Exception):
    """The refresh token was refused (``invalid_grant``) and the store shows nothing newer."""


class TokenKeeper:
    """The tokens of every account `WiserOAuth` serves, kept fresh and never lost.

    Holds each account's valid token in memory; refreshes single-flight
    (in the process, then across processes under the store's lock); keeps a
    token the store could not take and saves it again later; looks at the
    store's change marker every `revocation_check_interval` seconds of use.
    """

    def __init__(
        self,
        *,
        store: TokenStore,
        endpoint: TokenEndpoint,
        secrets: Secrets,
        leeway: float,
        leeway_jitter: float,
        lock_timeout: float,
        revocation_check_interval: float,
    ) -> None:
        self.store = store
        self.leeway = leeway
        self.leeway_jitter = leeway_jitter
        self.lock_timeout = lock_timeout
        self.revocation_check_interval = revocation_check_interval
        self._endpoint = endpoint
        self._secrets = secrets
        self._accounts: dict[str, Account] = {}

    def __repr__(self) -> str:
        return f"TokenKeeper(store={self.store!r}, accounts={len(self._accounts)})"

    @property
    def unsaved_accounts(self) -> list[str]:
        """Accounts whose newest token only this process holds (the store could not take it)."""
        return sorted(key for key, state in self._accounts.items() if state.unsaved is not None)

    async def save_unsaved_tokens(self) -> None:
        """One last try at saving every token the store could not take yet; log those lost."""
        for account, state in list(self._accounts.items()):
            if state.unsaved is not None:
                await self._save_unsaved(account, state)
            if state.unsaved is not None:
                logger.error(
                    "the newest token of account %r could not be saved and is lost with this "
                    "process; the store keeps the one before, which the server may no longer "
                    "accept",
                    account,
                )

    async def exchange_code(
        self, account: str, *, code: str, code_verifier: str, redirect_uri: str
    ) -> Token:
        """Exchange an authorization code for a token and store it, whatever the caller does."""
        state = self._state(account)
        # A code is single-use: once exchanged, the token must reach the store.
        with finishing("code exchange", self._endpoint.path):
            token = await grant(
                self._endpoint,
                self.store,
                account,
                "authorization_code",
                {"code": code, "code_verifier": code_verifier, "redirect_uri": redirect_uri},
                stored=None,
            )
            state.dead = None
            await self._store_new(account, state, token, expected=None, conditional=False)
        return token

    async def token(self, account: str, *, rejected: Token | None = None) -> Token:
        """A valid token of `account`, refreshed first if it is near expiry (see `WiserOAuth`)."""
        state = self._accounts.get(account)
        if state is not None and rejected is None and time.time() < state.fresh_until:
            return state.token  # type: ignore[return-value] # fresh_until is finite only with a token
        return await self._token_slow(account, rejected, refresh=False, scopes=None)

    async def refresh(self, account: str, *, scopes: Sequence[str] | None = None) -> Token:
        """Refresh the token of `account` now, whatever its expiry."""
        return await self._token_slow(account, None, refresh=True, scopes=scopes)

    async def forget(self, account: str) -> bool:
        """Delete the account's token from the store and this process. True if one was stored."""
        self._accounts.pop(account, None)
        try:
            return await self.store.delete(account)
        except TokenStoreError as exc:
            raise store_error(exc) from exc

    def _state(self, account: str) -> Account:
        state = self._accounts.get(account)
        if state is None:
            state = self._accounts[account] = Account(anyio.Lock())
        return state

    def _use(self, account: str, state: Account, token: Token, marker: Hashable) -> None:
        """Make `token` the one this process answers with."""
        if state.token is None or state.token.fingerprint != token.fingerprint:
            state.refresh_at = refresh_time(token, self.leeway, self.leeway_jitter)
        state.token = token
        state.marker = marker
        state.check_at = time.time() + self.revocation_check_interval
        self._secrets.set_tokens(account, token.access_token, token.refresh_token)
        state.update_fresh_until()

    async def _token_slow(
        self, account: str, rejected: Token | None, *, refresh: bool, scopes: Sequence[str] | None
    ) -> Token:
        state = self._state(account)
        async with state.flight:
            now = time.time()
            if state.unsaved is not None and now >= state.unsaved.retry_at:
                await self._save_unsaved(account, state)
            if state.token is not None and now >= state.check_at and rejected is None:
                await self._check_store(account, state)
            if not refresh and state.usable(rejected):
                state.update_fresh_until()
                return state.token  # type: ignore[return-value] # usable() checked it
            return await self._refresh(account, state, rejected, force=refresh, scopes=scopes)

    async def _marker(self, account: str) -> Hashable:
        try:
            marker: Hashable = await self.store.change_marker(account)
        except TokenStoreError:
            return UNKNOWN
        return marker

    async def _check_store(self, account: str, state: Account) -> None:
        """Look whether another process deleted or replaced the token (no round trip if not)."""
        state.check_at = time.time() + self.revocation_check_interval
        state.update_fresh_until()
        if state.unsaved is not None:
            return  # its save, retried on its own schedule, decides between ours and the store's
        marker = await self._marker(account)
        if marker is UNKNOWN or marker == state.marker:
            return  # unchanged, or the store cannot tell now: use the token on
        try:
            current = await self.store.load(account)
        except TokenStoreError:
            return
        if current is None:
            logger.info("the token of account %r was deleted from the store", account)
            state.drop()
        elif state.token is not None and current.fingerprint != state.token.fingerprint:
            logger.debug("the token of account %r was replaced in the store", account)
            self._use(account, state, current, marker)
        else:
            state.marker = marker

    async def _refresh(
        self,
        account: str,
        state: Account,
        rejected: Token | None,
        *,
        force: bool,
        scopes: Sequence[str] | None,
    ) -> Token:
        try:
            async with self.store.lock(account, timeout=self.lock_timeout) as held:
                taken_over = bool(getattr(held, "taken_over", False))
                try:
                    return await self._refresh_locked(
                        account, state, rejected, force, scopes, taken_over=taken_over
                    )
                except _Refused as refused:
                    stored = refused.args[0]
                    if taken_over:
                        # The lock's previous holder outlived its lease: it may have spent
                        # the refresh token and be about to save what it got.
                        newer = await self._await_late_save(
                            account, stored, self.lock_timeout, "its refresh token was refused"
                        )
                        if newer is not None:
                            self._use(account, state, newer, await self._marker(account))
                            return newer
                    state.dead = stored.fingerprint
                    state.drop()
                    raise AuthorizationRequired(
                        account, "the refresh token was rejected (invalid_grant)"
                    ) from None
        except TokenStoreError as exc:
            token = state.token
            if (
                token is not None
                and not force
                and not token.expires_within(0)
                and (rejected is None or token.fingerprint != rejected.fingerprint)
            ):
                # The store is down but the token has not expired: use it on, and try again soon.
                logger.warning(
                    "token store unavailable for account %r (%s); using its current token until "
                    "it expires",
                    account,
                    type(exc).__name__,
                )
                state.refresh_at = min(
                    token.expires_at or math.inf, time.time() + _STORE_DOWN_RECHECK
                )
                state.update_fresh_until()
                return token
            raise store_error(exc) from exc

    async def _refresh_locked(
        self,
        account: str,
        state: Account,
        rejected: Token | None,
        force: bool,
        scopes: Sequence[str] | None,
        *,
        taken_over: bool,
    ) -> Token:
        marker = await self._marker(account)
        if state.unsaved is not None:
            # The store answers again: the token only this process holds goes first.
            await self._save_unsaved(account, state)
        stored = await self.store.load(account)
        pending = state.unsaved
        # The newest token: ours while the store still cannot take it.
        current = pending.token if pending is not None else stored
        expected, conditional = (
            (pending.expected, pending.conditional) if pending is not None else (stored, True)
        )
        if current is None:
            state.drop()
            raise AuthorizationRequired(account, "no token is stored")
        if state.token is None or state.token.fingerprint != current.fingerprint:
            self._use(account, state, current, marker)
        else:
            state.marker = marker
        if not force and state.usable(rejected):
            # Another process refreshed while this one waited for the lock.
            return current
        if current.refresh_token is None:
            raise AuthorizationRequired(account, "the token expired and there is no refresh token")
        if state.dead == current.fingerprint:
            raise AuthorizationRequired(account, "the refresh token was rejected (invalid_grant)")
        if taken_over and pending is None:
            # The lock's previous holder outlived its lease (a paused process): it may be
            # mid-refresh with this very refresh token. Sending it again would spend it
            # twice, which a server detecting reuse answers by revoking the grant.
            newer = await self._await_late_save(
                account, current, _TAKEOVER_WAIT, "it took over an expired lock"
            )
            if newer is not None:
                self._use(account, state, newer, await self._marker(account))
                return newer
        params = {"refresh_token": current.refresh_token}
        if scopes is not None:
            params["scope"] = " ".join(scopes)
        # From here the refresh runs to its end even if the caller is
        # cancelled (a deadline, a closed web request, Ctrl-C): once the server
        # has rotated the refresh token, only keeping the new one keeps the grant.
        with finishing("refresh", self._endpoint.path):
            try:
                new = await grant(
                    self._endpoint, self.store, account, "refresh_token", params, stored=current
                )
            except Superseded as superseded:
                latest = superseded.args[0]
                state.unsaved = None
                self._use(account, state, latest, await self._marker(account))
                return latest  # type: ignore[no-any-return]
            except TokenEndpointError as exc:
                if exc.error != "invalid_grant":
                    raise
                # Another process may have refreshed with a lock we could not see
                # (an expired lease): its token is in the store.
                latest = await load_quietly(self.store, account)
                if latest is not None and latest.fingerprint != current.fingerprint:
                    state.unsaved = None
                    self._use(account, state, latest, await self._marker(account))
                    return latest
                raise _Refused(current) from None
            if new.refresh_token is None:
                # RFC 6749 section 6: the server may keep the refresh token unchanged.
                new = attrs.evolve(new, refresh_token=current.refresh_token)
            if new.scope is None and current.scope is not None:
                # RFC 6749 section 5.1: an answer without scope grants the scope asked for.
                new = attrs.evolve(new, scope=current.scope)
            logger.info("refreshed the token of account %r", account, extra={"account": account})
            note_token_refreshed(account)
            return await self._store_new(
                account, state, new, expected=expected, conditional=conditional
            )

    async def _await_late_save(
        self, account: str, stored: Token, limit: float, why: str
    ) -> Token | None:
        """Poll the store for a token newer than `stored`, for up to `limit` seconds."""
        logger.warning(
            "account %r: %s; waiting up to %g s for the lock's previous holder to save "
            "the token it may have received",
            account,
            why,
            limit,
        )
        delay = 0.05
        with anyio.move_on_after(limit):
            while True:
                latest = await load_quietly(self.store, account)
                if latest is not None and latest.fingerprint != stored.fingerprint:
                    return latest
                await anyio.sleep(delay)
                delay = min(delay * 1.5, 1.0)
        return None

    async def _store_new(
        self,
        account: str,
        state: Account,
        token: Token,
        *,
        expected: Token | None,
        conditional: bool,
    ) -> Token:
        """Save a token the server just issued; keep it in the process if the store fails."""
        for wait in (*_QUICK_SAVE_WAITS, None):
            try:
                if not conditional:
                    await self.store.save(account, token)
                elif not await self.store.compare_and_set(account, expected, token):
                    # The store changed after it was read, despite the lock: the store wins.
                    latest = await self.store.load(account)
                    if latest is None:
                        state.drop()
                        raise AuthorizationRequired(
                            account, "the token was deleted during a refresh"
                        )
                    token = latest
            except TokenStoreError as exc:
                if wait is None:
                    logger.warning(
                        "could not save the new token of account %r (%s); this process keeps it "
                        "and saves it when the store is back",
                        account,
                        type(exc).__name__,
                    )
                    break
                await anyio.sleep(wait)
            else:
                state.unsaved = None
                self._use(account, state, token, await self._marker(account))
                return token
        state.unsaved = Unsaved(
            token=token,
            expected=expected,
            conditional=conditional,
            retry_at=time.time() + SAVE_RETRY_FIRST,
        )
        self._use(account, state, token, UNKNOWN)
        return token

    async def _save_unsaved(self, account: str, state: Account) -> bool:
        """One more try at saving the token only this process holds. True once saved."""
        unsaved = state.unsaved
        if unsaved is None:
            return True
        try:
            if not unsaved.conditional:
                await self.store.save(account, unsaved.token)
                saved = True
            else:
                saved = await self.store.compare_and_set(account, unsaved.expected, unsaved.token)
            if not saved:
                current = await self.store.load(account)
                saved = current is not None and current.fingerprint == unsaved.token.fingerprint
                if not saved:
                    # Deleted or replaced meanwhile: the store's word stands.
                    logger.warning(
                        "account %r changed in the store while its newest token waited to be "
                        "saved; the store's state is kept",
                        account,
                    )
                    state.unsaved = None
                    if current is None:
                        state.drop()
                    else:
                        self._use(account, state, current, await self._marker(account))
                    return False
        except TokenStoreError:
            unsaved.wait = min(unsaved.wait * 2, _SAVE_RETRY_MAX)
            unsaved.retry_at = time.time() + unsaved.wait
            state.update_fresh_until()
            return False
        logger.info("saved the token of account %r that had waited for the store", account)
        state.unsaved = None
        self._use(account, state, unsaved.token, await self._marker(account))
        return True
