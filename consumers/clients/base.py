"""The shell every bearer-token downstream client shares: one ``httpx.AsyncClient`` behind the instrumented
transport (shared rate limit, metrics, pauses on 429), usable as an async context manager, secrets kept out of
``repr``."""

from __future__ import annotations

from types import TracebackType
from typing import Self

import httpx

from bus.http import InstrumentedTransport
from bus.ratelimit import Limiter


class BearerClient:
    """``api``: the name in metrics and rate limits; ``token``: sent as ``Authorization: Bearer`` (never logged);
    ``transport``: an httpx transport for tests; ``limiter``: the shared rate limiter; ``timeout_s``: seconds."""

    api: str = ""
    #: Extra headers every request carries.
    headers: dict[str, str] = {"Accept": "application/json"}

    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        if not token:
            raise ValueError(f"a {self.api} token is required")
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=timeout_s,
            transport=InstrumentedTransport(self.api, inner=transport, limiter=limiter),
            headers={"Authorization": f"Bearer {token}", **self.headers},
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={str(self._http.base_url)!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
