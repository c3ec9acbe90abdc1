"""Reading a request body within a size limit: a 413 as soon as it is over, never the whole body first."""

from __future__ import annotations

from starlette.requests import Request

from router.api.errors import APIError


async def read_limited_body(request: Request, limit: int) -> bytes:
    """The body, up to `limit` bytes; a 413 when the declared or the received length is over it."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"request body is {declared} bytes; the limit is {limit}", "body_too_large")
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise APIError(413, f"request body exceeds the limit of {limit} bytes", "body_too_large")
    return bytes(body)
