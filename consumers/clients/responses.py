"""How every downstream client of the leads and inventory consumers turns an HTTP outcome into a worker outcome.

=====================================  ============================================================================
2xx                                    success
400, 422 (validation)                  :class:`DownstreamValidationError` (``PermanentError``): dead-letter with the
                                       API's own message
401, 403                               :class:`DownstreamAuthError` (``RetryLater``): a rotated or refreshed key may
                                       be in place by the next attempt; a lasting one dead-letters after the last
408, 409 (in progress), 425, 429, 5xx  ``RetryLater`` with ``delay`` from ``Retry-After`` (seconds or HTTP-date,
                                       :func:`bus.retry_after.retry_after_delay`), else the worker's backoff
other 4xx                              ``PermanentError``
connection errors, timeouts            ``RetryLater`` (every call is idempotent: an upsert, an Idempotency-Key, or a
                                       step recorded with ``ctx.once``)
=====================================  ============================================================================

A client handles the statuses that mean something specific to its API (HubSpot's ``409 CONFLICT`` "already exists")
before calling :func:`raise_for_status`.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from bus.errors import PermanentError, RetryLater
from bus.retry_after import retry_after_delay

__all__ = ["DownstreamAuthError", "DownstreamValidationError", "raise_for_status", "transport_error"]

_RETRYABLE = frozenset({408, 409, 425, 429})


class DownstreamValidationError(PermanentError):
    """The downstream API rejected the request as invalid (HTTP 400/422): retrying the same request cannot help."""


class DownstreamAuthError(RetryLater):
    """HTTP 401/403: retried, since credentials may be fixed or refreshed before the next attempt."""


def transport_error(api: str, exc: httpx.TransportError) -> RetryLater:
    """The ``RetryLater`` for a request that got no response (refused, reset, timed out)."""
    return RetryLater(f"{api}_transport_error: {type(exc).__name__}: {exc}")


def raise_for_status(
    response: httpx.Response,
    api: str,
    message: Callable[[httpx.Response], str],
    *,
    retryable: frozenset[int] = _RETRYABLE,
    fallback_delay: Callable[[httpx.Response], float | None] | None = None,
) -> None:
    """Return for a 2xx, else raise the exception the table above gives. ``message(response)`` extracts the API's
    error text for the reason; ``fallback_delay`` reads an API-specific reset header when ``Retry-After`` is absent."""
    status = response.status_code
    if 200 <= status < 300:
        return
    text = message(response)
    if status in (400, 422):
        raise DownstreamValidationError(f"{api}_validation: {status} {text}")
    if status in (401, 403):
        raise DownstreamAuthError(f"{api}_auth: {status} {text}")
    if status in retryable or status >= 500:
        delay = retry_after_delay(response.headers.get("Retry-After"))
        if delay is None and fallback_delay is not None:
            delay = fallback_delay(response)
        kind = "throttled" if status == 429 else "unavailable"
        raise RetryLater(f"{api}_{kind}: {status} {text}", delay=delay)
    raise PermanentError(f"{api}_http_{status}: {text}")


def json_message(*keys: str) -> Callable[[httpx.Response], str]:
    """A ``message`` function reading the first of ``keys`` from a JSON error body (else a short body excerpt)."""

    def extract(response: httpx.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            return response.text[:200]
        if isinstance(body, dict):
            for key in keys:
                value = body.get(key)
                if isinstance(value, str) and value:
                    return value
        return response.text[:200]

    return extract
