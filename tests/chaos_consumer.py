"""The two consumers the chaos test runs as worker processes (``python -m bus worker tests.chaos_consumer:chaos``).

- ``chaos`` fails on purpose, decided by the payment's ``amount`` so the test knows every event's fate up front
  (:func:`plan`): a multiple of 50 fails permanently (dead-lettered); an amount ending in 1 fails transiently on its
  first one or two deliveries. Otherwise, and after those failures, it posts ``{"key", "event_id"}`` to the
  downstream stand-in's ``POST /effects`` with the idempotency key, mapping a 429 to ``RetryLater(Retry-After)``.
- ``chaos_audit`` never fails on purpose: it records every event it sees through ``POST /audit``, proving that the
  second consumer group gets every event regardless of the first group's failures.

Both count their deliveries in Redis (``hookbus:state:{group}:counters``: ``deliveries``, ``redeliveries`` for
delivery count > 1), best effort, for the test's report.

The stand-in's address comes from ``CHAOS_DOWNSTREAM_URL``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from bus import Consumer, Context, Event, PermanentError, RetryLater, RetryPolicy
from bus.connection import REDIS_DOWN

DOWNSTREAM_ENV = "CHAOS_DOWNSTREAM_URL"
COUNTERS = "counters"


def is_permanent(amount: int) -> bool:
    """Events whose handler raises PermanentError (about 2 %)."""
    return amount % 50 == 0


def transient_failures(amount: int) -> int:
    """How many first deliveries fail transiently (about 10 % of events fail once or twice)."""
    if amount % 10 != 1:
        return 0
    return 1 + (amount // 10) % 2


def plan(amount: int) -> str:
    if is_permanent(amount):
        return "permanent"
    return "transient" if transient_failures(amount) else "ok"


@contextlib.asynccontextmanager
async def _lifespan() -> AsyncIterator[Mapping[str, Any]]:
    url = os.environ[DOWNSTREAM_ENV]
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield {"downstream": client}


async def _count(ctx: Context) -> None:
    key = ctx.names.state(ctx.group, COUNTERS)
    with contextlib.suppress(*REDIS_DOWN):
        async with ctx.redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(key, "deliveries", 1)
            if ctx.delivery_count > 1:
                pipe.hincrby(key, "redeliveries", 1)
            await pipe.execute()


async def _post(ctx: Context, path: str, event: Event) -> None:
    client: httpx.AsyncClient = ctx.state["downstream"]
    response = await client.post(
        path,
        json={"key": ctx.idempotency_key, "event_id": event.id},
        headers={"Idempotency-Key": ctx.idempotency_key},
    )
    if response.status_code == 429:
        raise RetryLater("downstream throttled", delay=float(response.headers.get("Retry-After", "1")))
    response.raise_for_status()


retry = RetryPolicy(base_s=0.2, factor=2, cap_s=2, max_attempts=10)

chaos = Consumer("chaos", lifespan=_lifespan, start_from="oldest", retry=retry)
audit = Consumer("chaos_audit", lifespan=_lifespan, start_from="oldest", retry=retry)


@chaos.handler("payment.succeeded")
async def apply_payment(event: Event, ctx: Context) -> None:
    await _count(ctx)
    amount = int(event.data["amount"])
    if is_permanent(amount):
        raise PermanentError(f"chaos: amount {amount} is refused")
    if ctx.delivery_count <= transient_failures(amount):
        raise RuntimeError(f"chaos: transient failure {ctx.delivery_count} of {transient_failures(amount)}")
    await _post(ctx, "/effects", event)


@audit.handler("payment.succeeded")
async def record_payment(event: Event, ctx: Context) -> None:
    await _count(ctx)
    await _post(ctx, "/audit", event)
