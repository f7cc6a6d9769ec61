"""Reading a request body with a size limit, before anything else looks at it (shared case 036).

A ``Content-Length`` above the limit is refused from the header alone; a chunked body is cut off as soon as more than
the limit has arrived, so an unauthenticated sender cannot make ingest buffer more than ``limit`` bytes.
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect
from starlette.types import Receive

__all__ = ["BadContentLength", "BodyTooLarge", "ClientDisconnect", "check_length", "read_body"]


class BodyTooLarge(Exception):
    """The body exceeds the limit (bytes)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds {limit} bytes")
        self.limit = limit


class BadContentLength(Exception):
    """The Content-Length header is not a non-negative integer."""


def check_length(declared: str | None, limit: int) -> None:
    """Refuse a ``Content-Length`` value (``None``: absent) that is malformed or above ``limit`` bytes.

    Raises :class:`BadContentLength` or :class:`BodyTooLarge`."""
    if declared is not None:
        declared = declared.strip(" \t")  # optional whitespace around a field value (RFC 9110, section 5.5)
        if not declared.isdigit():
            raise BadContentLength(f"invalid Content-Length {declared[:32]!r}")
        if int(declared) > limit:
            raise BodyTooLarge(limit)


async def read_body(receive: Receive, limit: int) -> bytes:
    """The raw body bytes of an ASGI HTTP request, unchanged, read from ``receive`` (check the declared length first
    with :func:`check_length`).

    Raises :class:`BodyTooLarge` as soon as more than ``limit`` bytes arrived, and ``ClientDisconnect`` when the
    sender goes away first.
    """
    message = await receive()
    if message["type"] != "http.request":
        raise ClientDisconnect()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):  # the whole body in one message: the usual case
        if len(body) > limit:
            raise BodyTooLarge(limit)
        return body
    chunks = [body]
    size = len(body)
    while True:
        if size > limit:
            raise BodyTooLarge(limit)
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if size > limit:
        raise BodyTooLarge(limit)
    return b"".join(chunks)
