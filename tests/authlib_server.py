"""An authorization server the project did not write: authlib's RFC 6749 / 7636 grants over ASGI.

A documented test helper. The sandbox plays the API and its OAuth server, but
it was written by the same hands as the client, so a misunderstanding shared
by both passes unnoticed. Here authlib's server side does the OAuth work:
client authentication (``client_secret_basic`` and ``client_secret_post``),
the authorization-code grant with PKCE S256 required, the refresh grant with
its scope check. This module only stores what the grants hand it, serves
them over loopback HTTP with uvicorn, and adds what a strict production
server does beyond the RFC's musts: refresh-token rotation with reuse
detection that revokes the whole grant, revocation on code reuse, a granted
scope narrower than asked, and ``iss`` in the authorization response
(RFC 9207). Knobs inject the odd answers a client must survive.

    server = AuthlibServer()
    with server.serve_in_thread() as urls:
        ...  # WiserOAuth(token_url=urls.token_url, client_secret=server.client_secret, ...)
"""

from __future__ import annotations

import contextlib
import hmac
import json
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import anyio
import attrs
from authlib.oauth2 import rfc6749, rfc7636
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6750 import BearerTokenGenerator

__all__ = ["AuthlibServer", "AuthlibUrls"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Answer = tuple[int, bytes, list[tuple[str, str]]]

_NORMAL: Any = object()
# authlib refuses plain-HTTP URIs; the requests it sees are given this origin.
_ORIGIN = "https://indie.test"


@attrs.frozen
class AuthlibUrls:
    """Where an `AuthlibServer` answers."""

    origin: str
    authorize_url: str
    token_url: str
    api_base_url: str
    issuer: str | None


@attrs.define(eq=False)
class _Family:
    """Every token descending from one authorization: revoked together."""

    user: str
    scope: str
    revoked: bool = False


@attrs.define(eq=False)
class _Token(rfc6749.TokenMixin):
    access_token: str
    refresh_token: str | None
    scope: str
    expires_at: float
    family: _Family
    client_id: str
    rotated: bool = False

    def check_client(self, client: Any) -> bool:
        return bool(client.get_client_id() == self.client_id)

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int(self.expires_at - time.time())

    def is_expired(self) -> bool:
        return time.time() >= self.expires_at

    def is_revoked(self) -> bool:
        return self.family.revoked

    def get_user(self) -> str:
        return self.family.user


@attrs.define(eq=False)
class _Code(rfc6749.AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: str
    code_challenge: str
    code_challenge_method: str
    expires_at: float
    used: bool = False
    family: _Family | None = None

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@attrs.define(eq=False)
class _Client(rfc6749.ClientMixin):
    client_id: str
    client_secret: str
    methods: tuple[str, ...]
    granted: frozenset[str]

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:  # type: ignore[override] # no default: None
        return None

    def get_allowed_scope(self, scope: Any) -> str:
        asked = rfc6749.util.scope_to_list(scope) or sorted(self.granted)
        return " ".join(name for name in asked if name in self.granted)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        parts = urlsplit(redirect_uri)
        return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost")

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(client_secret.encode(), self.client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in self.methods

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


class _Request(rfc6749.OAuth2Request):
    def __init__(self, method: str, path: str, query: str, form: dict[str, str], headers: Any):
        super().__init__(method, f"{_ORIGIN}{path}?{query}", headers=headers)
        self._args = dict(parse_qsl(query, keep_blank_values=True))
        self._form = form
        self.payload = rfc6749.requests.BasicOAuth2Payload({**self._args, **form})

    @property
    def args(self) -> dict[str, str | None]:
        return dict(self._args)

    @property
    def form(self) -> dict[str, str]:
        return self._form


class AuthlibServer:
    """An RFC 6749 / 7636 authorization server built on authlib, with a tiny protected API.

    Args:
        client_id: The registered client.
        client_secret: Its secret; by default one that only survives
            client_secret_basic when form-urlencoded first (RFC 6749 2.3.1).
        auth_methods: Client authentication methods accepted.
        granted_scope: What a grant may hold: the requested scopes among these
            (a server granting less than asked).
        access_token_lifetime: Seconds an access token lives (server side).
        issuer: When set, authorization responses carry it as ``iss``.

    Knobs (attributes, read by the next request): ``expires_in`` (a JSON value
    advertised instead of the real lifetime), ``raw_expires_in`` (JSON text
    put verbatim, such as ``1e400``), ``token_type``, ``echo_secrets`` (error
    answers quote what the client sent), ``answer_delay`` (seconds between
    acting on a token request and answering), ``drop_answers`` (how many of
    the next token answers to drop after acting), ``consent``.
    """

    def __init__(
        self,
        *,
        client_id: str = "indie-client",
        client_secret: str = "s3cr+t/%2B:with space",  # noqa: S107 - a test server's
        auth_methods: tuple[str, ...] = ("client_secret_basic", "client_secret_post"),
        granted_scope: str = "read",
        access_token_lifetime: float = 3600.0,
        issuer: str | None = "https://indie.test/",
    ) -> None:
        self.client = _Client(
            client_id, client_secret, auth_methods, frozenset(granted_scope.split())
        )
        self.access_token_lifetime = access_token_lifetime
        self.issuer = issuer
        self._lock = threading.Lock()
        self._codes: dict[str, _Code] = {}
        self._access: dict[str, _Token] = {}
        self._refresh: dict[str, _Token] = {}
        self._server = self._make_server()
        self.reset()

    @property
    def client_id(self) -> str:
        return str(self.client.client_id)

    @property
    def client_secret(self) -> str:
        return str(self.client.client_secret)

    def __repr__(self) -> str:
        return f"AuthlibServer(client_id={self.client_id!r})"

    def reset(self) -> None:
        """Knobs back to normal, counters to zero (grants stay)."""
        self.clear_faults()
        self.token_requests: Counter[str] = Counter()
        self.token_errors: Counter[str] = Counter()
        self.reuse_detected = 0
        self.code_reuse_detected = 0

    def clear_faults(self) -> None:
        """Knobs back to normal; counters and grants stay."""
        self.expires_in: Any = _NORMAL
        self.raw_expires_in: str | None = None
        self.token_type: str | None = None
        self.echo_secrets = False
        self.answer_delay = 0.0
        self.drop_answers = 0
        self.consent = "approve"

    # -- authlib's server, given storage ---------------------------------------------

    def _make_server(self) -> Any:  # authlib's own calls are loosely typed
        owner = self

        class Server(rfc6749.AuthorizationServer):
            def query_client(self, client_id: str) -> Any:
                return owner.client if client_id == owner.client.client_id else None

            def save_token(self, token: dict[str, Any], request: Any) -> None:
                owner._save_token(token, request)

            def create_oauth2_request(self, request: _Request) -> _Request:
                return request  # built by the ASGI app already

            def handle_response(self, status: int, body: Any, headers: Any) -> Answer:
                data = json.dumps(body).encode() if isinstance(body, dict) else str(body).encode()
                return status, data, [(str(k), str(v)) for k, v in headers]

            def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
                pass

        class CodeGrant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]  # noqa: RUF012

            def save_authorization_code(self, code: str, request: Any) -> None:
                data = request.payload.data
                owner._codes[code] = _Code(
                    code=code,
                    client_id=request.client.client_id,
                    redirect_uri=request.payload.redirect_uri,
                    scope=request.client.get_allowed_scope(request.payload.scope),
                    user=str(request.user),
                    code_challenge=data.get("code_challenge", ""),
                    code_challenge_method=data.get("code_challenge_method", ""),
                    expires_at=time.time() + 600,
                )

            def query_authorization_code(self, code: str, client: Any) -> _Code | None:
                found = owner._codes.get(code)
                if found is None or found.client_id != client.client_id:
                    return None
                if found.used:
                    # RFC 6749 4.1.2: a code used twice may be stolen; revoke what it issued.
                    owner.code_reuse_detected += 1
                    if found.family is not None:
                        found.family.revoked = True
                    return None
                return None if time.time() >= found.expires_at else found

            def delete_authorization_code(self, authorization_code: _Code) -> None:
                authorization_code.used = True  # kept, to recognize a replay

            def authenticate_user(self, authorization_code: _Code) -> str:
                return authorization_code.user

        class RefreshGrant(grants.RefreshTokenGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]  # noqa: RUF012
            INCLUDE_NEW_REFRESH_TOKEN = True

            def authenticate_refresh_token(self, refresh_token: str) -> Any:
                found = owner._refresh.get(refresh_token)
                if found is None or found.family.revoked:
                    return None
                if found.rotated:
                    # A rotated-away refresh token came back: someone holds a copy.
                    owner.reuse_detected += 1
                    found.family.revoked = True
                    return None
                return found

            def authenticate_user(self, token: _Token) -> str:
                return token.family.user

            def revoke_old_credential(self, token: Any) -> None:
                token.rotated = True

        server = Server()
        server.register_token_generator(
            "default",
            BearerTokenGenerator(
                access_token_generator=lambda **_: secrets.token_urlsafe(32),
                refresh_token_generator=lambda **_: secrets.token_urlsafe(32),
                expires_generator=lambda client, grant_type: int(self.access_token_lifetime),
            ),
        )
        server.register_grant(CodeGrant, [rfc7636.CodeChallenge(required=True)])
        server.register_grant(RefreshGrant)
        return server

    def _save_token(self, token: dict[str, Any], request: Any) -> None:
        if request.refresh_token is not None:  # a refresh: the same family
            family = request.refresh_token.family
        else:
            code = request.authorization_code
            family = _Family(user=code.user, scope=code.scope)
            code.family = family
        record = _Token(
            access_token=token["access_token"],
            refresh_token=token.get("refresh_token"),
            scope=token.get("scope", family.scope),
            expires_at=time.time() + self.access_token_lifetime,
            family=family,
            client_id=request.client.client_id,
        )
        self._access[record.access_token] = record
        if record.refresh_token:
            self._refresh[record.refresh_token] = record

    # -- test helpers ------------------------------------------------------------------

    def issue_token(
        self, customer: str = "default", lifetime: float | None = None
    ) -> dict[str, Any]:
        """A grant minted directly, as if the browser flow had happened (RFC 6749 JSON)."""
        family = _Family(user=customer, scope=" ".join(sorted(self.client.granted)))
        life = self.access_token_lifetime if lifetime is None else lifetime
        record = _Token(
            access_token=secrets.token_urlsafe(32),
            refresh_token=secrets.token_urlsafe(32),
            scope=family.scope,
            expires_at=time.time() + life,
            family=family,
            client_id=self.client_id,
        )
        with self._lock:
            self._access[record.access_token] = record
            self._refresh[record.refresh_token] = record  # type: ignore[index]
        return {
            "access_token": record.access_token,
            "token_type": "Bearer",
            "expires_in": life,
            "refresh_token": record.refresh_token,
            "scope": record.scope,
        }

    def is_live(self, access_token: str) -> bool:
        """True if `access_token` is accepted by the API now."""
        with self._lock:
            record = self._access.get(access_token)
            return record is not None and not record.is_revoked() and not record.is_expired()

    def current_refresh_token(self, customer: str = "default") -> str | None:
        """The refresh token of `customer`'s newest live grant, if any."""
        with self._lock:
            live = [
                record
                for record in self._refresh.values()
                if record.family.user == customer and not record.rotated and not record.is_revoked()
            ]
            return live[-1].refresh_token if live else None

    # -- HTTP -------------------------------------------------------------------------

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI 3 application."""
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").title(): v.decode("latin-1") for k, v in scope["headers"]}
        query = scope["query_string"].decode("latin-1")
        path = scope["path"]
        drop = False
        if path == "/authorize" and scope["method"] == "GET":
            answer = self._authorize(_Request("GET", path, query, {}, headers))
        elif path == "/token" and scope["method"] == "POST":
            form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
            answer = self._token(_Request("POST", path, query, form, headers), form, headers)
            await anyio.sleep(self.answer_delay)  # the grant is processed already
            with self._lock:
                drop = self.drop_answers > 0
                self.drop_answers -= drop
        elif path == "/api/locations" and scope["method"] == "GET":
            answer = self._locations(headers.get("Authorization", ""), query)
        else:
            answer = (404, b'{"error": {"code": "not_found", "message": "no such route"}}', [])
        status, content, extra = answer
        start = [(b"content-length", str(len(content)).encode())]
        start += [(k.lower().encode(), v.encode("latin-1")) for k, v in extra]
        await send({"type": "http.response.start", "status": status, "headers": start})
        if drop:
            raise ConnectionAbortedError("answer dropped on purpose")
        await send({"type": "http.response.body", "body": content})

    def _authorize(self, request: _Request) -> Answer:
        with self._lock:
            try:
                grant = self._server.get_consent_grant(request)
            except rfc6749.OAuth2Error as error:
                return self._server.handle_error_response(request, error)  # type: ignore[no-any-return]
            user = request.args.get("login_hint") or "default"
            status, body, headers = self._server.create_authorization_response(
                request, grant_user=user if self.consent == "approve" else None, grant=grant
            )
        if self.issuer is not None:  # RFC 9207: every authorization response names its issuer
            headers = [
                (k, f"{v}&{urlencode({'iss': self.issuer})}" if k.lower() == "location" else v)
                for k, v in headers
            ]
        return status, body, headers

    def _token(self, request: _Request, form: dict[str, str], headers: dict[str, str]) -> Answer:
        with self._lock:
            status, body, extra = self._server.create_token_response(request)
        grant_type = form.get("grant_type", "(none)")
        self.token_requests[grant_type] += 1
        decoded = json.loads(body)
        if status >= 400:
            self.token_errors[decoded.get("error", "?")] += 1
            if self.echo_secrets:
                sent = [form.get(name) for name in ("refresh_token", "code", "code_verifier")]
                sent += [form.get("client_secret"), headers.get("Authorization")]
                decoded["error_description"] = f"you sent {[s for s in sent if s]}"
        else:
            if self.token_type is not None:
                decoded["token_type"] = self.token_type
            if self.expires_in is not _NORMAL:
                decoded["expires_in"] = self.expires_in
            if self.raw_expires_in is not None:
                decoded["expires_in"] = "@raw@"
        content = json.dumps(decoded).encode()
        if status < 400 and self.raw_expires_in is not None:
            content = content.replace(b'"@raw@"', self.raw_expires_in.encode())
        return status, content, [*extra, ("Content-Type", "application/json")]

    def _locations(self, authorization: str, query: str) -> Answer:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not self.is_live(token.strip()):
            message = "access token missing, expired or revoked"
            if self.echo_secrets:
                message += f"; you sent {authorization}"
            error = {"error": {"code": "invalid_token", "message": message}}
            return (
                401,
                json.dumps(error).encode(),
                [
                    ("WWW-Authenticate", 'Bearer error="invalid_token"'),
                    ("Content-Type", "application/json"),
                ],
            )
        params = dict(parse_qsl(query))
        offset, limit = int(params.get("offset", 0)), int(params.get("limit", 100))
        data = [{"id": "loc-1", "name": "Indie HQ"}][offset : offset + limit]
        page = {"data": data, "meta": {"offset": offset, "limit": limit, "total": 1}}
        return 200, json.dumps(page).encode(), [("Content-Type", "application/json")]

    @contextlib.contextmanager
    def serve_in_thread(self) -> Iterator[AuthlibUrls]:
        """Serve on a free loopback port with uvicorn in a daemon thread, until the block exits."""
        import uvicorn

        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        origin = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(
            self.app,
            interface="asgi3",
            lifespan="on",
            access_log=False,
            log_config=None,
            log_level="error",
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        with sock:
            thread.start()
            deadline = time.monotonic() + 20
            while not server.started:
                if time.monotonic() > deadline or not thread.is_alive():
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
