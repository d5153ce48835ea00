"""A response's body, read within a size bound (declared or counted as it comes)."""

from __future__ import annotations

import httpx2

from ..errors import DecodeError

__all__ = ["check_declared", "over_limit", "read_body"]


def check_declared(declared: str | None, limit: int, method: str, shown: str) -> None:
    """Refuse (`DecodeError`) a body whose declared ``Content-Length`` exceeds `limit`."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise DecodeError(
            f"the body of {declared} bytes exceeds the {limit}-byte limit",
            method=method,
            path=shown,
        )


def over_limit(limit: int, method: str, shown: str) -> DecodeError:
    """The error of a body found (decoded) larger than `limit` bytes as it is read."""
    return DecodeError(f"the body exceeds the {limit}-byte limit", method=method, path=shown)


async def read_body(response: httpx2.Response, limit: int, method: str, shown: str) -> bytes:
    """The body of `response`, refused (`DecodeError`) past `limit` bytes, declared or not."""
    check_declared(response.headers.get("content-length"), limit, method, shown)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise over_limit(limit, method, shown)
        chunks.append(chunk)
    return b"".join(chunks)
