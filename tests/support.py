"""Helpers for integration tests: in-process ingest, QuickBooks sandbox and workers on the test Valkey."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import httpx
import redis.asyncio as aioredis
from starlette.applications import Starlette

from bus.consumer import Consumer
from bus.naming import Names
from bus.worker import Worker
from consumers import accounting
from consumers.sandboxes.quickbooks import create_app as create_quickbooks
from ingest.app import create_app
from ingest.config import IngestSettings
from ingest.sources.stripe import StripeSource, signature_header

SECRET = "whsec_hookbusTestSecret000000000001"
REALM = "9130357992223456"
TOKEN = "sandbox-token"


def stripe_headers(body: bytes, *, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    t = int(time.time()) if timestamp is None else timestamp
    return {"Stripe-Signature": signature_header(body, secret, t), "Content-Type": "application/json"}


def ingest_app(
    redis: aioredis.Redis,
    *,
    secrets: Sequence[str] = (SECRET,),
    clock: Callable[[], float] = time.time,
    consumers: Sequence[Consumer] | None = None,
    max_body_bytes: int = 1024 * 1024,
) -> Starlette:
    return create_app(
        IngestSettings(),
        redis=redis,
        sources={"stripe": StripeSource(secrets, max_body_bytes=max_body_bytes)},
        consumers=[accounting.consumer] if consumers is None else consumers,
        clock=clock,
    )


@contextlib.asynccontextmanager
async def ingest_client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for ``app`` with its lifespan run (consumer groups created)."""
    await app.state.ingest.prepare_groups()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as client:
        yield client


class QuickBooksSandbox:
    """The sandbox app in process, and a transport to it."""

    def __init__(self) -> None:
        self.app = create_quickbooks(access_token=TOKEN)
        self.transport = httpx.ASGITransport(app=self.app)

    async def objects(self) -> dict[str, list[dict[str, Any]]]:
        async with httpx.AsyncClient(transport=self.transport, base_url="http://qb") as client:
            return (await client.get("/_sandbox/objects")).json()

    async def fault(self, **spec: Any) -> None:
        async with httpx.AsyncClient(transport=self.transport, base_url="http://qb") as client:
            (await client.post("/_sandbox/faults", json=spec)).raise_for_status()


def accounting_consumer(sandbox: QuickBooksSandbox, **settings: Any) -> Consumer:
    """The real accounting consumer, talking to the in-process sandbox."""
    config = accounting.AccountingSettings(
        quickbooks_base_url="http://qb", quickbooks_realm_id=REALM, quickbooks_access_token=TOKEN, **settings
    )
    return dataclasses.replace(
        accounting.consumer, lifespan=accounting.make_lifespan(config, transport=sandbox.transport)
    )


@contextlib.asynccontextmanager
async def running_worker(
    consumer: Consumer, redis: aioredis.Redis, names: Names, **options: Any
) -> AsyncIterator[Worker]:
    options = {"block_ms": 200, "claim_interval_s": 0.1, "grace_s": 5.0} | options
    worker = Worker(consumer, redis, names, **options)
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=15)


async def wait_until(predicate: Callable[[], Awaitable[bool]], *, timeout_s: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what or predicate}")


async def idle(redis: aioredis.Redis, names: Names, group: str, event_types: Sequence[str]) -> bool:
    """True when ``group`` has nothing pending and no lag on every stream of ``event_types``."""
    for event_type in event_types:
        for info in await redis.xinfo_groups(names.stream(event_type)):
            if info["name"].decode() == group and (info["pending"] or info["lag"]):
                return False
    return True
