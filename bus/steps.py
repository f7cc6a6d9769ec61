"""Idempotent handler steps: run a side effect once per (group, event), even across retries.

A handler made of several side effects (create a calendar event, then send an SMS) marks each one as a step. A
step's result is recorded in Redis (``{prefix}:step:{group}:{idempotency key}:{step}``, JSON, with a TTL) when it
completes; a retry of the same event returns the recorded result instead of running the step again, so a failed
SMS does not recreate the calendar event.

What it cannot do: if the process dies after the side effect but before the record is written, the step runs again.
Use it for downstream APIs that cannot deduplicate (an SMS); for APIs that can, also pass them the idempotency key
(QuickBooks ``requestid``, a client-chosen Google Calendar event id), which closes that window.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
import redis.asyncio as aioredis

T = TypeVar("T")

#: Default lifetime of a step record (seconds): far beyond any retry schedule.
STEP_TTL_S = 30 * 24 * 3600


async def once(redis: aioredis.Redis, key: str, action: Callable[[], Awaitable[T]], *, ttl_s: int = STEP_TTL_S) -> T:
    """Return the recorded result under ``key``, or run ``action``, record its (JSON-serializable) result, return it.

    Raises whatever ``action`` raises; nothing is recorded then, so the step runs again on the next attempt.
    """
    recorded = await redis.get(key)
    if recorded is not None:
        result: Any = orjson.loads(recorded)
        return result  # type: ignore[no-any-return]
    result = await action()
    await redis.set(key, orjson.dumps(result), ex=ttl_s)
    return result
