"""A consumer for the shared-rate-limit test: every handler calls the stand-in through the instrumented transport."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from bus import Consumer, Context, Event, RetryPolicy
from bus.consumer import Resources
from bus.http import InstrumentedTransport


@contextlib.asynccontextmanager
async def lifespan(resources: Resources) -> AsyncIterator[Mapping[str, Any]]:
    transport = InstrumentedTransport("standin", limiter=resources.limiter, account="acct-1")
    async with httpx.AsyncClient(base_url=os.environ["STANDIN_URL"], transport=transport, timeout=10) as client:
        yield {"client": client}


consumer = Consumer("limited", lifespan=lifespan, start_from="oldest", retry=RetryPolicy(base_s=0.2, max_attempts=20))


@consumer.handler("payment.succeeded")
async def call(event: Event, ctx: Context) -> None:
    response = await ctx.state["client"].post("/calls", json={"event_id": event.id})
    response.raise_for_status()
