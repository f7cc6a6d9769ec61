"""A short per-key mutex in Redis, for handlers that must serialize updates to one business object
(e.g. the refunds of one charge, shared case 020) across every worker process.

``SET key token NX PX ttl`` takes it; a compare-and-delete script releases it only if we still own it, so a lock
that expired and was taken by another process is never released by us. The TTL bounds how long a crashed holder
blocks others.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections.abc import AsyncIterator

import redis.asyncio as aioredis

from .errors import NotReady

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@contextlib.asynccontextmanager
async def held(
    redis: aioredis.Redis, key: str, *, ttl_ms: int = 30_000, wait_s: float = 5.0, retry_in_s: float = 0.5
) -> AsyncIterator[None]:
    """Hold ``key`` for the ``async with`` block.

    If another process holds it, try again with a short growing pause (10 ms up to 200 ms) for up to ``wait_s``
    seconds: holders keep it for one downstream call, so waiting briefly is cheaper than a retry. Beyond that, raise
    :class:`NotReady` with ``retry_in_s`` seconds: the entry is retried shortly, logged as "not ready", not as a
    failure.
    """
    token = secrets.token_hex(16)
    deadline = time.monotonic() + wait_s
    pause = 0.01
    while not await redis.set(key, token, nx=True, px=ttl_ms):
        if time.monotonic() + pause > deadline:
            raise NotReady(f"{key} is held by another worker", delay=retry_in_s)
        await asyncio.sleep(pause * random.uniform(0.5, 1.5))
        pause = min(pause * 2, 0.2)
    try:
        yield
    finally:
        await redis.eval(_RELEASE, 1, key, token)
