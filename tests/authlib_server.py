"""An authorization server the project did not write: authlib's RFC 6749 / 7636 grants over ASGI.

A documented test helper. The sandbox plays the API and its OAuth server, but
it was written by the same hands as the client, so a misunderstanding shared
by both passes unnoticed. Here authlib's server side does the OAuth work:
client authentication (``client_secret_basic`` decoding included), the
authorization-code grant with PKCE, the refresh grant with its scope check,
the bearer-token check of the API (RFC 6750) and ``iss`` in authorization
responses (RFC 9207). This module stores what the grants hand it, serves them
over loopback HTTP with uvicorn, and adds what a strict production server does
beyond the RFC's musts: refresh-token rotation with reuse detection that
revokes the whole grant, revocation on code reuse, PKCE S256 for every client
and a granted scope narrower than asked. Knobs inject the odd answers a client
must survive.

    server = AuthlibServer()
    with server.serve_in_thread() as urls:
        ...  # WiserOAuth(token_url=urls.token_url, client_secret=server.client_secret, ...)
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
import socket
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Collection, Iterator, MutableMapping
from typing import Any, Final, Literal
from urllib.parse import parse_qsl, urlsplit

import attrs
import uvicorn
from authlib.oauth2 import rfc6749, rfc6750, rfc7636, rfc9207
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.util import extract_basic_authorization, scope_to_list

__all__ = ["NORMAL", "AuthlibServer", "AuthlibUrls"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
_JSON_HEADERS = [("Content-Type", "application/json")]


NORMAL: Final[object] = object()
"""The ``expires_in`` knob's default: token answers advertise the real lifetime."""


@attrs.frozen
class AuthlibUrls:
    """Where an `AuthlibServer` answers (``api_base_url`` is ``origin + "/api"``)."""

    origin: str
    authorize_url: str
    token_url: str
    api_base_url: str
    issuer: str | None


# -- storage: what authlib's grants hand over and query -------------------------------


@attrs.define(eq=False)
class _Family:
    """Every token descending from one authorization, revoked together."""

    user: str
    scope: str
    revoked: bool = False


@attrs.define(eq=False)
class _Token(rfc6749.TokenMixin):
    access_token: str = attrs.field(repr=False)
    refresh_token: str | None = attrs.field(repr=False)
    expires_at: float
    family: _Family
    client_id: str
    rotated: bool = False

    def check_client(self, client: Any) -> bool:
        return bool(client.get_client_id() == self.client_id)

    def get_scope(self) -> str:
        # authlib gives a refresh without `scope` the presented token's scope; RFC 6749
        # section 6 says the scope originally granted, which outlives any narrowing.
        return self.family.scope

    def is_expired(self) -> bool:
        return time.time() >= self.expires_at

    def is_revoked(self) -> bool:
        return self.family.revoked


