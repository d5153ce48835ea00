"""The OAuth server's routes: its paths, and the token endpoint with its faults applied."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

import anyio
import attrs

from ._asgi import header, read_body, send_response
from ._http import Response, encode_json, json_response

if TYPE_CHECKING:
    from ._asgi import Backend, Receive, Scope, Send
    from ._faults import Faults

__all__ = ["AUTHORIZE_PATH", "TOKEN_PATH", "answer_token"]

AUTHORIZE_PATH = "/ecostruxure/v1/oauth/authorize"
TOKEN_PATH = "/ecostruxure/v1/oauth/token"  # noqa: S105 (a path, not a secret)


def _token_answer_faults(answer: Response, faults: Faults) -> Response:
    raw, value = faults.token_expires_in_raw, faults.token_expires_in
    if raw is None and value is None and faults.token_type is None:
        return answer
    decoded = json.loads(answer.body)
    if faults.token_type is not None:
        decoded["token_type"] = faults.token_type
    if raw is not None or value is not None:
        decoded["expires_in"] = "\0raw" if raw is not None else value
    body = encode_json(decoded)
    if raw is not None:
        body = body.replace(b'"\\u0000raw"', raw.encode())
    return attrs.evolve(answer, body=body)


def _echo_token_request(answer: Response, body: bytes, authorization: str | None) -> Response:
    # What a careless server does: quote the request back in its error.
    form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    sent = [
        form[name]
        for name in ("refresh_token", "code", "code_verifier", "client_secret")
        if name in form
    ]
    if authorization:
        sent.append(authorization)
    error = json.loads(answer.body)
    error["error_description"] = f"{error.get('error_description', '')} (you sent: {sent})"
    return attrs.evolve(answer, body=encode_json(error))


async def answer_token(backend: Backend, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer one token request, with the faults applied."""
    faults = backend.sandbox.faults
    await anyio.sleep(faults.token_latency)
    body = await read_body(receive)
    if body is None:
        error = {"error": "invalid_request", "error_description": "body too large"}
        await send_response(send, json_response(413, error))
        return
    authorization = header(scope, b"authorization")
    answer = backend.oauth.token(body, authorization)
    if answer.status >= 400 and faults.echo_secrets:
        answer = _echo_token_request(answer, body, authorization)
    elif answer.status == 200:
        answer = _token_answer_faults(answer, faults)
    # The server has acted (a code spent, a refresh token rotated) before this.
    await anyio.sleep(faults.token_answer_delay)
    with backend.lock:
        drop = faults.token_answer_drops > 0
        if drop:
            faults.token_answer_drops -= 1
    await send_response(send, answer, drop=drop)
