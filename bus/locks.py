"""A short per-key mutex in Redis, for handlers that must serialize updates to one business object
(e.g. the refunds of one charge, shared case 020) across every worker process.

``SET key token NX PX ttl`` takes it; a compare-and-delete script releases it only if we still own it, so a lock
that expired and was taken by another process is never released by us. The TTL bounds how long a crashed holder
blocks others.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator

import redis.asyncio as aioredis

from .errors import RetryLater

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@contextlib.asynccontextmanager
async def held(
    redis: aioredis.Redis, key: str, *, ttl_ms: int = 30_000, retry_in_s: float = 0.5
) -> AsyncIterator[None]:
    """Hold ``key`` for the ``async with`` block. If another process holds it, raise :class:`RetryLater` with
    ``retry_in_s`` (seconds), so the worker retries the entry shortly instead of blocking."""
    token = secrets.token_hex(16)
    if not await redis.set(key, token, nx=True, px=ttl_ms):
        raise RetryLater(f"{key} is held by another worker", delay=retry_in_s)
    try:
        yield
    finally:
        await redis.eval(_RELEASE, 1, key, token)
