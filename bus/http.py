"""An httpx transport that every downstream client wraps its transport in: shared rate limit, metrics, pauses.

    transport = InstrumentedTransport("quickbooks", limiter=limiter, account=realm_id)
    client = httpx.AsyncClient(base_url=..., transport=transport)

For each request it takes a slot from the shared :class:`bus.ratelimit.Limiter` (raising
:class:`bus.errors.RetryLater` when the wait would exceed the limiter's bound), counts the response in
``hookbus_downstream_requests_total{api, status_class}`` and its duration in
``hookbus_downstream_request_duration_seconds{api}``, and on a ``429`` — or a provider's quota error such as Google's
``403 rateLimitExceeded`` — pauses the key for every process for the ``Retry-After`` time. The slot is released when
the response headers are in, also when the request fails, so a concurrency slot is never leaked by an error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import httpx

from . import metrics
from .ratelimit import Limiter
from .retry_after import retry_after_delay

#: Seconds to pause a key after a 429 that carries no usable Retry-After.
DEFAULT_PAUSE_S = 1.0


class InstrumentedTransport(httpx.AsyncBaseTransport):
    """Wraps ``inner`` (default: a fresh ``httpx.AsyncHTTPTransport``) for downstream API ``api``.

    ``account`` is the rate-limit key within the API: a string, or a function of the request (e.g. a Twilio
    message's sending number). ``quota_markers``: byte strings that make a ``403`` body count as a rate limit.
    """

    def __init__(
        self,
        api: str,
        *,
        inner: httpx.AsyncBaseTransport | None = None,
        limiter: Limiter | None = None,
        account: str | Callable[[httpx.Request], str] = "default",
        quota_markers: Sequence[bytes] = (b"rateLimitExceeded", b"userRateLimitExceeded"),
    ) -> None:
        self.api = api
        metrics.initialize(apis=[api])  # this process talks to ``api``: its panels and alerts show 0, not "no data"
        self._inner = inner or httpx.AsyncHTTPTransport()
        self._limiter = limiter
        self._account = account
        self._quota_markers = tuple(quota_markers)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        account = self._account(request) if callable(self._account) else self._account
        lease = await self._limiter.acquire(self.api, account) if self._limiter else None
        started = time.perf_counter()
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.TransportError:
            metrics.DOWNSTREAM_REQUESTS.labels(self.api, "error").inc()
            raise
        finally:
            metrics.DOWNSTREAM_DURATION.labels(self.api).observe(time.perf_counter() - started)
            if lease is not None and self._limiter is not None:
                await self._limiter.release(lease)
        metrics.DOWNSTREAM_REQUESTS.labels(self.api, f"{response.status_code // 100}xx").inc()
        if self._limiter is not None and await self._is_rate_limited(response):
            delay = retry_after_delay(response.headers.get("Retry-After")) or DEFAULT_PAUSE_S
            await self._limiter.pause(self.api, account, delay)
        return response

    async def _is_rate_limited(self, response: httpx.Response) -> bool:
        if response.status_code == 429:
            return True
        if response.status_code == 403 and self._quota_markers:
            body = await response.aread()
            return any(marker in body for marker in self._quota_markers)
        return False

    async def aclose(self) -> None:
        await self._inner.aclose()