@attrs.define(eq=False)
class _Code(rfc6749.AuthorizationCodeMixin):
    code: str = attrs.field(repr=False)
    client_id: str
    redirect_uri: str
    scope: str
    user: str
    code_challenge: str
    code_challenge_method: str
    expires_at: float
    family: _Family | None = None  # set by the first exchange; kept to spot a replay

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@attrs.define(eq=False)
class _Client(rfc6749.ClientMixin):
    client_id: str
    client_secret: str = attrs.field(repr=False)  # authlib logs clients with %r
    auth_methods: tuple[str, ...]
    granted: tuple[str, ...]
    redirect_uris: tuple[str, ...] | None

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return ""  # none registered: every authorization request must name one

    def get_allowed_scope(self, scope: Collection[str] | str) -> str:
        if not scope:
            return " ".join(self.granted)  # RFC 6749 3.3: the pre-defined default
        allowed = [name for name in scope_to_list(scope) if name in self.granted]
        if not allowed:
            raise rfc6749.InvalidScopeError()
        return " ".join(allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        if self.redirect_uris is not None:
            return redirect_uri in self.redirect_uris
        parts = urlsplit(redirect_uri)  # RFC 8252 7.3: any port of the loopback address
        return parts.scheme == "http" and parts.hostname == "127.0.0.1"

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(client_secret.encode(), self.client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in self.auth_methods

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


# -- the framework side authlib leaves to an integration ------------------------------


class _Payload(rfc6749.OAuth2Payload):
    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for name, value in pairs:
            self._datalist[name].append(value)
        # Every value kept: authlib refuses repeated authorization parameters.
        self._data = {name: values[0] for name, values in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> dict[str, list[str]]:
        return self._datalist


class _Request(rfc6749.OAuth2Request):
    """An ASGI request as authlib reads it: the query (GET) or the form body (POST)."""

    def __init__(self, scope: Scope, body: bytes) -> None:
        host, port = scope["server"]
        query = bytes(scope["query_string"]).decode("latin-1")
        # authlib looks up "Authorization" exactly: title-case the names.
        self.header_map = {
            bytes(k).decode("latin-1").title(): bytes(v).decode("latin-1")
            for k, v in scope["headers"]
        }
        # authlib accepts plain http on loopback (RFC 8252), which is all this serves.
        super().__init__(
            scope["method"], f"http://{host}:{port}{scope['path']}?{query}", headers=self.header_map
        )
        self.query_pairs = parse_qsl(query, keep_blank_values=True)
        self.form_pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        self.params = _Payload(self.form_pairs if scope["method"] == "POST" else self.query_pairs)
        self.payload = self.params

    @property
    def args(self) -> dict[str, str | None]:
        return dict(self.query_pairs)

    @property
    def form(self) -> dict[str, str]:
        return dict(self.form_pairs)


@attrs.define
class _Answer:
    """What `handle_response` builds; authlib's RFC 9207 hook edits its ``location``."""

    status: int
    headers: list[tuple[str, str]]
    data: Any = attrs.field(default=None, repr=False)  # JSON; may hold tokens
    location: str | None = None
    raw_expires_in: str | None = None

    def http_headers(self) -> list[tuple[str, str]]:
        return self.headers + ([("Location", self.location)] if self.location else [])

    def body(self) -> bytes:
        if self.data is None:
            return b""
        text = json.dumps(self.data)
        if self.raw_expires_in is not None:  # such as 1e400, which json.dumps cannot write
            text = f'{text[:-1]}{", " if self.data else ""}"expires_in": {self.raw_expires_in}}}'
        return text.encode()


def _answer(value: object) -> _Answer:
    # The stubs type authlib's responses as tuples; they are what handle_response made.
    assert isinstance(value, _Answer)
    return value


class _Tokens(dict[str, Any]):
    """A token answer; authlib logs it with %r at debug level."""

    def __repr__(self) -> str:
        return f"<token answer: {sorted(self)}>"


class _Generator(rfc6750.BearerTokenGenerator):
    def generate(self, *args: Any, **kwargs: Any) -> dict[str, str | int]:
        return _Tokens(super().generate(*args, **kwargs))


class _Server(rfc6749.AuthorizationServer):
    def __init__(self, owner: AuthlibServer) -> None:
        super().__init__()
        self.owner = owner

    def query_client(self, client_id: str) -> _Client | None:  # type: ignore[override]  # stubs forget None
        return self.owner.registered if client_id == self.owner.client_id else None

    def save_token(self, token: dict[str, Any], request: rfc6749.OAuth2Request) -> None:
        if request.refresh_token is not None:
            family = request.refresh_token.family
        else:
            code = request.authorization_code
            assert isinstance(code, _Code)
            family = code.family = _Family(user=code.user, scope=code.scope)
        self.owner.keep(token, family, self.owner.access_token_lifetime)

    def create_oauth2_request(self, request: _Request) -> _Request:
        return request  # the ASGI app built it already

    def handle_response(self, status: int, body: Any, headers: Any) -> _Answer:
        location = dict(headers).pop("Location", None)
        other = [(k, v) for k, v in headers if k != "Location"]
        return _Answer(status, other, dict(body) if isinstance(body, dict) else None, location)

    def send_signal(self, name: str, *args: object, **kwargs: object) -> None:
        pass  # no listeners: the base class raises


class _RequireS256(rfc7636.CodeChallenge):
    """PKCE S256 for every client: ``required=True`` alone binds only public clients."""

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge") or data.get("code_challenge_method") != "S256":
            raise rfc6749.InvalidRequestError("PKCE with code_challenge_method S256 is required")
        super().validate_code_challenge(grant, redirect_uri)


class _CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ("client_secret_basic", "client_secret_post")

    def save_authorization_code(self, code: str, request: rfc6749.OAuth2Request) -> None:
        assert isinstance(request, _Request)
        owner: AuthlibServer = self.server.owner
        owner.codes[code] = _Code(
            code=code,
            client_id=owner.client_id,
            redirect_uri=request.params.data["redirect_uri"],
            scope=request.scope,  # authlib's resolved scope: what get_allowed_scope granted
            user=str(request.user),
            code_challenge=request.params.data["code_challenge"],
            code_challenge_method=request.params.data["code_challenge_method"],
            expires_at=time.time() + 600,  # RFC 6749 4.1.2: ten minutes at most
        )

    def query_authorization_code(self, code: str, client: rfc6749.ClientMixin) -> _Code | None:
        owner: AuthlibServer = self.server.owner
        found = owner.codes.get(code)
        if found is None or found.client_id != client.get_client_id():
            return None
        if found.family is not None:
            # RFC 6749 4.1.2: a code used twice may be stolen; revoke what it issued.
            owner.code_reuse_detected += 1
            found.family.revoked = True
            return None
        return None if time.time() >= found.expires_at else found

    def delete_authorization_code(self, authorization_code: _Code) -> None:
        pass  # kept, with its family, to recognize a replay

    def authenticate_user(self, authorization_code: _Code) -> str:
        return authorization_code.user


class _RefreshGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation

    # authlib checks neither expiry nor revocation here; the lookup must.
    def authenticate_refresh_token(self, refresh_token: str) -> _Token | None:  # type: ignore[override]  # stubs forget None
        owner: AuthlibServer = self.server.owner
        found = owner.refresh_tokens.get(refresh_token)
        if found is None or found.is_revoked():
            return None
        if found.rotated:
            # A rotated-away refresh token came back: someone holds a copy.
            owner.reuse_detected += 1
            found.family.revoked = True
            return None
        return found

    def authenticate_user(self, refresh_token: _Token) -> str:
        return refresh_token.family.user

    def revoke_old_credential(self, refresh_token: rfc6749.TokenMixin) -> None:
        assert isinstance(refresh_token, _Token)
        refresh_token.rotated = True


class _Issuer(rfc9207.IssuerParameter):
    def __init__(self, owner: AuthlibServer) -> None:
        self.owner = owner

    def get_issuer(self) -> str | None:
        return self.owner.issuer


class _Validator(rfc6750.BearerTokenValidator):
    def __init__(self, owner: AuthlibServer) -> None:
        super().__init__()
        self.owner = owner

    def authenticate_token(self, token_string: str) -> _Token | None:
        return self.owner.access_tokens.get(token_string)


class _DroppedAnswer(Exception):
    """Raised in the app to cut an answer short: uvicorn then closes the connection."""


class _HideDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _DroppedAnswer))


_HIDE_DROPS = _HideDrops()


class AuthlibServer:
    """An RFC 6749 / 7636 authorization server built on authlib, with a tiny protected API.

    Routes: ``GET /authorize`` (consents at once, as ``login_hint`` or
    ``"default"``), ``POST /token`` and ``GET /api/locations``.

    Args:
        client_id: The one registered client.
        client_secret: Its secret; by default one that only survives
            ``client_secret_basic`` when encoded first (RFC 6749 2.3.1).
        auth_methods: Client authentication methods the token endpoint accepts.
        granted_scope: What a grant may hold: the requested scopes among these.
        access_token_lifetime: Seconds an access token lives, whatever is advertised.
        issuer: When set, authorization responses carry it as ``iss`` (RFC 9207).
        redirect_uris: The redirect URIs allowed; by default any
            ``http://127.0.0.1:<port>/...``.

    Knobs (attributes read by the next request; `clear_faults` restores them):
        expires_in: `NORMAL`, or any JSON value token answers advertise instead.
        raw_expires_in: JSON text put verbatim as ``expires_in`` (such as ``1e400``).
        token_type: Replaces ``token_type`` in token answers.
        echo_secrets: Error answers quote what the client sent: the token
            endpoint's ``error_description`` (refresh token, code, verifier,
            secret) and the API's 401 message (the bearer token).
        answer_delay: Seconds between processing a token request (tokens
            minted, rotated) and answering it.
        drop_answers: How many of the next token answers to cut short after
            processing (``True`` counts as one): the client sees a protocol error.
        consent: ``"approve"``, or ``"deny"`` to redirect with ``access_denied``.

    Counters (`reset_counters` zeroes them): ``token_requests`` by grant type,
    ``token_errors`` by error code, ``reuse_detected`` (rotated-away refresh
    tokens presented), ``code_reuse_detected``.
    """

    def __init__(
        self,
        *,
        client_id: str = "indie-client",
        client_secret: str = "s3cr+t/%2B:with space",  # noqa: S107 - a test server's
        auth_methods: Collection[str] = ("client_secret_basic", "client_secret_post"),
        granted_scope: str = "read",
        access_token_lifetime: float = 3600.0,
        issuer: str | None = "https://indie.test/",
        redirect_uris: Collection[str] | None = None,
    ) -> None:
        self.registered = _Client(
            client_id,
            client_secret,
            tuple(auth_methods),
            tuple(granted_scope.split()),
            None if redirect_uris is None else tuple(redirect_uris),
        )
        self.access_token_lifetime = access_token_lifetime
        self.issuer = issuer
        # The app runs on uvicorn's thread, the helpers on the tests': all state under one lock.
        self._lock = threading.Lock()
        self.codes: dict[str, _Code] = {}
        self.access_tokens: dict[str, _Token] = {}
        self.refresh_tokens: dict[str, _Token] = {}
        self._server = _Server(self)
        self._server.register_token_generator(
            "default",
            _Generator(
                access_token_generator=lambda **_: secrets.token_urlsafe(32),
                refresh_token_generator=lambda **_: secrets.token_urlsafe(32),
                expires_generator=lambda client, grant_type: int(self.access_token_lifetime),
            ),
        )
        self._server.register_grant(_CodeGrant, [_RequireS256(required=True)])
        self._server.register_grant(_RefreshGrant)
        self._issuer = _Issuer(self)
        self._server.register_extension(self._issuer)
        self._protector = rfc6749.ResourceProtector()
        self._protector.register_token_validator(_Validator(self))
        self.reset()

    @property
    def client_id(self) -> str:
        """The registered client's id."""
        return self.registered.client_id

    @property
    def client_secret(self) -> str:
        """The registered client's secret."""
        return self.registered.client_secret

    def __repr__(self) -> str:
        return f"AuthlibServer(client_id={self.client_id!r}, issuer={self.issuer!r})"

    def reset(self) -> None:
        """Knobs back to normal, counters to zero; grants stay."""
        self.clear_faults()
        self.reset_counters()

    def clear_faults(self) -> None:
        """Knobs back to normal; counters and grants stay."""
        self.expires_in: object = NORMAL
        self.raw_expires_in: str | None = None
        self.token_type: str | None = None
        self.echo_secrets = False
        self.answer_delay = 0.0
        self.drop_answers = 0
        self.consent: Literal["approve", "deny"] = "approve"

    def reset_counters(self) -> None:
        """Counters to zero."""
        with self._lock:
            self.token_requests: Counter[str] = Counter()
            self.token_errors: Counter[str] = Counter()
            self.reuse_detected = 0
            self.code_reuse_detected = 0

    # -- test helpers ------------------------------------------------------------------

    def issue_token(
        self, customer: str = "default", lifetime: float | None = None
    ) -> dict[str, Any]:
        """A grant minted directly, as if the browser flow had happened: RFC 6749 5.1 JSON.

        Args:
            customer: The user the grant belongs to.
            lifetime: Seconds the access token lives (negative: expired already).
        """
        life = self.access_token_lifetime if lifetime is None else lifetime
        scope = " ".join(self.registered.granted)
        with self._lock:
            token = self._server.generate_token(
                "authorization_code", self.registered, user=customer, scope=scope
            )
            token["expires_in"] = int(life)
            self.keep(token, _Family(user=customer, scope=scope), life)
        return dict(token)

    def is_live(self, access_token: str) -> bool:
        """Whether the API accepts `access_token` now."""
        with self._lock:
            found = self.access_tokens.get(access_token)
            return found is not None and not found.is_revoked() and not found.is_expired()

    def current_refresh_token(self, customer: str = "default") -> str | None:
        """The refresh token of `customer`'s newest live grant, if any."""
        with self._lock:
            live = [
                token.refresh_token
                for token in self.refresh_tokens.values()
                if token.family.user == customer and not token.rotated and not token.is_revoked()
            ]
        return live[-1] if live else None

    def keep(self, token: dict[str, Any], family: _Family, lifetime: float) -> None:
        record = _Token(
            access_token=token["access_token"],
            refresh_token=token.get("refresh_token"),
            expires_at=time.time() + lifetime,
            family=family,
            client_id=self.client_id,
        )
        self.access_tokens[record.access_token] = record
        if record.refresh_token is not None:
            self.refresh_tokens[record.refresh_token] = record

    # -- HTTP -------------------------------------------------------------------------

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI 3 application (HTTP only: uvicorn serves it with lifespan off)."""
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = _Request(scope, body)
        route = (scope["method"], scope["path"])
        drop = False
        if route == ("GET", "/authorize"):
            answer = self._authorize(request)
        elif route == ("POST", "/token"):
            answer, delay, drop = self._token(request)
            await asyncio.sleep(delay)  # the grant is processed already
        elif route == ("GET", "/api/locations"):
            answer = self._locations(request)
        else:
            error = {"code": "not_found", "message": "no such route"}
            answer = _Answer(404, _JSON_HEADERS, {"error": error})
        content = answer.body()
        headers = [(b"content-length", str(len(content)).encode())]
        headers += [(k.lower().encode(), v.encode("latin-1")) for k, v in answer.http_headers()]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        if drop:
            raise _DroppedAnswer
        await send({"type": "http.response.body", "body": content})

    def _authorize(self, request: _Request) -> _Answer:
        with self._lock:
            try:
                grant = self._server.get_consent_grant(request)  # type: ignore[no-untyped-call]  # stubs: unannotated
            except rfc6749.OAuth2Error as error:
                answer = _answer(self._server.handle_error_response(request, error))
                # RFC 9207 covers error redirects too; authlib's hook runs on success only.
                self._issuer.add_issuer_parameter(self._server, answer)
                return answer
            user = request.params.data.get("login_hint") or "default"
            return _answer(
                self._server.create_authorization_response(
                    request, grant_user=user if self.consent == "approve" else None, grant=grant
                )
            )

    def _token(self, request: _Request) -> tuple[_Answer, float, bool]:
        with self._lock:
            answer = _answer(self._server.create_token_response(request))
            self.token_requests[request.params.data.get("grant_type", "(none)")] += 1
            if answer.status >= 400:
                self.token_errors[answer.data["error"]] += 1
                if self.echo_secrets:
                    _, basic_secret = extract_basic_authorization(request.header_map)
                    names = ("refresh_token", "code", "code_verifier", "client_secret")
                    sent = [request.form.get(name) for name in names] + [basic_secret]
                    answer.data["error_description"] = "you sent: " + ", ".join(filter(None, sent))
            else:
                if self.token_type is not None:
                    answer.data["token_type"] = self.token_type
                if self.raw_expires_in is not None:
                    answer.data.pop("expires_in", None)
                    answer.raw_expires_in = self.raw_expires_in
                elif self.expires_in is not NORMAL:
                    answer.data["expires_in"] = self.expires_in
            drop = self.drop_answers > 0
            self.drop_answers -= drop
            return answer, self.answer_delay, drop

    def _locations(self, request: _Request) -> _Answer:
        with self._lock:
            try:
                self._protector.validate_request(None, request)  # type: ignore[no-untyped-call]  # stubs: unannotated
            except rfc6749.OAuth2Error:
                # authlib says "missing_authorization" when there is no token (RFC 6750
                # 3.1 would name no error); this API answers invalid_token to all.
                error = rfc6750.InvalidTokenError()
                message = "access token missing, expired or revoked"
                if self.echo_secrets:
                    message += f"; you sent {request.header_map.get('Authorization')!r}"
                body = {"error": {"code": "invalid_token", "message": message}}
                return _Answer(401, error.get_headers(), body)
        try:
            offset = max(0, int(request.params.data.get("offset", 0)))
            limit = max(1, int(request.params.data.get("limit", 100)))
        except ValueError:
            error_body = {"code": "invalid_request", "message": "offset and limit are integers"}
            return _Answer(400, _JSON_HEADERS, {"error": error_body})
        data = [{"id": "loc-1", "name": "Indie HQ"}][offset : offset + limit]
        page = {"data": data, "meta": {"offset": offset, "limit": limit, "total": 1}}
        return _Answer(200, _JSON_HEADERS, page)

    @contextlib.contextmanager
    def serve_in_thread(self) -> Iterator[AuthlibUrls]:
        """Serve on a free loopback port with uvicorn in a daemon thread, until the block exits."""
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        origin = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(
            self.app,
            interface="asgi3",
            lifespan="off",
            access_log=False,
            log_config=None,  # a test process keeps its own logging setup
            log_level="warning",
            # Keep-alive connections a client left open must not hold up the exit.
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        logging.getLogger("uvicorn.error").addFilter(_HIDE_DROPS)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"authlib {origin}", daemon=True
        )
        with sock:
            thread.start()
            deadline = time.monotonic() + 10
            while not server.started:
                if time.monotonic() > deadline or not thread.is_alive():
                    server.should_exit = True
                    raise RuntimeError("the authlib server did not start")
                time.sleep(0.01)
            try:
                yield AuthlibUrls(
                    origin=origin,
                    authorize_url=f"{origin}/authorize",
                    token_url=f"{origin}/token",
                    api_base_url=f"{origin}/api",
                    issuer=self.issuer,
                )
            finally:
                server.should_exit = True
                thread.join(10)
                if thread.is_alive():
                    server.force_exit = True
                    thread.join(5)
