"""The authorization-request side of the flow: the URL with PKCE S256, and checking the callback."""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import parse_qsl, urlsplit

import attrs
from authlib.common.security import generate_token
from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from .errors import (
    AuthorizationDenied,
    AuthorizationFailed,
    AuthorizationReplayed,
    IssuerMismatch,
    StateMismatch,
)

__all__ = [
    "FLOW_PARAMETERS",
    "AuthorizationRequest",
    "ReplayMemory",
    "build_authorization_request",
    "callback_code",
]

# Authorizations and codes remembered as completed, to refuse a replay.
_REMEMBERED_COMPLETIONS = 10_000
# Parameters of the authorization request that the flow sets itself.
FLOW_PARAMETERS = frozenset(
    {
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "code_challenge",
        "code_challenge_method",
        "login_hint",
    }
)


@attrs.frozen(kw_only=True)
class AuthorizationRequest:
    """A pending authorization: send the user to `url`, keep the rest for the callback.

    A web backend keeps it server-side (`to_dict`) between the login
    redirect and the callback: it holds the PKCE verifier.

    Attributes:
        url: The authorization URL to redirect the user to.
        state: The anti-CSRF value the callback must echo.
        code_verifier: The PKCE secret (S256). Never shown by `repr`.
        redirect_uri: The callback URL the code will be sent to, and the one
            the code exchange names.
    """

    url: str
    state: str
    code_verifier: str = attrs.field(repr=False)
    redirect_uri: str

    def to_dict(self) -> dict[str, str]:
        """What the callback needs, for a server-side session (it holds the verifier)."""
        return {
            "state": self.state,
            "code_verifier": self.code_verifier,
            "redirect_uri": self.redirect_uri,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, str]) -> AuthorizationRequest:
        """Rebuild a pending authorization from `to_dict`'s output (``url`` is not kept)."""
        return cls(
            url="",
            state=data["state"],
            code_verifier=data["code_verifier"],
            redirect_uri=data["redirect_uri"],
        )


class ReplayMemory:
    """Authorizations and codes completed already (by digest), to refuse a replay."""

    def __init__(self) -> None:
        self._completed: OrderedDict[str, None] = OrderedDict()

    def __repr__(self) -> str:
        return f"ReplayMemory(completed={len(self._completed)})"

    def seen(self, kind: str, value: str) -> bool:
        """Whether `value` (a ``"state"`` or a ``"code"``, per `kind`) was completed already."""
        return _digest(kind, value) in self._completed

    def remember(self, kind: str, value: str) -> None:
        """Remember `value` as completed; the oldest beyond the limit are forgotten."""
        self._completed[_digest(kind, value)] = None
        while len(self._completed) > _REMEMBERED_COMPLETIONS:
            self._completed.popitem(last=False)


def build_authorization_request(
    *,
    authorize_url: str,
    client_id: str,
    redirect_uri: str,
    scopes: Sequence[str],
    login_hint: str | None,
    extra_params: Mapping[str, str] | None,
) -> AuthorizationRequest:
    """A new authorization: a URL carrying a fresh `state` and a PKCE S256 challenge.

    Raises:
        ValueError: `extra_params` names a flow parameter or has a value that is not a string.
    """
    extra = dict(extra_params or {})
    owned = sorted(FLOW_PARAMETERS & extra.keys())
    if owned:
        raise ValueError(
            f"extra_params cannot set {', '.join(owned)}: the flow sets them "
            "(use the scopes=, login_hint= and redirect_uri= arguments)"
        )
    if not all(isinstance(value, str) for value in extra.values()):
        raise ValueError("extra_params values must be strings")
    code_verifier = generate_token(64)
    state = generate_token(32)
    params = [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        *([("scope", " ".join(scopes))] if scopes else []),
        ("state", state),
        ("code_challenge", _s256(code_verifier)),
        ("code_challenge_method", "S256"),
        *([("login_hint", login_hint)] if login_hint is not None else []),
        *extra.items(),
    ]
    return AuthorizationRequest(
        url=add_params_to_uri(authorize_url, params),
        state=state,
        code_verifier=code_verifier,
        redirect_uri=redirect_uri,
    )


def callback_code(
    callback_url: str,
    request: AuthorizationRequest,
    *,
    issuer: str | None,
    redact: Callable[[str], str],
    replays: ReplayMemory,
) -> str:
    """The code of a checked callback; `request` is then remembered as completed.

    Checks `state` in constant time, then ``iss`` when `issuer` is set (RFC
    9207), then that `request` was not completed already, and turns an RFC
    6749 error into a typed error. Server text in errors goes through `redact`.

    Raises:
        StateMismatch: the callback's state is missing or not `request.state`.
        IssuerMismatch: ``iss`` is missing or not `issuer`.
        AuthorizationReplayed: this request was completed already.
        AuthorizationDenied: the user refused (``error=access_denied``).
        AuthorizationFailed: another error, or no code, in the callback.
    """
    params = dict(parse_qsl(urlsplit(callback_url).query, keep_blank_values=True))
    state = params.get("state", "")
    # Checked before anything else: an error from a forged callback means nothing.
    if not hmac.compare_digest(state.encode(), request.state.encode()):
        raise StateMismatch
    if issuer is not None and params.get("iss") != issuer:
        received = params.get("iss")
        raise IssuerMismatch(issuer, None if received is None else redact(received)[:200])
    if replays.seen("state", request.state):
        raise AuthorizationReplayed
    error = params.get("error")
    description = params.get("error_description")
    if description is not None:
        description = redact(description)[:500]
    if error == "access_denied":
        raise AuthorizationDenied(description)
    if error:
        raise AuthorizationFailed(redact(error)[:100], description)
    code = params.get("code")
    if not code:
        raise AuthorizationFailed("invalid_request", "the callback carries no code")
    replays.remember("state", request.state)
    return code


def _s256(verifier: str) -> str:
    challenge: str = create_s256_code_challenge(verifier)  # type: ignore[no-untyped-call]
    return challenge


def _digest(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}\0{value}".encode()).hexdigest()
