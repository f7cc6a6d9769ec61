"""Reading a request body with a size limit, before anything else looks at it (shared case 036).

A ``Content-Length`` above the limit is refused from the header alone; a chunked body is cut off as soon as more than
the limit has arrived, so an unauthenticated sender cannot make ingest buffer more than ``limit`` bytes.
"""

from __future__ import annotations

from starlette.requests import Request


class BodyTooLarge(Exception):
    """The body exceeds the limit (bytes)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds {limit} bytes")
        self.limit = limit


class BadContentLength(Exception):
    """The Content-Length header is not a non-negative integer."""


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body bytes, unchanged. Raises :class:`BodyTooLarge` or :class:`BadContentLength`."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadContentLength(f"invalid Content-Length {declared[:32]!r}")
        if int(declared) > limit:
            raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)
